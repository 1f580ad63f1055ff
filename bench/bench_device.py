"""Gradient, HVP and λ_max times on whatever device is present.

Runs on CUDA when available (device and dtype follow the model; the Lanczos basis stays float64),
else on the CPU; prints one table and, with --write, replaces its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse

import torch
from bench_core import lm_problem, mlp_problem
from common import interleaved_medians, markdown_table, parse_pinned, write_section

import curvlab
from curvlab.losses import cross_entropy


def timed(fn, sync):
    """``fn`` followed by a device synchronisation, so that the time covers the work."""

    def run():
        fn()
        sync()

    return run


def measure(make, device: torch.device) -> list:
    """One table row: gradient, HVP and kept-graph HVP times (ms), λ_max time (s), HVP count and λ_max."""
    name, model, x, y = make()
    model, x, y = model.to(device), x.to(device), y.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    objective = curvlab.Objective(model, cross_entropy, (x, y))
    v = torch.randn(objective.dim, device=device)
    operator = objective.hessian()
    operator(v)
    products = {"grad": objective.grad, "hvp": lambda: objective.hvp(v), "cached": lambda: operator(v)}
    t = interleaved_medians({key: timed(fn, sync) for key, fn in products.items()}, rounds=7)
    result = {}

    def solve():
        result["r"] = curvlab.eigs(curvlab.Objective(model, cross_entropy, (x, y)))

    lam_time = interleaved_medians({"eigs": timed(solve, sync)}, rounds=3)["eigs"]
    r = result["r"]
    print(
        f"{name} on {device}: grad {t['grad'] * 1e3:.1f} ms, HVP {t['hvp'] * 1e3:.1f} ms, "
        f"cached {t['cached'] * 1e3:.1f} ms, λ_max {lam_time:.3f} s ({r.n_matvecs} HVPs)",
        flush=True,
    )
    lam = f"{float(r.eigenvalues[0]):.6g}"
    return [name, t["grad"] * 1e3, t["hvp"] * 1e3, t["cached"] * 1e3, lam_time, r.n_matvecs, lam]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    args = parse_pinned(parser)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name_of_device = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rows = [measure(make, device) for make in (mlp_problem, lm_problem)]
    if args.write:
        header = ["problem", "gradient (ms)", "HVP (ms)", "cached HVP (ms)", "λ_max to 1e-3 (s)", "HVPs", "λ_max"]
        table = markdown_table(header, rows)
        write_section("bench_device", f"Device: {name_of_device}", [f"Device: {name_of_device}.", "", table, ""])


if __name__ == "__main__":
    main()
