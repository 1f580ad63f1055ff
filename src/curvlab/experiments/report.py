"""Reports: matplotlib figures of the kinds the papers use, chosen by what the records hold, and a
static HTML page embedding them with the key numbers. Several runs are overlaid in one report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from curvlab import pages
from curvlab.errors import MissingInputFile
from curvlab.experiments import block_order
from curvlab.experiments.edge import BAND, EdgeSummary, edge_summary
from curvlab.geometry import qq_gaussian
from curvlab.monitor.records import load_records
from curvlab.plotting import pyplot, save_figure

FIGURES = "figures"


def _cap(value: float, ceiling: float) -> float:
    """A non-finite value (a diverged run) replaced by ``ceiling``, so that it plots above every finite one."""
    return value if math.isfinite(value) else ceiling


def _series(df: Any, metric: str, **where: Any) -> Any:
    rows = df[df.metric == metric]
    for key, value in where.items():
        if key in rows:
            rows = rows[rows[key] == value]
    return rows.dropna(subset=["value"]).sort_values("step")


def _figure_loss(runs: dict[str, Any], ax: Any) -> None:
    validated = False
    for i, (name, df) in enumerate(runs.items()):
        s = _series(df, "loss")
        ax.plot(s.step, s.value, color=f"C{i}", label=name)
        v = _series(df, "validation_loss")
        if len(v):
            ax.plot(v.step, v.value, "o--", color=f"C{i}", ms=3, label=f"{name}: validation")
            validated = True
    title = "Training loss (line) and validation loss (dashed)" if validated else "Training loss"
    ax.set_yscale("log"), ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.set_title(title)


def _figure_sharpness(runs: dict[str, Any], ax: Any) -> None:
    for i, (name, df) in enumerate(runs.items()):
        color = f"C{i}"
        s = _series(df, "sharpness", index=1)
        ax.plot(s.step, s.value, color=color, label=f"{name}: λ1")
        t = _series(df, "threshold")
        pre = t["kind"] == "adam_preconditioned" if "kind" in t else t.value != t.value
        if len(t[~pre]):
            ax.plot(t[~pre].step, t[~pre].value, color=color, ls="--", label=f"{name}: stability threshold")
        p = _series(df, "preconditioned_sharpness")
        if len(p):
            ax.plot(p.step, p.value, color=color, ls=":", label=f"{name}: preconditioned λ1")
        if len(t[pre]):
            ax.plot(t[pre].step, t[pre].value, color=color, ls="-.", label=f"{name}: preconditioned threshold")
    (
        ax.set_yscale("log"),
        ax.set_xlabel("step"),
        ax.set_ylabel("eigenvalue"),
        ax.set_title("Sharpness and the edge of stability"),
    )


def _figure_step_norms(runs: dict[str, Any], ax: Any) -> None:
    """The Monitor's per-step statistics: the norm of the gradient each step used and of the update it made."""
    for i, (name, df) in enumerate(runs.items()):
        for metric, style in (("grad_norm", "-"), ("update_norm", "--")):
            s = _series(df, metric)
            if len(s):
                ax.plot(s.step, s.value, color=f"C{i}", ls=style, lw=0.8, label=f"{name}: {metric.replace('_', ' ')}")
    (
        ax.set_yscale("log"),
        ax.set_xlabel("step"),
        ax.set_ylabel("norm"),
        ax.set_title("Gradient and update norms (per step)"),
    )


def _figure_critical(runs: dict[str, Any], ax: Any) -> None:
    """Critical sharpness beside λ1 and the directional sharpness of the actual update, with 2/η."""
    for i, (name, df) in enumerate(runs.items()):
        color = f"C{i}"
        c = _series(df, "critical_sharpness")
        ax.plot(c.step, c.value, color=color, marker=".", ls="-", label=f"{name}: critical sharpness λc")
        s = _series(df, "sharpness", index=1)
        if len(s):
            ax.plot(s.step, s.value, color=color, ls="--", label=f"{name}: λ1")
        d = _series(df, "directional_sharpness", optimizer="actual")
        if len(d):
            ax.plot(d.step, d.value, color=color, ls=":", label=f"{name}: directional sharpness of the update")
        if "lr" in c and len(c):
            ax.plot(c.step, 2.0 / c.lr, color="k", lw=0.8, label=f"{name}: 2/η")
    (
        ax.set_yscale("log"),
        ax.set_xlabel("step"),
        ax.set_ylabel("curvature"),
        ax.set_title("Critical sharpness (forward passes only) against λ1"),
    )


def _figure_curvatures(runs: dict[str, Any], ax: Any) -> None:
    """Top eigenvalues of the Hessian, Gauss–Newton and Fisher overlaid (a colour per run, a style per curvature)."""
    styles = {"hessian": "-", "ggn": "--", "fisher": ":", "fisher_mc": "-."}
    for i, (name, df) in enumerate(runs.items()):
        rows = _series(df, "top_eigenvalue")
        for curvature, style in styles.items():
            s = rows[rows["curvature"] == curvature] if "curvature" in rows else rows.iloc[:0]
            if len(s):
                label = {"ggn": "Gauss–Newton", "fisher": "empirical Fisher", "fisher_mc": "Monte Carlo Fisher"}.get(
                    curvature, "Hessian"
                )
                ax.plot(s.step, s.value, color=f"C{i}", ls=style, marker=".", label=f"{name}: {label} λ1")
    ax.set_yscale("log"), ax.set_xlabel("step"), ax.set_ylabel("top eigenvalue")
    ax.set_title("Hessian, Gauss–Newton and Fisher: top eigenvalues")


def _figure_block_sharpness(runs: dict[str, Any], ax: Any) -> None:
    """Sharpness of each layer's diagonal block over training (one line per block; runs by line style)."""
    for j, (name, df) in enumerate(runs.items()):
        rows = _series(df, "block_sharpness")
        for i, block in enumerate(dict.fromkeys(rows["block"])):
            s = rows[rows["block"] == block]
            ax.plot(
                s.step,
                s.value,
                color=f"C{i % 10}",
                ls=["-", "--", ":", "-."][j % 4],
                marker=".",
                label=f"{name}: {block}",
            )
    ax.set_yscale("log"), ax.set_xlabel("step"), ax.set_ylabel("top eigenvalue of the block")
    ax.set_title("Sharpness per layer (diagonal blocks of the curvature)")


def _figure_tuner_lr(runs: dict[str, Any], ax: Any) -> None:
    for name, df in runs.items():
        s = _series(df, "loss")
        ax.plot(s.step, s.lr, label=name)
    ax.set_yscale("log"), ax.set_xlabel("step"), ax.set_ylabel("learning rate"), ax.set_title("Learning rate")


def _figure_gap(runs: dict[str, Any], ax: Any) -> None:
    for name, df in runs.items():
        for metric, style in (("inst_gap", "-"), ("exp_gap_0.99", "--")):
            s = _series(df, metric)
            if len(s):
                ax.plot(s.step, s.value, ls=style, label=f"{name}: {metric}")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("step"), ax.set_ylabel("convexity gap"), ax.set_title("Convexity gap (≤ 0 where convex)")


def _figure_smooth(runs: dict[str, Any], ax: Any) -> None:
    for name, df in runs.items():
        for metric in ("inst_smooth", "max_smooth"):
            s = _series(df, metric)
            if len(s):
                ax.plot(s.step, s.value, label=f"{name}: {metric}")
    ax.set_yscale("log"), ax.set_xlabel("step"), ax.set_ylabel("smoothness"), ax.set_title("Smoothness estimates")


def _figure_directional(runs: dict[str, Any], ax: Any) -> None:
    for name, df in runs.items():
        s = _series(df, "sharpness_ratio_to_sgd")
        if len(s):
            means = s.groupby("optimizer").value.mean().sort_values()
            ax.barh([f"{name}: {k}" for k in means.index], means.values)
    (
        ax.set_xscale("log"),
        ax.set_xlabel("directional sharpness / SGD's"),
        ax.set_title("Pseudo-update directional sharpness"),
    )


def _figure_density(runs: dict[str, Any], ax: Any) -> None:
    for name, df in runs.items():
        s = df[df.metric == "spectral_density"]
        if len(s):
            last = s[s.step == s.step.max()]
            ax.plot(last.eigenvalue, last.value.clip(lower=1e-12), label=f"{name} (step {int(last.step.max())})")
    (
        ax.set_yscale("log"),
        ax.set_xlabel("eigenvalue"),
        ax.set_ylabel("density"),
        ax.set_title("Hessian spectral density (SLQ)"),
    )


def _figure_noise(runs: dict[str, Any], ax: Any) -> None:
    for name, df in runs.items():
        s = df[df.metric == "noise_norm"]
        if len(s):
            first = s[s.step == s.step.min()]
            ax.hist(first.value, bins=20, alpha=0.6, label=f"{name} (step {int(first.step.min())})")
    ax.set_xlabel("‖g̃ − ∇F‖"), ax.set_ylabel("count"), ax.set_title("Gradient-noise norms")


def _figure_noise_qq(runs: dict[str, Any], ax: Any) -> None:
    for name, df in runs.items():
        s = df[df.metric == "noise_norm"]
        if len(s) > 2:
            first = s[s.step == s.step.min()]
            theory, sample = qq_gaussian(torch.tensor(first.value.to_numpy(dtype=float)))
            ax.plot(theory, sample, ".", label=name)
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, label="Gaussian fit")
    (
        ax.set_xlabel("Gaussian quantile"),
        ax.set_ylabel("‖g̃ − ∇F‖ quantile"),
        ax.set_title("Gradient noise: QQ against a fitted Gaussian"),
    )


FIGURE_KINDS = [
    ("loss", "loss", _figure_loss),
    ("sharpness", "sharpness", _figure_sharpness),
    ("step_norms", "grad_norm", _figure_step_norms),
    ("critical_sharpness", "critical_sharpness", _figure_critical),
    ("curvatures", "top_eigenvalue", _figure_curvatures),
    ("block_sharpness", "block_sharpness", _figure_block_sharpness),
    ("learning_rate", "loss", _figure_tuner_lr),
    ("convexity_gap", "inst_gap", _figure_gap),
    ("smoothness", "inst_smooth", _figure_smooth),
    ("directional", "sharpness_ratio_to_sgd", _figure_directional),
    ("density", "spectral_density", _figure_density),
    ("noise", "noise_norm", _figure_noise),
    ("noise_qq", "noise_norm", _figure_noise_qq),
]


# Metric groups the figures above draw; any other group's scalar series get a generic figure of their own, so a
# new metric appears in reports without a change here.
DRAWN_GROUPS = {"train", "validation", "step", "sharpness", "critical_sharpness", "curvatures", "block_sharpness"}
DRAWN_GROUPS |= {"assumptions", "directional", "density", "noise"}


def make_figures(runs: dict[str, Any], out_dir: Path, edges: list[EdgeSummary]) -> list[Path]:
    """One PNG per figure kind that at least one run has data for, the transformer blocks against Wang et al. when
    measured, then one per other metric group; the edge of stability first (``edges``: the runs that measured their
    stability threshold)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [_edge_figure(edges, out_dir / "edge_of_stability.png")] if edges else []
    for name, needed, draw in FIGURE_KINDS:
        if any((df.metric == needed).any() for df in runs.values()):
            paths.append(_draw(draw, runs, out_dir / f"{name}.png"))
    if block_order.has_transformer_blocks(runs):  # the section of its own beside Wang et al. (see _html)
        paths.append(_draw(block_order.figure_block_order, runs, out_dir / "block_order.png"))
    for group in sorted(_other_groups(runs)):
        series = _scalar_series(runs, group)
        if series:
            paths.append(
                _draw(lambda runs, ax, g=group, s=series: _figure_group(g, s, ax), runs, out_dir / f"{group}.png")
            )
    return paths


def _edge_figure(edges: list[EdgeSummary], path: Path) -> Path:
    """One column per run: the sharpness its threshold is about, on the threshold's scale (η·λ1 against 2 for GD,
    the preconditioned λ1 / (38/η) against 1 for Adam) with the ±10% band and the threshold's formula and value in the
    legend, and the training loss below it."""
    fig, axes = pyplot().subplots(2, len(edges), figsize=(5.5 * len(edges), 6), sharex="col", squeeze=False)
    for edge, (top, bottom) in zip(edges, axes.T):
        lo, hi = (b * edge.scale for b in BAND)
        top.axhspan(lo, hi, color="tab:red", alpha=0.1, label="±10% of the threshold")
        threshold = f"stability threshold {edge.threshold}" if edge.threshold else "stability threshold"
        top.axhline(edge.scale, color="tab:red", ls="--", lw=1, label=threshold)
        top.plot(edge.steps, edge.values, marker=".", color="C0", label=edge.label)
        if edge.first_at_edge is not None:
            top.axvline(edge.steps[edge.first_at_edge], color="k", lw=0.6, ls=":", label="first at the edge")
        top.set_ylabel(edge.label), top.set_title(f"{edge.run}: {edge.label}"), top.legend(fontsize=7)
        bottom.plot(edge.loss_steps, edge.losses, color="C1", lw=0.9)
        bottom.set_yscale("log"), bottom.set_xlabel("step"), bottom.set_ylabel("training loss")
    return save_figure(fig, path)


def _draw(draw: Any, runs: dict[str, Any], path: Path) -> Path:
    fig, ax = pyplot().subplots(figsize=(7, 4))
    draw(runs, ax)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def _other_groups(runs: dict[str, Any]) -> set[str]:
    return {g for df in runs.values() if "group" in df for g in df.group.dropna().unique()} - DRAWN_GROUPS


def _scalar_series(runs: dict[str, Any], group: str) -> dict[str, Any]:
    """{"run: metric": rows} for the group's metrics that have one value per step (not costs, not per-bin rows)."""
    out = {}
    for name, df in runs.items():
        if "group" not in df:
            continue
        rows = df[(df.group == group) & ~df.metric.str.startswith("cost_")].dropna(subset=["value"])
        for metric, part in rows.groupby("metric"):
            if len(part) and not part.step.duplicated().any():
                out[f"{name}: {metric}"] = part.sort_values("step")
    return out


def _figure_group(group: str, series: dict[str, Any], ax: Any) -> None:
    for label, rows in series.items():
        ax.plot(rows.step, rows.value, marker=".", label=label)
    if all((rows.value > 0).all() for rows in series.values()):
        ax.set_yscale("log")
    ax.set_xlabel("step"), ax.set_ylabel("value"), ax.set_title(f"{group} (every scalar the group records)")


def key_numbers(name: str, run_dir: Path, df: Any, edge: EdgeSummary | None) -> dict[str, Any]:
    """What is known of one run, and nothing that is not: a run made outside ``curvlab run`` has no status.json,
    so its row gives the steps its records saw instead of a status; a quantity never measured is left out."""
    row: dict[str, Any] = {"run": name}
    status_file = run_dir / "status.json"
    if status_file.exists():
        status = json.loads(status_file.read_text())
        row |= {"status": status.get("status"), "steps": status.get("step")}
    elif "step" in df and len(df):
        row["steps seen in the records"] = int(df.step.max())
    loss = _series(df, "loss")
    if len(loss):
        row["final loss"] = float(loss.value.iloc[-1])
    full = _series(df, "loss_full")
    if len(full):
        row["final loss (measurement set)"] = float(full.value.iloc[-1])
    held_out = _series(df, "validation_loss")
    if len(held_out):
        row["final validation loss"] = float(held_out.value.iloc[-1])
    sharp = _series(df, "sharpness", index=1)
    if len(sharp):
        row["final λ1"] = float(sharp.value.iloc[-1])
    agreement = block_order.last_agreement(df)
    if agreement is not None:
        row["block pairs in Wang et al.'s order (last)"] = agreement
    if edge is not None:
        i = edge.first_at_edge
        row["edge quantity"] = edge.label
        row["first value"] = edge.values[0]
        row["first at the edge (step)"] = edge.steps[i] if i is not None else "never"
        row["median after the edge"] = edge.median_after
        row["edge of stability"] = "yes" if edge.at_the_edge else "no"
    return {k: v for k, v in row.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


def write_report(run_dirs: list[str | Path], out_dir: str | Path | None = None, title: str | None = None) -> Path:
    """Figures and ``report.html`` for one run (in its directory) or several (overlaid, in ``out_dir``)."""
    dirs = [Path(d) for d in run_dirs]
    for d in dirs:
        if not (d / "records.jsonl").exists():
            raise MissingInputFile(f"run_dir: {d} holds no records.jsonl")
    out = Path(out_dir) if out_dir is not None else dirs[0]
    runs = {d.name: load_records(d) for d in dirs}
    edges = {name: edge_summary(name, df) for name, df in runs.items()}
    measured = [e for e in edges.values() if e is not None]
    figures = make_figures(runs, out / FIGURES, measured)
    numbers = [key_numbers(name, d, df, edges[name]) for (name, df), d in zip(runs.items(), dirs)]
    findings = [e.sentence() for e in measured]
    orders = block_order.order_rows(runs)
    page = _html(title or " vs ".join(runs), findings, numbers, [f.relative_to(out) for f in figures], orders)
    (out / "report.html").write_text(page)
    return out / "report.html"


def _html(
    title: str,
    findings: list[str],
    numbers: list[dict[str, Any]],
    figure_paths: list[Path],
    orders: list[dict[str, Any]] | None = None,
) -> str:
    """The findings (with the edge-of-stability figure, wide) first, then the key numbers, the transformer blocks'
    ordering against Wang et al. (with its figure) when measured, then the other figures."""
    edge = [p for p in figure_paths if p.stem == "edge_of_stability"]
    sections = [("Findings", pages.items(findings) + pages.figures(edge, width=1050))] if findings else []
    order = [p for p in figure_paths if p.stem == "block_order"]
    others = [p for p in figure_paths if (p not in edge or not findings) and p not in order]
    sections += [("Key numbers", pages.table(numbers))]
    if orders:
        intro = pages.items([f"{block_order.WANG_SENTENCE}; each row orders this run's blocks at one measurement."])
        sections += [
            ("Blockwise sharpness against Wang et al. (2025)", intro + pages.table(orders) + pages.figures(order))
        ]
    sections += [("Figures", pages.figures(others))]
    return pages.page(title, sections)


def write_sweep_report(summary: dict[str, Any], sweep_dir: str | Path) -> Path:
    """Figures and ``report.html`` for a sweep: grid-search curves (final loss vs lr, min/median/max
    over seeds, diverged runs drawn at the top) or the batch-size ladder table."""
    plt = pyplot()
    sweep_dir = Path(sweep_dir)
    (sweep_dir / FIGURES).mkdir(parents=True, exist_ok=True)
    figures, numbers = [], []
    if summary["kind"] == "lr_search":
        fig, ax = plt.subplots(figsize=(7, 4))
        for result in summary["results"]:
            label = ", ".join(f"{k}={v}" for k, v in result["settings"].items()) or "lr"
            lrs = sorted(result["scores"])
            per_lr = [[r["final_loss"] for r in result["runs"] if r["lr"] == lr] for lr in lrs]
            finite_max = max((v for vals in per_lr for v in vals if math.isfinite(v)), default=1.0)
            ceiling = 10 * finite_max
            med = [sorted(_cap(x, ceiling) for x in v)[len(v) // 2] for v in per_lr]
            line = ax.plot(lrs, med, marker="o", label=f"{label}: median")[0]
            ax.fill_between(
                lrs,
                [_cap(min(v), ceiling) for v in per_lr],
                [_cap(max(v), ceiling) for v in per_lr],
                alpha=0.2,
                color=line.get_color(),
            )
            ax.axvline(result["best_lr"], color=line.get_color(), ls=":", lw=0.8)
            numbers.append(
                {
                    "settings": label,
                    "best lr": result["best_lr"],
                    "max final loss over seeds": result["best_score"],
                    "diverged runs": sum(not math.isfinite(r["final_loss"]) for r in result["runs"]),
                }
            )
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("learning rate"), ax.set_ylabel("final training loss")
        ax.set_title("Grid search: final loss vs lr (min–max over seeds; diverged drawn at the top)")
        ax.legend(fontsize=7)
        figures.append(save_figure(fig, sweep_dir / FIGURES / "grid_search.png"))
    elif summary["kind"] == "batch_ladder":
        numbers = [
            {
                "settings": ", ".join(f"{k}={v}" for k, v in row["settings"].items()),
                **{k: v for k, v in row.items() if k != "settings"},
            }
            for row in summary["table"]
        ]
        fig, ax = plt.subplots(figsize=(7, 4))
        xs = [str(r["batch_size"]) for r in summary["table"]]
        ax.bar(range(len(xs)), [r["median_final_loss"] for r in summary["table"]], tick_label=xs)
        (
            ax.set_yscale("log"),
            ax.set_xlabel("batch size"),
            ax.set_ylabel("median final loss"),
            ax.set_title("Batch-size ladder"),
        )
        figures.append(save_figure(fig, sweep_dir / FIGURES / "ladder.png"))
    else:
        numbers = [{k: v for k, v in r.items()} for r in summary["runs"]]
    page = _html(f"Sweep: {summary['kind']}", [], numbers, [f.relative_to(sweep_dir) for f in figures])
    (sweep_dir / "report.html").write_text(page)
    return sweep_dir / "report.html"
