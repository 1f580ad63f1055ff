"""Reproduction 3: classical tuners undershoot the edge (Roulet et al. 2024, Fig. 1, 3; pre-registered in
claims/classical-tuners.toml), and the full-batch runs it shares with reproduction 4 (CDAT, cdat.py)."""

from __future__ import annotations

import math
from pathlib import Path

from curvlab.monitor.windows import windowed
from curvlab.reproductions.base import Check, pyplot, register_preregistered, save_figure
from curvlab.reproductions.claims import thresholds
from curvlab.reproductions.training import (
    final_value,
    full_batch_config,
    run_config,
    seed_colors,
    series,
    tail_median,
    widened_grid,
)

CLASSICAL = "classical-tuners"


def full_batch_run(
    name: str, out: Path, setting: dict, seed: int, tuner: dict | None = None, lr: float = 1.0, measure: bool = True
) -> dict:
    """One full-batch run of the setting (a tuner around GD, or GD at ``lr``; ``measure=False``: without the
    sharpness, a grid point). The series the checks and figures read."""
    optimizer = {"name": "sgd", "lr": lr}
    if "weight_decay" in setting:
        optimizer["weight_decay"] = setting["weight_decay"]
    config = full_batch_config(name, setting, optimizer, seed)
    if tuner:
        config["tuner"] = tuner
    if not measure:
        config["monitor"] = {"metrics": []}
    df = run_config(config, out / name)
    steps, lam = series(df, "sharpness")
    _, edge = series(df, "lr_times_sharpness")
    factor_steps, factor = series(df, "two_step_factor")
    loss_steps, losses = series(df, "loss")
    lrs = df[df.metric == "loss"].sort_values("step").lr.astype(float).tolist()
    return {
        "steps": steps,
        "lambda": lam,
        "edge": edge,
        "factor_steps": factor_steps,
        "two_step_factor": factor,
        "loss_steps": loss_steps,
        "loss": losses,
        "lr": lrs,
    }


def _final(run: dict) -> float:
    """The final training loss; a diverged run (non-finite or missing) counts as +∞ (definitions §9)."""
    return final_value(run["loss"])


def best_constant(
    out: Path, setting: dict, seed: int, grid: tuple[float, ...], widenings: int
) -> tuple[float, dict, list[float]]:
    """Constant-η GD tuned on a grid widened by ×2 until its best final loss is at an interior point (as a tuned
    baseline must be), each grid point run without measuring; the best η is run again with the sharpness (the same
    trajectory: runs are deterministic). Returns (best η, its measured run, the grid)."""
    point = lambda lr: full_batch_run(f"gd_lr{lr:g}", out, setting, seed, lr=lr, measure=False)  # noqa: E731
    runs = widened_grid(point, _final, grid, 2.0, widenings)
    best = min(runs, key=lambda lr: _final(runs[lr]))
    return best, full_batch_run(f"gd_lr{best:g}", out, setting, seed, lr=best), list(runs)


def plot_runs(out: Path, name: str, per_seed: dict[int, dict], window: int | None = None) -> None:
    """Loss, η and η·λ1 of every run of every seed. With ``window``, η is drawn as its geometric mean over windows
    of that many steps and the edge as the two-step effective η·λ1 (1 + √factor, read on pairs), so that an η which
    alternates every step is drawn as what the checks read rather than as a band."""
    colors = seed_colors(per_seed)
    styles = ("-", "--", ":")
    fig, axes = pyplot().subplots(1, 3, figsize=(14, 3.6))
    for seed, n in per_seed.items():
        for style, (label, r) in zip(styles, n["series"].items()):
            kwargs = {"color": colors[seed], "ls": style, "label": f"seed {seed}: {label}"}
            axes[0].plot(r["loss_steps"], r["loss"], **kwargs)
            if window is None:
                axes[1].plot(r["loss_steps"], r["lr"], **kwargs)
                axes[2].plot(r["steps"], r["edge"], **kwargs)
                continue
            eta = windowed(r["loss_steps"], r["lr"], window, "geometric_mean")
            axes[1].plot([(w.start + w.stop) / 2 for w in eta], [w.value for w in eta], marker=".", **kwargs)
            effective = [effective_eta_lambda(f) for f in r["two_step_factor"]]
            axes[2].plot(r["factor_steps"], effective, lw=0.8, **kwargs)
    axes[0].set_yscale("log"), axes[0].set_title("training loss")
    axes[1].set_yscale("log")
    axes[1].set_title("learning rate" if window is None else f"η, geometric mean over {window}-step windows")
    axes[2].axhline(2, color="k", ls="--", lw=0.8)
    axes[2].set_title("η·λ1" if window is None else "two-step effective η·λ1 (read on pairs)")
    for ax in axes:
        ax.set_xlabel("step"), ax.legend(fontsize=5)
    save_figure(fig, out / f"{name}.png")


def run_classical(out: Path, setting: dict, seed: int) -> dict:
    """The tuned constant-η baseline and each tuner of the setting (``none``: GD at the baseline's η), with the
    series the windowed checks read: η at every step, λ1 and the two-step factor on consecutive pairs of steps."""
    best_lr, const, grid = best_constant(out, setting, seed, tuple(setting["constant_grid"]), setting["widenings"])
    runs = {
        name: const if name == "none" else full_batch_run(name, out, setting, seed, {"name": name})
        for name in setting["tuners"]
    }
    return {
        "tuners": list(runs),
        "constant_grid": grid,
        "best_constant_lr": best_lr,
        "best_constant_is_interior": grid[0] < best_lr < grid[-1],
        "best_constant_final_loss": _final(const),
        **{f"{name}_final_loss": _final(r) for name, r in runs.items()},
        "series": {f"constant η = {best_lr:g}": const, **runs},
    }


def effective_eta_lambda(factor: float) -> float:
    """The constant η·λ whose two steps amplify as much as the pair measured: |1 − η·λ|² = the two-step factor, on
    the branch η·λ ≥ 1 (the edge, factor 1, at 2)."""
    return 1.0 + math.sqrt(factor)


def late_effective(run: dict) -> float:
    """Median over the last half of the pairs of the effective η·λ1 (+∞ when nothing was measured)."""
    values = [effective_eta_lambda(f) for f in run["two_step_factor"]]
    return tail_median(values) if values else math.inf


def last_over_first(windows: list) -> float:
    return windows[-1].value / windows[0].value if len(windows) > 1 else 1.0


def _falling_fraction(windows: list) -> float:
    """The share of consecutive windows whose value is below the window before."""
    return sum(b.value < a.value for a, b in zip(windows, windows[1:])) / max(1, len(windows) - 1)


def figures_classical(out: Path, per_seed: dict[int, dict]) -> None:
    plot_runs(out, "classical_tuners", per_seed, window=thresholds(CLASSICAL)["eta-falls"]["window_steps"])


def checks_classical(n: dict) -> list[Check]:
    """The pre-registered checks (claims/classical-tuners.toml): windowed statistics of η and λ1 and the two-step
    factor, which read both halves of a period-two η; thresholds from the claims file."""
    t = thresholds(CLASSICAL)
    falls, sharpens, below, lower = (
        t["eta-falls"],
        t["sharpness-rises"],
        t["just-below-the-edge"],
        t["constant-ends-lower"],
    )
    series_ = n["series"]
    baseline = series_[f"constant η = {n['best_constant_lr']:g}"]
    tuners = n["tuners"]
    eta = {
        k: windowed(series_[k]["loss_steps"], series_[k]["lr"], falls["window_steps"], "geometric_mean") for k in tuners
    }
    lam = {k: windowed(series_[k]["steps"], series_[k]["lambda"], sharpens["window_steps"]) for k in tuners}
    eta_ratio, lam_ratio = ({k: last_over_first(w) for k, w in d.items()} for d in (eta, lam))
    eta_falling = {k: _falling_fraction(w) for k, w in eta.items()}
    effective = {name: late_effective(series_[name]) for name in tuners}
    reference = late_effective(baseline)
    fmt = lambda d: ", ".join(f"{k}: {v:.3g}" for k, v in d.items())  # noqa: E731
    return [
        Check(
            f"η falls: its geometric mean over the last {falls['window_steps']}-step window ≤ "
            f"{falls['max_ratio']:g}× the first's ({fmt(eta_ratio)}), falling from window to window at ≥ "
            f"{falls['min_falling_fraction']:.0%} of them ({fmt(eta_falling)})",
            all(eta_ratio[k] <= falls["max_ratio"] and eta_falling[k] >= falls["min_falling_fraction"] for k in tuners),
            "eta-falls",
        ),
        Check(
            f"while λ1 rises: its median over the last {sharpens['window_steps']}-step window ≥ "
            f"{sharpens['min_ratio']:g}× the first's ({fmt(lam_ratio)})",
            all(lam_ratio[k] >= sharpens["min_ratio"] for k in tuners),
            "sharpness-rises",
        ),
        Check(
            "just below the edge: the two-step effective η·λ1 (1 + √|(1 − η_{t−1}λ1)(1 − η_tλ1)|), median over the "
            f"last half, ∈ [{below['low']:g}, {below['high']:g}] and below constant η's ({fmt(effective)}; constant "
            f"η: {reference:.3g})",
            all(below["low"] <= effective[k] <= below["high"] and effective[k] < reference for k in tuners),
            "just-below-the-edge",
        ),
        Check(
            f"constant-η GD ends lower: best constant η = {n['best_constant_lr']:g} "
            f"({n['best_constant_final_loss']:.4g}, grid {n['constant_grid']}) < each tuner "
            f"({fmt({k: n[f'{k}_final_loss'] for k in tuners})}) by ≥ {lower['min_gap_fraction']:.0%}",
            all(n["best_constant_final_loss"] < (1 - lower["min_gap_fraction"]) * n[f"{k}_final_loss"] for k in tuners),
            "constant-ends-lower",
        ),
    ]


register_preregistered(CLASSICAL, run_classical, checks_classical, figures_classical)
