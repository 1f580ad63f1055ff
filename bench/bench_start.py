"""Warm and cold starts of the default Monitor's sharpness solves over long runs: which start finds λ1.

On bench_monitor's three problems, trains 24,000 steps (a seed no other benchmark trains) and at regular steps
solves for the sharpness the optimizer's threshold is about (λ1 of the Hessian for SGD, of Adam's preconditioned
Hessian for Adam) on the measurement set, to the default Monitor's residual tolerance (1e-2), by three chains:
warm-started from the chain's last Ritz vector and stopped after the default's cap of products (the default
before this benchmark), warm-started with no cap, and cold (the same random start every time, no cap); beside a
cold solve to 1e-8. A solve's residual bound puts *an* eigenvalue within it; a point off by more than 1e-2 (or by
more than its bound) sits on another eigenvalue than λ1. The training is the same for every chain.

Run: ``python bench/bench_start.py`` (after ``make install``). Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics

from bench_monitor import lm_setup, mlp_setup, train
from common import markdown_table, parse_pinned, write_section

import curvlab
from curvlab.geometry.sharpness import preconditioned_hessian
from curvlab.monitor.metrics import Sharpness
from curvlab.monitor.monitor import DEFAULT_SHARPNESS_TOL, DEFAULT_WARM_PRODUCTS

STEPS, SEED = 24000, 3
EVERY = {"SGD": 190, "Adam": 190, "LM": 470}  # about the default Monitor's spacing on each problem
REFERENCE_TOL = 1e-8
CHAINS = {
    f"warm, cap {DEFAULT_WARM_PRODUCTS}": (True, DEFAULT_WARM_PRODUCTS),
    "warm, no cap": (True, None),
    "cold": (False, None),
}


def run(setup, optimizer: str, every: int, steps: int) -> list[dict]:
    """Train ``steps`` steps; at step 1 and every ``every`` steps, the reference and one solve per chain."""
    solves: dict[str, list[tuple[int, float, float, bool]]] = {name: [] for name in CHAINS}
    last: dict[str, object] = {name: None for name in CHAINS}

    def measure(step, objective, opt):
        if step != 1 and step % every:
            return
        operator = preconditioned_hessian(objective, opt) if optimizer == "Adam" else objective.hessian()
        reference = float(curvlab.eigs(operator, tol=REFERENCE_TOL, max_iter=600, vectors=False).eigenvalues[0])
        for name, (warm, cap) in CHAINS.items():
            v0 = last[name] if warm else None
            res = curvlab.eigs(
                operator, tol=DEFAULT_SHARPNESS_TOL, v0=v0, max_iter=cap if v0 is not None else None, vectors=warm
            )
            if warm:
                last[name] = res.eigenvectors[:, 0]
            value = float(res.eigenvalues[0])
            error = abs(value - reference) / abs(reference)
            solves[name].append((int(res.n_matvecs), error, float(res.error_bounds[0]) / abs(value), res.converged))
        objective.release()

    train(*setup[1:], steps, None, optimizer, after_step=measure, seed=SEED)
    rows = []
    for name, points in solves.items():
        later = points[1:]  # the first solve of every chain is cold
        products = [p for p, *_ in later]
        rows.append(
            {
                "problem": setup[0].split(" on ")[0],
                "optimizer": optimizer,
                "start": name,
                "points": len(points),
                "products, later (mean)": statistics.mean(products),
                "products, later (median)": statistics.median(products),
                "products, later (max)": max(products),
                "unconverged": sum(not converged for *_, converged in later),
                "points off by > 1e-2": sum(error > 1e-2 for _, error, _, _ in later),
                "points off by more than their bound": sum(error > bound for _, error, bound, _ in later),
                "error (max)": max(error for _, error, _, _ in later),
            }
        )
        print(", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()))
    return rows


def reading(rows: list[dict]) -> str:
    """What the default chooses for each optimizer, beside each start's points off over that optimizer's rows."""
    default = Sharpness(warm="auto")
    parts = []
    for optimizer, preconditioned in (("SGD", False), ("Adam", True)):
        off = {name: 0 for name in CHAINS}
        for r in rows:
            if r["optimizer"] == optimizer:
                off[r["start"]] += r["points off by > 1e-2"]
        parts.append(
            f"{optimizer} ({'preconditioned' if preconditioned else 'plain'} Hessian): the default starts "
            f"{'warm' if default.warm_starts(preconditioned) else 'cold'}; points off by more than 1e-2 over its rows: "
            + ", ".join(f"{start} {count}" for start, count in off.items())
        )
    return "; ".join(parts) + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--no-write", action="store_true")
    args = parse_pinned(parser)
    mlp, lm = mlp_setup(), lm_setup()
    rows = [
        *run(mlp, "SGD", EVERY["SGD"], args.steps),
        *run(mlp, "Adam", EVERY["Adam"], args.steps),
        *run(lm, "Adam", EVERY["LM"], args.steps),
    ]
    header = list(rows[0])
    lines = [
        f"The default Monitor's sharpness solve (residual tolerance {DEFAULT_SHARPNESS_TOL:g}) along {args.steps:,} "
        f"steps of bench_monitor's problems (seed {SEED}, which no other benchmark trains), every "
        f"{EVERY['SGD']} steps on the MLP and {EVERY['LM']} on the LM, from three starts, against a cold solve to "
        f"{REFERENCE_TOL:g} at the same parameters; errors relative; *later*: every solve but the first (cold in "
        "every chain). A point off by more than its bound sits on another eigenvalue than λ1 (the bound puts *an* "
        "eigenvalue within it).",
        "",
        markdown_table(header, [[r[h] for h in header] for r in rows]),
        "",
        reading(rows),
    ]
    if not args.no_write:
        write_section("bench_start", "Warm and cold starts of the Monitor's sharpness", lines)


if __name__ == "__main__":
    main()
