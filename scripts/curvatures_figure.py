"""Hessian, Gauss–Newton and Fisher along a real run, and the sharpness of each layer.

Full-batch GD (η = 0.5) trains a LayerNorm MLP on 1,000 sklearn digits for 400 steps; every 20
steps the Monitor measures the top eigenvalue of the Hessian, the generalized Gauss–Newton, the
empirical and the Monte Carlo Fisher (``Curvatures``) and of each layer's diagonal Hessian block
(``BlockSharpness``), all on the training set. Writes docs/metrics/curvatures.png and
docs/metrics/block_sharpness.png with the report's own figure code, and prints the numbers quoted
in docs/metrics/curvatures.md.

    python scripts/curvatures_figure.py      # about a minute on 2 CPU cores
"""

import tempfile
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

import curvlab
from curvlab.experiments.report import _figure_block_sharpness, _figure_curvatures
from curvlab.losses import cross_entropy
from curvlab.monitor import BlockSharpness, Curvatures, every, load_records
from curvlab.plotting import pyplot, save_figure

DOCS = Path(__file__).resolve().parent.parent / "docs" / "metrics"
STEPS = 400


def main() -> None:
    digits = load_digits()
    x, y = torch.tensor(digits.data[:1000], dtype=torch.float32) / 16, torch.tensor(digits.target[:1000])
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 64), nn.LayerNorm(64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    run_dir = Path(tempfile.mkdtemp()) / "run"
    metrics = [
        Curvatures(schedule=every(20), curvatures=("hessian", "ggn", "fisher", "fisher_mc")),
        BlockSharpness(schedule=every(20)),
    ]
    monitor = curvlab.Monitor(curvlab.Objective(model, cross_entropy, (x, y)), optimizer, metrics, run_dir=run_dir)
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        monitor.step(loss)
    monitor.close()
    df = load_records(run_dir)
    plt = pyplot()
    for name, draw in (("curvatures", _figure_curvatures), ("block_sharpness", _figure_block_sharpness)):
        fig, ax = plt.subplots(figsize=(7, 4))
        draw({"GD η=0.5": df}, ax)
        ax.legend(fontsize=7)
        save_figure(fig, DOCS / f"{name}.png")
    top = df[df.metric == "top_eigenvalue"]
    for step in (20, 200, STEPS):
        at = top[top.step == step].set_index("curvature").value
        print(
            f"step {step}: "
            + ", ".join(f"{k} {v:.4g}" for k, v in at.items())
            + f"; GGN/Hessian {at['ggn'] / at['hessian']:.3f}, Fisher/GGN {at['fisher'] / at['ggn']:.3f}"
        )
    blocks = df[df.metric == "block_sharpness"]
    for step in (20, STEPS):
        at = blocks[blocks.step == step].set_index("block").value
        print(f"step {step} blocks: " + ", ".join(f"{k} {v:.4g}" for k, v in at.items()))
    objective = curvlab.Objective(model, cross_entropy, (x, y))
    for n_samples in (1, 10, 100):
        lam = float(curvlab.eigs(objective.fisher("mc", n_samples=n_samples), tol=1e-3).eigenvalues[0])
        print(f"step {STEPS}: Monte Carlo Fisher with {n_samples} draws per example: λ1 {lam:.4g}")
    costs = df[(df.metric == "cost_seconds")].groupby("group").value.median()
    print("median seconds per measurement:", costs.to_dict())


if __name__ == "__main__":
    main()
