"""What a lab runs first after ``pip install curvlab-*.whl``: from the installed wheel (not a source checkout), import
curvlab, check the package data a release needs (the example configs, the claims files, py.typed), and measure
λ1 of a small model's Hessian against the explicit float64 Hessian.

Run by ``make wheel-check`` (part of ``make test``) with the fresh virtual environment's Python, from outside the
repository: ``python scripts/installed_check.py`` exits non-zero, naming what failed.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, hessian

import curvlab
from curvlab.losses import cross_entropy


def installed_not_from_source() -> Path:
    """The imported package's folder, which must lie inside this interpreter's environment (a wheel install)."""
    package = Path(curvlab.__file__).resolve().parent
    if Path(sys.prefix).resolve() not in package.parents:
        raise SystemExit(f"curvlab imported from {package}, not from the environment {sys.prefix}")
    return package


def package_data_present() -> list[str]:
    """The data files a release must carry, read through importlib.resources as installed code reads them."""
    root = resources.files("curvlab")
    wanted = {
        "py.typed": root / "py.typed",
        "example configs": root / "experiments" / "configs",
        "claims files": root / "reproductions" / "claims",
        "scales": root / "reproductions" / "scales.toml",
    }
    missing = [name for name, path in wanted.items() if not (path.is_file() or (path.is_dir() and any(path.iterdir())))]
    if missing:
        raise SystemExit(f"missing from the installed package: {missing}")
    return sorted(wanted)


def lambda1_matches_explicit_hessian() -> float:
    """λ1 by curvlab.eigs against the top eigenvalue of the explicit float64 Hessian of a small classifier."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, y = torch.randn(32, 4, dtype=torch.float64), torch.randint(0, 3, (32,))
    lam = float(curvlab.eigs(curvlab.Objective(model, cross_entropy, (x, y)), tol=1e-10).eigenvalues[0])
    names = [n for n, _ in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    shapes = [p.shape for p in model.parameters()]

    def loss_of(vector: torch.Tensor) -> torch.Tensor:
        parts = torch.split(vector, [s.numel() for s in shapes])
        params = {n: t.reshape(s) for n, t, s in zip(names, parts, shapes)}
        return cross_entropy(functional_call(model, params, (x,)), y)

    top = float(torch.linalg.eigvalsh(hessian(loss_of)(flat))[-1])
    if abs(lam - top) > 1e-8 * abs(top):
        raise SystemExit(f"λ1 {lam!r} differs from the explicit Hessian's {top!r}")
    return lam


def main() -> None:
    package = installed_not_from_source()
    data = package_data_present()
    lam = lambda1_matches_explicit_hessian()
    print(f"curvlab {curvlab.__version__} from {package}: package data {data}; λ1 = {lam:.6f} as the explicit Hessian")


if __name__ == "__main__":
    main()
