"""The main job (for now): train a small MLP on digits for a few steps, then measure its Hessian.

Prints the top eigenvalues (Lanczos), the trace (Hutch++) and the 2/η stability threshold, and
saves a spectral-density figure (SLQ). A later issue replaces this with a full demo experiment.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from curvlab import Objective, eigs, spectral_density, trace
from curvlab.data import load_digits
from curvlab.losses import cross_entropy
from curvlab.models import mlp
from curvlab.plotting import pyplot, save_figure


def run_demo(out_dir: Path, steps: int = 100, lr: float = 0.5, k: int = 5, quiet: bool = False) -> dict:
    say = (lambda *a: None) if quiet else print
    torch.manual_seed(0)
    inputs, labels = load_digits()
    model = mlp(64, [32, 32], 10, activation="tanh")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    objective = Objective(model, cross_entropy, (inputs, labels))
    say(f"digits: {len(labels)} examples; MLP 64-32-32-10 (tanh), {objective.dim} parameters")
    say(f"training {steps} steps of full-batch GD, η = {lr}")
    for _ in range(steps):
        optimizer.zero_grad()
        cross_entropy(model(inputs), labels).backward()
        optimizer.step()

    t0 = time.perf_counter()
    hessian = objective.hessian()
    top = eigs(hessian, k=k, tol=1e-6)
    bottom = eigs(hessian, k=1, which="SA", tol=1e-3, atol=1e-3 * float(top.eigenvalues[0]))
    tr = trace(hessian, method="hutch++", n_probes=150)
    density = spectral_density(hessian, n_probes=5, n_steps=60)
    seconds = time.perf_counter() - t0

    summary: dict[str, Any] = {
        "loss": objective.loss(),
        "top_eigenvalues": top.eigenvalues.tolist(),
        "lambda_min": float(bottom.eigenvalues[0]),
        "trace": tr.estimate,
        "trace_stderr": tr.stderr,
        "lr": lr,
        "gd_threshold_2_over_lr": 2.0 / lr,
        "hvps": hessian.n_matvecs,
        "seconds": seconds,
        "bn_mode": objective.bn_mode,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    figure = _save_density(density, summary, out_dir / "spectral_density.png")

    say(f"loss after training: {summary['loss']:.4f}")
    say("top eigenvalues (Lanczos, tol 1e-6): " + ", ".join(f"{x:.4f}" for x in summary["top_eigenvalues"]))
    say(
        f"λ1 = {top.eigenvalues[0]:.4f} vs GD stability threshold 2/η = {2 / lr:.4f} (η·λ1 = "
        f"{lr * top.eigenvalues[0]:.3f})"
    )
    say(f"most negative eigenvalue: {summary['lambda_min']:.5f}")
    say(f"trace (Hutch++, 150 HVPs): {tr.estimate:.4f} ± {tr.stderr:.4f}")
    say(f"{hessian.n_matvecs} Hessian-vector products in {seconds:.2f} s")
    say(f"wrote {figure} and {out_dir / 'summary.json'}")
    return summary


def _save_density(density, summary: dict, path: Path) -> Path:

    fig, ax = pyplot().subplots(figsize=(6.5, 3.8))
    density.plot(ax=ax, label="SLQ density (5 probes × 60 steps)")
    ax.axvline(summary["gd_threshold_2_over_lr"], color="tab:red", ls="--", label="2/η")
    for i, lam in enumerate(summary["top_eigenvalues"]):
        ax.axvline(lam, color="tab:green", lw=0.8, alpha=0.7, label="Lanczos top-k" if i == 0 else None)
    ax.set_title("Hessian spectrum, MLP on digits after GD")
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=120)
