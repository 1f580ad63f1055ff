"""Reproductions 1 and 9: the edge of stability for GD (Cohen et al. 2021) and the preconditioned edge for Adam
(Cohen et al. 2022; Gilmer et al. 2021, App. H). The series come from :func:`curvlab.experiments.edge.edge_summary`;
the checks and their thresholds are the pre-registered ones of claims/edge-of-stability.toml and
claims/adam-preconditioned-edge.toml (the quickstart's report states its own, broader verdict)."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import median

from curvlab.experiments.edge import KIND_NAMES, EdgeSummary, edge_summary
from curvlab.monitor.windows import windowed
from curvlab.reproductions.base import Check, pyplot, register_preregistered, save_figure
from curvlab.reproductions.claims import thresholds
from curvlab.reproductions.training import full_batch_config, run_config, seed_colors, series, tail_median

EOS, ADAM_EOS = "edge-of-stability", "adam-preconditioned-edge"


def _edge_numbers(edge: EdgeSummary) -> dict:
    """The series the figures draw and the numbers the checks read, from one run's edge summary (values on the scale
    η·λ1 for GD, preconditioned λ1 / (38/η) for Adam)."""
    i = edge.first_at_edge
    edge_step = edge.steps[i] if i is not None else None
    after = _losses_after(edge.loss_steps, edge.losses, edge_step)
    rises = sum(1 for (_, a), (_, b) in zip(after, after[1:]) if b > a)
    return {
        "steps": edge.steps,
        "values": edge.values,
        "loss_steps": edge.loss_steps,
        "losses": edge.losses,
        "first_value": edge.values[0],
        "max_value": max(edge.values),
        "growth": max(edge.values) / edge.values[0],
        "first_step_at_edge": edge_step,
        "measurements_after_edge": len(edge.after),
        "median_after_edge": median(edge.after) if edge.after else math.nan,
        "median_last_half": tail_median(edge.values),
        "initial_loss": edge.losses[0],
        "final_loss": edge.losses[-1],
        "loss_rise_fraction_after_edge": rises / max(1, len(after) - 1),
    }


def _losses_after(steps: list[int], losses: list[float], start: int | None) -> list[tuple[int, float]]:
    return [(s, v) for s, v in zip(steps, losses) if start is not None and s >= start]


def run_gd(out: Path, setting: dict, seed: int) -> dict:
    config = full_batch_config("gd", setting, {"name": "sgd", "lr": setting["lr"]}, seed)
    df = run_config(config, out / "gd")
    return {"lr": setting["lr"], **_edge_numbers(_summary_of(df, "gd"))}


def _summary_of(df, kind: str) -> EdgeSummary:
    """The run's edge summary; a run with no sharpness measured (diverged at once) gives one non-finite value."""
    summary = edge_summary(kind, df)
    if summary is None:
        label, scale = KIND_NAMES["gd" if kind == "gd" else "adam_preconditioned"]
        _, losses = series(df, "loss")
        return EdgeSummary(kind, kind, [0], [math.inf], scale, label, list(range(len(losses))), losses or [math.inf])
    return summary


def checks_gd(n: dict) -> list[Check]:
    """The pre-registered checks (claims/edge-of-stability.toml); thresholds from the claims file."""
    t = thresholds(EOS)
    sharp, reach, hover = t["progressive-sharpening"], t["reaches-the-edge"], t["hovers-just-above"]
    rises, falls = t["loss-non-monotone"], t["loss-decreases-long-term"]
    after, median_after = n["measurements_after_edge"], n["median_after_edge"]
    after_edge = _losses_after(n["loss_steps"], n["losses"], n["first_step_at_edge"])
    means = [
        w.value for w in windowed([s for s, _ in after_edge], [v for _, v in after_edge], falls["window_steps"], "mean")
    ]
    windows, lower = len(means), sum(1 for a, b in zip(means, means[1:]) if b < a)
    return [
        Check(
            f"progressive sharpening: η·λ1 starts ≤ {sharp['max_first']:g} ({n['first_value']:.3f}) and λ1 grows ≥ "
            f"{sharp['min_growth']:g}× ({n['growth']:.3g}×)",
            n["first_value"] <= sharp["max_first"] and n["growth"] >= sharp["min_growth"],
            "progressive-sharpening",
        ),
        Check(
            f"until λ1 reaches 2/η: max η·λ1 ≥ {reach['min_max']:g} ({n['max_value']:.3f})",
            n["max_value"] >= reach["min_max"],
            "reaches-the-edge",
        ),
        Check(
            f"then hovers just above 2/η: median η·λ1 after first reaching it ∈ [{hover['low']:g}, {hover['high']:g}] "
            f"({_g(median_after)}, over {after} measurements; ≥ {hover['min_measurements']} needed)",
            after >= hover["min_measurements"] and hover["low"] <= median_after <= hover["high"],
            "hovers-just-above",
        ),
        Check(
            f"the loss is non-monotone over short timescales: it rises at ≥ {rises['min_rise_fraction']:.0%} of the "
            f"steps after the edge ({n['loss_rise_fraction_after_edge']:.1%})",
            n["first_step_at_edge"] is not None and n["loss_rise_fraction_after_edge"] >= rises["min_rise_fraction"],
            "loss-non-monotone",
        ),
        Check(
            f"yet decreases over long timescales: the mean loss of each {falls['window_steps']}-step window after the "
            f"edge is below the previous window's ({lower} of {max(0, windows - 1)}; ≥ {falls['min_windows']} "
            "windows, every one lower)",
            windows >= falls["min_windows"] and lower == windows - 1,
            "loss-decreases-long-term",
        ),
    ]


def _g(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "none"


def _figure(out: Path, per_seed: dict[int, dict], name: str, label: str, edge: float, title: str) -> None:
    colors = seed_colors(per_seed)
    fig, (a1, a2) = pyplot().subplots(1, 2, figsize=(11, 3.6))
    for seed, n in per_seed.items():
        a1.plot(n["steps"], n["values"], color=colors[seed], label=f"seed {seed}")
        a2.plot(n["loss_steps"], n["losses"], color=colors[seed], lw=0.8, label=f"seed {seed}")
    a1.axhline(edge, color="k", ls="--", lw=0.8), a1.set_xlabel("step"), a1.set_ylabel(label)
    a1.set_title(f"{title}: {label} against the edge"), a1.legend(fontsize=7)
    a2.set_yscale("log"), a2.set_xlabel("step"), a2.set_ylabel("training loss"), a2.set_title(f"{title}: loss")
    save_figure(fig, out / f"{name}.png")


def figures_gd(out: Path, per_seed: dict[int, dict]) -> None:
    _figure(out, per_seed, "edge_of_stability", "η·λ1", 2.0, "GD")


def run_adam(out: Path, setting: dict, seed: int) -> dict:
    config = full_batch_config("adam", setting, {"name": "adam", "lr": setting["lr"]}, seed)
    df = run_config(config, out / "adam")
    edge = _summary_of(df, "adam")
    return {"lr": setting["lr"], "threshold": 38 / setting["lr"], **_edge_numbers(edge)}


def checks_adam(n: dict) -> list[Check]:
    """The pre-registered checks (claims/adam-preconditioned-edge.toml); thresholds from the claims file."""
    t = thresholds(ADAM_EOS)
    rise, eq = t["rises-to-the-threshold"], t["equilibrates-at-38-over-eta"]
    late = n["values"][len(n["values"]) // 2 :]
    near = sum(eq["near_low"] <= v <= eq["near_high"] for v in late) / len(late)
    return [
        Check(
            f"the preconditioned sharpness rises to 38/η: it starts ≤ {rise['max_first']:g} of it "
            f"({n['first_value']:.3f}) and reaches ≥ {rise['min_max']:g} ({n['max_value']:.3f})",
            n["first_value"] <= rise["max_first"] and n["max_value"] >= rise["min_max"],
            "rises-to-the-threshold",
        ),
        Check(
            f"and equilibrates there: median ratio over the last half ∈ [{eq['low']:g}, {eq['high']:g}] "
            f"({n['median_last_half']:.3f}), with ≥ {eq['min_fraction_near']:.0%} of those measurements within "
            f"[{eq['near_low']:g}, {eq['near_high']:g}] ({near:.0%})",
            eq["low"] <= n["median_last_half"] <= eq["high"] and near >= eq["min_fraction_near"],
            "equilibrates-at-38-over-eta",
        ),
    ]


def figures_adam(out: Path, per_seed: dict[int, dict]) -> None:
    _figure(out, per_seed, "adam_preconditioned_edge", "preconditioned λ1 / (38/η)", 1.0, "Full-batch Adam")


register_preregistered(EOS, run_gd, checks_gd, figures_gd)
register_preregistered(ADAM_EOS, run_adam, checks_adam, figures_adam)
