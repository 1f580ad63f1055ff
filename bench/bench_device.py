"""Gradient, HVP and λ_max times on whatever device is present (GPU readiness, issue 7).

Runs on CUDA when available (device and dtype follow the model; the Lanczos basis stays float64),
else on the CPU; prints one table and, with --write, replaces its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse

import torch

import curvlab
from curvlab.losses import cross_entropy

from bench_core import lm_problem, mlp_problem
from common import interleaved_medians, markdown_table, write_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name_of_device = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rows = []
    for make in (mlp_problem, lm_problem):
        name, model, x, y = make()
        model, x, y = model.to(device), x.to(device), y.to(device)
        obj = curvlab.Objective(model, cross_entropy, (x, y))
        v = torch.randn(obj.dim, device=device)
        op = obj.hessian()
        op(v)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

        def timed(fn):
            def run():
                fn()
                sync()
            return run

        t = interleaved_medians({"grad": timed(obj.grad), "hvp": timed(lambda: obj.hvp(v)), "cached": timed(lambda: op(v))}, rounds=7)
        res = {}

        def solve():
            res["r"] = curvlab.eigs(curvlab.Objective(model, cross_entropy, (x, y)))
            sync()

        lam_time = interleaved_medians({"eigs": solve}, rounds=3)["eigs"]
        r = res["r"]
        rows.append([name, t["grad"] * 1e3, t["hvp"] * 1e3, t["cached"] * 1e3, lam_time, r.n_matvecs, f"{float(r.eigenvalues[0]):.6g}"])
        print(f"{name} on {name_of_device}: grad {t['grad'] * 1e3:.1f} ms, HVP {t['hvp'] * 1e3:.1f} ms, cached {t['cached'] * 1e3:.1f} ms, "
              f"λ_max {lam_time:.3f} s ({r.n_matvecs} HVPs)", flush=True)
    if args.write:
        table = markdown_table(["problem", "gradient (ms)", "HVP (ms)", "cached HVP (ms)", "λ_max to 1e-3 (s)", "HVPs", "λ_max"], rows)
        write_section("bench_device", f"Device: {name_of_device}", [f"Device: {name_of_device}.", "", table, ""])


if __name__ == "__main__":
    main()
