"""Scaling benchmark: wall time and peak memory of λ_max to 1e-3 against the number of examples
(1k–32k MNIST images, MLP 784-512-256-10) and the number of parameters (10k–10M, 2,048 images),
for curvlab and the other tools side by side, with the crossovers.

Each (tool, size) runs in a fresh subprocess, so its peak resident memory (VmHWM) is its
own (the kernel's peak mark is reset once the model and data are built); "extra memory" is that
peak minus the process's memory at that moment.
hessian-eigenthings' fixed-step Lanczos is given the smallest step count that reaches 1e-3 at each
size (found by a search with its own start vector); PyHessian runs at tol
1e-4 (the loosest that reached 1e-3 in bench_core); curvlinops at scipy eigsh tol 1e-3.
Run with ``make bench``; writes its section of docs/benchmarks.md and docs/benchmarks_scaling.png.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import markdown_table, parse_pinned, write_section

EXAMPLES = (1024, 2048, 4096, 8192, 16384, 32768)
WIDTHS = {  # hidden widths of the MLP 784-…-10 for about 10k, 100k, 1M and 10M parameters
    "10k": (12,),
    "100k": (128,),
    "1M": (1024, 256),
    "10M": (4096, 1536),
}
TOOLS = ("curvlab", "curvlab bound='gap'", "hessian-eigenthings", "pyhessian", "curvlinops")
ANCHORS = TOOLS[2:]
FIGURE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks_scaling.png"


CACHE = Path(tempfile.gettempdir()) / "curvlab-bench-scaling"


def build(hidden: tuple[int, ...], n: int):
    """The MLP, briefly trained (50 SGD steps on 2,048 images, as in bench_core; cached across
    workers), and the first ``n`` images."""
    from bench_core import _train, mlp, mnist

    torch.manual_seed(0)
    model = mlp((784, *hidden, 10))
    saved = CACHE / f"mlp-{'-'.join(map(str, hidden))}.pt"
    if saved.exists():
        model.load_state_dict(torch.load(saved))
    else:
        x, y = mnist(2048)
        _train(model, x, y, steps=50, lr=0.1)
        CACHE.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), saved)
    x, y = mnist(n)
    return model, x, y


def status_bytes(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(float(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def reset_peak() -> float:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS and return it."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_bytes("VmRSS")


def worker(tool: str, hidden: tuple[int, ...], n: int, steps: int) -> dict:
    """Run one tool once in this process: seconds, products, λ, extra peak memory (bytes)."""
    import bench_core as core

    model, x, y = build(hidden, n)
    if tool == "search":
        return search(model, x, y)
    run = {
        "curvlab": lambda: core.curvlab_run(model, x, y, 1, tol=1e-3),
        "curvlab bound='gap'": lambda: core.curvlab_run(model, x, y, 1, tol=1e-3, bound="gap"),
        "hessian-eigenthings": lambda: core.eigenthings_run(model, x, y, 1, "lanczos", max_iter=steps, tol=1e-3),
        "pyhessian": lambda: core.pyhessian_run(model, x, y, 1, 1e-4),
        "curvlinops": lambda: core.curvlinops_run(model, x, y, 1, 1e-3),
    }[tool]()
    base = reset_peak()
    t0 = time.perf_counter()
    value, products = run()
    seconds = time.perf_counter() - t0
    peak = status_bytes("VmHWM")
    return {"seconds": seconds, "products": products, "value": value, "extra_bytes": max(peak - base, 0.0)}


def search(model, x, y) -> dict:
    """A converged λ_max (tol 1e-7) and the smallest step count at which hessian-eigenthings'
    fixed-step Lanczos is within 1e-3 of it (doubling, then bisection)."""
    import bench_core as core

    import curvlab
    from curvlab.losses import cross_entropy

    reference = float(
        curvlab.eigs(curvlab.Objective(model, cross_entropy, (x, y)), tol=1e-7, max_iter=200).eigenvalues[0]
    )

    def enough(steps: int) -> bool:
        value, _ = core.eigenthings_run(model, x, y, 1, "lanczos", max_iter=steps, tol=1e-3)()
        return abs(value - reference) <= 1e-3 * abs(reference)

    low, high = 1, 4
    while not enough(high):
        low, high = high, 2 * high
        if high > 64:
            return {"reference": reference, "steps": 64}
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return {"reference": reference, "steps": high}


def measure(tool: str, hidden: tuple[int, ...], n: int, steps: int = 0) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        tool,
        "--hidden",
        ",".join(map(str, hidden)),
        "--n",
        str(n),
        "--steps",
        str(steps),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def sweep(points: list[tuple[str, tuple[int, ...], int]]) -> list[dict]:
    rows = []
    for label, hidden, n in points:
        found = measure("search", hidden, n)
        params = sum(a * b + b for a, b in zip((784, *hidden), (*hidden, 10)))
        for tool in TOOLS:
            result = measure(tool, hidden, n, found["steps"])
            error = abs(result.get("value", float("nan")) - found["reference"]) / abs(found["reference"])
            rows.append(
                {
                    "label": label,
                    "params": params,
                    "n": n,
                    "tool": tool,
                    "steps": found["steps"],
                    "error": error,
                    **result,
                }
            )
            print(
                f"  {label:>6} n={n:6d} {tool:20s} "
                + (
                    f"{result['seconds']:7.2f}s {result['extra_bytes'] / 2**20:8.0f} MiB "
                    f"{result['products']:3d} products rel.err {error:.1e}"
                    if "error" not in result
                    else result["error"]
                ),
                flush=True,
            )
    return rows


def sweep_section(title: str, rows: list[dict], axis: str) -> list[str]:
    """One sweep's part of docs/benchmarks.md: its table, then the crossovers in time and in memory."""
    table = markdown_table(
        [axis, "tool", "time (s)", "extra peak memory (MiB)", "products", "rel. error"],
        [
            [
                f"{r[axis]:,}",
                r["tool"],
                r.get("seconds", r.get("error")),
                r.get("extra_bytes", float("nan")) / 2**20,
                r.get("products", "—"),
                r["error"],
            ]
            for r in rows
        ],
    )
    return [
        title,
        "",
        table,
        "",
        "Crossovers in time: " + "; ".join(crossovers(rows, axis, "seconds")) + ".",
        "",
        "Crossovers in memory: " + "; ".join(crossovers(rows, axis, "extra_bytes")) + ".",
    ]


def crossovers(rows: list[dict], axis: str, key: str) -> list[str]:
    """Where curvlab's value of ``key`` crosses each anchor's along ``axis`` (or that it never does)."""
    lines = []
    ours = {r[axis]: r[key] for r in rows if r["tool"] == "curvlab" and key in r}
    for tool in ANCHORS:
        theirs = {r[axis]: r[key] for r in rows if r["tool"] == tool and key in r}
        sizes = sorted(set(ours) & set(theirs))
        ratios = [(s, ours[s] / theirs[s]) for s in sizes if theirs[s] > 0]
        if not ratios:
            lines.append(f"{tool}: no common sizes")
            continue
        flips = [(a, b) for (a, ra), (b, rb) in zip(ratios, ratios[1:]) if (ra < 1) != (rb < 1)]
        span = ", ".join(f"{r:.2f}×" for _, r in ratios)
        if flips:
            where = "; ".join(f"between {a:,} and {b:,}" for a, b in flips)
            lines.append(f"{tool}: curvlab/{tool} = {span} — crosses 1 {where}")
        else:
            side = "below" if ratios[0][1] < 1 else "above"
            lines.append(f"{tool}: curvlab/{tool} = {span} — {side} 1 at every size, no crossover")
    return lines


def figure(examples: list[dict], params: list[dict]) -> None:
    from curvlab.plotting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, (rows, axis, label) in enumerate(((examples, "n", "examples"), (params, "params", "parameters"))):
        for tool in TOOLS:
            mine = sorted((r for r in rows if r["tool"] == tool and "seconds" in r), key=lambda r: r[axis])
            xs = [r[axis] for r in mine]
            axes[0, col].plot(xs, [r["seconds"] for r in mine], marker="o", label=tool)
            axes[1, col].plot(xs, [r["extra_bytes"] / 2**20 for r in mine], marker="o", label=tool)
        for row, what in enumerate(("wall time (s)", "extra peak memory (MiB)")):
            ax = axes[row, col]
            ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel(label), ax.set_ylabel(what)
            ax.legend(fontsize=7)
        axes[0, col].set_title(f"λ_max to 1e-3 against the number of {label}")
    save_figure(fig, FIGURE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker")
    parser.add_argument("--hidden", default="512,256")
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parse_pinned(parser)
    if args.worker:
        print(json.dumps(worker(args.worker, tuple(int(h) for h in args.hidden.split(",")), args.n, args.steps)))
        return
    print("== against the number of examples (MLP 784-512-256-10)", flush=True)
    examples = sweep([(f"{n // 1024}k", (512, 256), n) for n in EXAMPLES])
    print("== against the number of parameters (2,048 images)", flush=True)
    params = sweep([(label, hidden, 2048) for label, hidden in WIDTHS.items()])
    figure(examples, params)

    lines = [
        "![time and memory against examples and parameters](benchmarks_scaling.png)",
        "",
        *sweep_section("Against the number of examples (MLP 784-512-256-10, one chunk):", examples, "n"),
        "",
        *sweep_section("Against the number of parameters (2,048 images, one chunk):", params, "params"),
    ]
    if not args.no_write:
        write_section("bench_scaling", "Scaling: time and memory against examples and parameters", lines)
        print("wrote docs/benchmarks.md and", FIGURE)


if __name__ == "__main__":
    main()
