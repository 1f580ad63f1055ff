"""Monitor overhead: plain training vs the same training with the default Monitor (per-step statistics
plus budget-scheduled sharpness, ``budget=0.1``), timed round-robin in one run, on a small MLP (SGD and
Adam) and a small transformer LM; checks the trajectories are bit-identical and counts the sharpness
measurements. Then the cost of one measurement of every metric group, from the Monitor's own cost records.

Run: ``python bench/bench_monitor.py`` (after ``make install``). Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time

import torch
from bench_core import TinyLM
from common import interleaved_medians, markdown_table, parse_pinned, write_section
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import curvlab
from curvlab.geometry.sharpness import preconditioned_hessian
from curvlab.losses import cross_entropy
from curvlab.monitor import (
    CriticalSharpness,
    Density,
    Directional,
    FullBatch,
    Histogram,
    Landscape,
    Noise,
    Sharpness,
    Trace,
    every,
)
from curvlab.monitor.monitor import SHARPNESS_WEIGHT


def mlp_setup():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    make = lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))  # noqa: E731
    return "MLP 64-128-128-10 on digits, batch 128", make, x, y, 128, 256


def lm_setup():
    import inspect

    text = inspect.getsource(argparse)
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    context, n_seq = 32, 1024
    starts = torch.arange(n_seq) * ((len(ids) - context - 1) // n_seq)
    x = torch.stack([ids[s : s + context] for s in starts])
    y = torch.stack([ids[s + 1 : s + context + 1] for s in starts])
    return (
        "Transformer LM 2×64 on argparse.py characters, batch 16×32 tokens",
        lambda: TinyLM(len(chars), context=context),
        x,
        y,
        16,
        64,
    )


OPTIMIZERS = {"SGD": lambda ps: torch.optim.SGD(ps, lr=0.1), "Adam": lambda ps: torch.optim.Adam(ps, lr=1e-3)}


def train(make, x, y, batch, measure_n, steps, metrics, optimizer="Adam", run_dir=None, after_step=None, seed=0):
    """Train for ``steps``; metrics=None: no Monitor, "default": ``Monitor(objective, opt)``, else a list; the
    Monitor writes its records to ``run_dir`` when given. ``after_step(step, objective, opt)``, when given, is called
    after each optimizer step (the replay's cold solves)."""
    torch.manual_seed(seed)
    model = make()
    opt = OPTIMIZERS[optimizer](model.parameters())
    monitor = None
    objective = curvlab.Objective(model, cross_entropy, (x[:measure_n], y[:measure_n]))
    if metrics is not None:
        monitor = curvlab.Monitor(objective, opt, metrics=None if metrics == "default" else metrics, run_dir=run_dir)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    with sdpa_kernel([SDPBackend.MATH]):  # the same attention kernel in both arms
        for step in range(1, steps + 1):
            idx = torch.randint(0, len(y), (batch,), generator=gen)
            inputs, targets = x[idx], y[idx]  # the batch both arms train on, and the monitored one passes on
            opt.zero_grad()
            loss = cross_entropy(model(inputs), targets)
            loss.backward()
            opt.step()
            if monitor is not None:
                monitor.step(loss, (inputs, targets))
            if after_step is not None:
                after_step(step, objective, opt)
    seconds = time.perf_counter() - t0
    return seconds, monitor, torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def print_row(row: dict) -> None:
    print(", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)


def count_bought(cost: float, free: float) -> float:
    """Sharpness measurements over a run: the first (calibration, outside the budget) and as many more as the
    sharpness's nine tenths of ``free`` (a share of the training time) buys at ``cost`` each (a share too)."""
    return 1 + SHARPNESS_WEIGHT / (SHARPNESS_WEIGHT + 1) * free / cost


def default_overhead(setup, optimizer: str, steps: int, rounds: int) -> tuple[dict, dict]:
    """Plain and default-monitored training, ``rounds`` pairs run back to back (which arm goes first alternates, so
    that a machine speeding up or slowing down during a round favours neither); the median of the pairs' ratios,
    identity, measurement counts; with the row, its floor (:func:`floor_row`)."""
    name, make, x, y, batch, measure_n = setup
    plain, watched, ratios, counts, calibration, overheads, stats, first, later, fixed = ([] for _ in range(10))
    identical = True
    for round_ in range(rounds):
        for arm in ("plain", "monitored") if round_ % 2 == 0 else ("monitored", "plain"):
            if arm == "plain":
                t_plain, _, x_plain = train(make, x, y, batch, measure_n, steps, None, optimizer)
                continue
            with tempfile.TemporaryDirectory() as run_dir:  # records written and flushed, as a real run does
                t_watched, monitor, x_watched = train(
                    make, x, y, batch, measure_n, steps, "default", optimizer, run_dir
                )
                monitor.close()
        identical &= torch.equal(x_plain, x_watched)
        plain.append(t_plain)
        watched.append(t_watched)
        ratios.append(t_watched / t_plain)
        costs = [r["value"] for r in monitor.records if r["metric"] == "cost_seconds" and r["group"] == "sharpness"]
        counts.append(len(costs))
        first.append(costs[0] / monitor.clock.training)
        later.extend(c / monitor.clock.training for c in costs[1:])
        calibration.append(monitor.clock.calibration / monitor.clock.training)
        overheads.append(monitor.overhead)
        fixed.append(monitor.clock.fixed / monitor.clock.training)
        stats.append(len({r["step"] for r in monitor.records if r["metric"] == "loss"}))
    points = threshold_points(monitor)  # the last round's: its run is replayed below
    products = [p["products"] for p in points]
    errors = replay_errors(setup, optimizer, points)
    later_products = statistics.median(products[1:]) if len(products) > 1 else float("nan")
    ratio = statistics.median(ratios)
    row = {
        "problem": name,
        "optimizer": optimizer,
        "steps": steps,
        "plain s": statistics.median(plain),
        "monitored s": statistics.median(watched),
        "ratio": ratio,
        "sharpness measurements": statistics.median(counts),
        "range over rounds": f"{min(counts)}–{max(counts)}",
        "steps with step statistics": statistics.median(stats),
        "all Monitor time / training": statistics.median(overheads),
        "of which calibration": statistics.median(calibration),
        "of which per-step costs": statistics.median(fixed),
        "first sharpness / training": statistics.median(first),
        "later sharpness / training": statistics.median(later) if later else float("nan"),
        "count 9/10 of the budget buys at the later cost": count_bought(statistics.median(later), BUDGET)
        if later
        else float("nan"),
        "later / first, products (max)": max(products[1:]) / products[0] if len(products) > 1 else float("nan"),
        "unconverged points": sum(not p["converged"] for p in points),
        "error against a cold solve (max)": max(errors),
        "stated bound (max)": max(p["error_bound"] / abs(p["value"]) for p in points),
        "bit-identical": "yes" if identical else "NO",
    }
    print_row(row)
    return row, floor_row(setup, optimizer, later_products, row)


FLOOR_ROUNDS = 15


def floor_row(setup, optimizer: str, later_products: float, row: dict) -> dict:
    """Torch's own floor for a later sharpness measurement, timed round-robin beside a training step in this run:
    a kept graph's build (forward and backward with ``create_graph`` over the measurement set) and the row's median
    number of products of its later points as raw double-backward products on it, nothing of curvlab around them
    (no solver, no Monitor; for Adam the plain Hessian's product, which the preconditioned one's two diagonal
    scalings only add to). Against the row's steps of training: the count 9/10 of the budget buys at that cost."""
    name, make, x, y, batch, measure_n = setup
    torch.manual_seed(0)
    trained, measured = make(), make()  # a training step moves its parameters; the kept graph needs them as built
    opt = OPTIMIZERS[optimizer](trained.parameters())
    params = list(measured.parameters())
    inputs, targets = x[:measure_n], y[:measure_n]
    directions = [torch.randn_like(p) for p in params]
    gen = torch.Generator().manual_seed(0)
    kept: list = []

    def training_step():
        idx = torch.randint(0, len(y), (batch,), generator=gen)
        opt.zero_grad()
        cross_entropy(trained(x[idx]), y[idx]).backward()
        opt.step()

    def graph():
        kept[:] = torch.autograd.grad(cross_entropy(measured(inputs), targets), params, create_graph=True)

    def product():
        torch.autograd.grad(kept, params, directions, retain_graph=True)

    with sdpa_kernel([SDPBackend.MATH]):
        graph()
        t = interleaved_medians({"step": training_step, "graph": graph, "product": product}, rounds=FLOOR_ROUNDS)
    training = row["steps"] * t["step"]
    floor = (t["graph"] + later_products * t["product"]) / training
    floor_of = {
        "problem": name.split(" on ")[0],
        "optimizer": optimizer,
        "training step ms": t["step"] * 1e3,
        "kept graph ms": t["graph"] * 1e3,
        "product ms": t["product"] * 1e3,
        "products per later point (median)": later_products,
        "floor: later / training": floor,
        "count at the floor, 9/10 of the budget": count_bought(floor, BUDGET),
        "count at the floor, 9/10 of what the per-step costs leave": count_bought(
            floor, BUDGET - row["of which per-step costs"]
        ),
        "measured later / floor": row["later sharpness / training"] / floor,
    }
    print_row(floor_of)
    return floor_of


THRESHOLD_SHARPNESS = ("sharpness", "preconditioned_sharpness")  # what the default measures, by optimizer
COLD_TOL = 1e-8  # the replay's solves


def threshold_points(monitor) -> list[dict]:
    """The default Monitor's sharpness records, one per measurement: λ1 (SGD) or the preconditioned λ1 (Adam)."""
    return [
        r
        for r in monitor.records
        if r["metric"] in THRESHOLD_SHARPNESS and r.get("index", 1) == 1 and math.isfinite(r["value"])
    ]


def replay_errors(setup, optimizer: str, points: list[dict]) -> list[float]:
    """Replay the deterministic run without a Monitor (its trajectory is bit-identical) and solve cold to
    ``COLD_TOL`` at each point's step, on the same operator: |value − cold| / |cold| per point."""
    name, make, x, y, batch, measure_n = setup
    by_step = {p["step"]: p for p in points}
    errors = []

    def cold_solve(step, objective, opt):
        point = by_step.get(step)
        if point is None:
            return
        preconditioned = point["metric"] == "preconditioned_sharpness"
        operator = preconditioned_hessian(objective, opt) if preconditioned else objective.hessian()
        res = curvlab.eigs(operator, tol=COLD_TOL, max_iter=600)
        cold = float(res.eigenvalues[0])
        errors.append(abs(point["value"] - cold) / abs(cold) if res.converged else math.inf)
        objective.release()

    train(make, x, y, batch, measure_n, max(by_step), None, optimizer, after_step=cold_solve)
    return errors


def per_metric_costs(make, x, y, batch, measure_n):
    """Every metric group measured at every one of 12 steps; mean cost per measurement."""
    metrics = [
        "assumptions",
        FullBatch(schedule=every(1)),
        Sharpness(schedule=every(1)),
        CriticalSharpness(schedule=every(1)),
        Directional(schedule=every(1)),
        Trace(schedule=every(1)),
        Density(schedule=every(4)),
        Landscape(schedule=every(1)),
        Histogram(schedule=every(1)),
        Noise(data=(x[:measure_n], y[:measure_n]), batch_size=batch, n_batches=20, schedule=every(4)),
    ]
    _, monitor, _ = train(make, x, y, batch, measure_n, 12, metrics)
    rows = {}
    for r in monitor.records:
        if r["metric"].startswith("cost_") and r["step"] > 1:
            rows.setdefault(r["group"], {}).setdefault(r["metric"], []).append(r["value"])
    return rows


TARGET_RATIO = 1.15
BUDGET = 0.1  # the default Monitor's


def _budget_reading(rows: list[dict]) -> str:
    """What the budget held and what three sharpness measurements cost, from the measured fractions."""
    held = [r["all Monitor time / training"] - r["of which calibration"] for r in rows]
    three = [r["first sharpness / training"] + 2 * r["later sharpness / training"] for r in rows]
    return (
        f"Reading: everything the Monitor does but its calibration (the first measurement of each budgeted group) "
        f"took {min(held):.1%}–{max(held):.1%} of the training time against the budget of {BUDGET:.0%}, and the "
        "trajectories are bit-identical. The first sharpness measurement starts Lanczos from a random vector, later "
        "ones from the last top eigenvector on SGD and from the same random vector on Adam: later / first cost "
        + ", ".join(f"{r['later sharpness / training'] / r['first sharpness / training']:.2f}" for r in rows)
        + ". Three measurements (the first and two later ones, at the median costs above) take "
        + ", ".join(f"{t:.1%} ({r['problem'].split(' on ')[0]} / {r['optimizer']})" for t, r in zip(three, rows))
        + " of the training time; the budget schedules the second one on the cost the first one announces for it "
        f"(on SGD its cost per product times the warm solves' cap; on Adam its own cost), which the sharpness's "
        f"{SHARPNESS_WEIGHT / (SHARPNESS_WEIGHT + 1):.0%} of what the per-step costs leave must first cover. "
        "By the Monitor's own clock (1 + all Monitor time / training) the monitored runs cost "
        + ", ".join(f"{1 + r['all Monitor time / training']:.2f}×" for r in rows)
        + ". Where the measured ratio differs from that, the rest is training itself running slower beside the "
        "Monitor, or the machine's noise (each ratio is the median over pairs of runs back to back on a shared "
        "2-core machine)."
    )


TARGET_COUNT = {"MLP": 20, "Transformer": 10}  # sharpness measurements per 1,500 steps (issue 34)
TARGET_LATER = 0.25  # each later measurement's products, against the first's
TARGET_ERROR = 1e-2  # every point, relative to a cold solve to COLD_TOL


def wanted_count(row: dict) -> float:
    """The sharpness measurements the target asks of a row's run: per 1,500 steps, scaled to its steps."""
    return TARGET_COUNT[row["problem"].split()[0]] * row["steps"] / 1500


def _misses(row: dict) -> list[str]:
    """What of the target a row misses (none: met): ≤ 1.15× plain training, ≥ 20 sharpness measurements per
    1,500 steps on the MLP and ≥ 10 on the LM, each later one ≤ 0.25× the first in products, every point within 1e-2
    of a cold solve, a bit-identical trajectory."""
    want = wanted_count(row)
    misses = []
    if row["ratio"] > TARGET_RATIO:
        misses.append(f"{row['ratio']:.2f}× > {TARGET_RATIO}×")
    if row["sharpness measurements"] < want:
        misses.append(f"{row['sharpness measurements']:g} < {want:g} measurements")
    if not row["later / first, products (max)"] <= TARGET_LATER:
        misses.append(f"later / first products up to {row['later / first, products (max)']:.2f} > {TARGET_LATER}")
    if not row["error against a cold solve (max)"] <= TARGET_ERROR:
        misses.append(f"a point {row['error against a cold solve (max)']:.2g} from the cold solve")
    if row["bit-identical"] != "yes":
        misses.append("trajectory changed")
    return misses


def _floor_reading(rows, floors) -> str:
    """Per row: whether the count target is out of reach even at torch's floor (products alone cost more than the
    budget leaves), or reachable there, so that the shortfall is curvlab's own overhead."""
    verdicts = []
    for row, floor in zip(rows, floors):
        want = wanted_count(row)
        whole = floor["count at the floor, 9/10 of the budget"]
        left = floor["count at the floor, 9/10 of what the per-step costs leave"]
        label = f"{floor['problem']} / {floor['optimizer']}"
        cost = (
            f"{floor['products per later point (median)']:g} products of {floor['product ms']:.3g} ms and a graph of "
            f"{floor['kept graph ms']:.3g} ms against training steps of {floor['training step ms']:.3g} ms"
        )
        if not math.isfinite(whole):
            verdicts.append(f"{label}: no later point to time")
        elif whole < want:
            verdicts.append(
                f"{label}: out of reach at this budget and measurement set whatever curvlab's own overhead: "
                f"{whole:.1f} < {want:g} measurements at the floor even with 9/10 of the whole budget ({cost})"
            )
        elif left < want:
            verdicts.append(
                f"{label}: within reach at the floor only if the per-step costs ({row['of which per-step costs']:.1%} "
                f"of the training) were nearly free ({whole:.1f} with 9/10 of the whole budget, {left:.1f} with 9/10 "
                f"of what they leave; {cost}), and the measured later measurement costs "
                f"{floor['measured later / floor']:.2f}× the floor"
            )
        else:
            verdicts.append(
                f"{label}: within reach at the floor ({left:.1f} ≥ {want:g} measurements with 9/10 of what the "
                f"per-step costs leave; {cost}); the measured later measurement costs "
                f"{floor['measured later / floor']:.2f}× the floor: the shortfall is the solver's own overhead"
            )
    return "Cause of the count's target, per row: " + "; ".join(verdicts) + "."


def by_length(setup, optimizer: str, lengths: list[int]) -> list[dict]:
    """One monitored run per length: how the count of sharpness measurements grows with the run, with what the
    Monitor spent by its own clock (one wall-time pair per length would be noise on this shared machine)."""
    name, make, x, y, batch, measure_n = setup
    rows = []
    for steps in lengths:
        with tempfile.TemporaryDirectory() as run_dir:
            _, monitor, _ = train(make, x, y, batch, measure_n, steps, "default", optimizer, run_dir)
            monitor.close()
        points = threshold_points(monitor)
        rows.append(
            {
                "problem": name.split(" on ")[0],
                "optimizer": optimizer,
                "steps": steps,
                "all Monitor time / training": monitor.overhead,
                "of which calibration": monitor.clock.calibration / monitor.clock.training,
                "sharpness measurements": len(points),
                "per 1,500 steps": len(points) * 1500 / steps,
                "unconverged": sum(not p["converged"] for p in points),
                "median products, later": statistics.median(p["products"] for p in points[1:]) if points[1:] else 0,
            }
        )
        print_row(rows[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lm-steps", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lengths", default="1500,6000,24000", help="run lengths of the count's scaling (MLP)")
    parser.add_argument("--lm-lengths", default="1500,6000,24000", help="run lengths of the count's scaling (LM)")
    parser.add_argument("--no-write", action="store_true")
    args = parse_pinned(parser)
    mlp, lm = mlp_setup(), lm_setup()
    rows, floors = zip(
        default_overhead(mlp, "SGD", args.steps, args.rounds),
        default_overhead(mlp, "Adam", args.steps, args.rounds),
        default_overhead(lm, "Adam", args.lm_steps, args.rounds),
    )
    lengths = [int(n) for n in args.lengths.split(",") if n]
    lm_lengths = [int(n) for n in args.lm_lengths.split(",") if n]
    scaling = [*by_length(mlp, "SGD", lengths), *by_length(mlp, "Adam", lengths), *by_length(lm, "Adam", lm_lengths)]
    header = list(rows[0])
    lines = [
        "### The default Monitor: cost against plain training",
        "",
        "`curvlab.Monitor(objective, optimizer, run_dir=...)` with no metrics named: the step's own loss, gradient "
        "norm, update norm and learning rate (no extra pass), and the sharpness the optimizer's stability threshold "
        "is about (λ1 against 2/η for SGD, warm-started from the last top eigenvector; the preconditioned λ1 against "
        "38/η for Adam, from a random start each time); both at the first step, then as the cost budget "
        "(`budget=0.1`, everything the Monitor "
        "spends counted) allows, the sharpness with nine tenths of what the per-step costs leave. The parameters "
        "are copied only before and at the steps that measure. Records written to a run directory and flushed "
        "after every step that writes. Measurement set: the "
        f"first examples of the data; {args.rounds} pairs of a plain and a monitored run back to back (the first arm "
        "alternating), medians over the pairs, with the range of the sharpness measurements' count (the budget is a "
        "share of the wall time, so a round on a slower or busier machine can fit one fewer). *ratio* = the median "
        "of the pairs' monitored / plain wall time; *all Monitor time / "
        "training* = `monitor.overhead`, what the budget bounds "
        "except the *calibration* (the first measurement of each budgeted group, made whatever it costs); *steps "
        "with step statistics*: the budget paces them on sub-millisecond steps; *first / later sharpness*: the cost "
        "of the first sharpness measurement and the median of the later ones, as fractions of the training time.",
        "",
        markdown_table(header, [[r[k] for k in header] for r in rows]),
        "",
        f"Target (issue 34: ≤ {TARGET_RATIO}× plain training; ≥ {TARGET_COUNT['MLP']} sharpness measurements per "
        f"1,500 steps on the MLP rows and ≥ {TARGET_COUNT['Transformer']} on the LM; each later measurement ≤ "
        f"{TARGET_LATER}× the first in products; every point within {TARGET_ERROR:g} (relative) of a cold solve to "
        f"{COLD_TOL:g} at the same parameters, by replaying the last round's deterministic run without a Monitor; a "
        "bit-identical trajectory): "
        + "; ".join(
            f"{r['problem'].split(' on ')[0]} / {r['optimizer']}: "
            + ("**met**" if not _misses(r) else "**missed** (" + ", ".join(_misses(r)) + ")")
            for r in rows
        )
        + ". *unconverged points*: measurements that stopped at the warm solves' product cap before the residual "
        "reached the tolerance (their record says `converged: false`); *stated bound*: the largest `error_bound` / "
        "value among the records (an eigenvalue lies within it).",
        "",
        "Why the count falls short: torch's own floor for a later measurement, timed round-robin beside a "
        "training step in this run (`floor_row`): the kept graph's build over the measurement set and the row's "
        "median number of products of its later points as raw double-backward products, nothing of curvlab around "
        "them; *floor: later / training*: that cost against the row's training time; *measured later / floor*: the "
        "Monitor's median later measurement against it (the rest is the solver's and the Monitor's own work).",
        "",
        markdown_table(list(floors[0]), [list(f.values()) for f in floors]),
        "",
        _floor_reading(rows, floors),
        "",
        "How the count grows with the run's length (one monitored run each, its cost by the Monitor's own clock; the "
        "budget is a share of the training time, so the count grows with it, and the calibration's share shrinks):",
        "",
        markdown_table(list(scaling[0]), [list(r.values()) for r in scaling]),
        "",
        _budget_reading(rows),
        "",
        'For comparison, Cockpit (Schneider, Dangel and Hennig, 2021, "Cockpit: A Practical Debugging Tool for the '
        'Training of Deep Neural Networks") tracks every step and reports its overhead against plain training in '
        "its paper (not measured here); curvlab's default measures curvature less often, at a cost you set.",
        "",
    ]
    for setup in (mlp, lm):
        name, make, x, y, batch, measure_n = setup
        costs = per_metric_costs(make, x, y, batch, measure_n)
        table = [
            [
                group,
                statistics.mean(c["cost_seconds"]) * 1e3,
                statistics.mean(c["cost_hvps"]),
                statistics.mean(c["cost_passes"]),
            ]
            for group, c in costs.items()
        ]
        for row in table:
            print(f"  {row[0]:24s} {row[1]:9.1f} ms {row[2]:6.1f} HVPs {row[3]:5.1f} passes", flush=True)
        lines += [
            f"### Cost of one measurement of each group: {name}; measurement set {measure_n} examples",
            "",
            "Mean over steps 2–12, every group measured each step; `batch_evaluation` is the pair of same-minibatch "
            "evaluations the per-step groups share; passes are loss/gradient passes over the measurement set "
            "(critical sharpness: forward passes only):",
            "",
            markdown_table(["group", "ms", "HVPs", "passes"], table),
            "",
        ]
    if not args.no_write:
        write_section("bench_monitor", "Monitor overhead", lines)
        print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
