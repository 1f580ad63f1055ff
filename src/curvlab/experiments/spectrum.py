"""``curvlab spectrum RUN_DIR``: top eigenvalues, λ_min, trace and density of a saved run's model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from curvlab.core.objective import Objective
from curvlab.errors import MissingInputFile
from curvlab.experiments.build import build_data, build_loss, build_model_from
from curvlab.experiments.config import load_config
from curvlab.experiments.run_dir import load_untrusted
from curvlab.linalg import eigs, spectral_density, trace
from curvlab.plotting import pyplot, save_figure


def spectrum_of_run(run_dir: str | Path, k: int = 5, density_path: str | Path | None = None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if run_dir.is_file():  # the checkpoint itself: its run directory holds the config
        run_dir = run_dir.parent
    checkpoint = run_dir / "checkpoint.pt"
    if not checkpoint.exists():
        raise MissingInputFile(f"run_dir: {run_dir} holds no checkpoint.pt")
    config = load_config(run_dir / "config.toml")
    _, measure = build_data(config)
    model = build_model_from(config, measure)
    model.load_state_dict(load_untrusted(checkpoint)["model"])
    objective = Objective(
        model,
        build_loss(config, measure),
        (measure.x_train, measure.y_train),
        batch_size=config["train"]["max_chunk"],
        bn_mode=config["monitor"]["bn_mode"],
    )
    H = objective.hessian()
    top = eigs(H, k=k)
    low = eigs(H, which="SA", atol=1e-3 * abs(float(top.eigenvalues[0])))
    tr = trace(H, method="hutch++", n_probes=60)
    print(f"{run_dir}: {objective.dim} parameters, measurement set of {len(measure.y_train)}")
    print("top eigenvalues: " + ", ".join(f"{v:.5g}" for v in top.eigenvalues.tolist()))
    print(f"λ_min: {float(low.eigenvalues[0]):.5g}; trace (Hutch++): {tr.estimate:.5g} ± {tr.stderr:.2g}")
    if density_path is not None:
        d = spectral_density(H, n_probes=3, n_steps=40)
        ax = d.plot(ax=pyplot().subplots(figsize=(6, 3.5))[1])
        ax.set_title(f"Hessian spectral density: {run_dir.name}")
        save_figure(ax.figure, density_path)
        print(f"density: {density_path}")
    return {"top": top.eigenvalues.tolist(), "lambda_min": float(low.eigenvalues[0]), "trace": tr.estimate}
