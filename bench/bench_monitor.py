"""Monitor overhead (issue 3): plain training vs the same training with a Monitor at its default
schedule (per-step assumption tests + sharpness every 100 steps), in one run, on a small MLP and a
small transformer LM; and the cost of every metric group, from the Monitor's own cost records.

Run: ``python bench/bench_monitor.py`` (after ``make install``). Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import curvlab
from curvlab.losses import cross_entropy
from curvlab.monitor import Density, Directional, FullBatch, Histogram, Landscape, Noise, Sharpness, Trace, every

from bench_core import TinyLM
from common import markdown_table, write_section


def mlp_setup():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    make = lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))  # noqa: E731
    return "MLP 64-128-128-10 on digits, batch 64", make, x, y, 64, 512


def lm_setup():
    import inspect

    text = inspect.getsource(argparse)
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    context, n_seq = 32, 1024
    starts = torch.arange(n_seq) * ((len(ids) - context - 1) // n_seq)
    x = torch.stack([ids[s : s + context] for s in starts])
    y = torch.stack([ids[s + 1 : s + context + 1] for s in starts])
    return "Transformer LM 2×64 on argparse.py characters, batch 16×32 tokens", lambda: TinyLM(len(chars), context=context), x, y, 16, 64


def train(make, x, y, batch, measure_n, steps, metrics):
    torch.manual_seed(0)
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    monitor = None
    if metrics is not None:
        objective = curvlab.Objective(model, cross_entropy, (x[:measure_n], y[:measure_n]))
        monitor = curvlab.Monitor(objective, opt, metrics=metrics)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    with sdpa_kernel([SDPBackend.MATH]):  # the same attention kernel in both arms
        for _ in range(steps):
            idx = torch.randint(0, len(y), (batch,), generator=gen)
            opt.zero_grad()
            loss = cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            if monitor is not None:
                monitor.step(loss, (x[idx], y[idx]))
    return time.perf_counter() - t0, monitor


def per_metric_costs(make, x, y, batch, measure_n):
    """Every metric group measured at every one of 12 steps; mean cost per measurement."""
    metrics = ["assumptions", FullBatch(schedule=every(1)), Sharpness(schedule=every(1)), Directional(schedule=every(1)),
               Trace(schedule=every(1)), Density(schedule=every(4)), Landscape(schedule=every(1)), Histogram(schedule=every(1)),
               Noise(data=(x[:measure_n], y[:measure_n]), batch_size=batch, n_batches=20, schedule=every(4))]
    _, monitor = train(make, x, y, batch, measure_n, 12, metrics)
    rows = {}
    for r in monitor.records:
        if r["metric"].startswith("cost_") and r["step"] > 1:
            rows.setdefault(r["group"], {}).setdefault(r["metric"], []).append(r["value"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    lines = []
    for setup in (mlp_setup, lm_setup):
        name, make, x, y, batch, measure_n = setup()
        plain, _ = train(make, x, y, batch, measure_n, args.steps, None)
        watched, _ = train(make, x, y, batch, measure_n, args.steps, ["assumptions", "sharpness"])
        plain2, _ = train(make, x, y, batch, measure_n, args.steps, None)
        base = min(plain, plain2)
        print(f"{name}: plain {base:.2f} s, monitored {watched:.2f} s, ratio {watched / base:.2f}", flush=True)
        costs = per_metric_costs(make, x, y, batch, measure_n)
        table = [[group, statistics.mean(c["cost_seconds"]) * 1e3, statistics.mean(c["cost_hvps"]), statistics.mean(c["cost_passes"])]
                 for group, c in costs.items()]
        for row in table:
            print(f"  {row[0]:24s} {row[1]:9.1f} ms {row[2]:6.1f} HVPs {row[3]:5.1f} passes", flush=True)
        lines += [
            f"### {name}; measurement set {measure_n} examples",
            "",
            f"{args.steps} Adam steps: plain training {base:.2f} s (best of two), with `Monitor(metrics=['assumptions', 'sharpness'])` "
            f"(the default schedule: assumption tests every step, sharpness every 100 steps) {watched:.2f} s — "
            f"**{watched / base:.2f}×** plain training.",
            "",
            "Cost of one measurement of each group (mean over steps 2–12, every group measured each step; "
            "`batch_evaluation` is the pair of same-minibatch evaluations the per-step groups share; "
            "passes are loss/gradient passes over the measurement set):",
            "",
            markdown_table(["group", "ms", "HVPs", "passes"], table),
            "",
        ]
    if not args.no_write:
        write_section("bench_monitor", "Monitor overhead", lines)
        print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
