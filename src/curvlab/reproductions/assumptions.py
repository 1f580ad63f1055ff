"""Reproduction 8: optimization assumptions along a trajectory (Tran, Zhang & Cutkosky 2024, arXiv v1; App. B, C
and D.9), pre-registered in claims/optimization-assumptions.toml: SGDM in Tran et al.'s Δ form and AdamW, both
with random scaling, under linear warmup then linear decay; the per-step quantities of definitions §4."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import median, stdev

from curvlab.reproductions.base import Check, pyplot, register_preregistered, save_figure
from curvlab.reproductions.claims import thresholds
from curvlab.reproductions.training import run_config, seed_colors, series

NAME = "optimization-assumptions"


def _config(name: str, setting: dict, optimizer: dict, seed: int) -> dict:
    steps = setting["steps"]
    return {
        "name": name,
        "seed": seed,
        "data": {"name": setting["data"], "subset": setting["subset"], **setting.get("data_options", {})},
        "model": {"name": setting["model"], **setting.get("model_options", {})},
        "loss": {"name": setting["loss"]},
        "optimizer": optimizer,
        "schedule": {"kind": setting["schedule"], "warmup_steps": setting["warmup_steps"]},
        "train": {"batch_size": setting["batch_size"], "steps": steps, "checkpoint_every": steps},
        "monitor": {"metrics": ["assumptions"], "reset": "never"},
    }


def positive_beyond_rounding(gaps: list[float], losses: list[float], rounding: float, float_rounding: float) -> float:
    """The share of steps whose convexity gap is positive by more than rounding could make it: above ``rounding`` ×
    the run's median |inst_gap| and above ``float_rounding`` × the step's loss (the gap is a difference of losses
    evaluated in the model's precision); on a convex function every gap is ≤ 0 up to that rounding. NaN when a
    gap is not finite."""
    if not gaps or not all(math.isfinite(g) for g in gaps):
        return math.nan
    typical = median(abs(g) for g in gaps)
    floor = [max(rounding * typical, float_rounding * abs(f)) for f in losses]
    return sum(g > low for g, low in zip(gaps, floor)) / len(gaps)


def identity_z(corr: list[float], diff: list[float]) -> float:
    """The cumulative difference Σ(update_corr_RS − loss_diff) in standard errors: Σd / (√T · sd(d)). Where the
    random-scaling identity holds, each difference has mean 0 given the past (a martingale difference), so this is
    about standard normal; where it does not, it grows like √T."""
    d = [a - b for a, b in zip(corr, diff)]
    spread = stdev(d) if len(d) > 1 else math.nan
    return sum(d) / (math.sqrt(len(d)) * spread) if spread > 0 else math.nan


def run(out: Path, setting: dict, seed: int) -> dict:
    """Each optimizer of the setting, measured at every step: its convexity gaps, the random-scaling sums and the
    identity's z."""
    numbers: dict = {"series": {}}
    for name, optimizer in setting["optimizers"].items():
        df = run_config(_config(name, setting, optimizer, seed), out / name)
        _, gaps = series(df, "inst_gap")
        _, gap_losses = series(df, "train_loss")  # the batch loss at the step's start, beside each gap
        steps, corr = series(df, "update_corr_rs")
        _, diff = series(df, "loss_diff")
        _, corr_sum = series(df, "update_corr_rs_sum")
        _, diff_sum = series(df, "loss_diff_sum")
        _, loss = series(df, "loss")
        numbers.update(
            {
                f"{name}_identity_z": identity_z(corr, diff),
                f"{name}_update_corr_rs_sum": corr_sum[-1],
                f"{name}_loss_diff_sum": diff_sum[-1],
                f"{name}_first_loss": loss[0],
                f"{name}_final_loss": loss[-1],
            }
        )
        numbers["series"][name] = {
            "steps": steps,
            "inst_gap": gaps,
            "gap_loss": gap_losses,
            "update_corr_rs_sum": corr_sum,
            "loss_diff_sum": diff_sum,
        }
    numbers["optimizers"] = list(setting["optimizers"])
    return numbers


def figures(out: Path, per_seed: dict[int, dict]) -> None:
    """The two cumulative sums of every optimizer and seed (Tran et al.'s Fig. 17, on a symmetric log scale)."""
    colors = seed_colors(per_seed)
    names = next(iter(per_seed.values()))["optimizers"]
    fig, axes = pyplot().subplots(1, len(names), figsize=(5.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        for seed, n in per_seed.items():
            r = n["series"][name]
            ax.plot(r["steps"], r["update_corr_rs_sum"], color=colors[seed], label=f"seed {seed}: Σ update_corr_RS")
            ax.plot(r["steps"], r["loss_diff_sum"], color=colors[seed], ls="--", label=f"seed {seed}: Σ loss_diff")
        ax.set_yscale("symlog", linthresh=1e-2), ax.set_xlabel("step")
        ax.set_title(f"{name}: the random-scaling identity"), ax.legend(fontsize=6)
    save_figure(fig, out / "random_scaling.png")


def statistics(n: dict) -> dict[str, dict[str, float]]:
    """What the checks read from one seed's numbers, by optimizer: the share of positive gaps beyond the claims
    file's rounding floors (``positive``) and the identity's z (``z``; a stored NaN reads back as None)."""
    convexity = thresholds(NAME)["convexity-fails"]
    rounding, floor = convexity["rounding"], convexity["float_rounding"]
    positive, z = {}, {}
    for o in n["optimizers"]:
        gaps = [math.nan if g is None else g for g in n["series"][o]["inst_gap"]]
        positive[o] = positive_beyond_rounding(gaps, n["series"][o]["gap_loss"], rounding, floor)
        z[o] = math.nan if n[f"{o}_identity_z"] is None else n[f"{o}_identity_z"]
    return {"positive": positive, "z": z}


def checks(n: dict) -> list[Check]:
    """The pre-registered checks (claims/optimization-assumptions.toml), thresholds from the claims file."""
    t = thresholds(NAME)
    convexity, identity = t["convexity-fails"], t["random-scaling-identity-holds"]
    rounding, floor = convexity["rounding"], convexity["float_rounding"]
    stats = statistics(n)
    positive, z = stats["positive"], stats["z"]
    return [
        Check(
            f"convexity fails along the trajectory: inst_gap > {rounding:g}·median|inst_gap| and > {floor:g}·loss "
            f"(beyond rounding; a convex function has none) at ≥ {convexity['min_fraction']:.0%} of the steps ("
            + ", ".join(f"{o}: {v:.1%}" for o, v in positive.items())
            + ")",
            all(v >= convexity["min_fraction"] for v in positive.values()),
            "convexity-fails",
        ),
        Check(
            "the random-scaling identity holds: Σ(update_corr_RS − loss_diff) within "
            f"{identity['max_abs_z']:g} standard errors of 0 ("
            + ", ".join(
                f"{o}: z = {v:.2f}, sums {n[f'{o}_update_corr_rs_sum']:.4g} and {n[f'{o}_loss_diff_sum']:.4g}"
                for o, v in z.items()
            )
            + ")",
            all(abs(v) <= identity["max_abs_z"] for v in z.values()),
            "random-scaling-identity-holds",
        ),
    ]


register_preregistered(NAME, run, checks, figures)
