"""Reproduction 4: CDAT, the learning rate put on the edge of stability (Roulet et al. 2024, §3.1, Fig. 5–7, 18),
pre-registered in claims/cdat.toml. Full batch: the on-edge rule (σ = 2) against the quadratically greedy one
(σ = 1) and a tuned constant η, η over windows, λ1 on pairs of steps; minibatch: the best σ at two batch sizes."""

from __future__ import annotations

import math
from pathlib import Path

from curvlab.monitor.windows import windowed
from curvlab.reproductions.base import Check, pyplot, register_preregistered, save_figure
from curvlab.reproductions.claims import thresholds
from curvlab.reproductions.training import full_batch_config, run_config, seed_colors, series
from curvlab.reproductions.tuners import best_constant, full_batch_run, last_over_first, late_effective, plot_runs

NAME = "cdat"


def _label(sigma: float) -> str:
    return f"σ = {sigma:g}"


def final_mean(losses: list[float | None], last: int = 5) -> float:
    """The mean training loss over the last ``last`` iterates, the paper's score for a run (Roulet et al. App. C.3);
    +∞ when any of them is missing or non-finite (a diverged run)."""
    tail = losses[-last:]
    if len(tail) < last or not all(v is not None and math.isfinite(v) for v in tail):
        return math.inf
    return sum(v for v in tail if v is not None) / last


def _cdat(out: Path, setting: dict, seed: int, sigma: float, measure: bool) -> dict:
    """A full-batch run of CDAT at ``sigma`` around GD (no EMA, as in full batch), with or without the sharpness."""
    return full_batch_run(f"cdat_sigma{sigma:g}", out, setting, seed, {"name": "cdat", "sigma": sigma}, measure=measure)


def _minibatch_loss(out: Path, setting: dict, seed: int, batch: int | str, sigma: float) -> float:
    """The full-batch training loss after ``minibatch_steps`` steps of CDAT (EMA β = ``minibatch_beta``) around SGD
    with momentum ``minibatch_momentum`` on batches of ``batch`` (``"full"``: the whole subset)."""
    optimizer = {"name": "sgd", "lr": 1.0, "momentum": setting["minibatch_momentum"]}
    optimizer["weight_decay"] = setting.get("weight_decay", 0.0)
    steps = setting["minibatch_steps"]
    config = full_batch_config(f"minibatch_b{batch}_s{sigma:g}", {**setting, "steps": steps}, optimizer, seed)
    config["train"]["batch_size"] = batch
    config["tuner"] = {"name": "cdat", "sigma": sigma, "beta": setting["minibatch_beta"]}
    config["monitor"] = {"metrics": ["full_batch"], "schedules": {"full_batch": [steps]}}
    _, loss = series(run_config(config, out / config["name"]), "loss_full")
    value = loss[-1] if loss else math.inf
    return value if math.isfinite(value) else math.inf


def _best_sigma(losses: dict[float, float]) -> float:
    """The σ of the lowest final loss (NaN when every run diverged: no σ is best)."""
    finite = {s: v for s, v in losses.items() if math.isfinite(v)}
    return min(finite, key=lambda s: finite[s]) if finite else math.nan


def run_cdat(out: Path, setting: dict, seed: int) -> dict:
    """Tuned constant-η GD; CDAT at the greedy σ and the edge σ, measured (λ1 on pairs of steps); CDAT at every σ
    around the edge, η only; and the minibatch grid of σ at each batch size."""
    best_lr, const, grid = best_constant(out, setting, seed, tuple(setting["constant_grid"]), setting["widenings"])
    greedy, edge = setting["greedy_sigma"], setting["edge_sigma"]
    measured = {sigma: _cdat(out, setting, seed, sigma, measure=True) for sigma in (greedy, edge)}
    around = {s: measured.get(s) or _cdat(out, setting, seed, s, measure=False) for s in setting["warmup_sigmas"]}
    minibatch = {
        str(batch): {str(s): _minibatch_loss(out, setting, seed, batch, s) for s in setting["minibatch_sigmas"]}
        for batch in setting["minibatch_batches"]
    }
    return {
        "greedy_sigma": greedy,
        "edge_sigma": edge,
        "constant_grid": grid,
        "best_constant_lr": best_lr,
        "best_constant_is_interior": grid[0] < best_lr < grid[-1],
        "best_constant_final_loss": final_mean(const["loss"]),
        "greedy_final_loss": final_mean(measured[greedy]["loss"]),
        "edge_final_loss": final_mean(measured[edge]["loss"]),
        **{f"final_loss_sigma{s:g}": final_mean(r["loss"]) for s, r in around.items()},
        "warmup_eta": {_label(s): {"steps": r["loss_steps"], "lr": r["lr"]} for s, r in around.items()},
        "minibatch_final_losses": minibatch,
        "best_sigma_by_batch": {b: _best_sigma({float(s): v for s, v in m.items()}) for b, m in minibatch.items()},
        "series": {
            f"constant η = {best_lr:g}": const,
            f"CDAT {_label(greedy)} (greedy)": measured[greedy],
            f"CDAT {_label(edge)} (on edge)": measured[edge],
        },
    }


def _eta_windows(run: dict, window: int) -> list:
    return windowed(run["steps"], run["lr"], window, "geometric_mean")


def _rise(windows: list, min_span: int) -> tuple[float, float]:
    """(the largest rise of the series over at least ``min_span`` windows: the highest ratio of a window's value to
    that of a window at least ``min_span`` before it, the share of the windows between those two that are above the
    window before): a warmup's rise is large, lasting and progressive; a falling η has no large rise, and a single
    spike neither lasts nor progresses."""
    values = [w.value for w in windows]
    pairs = [(i, j) for j in range(len(values)) for i in range(j - min_span + 1)]
    if not pairs or not all(math.isfinite(v) and v > 0 for v in values):
        return math.nan, math.nan
    low, high = max(pairs, key=lambda p: values[p[1]] / values[p[0]])
    rising = sum(values[k] > values[k - 1] for k in range(low + 1, high + 1))
    return values[high] / values[low], rising / (high - low)


def figures_cdat(out: Path, per_seed: dict[int, dict]) -> None:
    """The full-batch runs (loss, η over windows, the two-step effective η·λ1) and the minibatch σ grids."""
    plot_runs(out, "cdat_full_batch", per_seed, window=thresholds(NAME)["eta-rises-like-warmup"]["window_steps"])
    colors = seed_colors(per_seed)
    fig, ax = pyplot().subplots(figsize=(6, 3.6))
    for seed, n in per_seed.items():
        for style, (batch, losses) in zip(("-", "--", ":"), n["minibatch_final_losses"].items()):
            values = [v if v is not None else math.nan for v in losses.values()]
            kwargs = {"marker": "o", "color": colors[seed], "ls": style, "label": f"seed {seed}, batch {batch}"}
            ax.plot([float(s) for s in losses], values, **kwargs)
    ax.axvline(2, color="k", ls="--", lw=0.8)
    ax.set_yscale("log"), ax.set_xlabel("σ"), ax.set_ylabel("final training loss (full batch)")
    ax.set_title("Minibatch CDAT (momentum, EMA): the best σ at each batch size"), ax.legend(fontsize=6)
    save_figure(fig, out / "cdat_minibatch.png")


def statistics(n: dict) -> dict:
    """What the checks read from one seed's numbers besides its final losses: by σ around the edge, η's largest
    rise over windows and the share of windows rising on the way (``rise``); λ1's last-window median over its
    first's (``lambda_ratio``) and the two-step effective η·λ1 (``effective``), both of the on-edge run. The
    windows are the claims file's."""
    t = thresholds(NAME)
    rises, falls = t["eta-rises-like-warmup"], t["sharpness-does-not-rise"]
    edge_run = n["series"][f"CDAT {_label(n['edge_sigma'])} (on edge)"]
    windows = {label: _eta_windows(r, rises["window_steps"]) for label, r in n["warmup_eta"].items()}
    lam = windowed(edge_run["steps"], edge_run["lambda"], falls["window_steps"])
    return {
        "rise": {label: _rise(w, int(rises["min_span_windows"])) for label, w in windows.items()},
        "lambda_ratio": last_over_first(lam) if lam else math.nan,
        "effective": late_effective(edge_run),
    }


def checks_cdat(n: dict) -> list[Check]:
    """The pre-registered checks (claims/cdat.toml), thresholds from the claims file."""
    t = thresholds(NAME)
    greedy_gap, on_par, rises, falls, above, shifts = (
        t[k]
        for k in (
            "edge-beats-greedy",
            "edge-on-par-with-constant",
            "eta-rises-like-warmup",
            "sharpness-does-not-rise",
            "slightly-above-the-edge",
            "best-sigma-shifts-with-batch",
        )
    )
    edge, greedy, constant = n["edge_final_loss"], n["greedy_final_loss"], n["best_constant_final_loss"]
    stats = statistics(n)
    rise, lam_ratio, effective = stats["rise"], stats["lambda_ratio"], stats["effective"]
    best = n["best_sigma_by_batch"]
    by_batch = [math.nan if v is None else v for v in best.values()]  # a stored NaN reads back as None
    small, large = by_batch[0], by_batch[-1]
    rise_text = ", ".join(f"{k}: {r:.3g}× ({f:.0%} rising)" for k, (r, f) in rise.items())
    return [
        Check(
            f"on edge beats greedy: σ = {n['edge_sigma']:g} ends at {edge:.4g} ≤ {1 - greedy_gap['min_gap_fraction']:g}"
            f" × σ = {n['greedy_sigma']:g}'s {greedy:.4g} (mean of the last 5 iterates)",
            edge <= (1 - greedy_gap["min_gap_fraction"]) * greedy,
            "edge-beats-greedy",
        ),
        Check(
            f"on par with or better than tuned constant η: σ = {n['edge_sigma']:g}'s {edge:.4g} ≤ "
            f"{on_par['max_ratio']:g} × {constant:.4g} (η = {n['best_constant_lr']:g}, grid {n['constant_grid']})",
            edge <= on_par["max_ratio"] * constant,
            "edge-on-par-with-constant",
        ),
        Check(
            f"η rises like a warmup around the edge: its geometric mean over {rises['window_steps']}-step windows "
            f"rises ≥ {rises['min_rise']:g}× from a window to one ≥ {rises['min_span_windows']:g} windows later, "
            f"rising in ≥ {rises['min_rising_fraction']:.0%} of the windows between them ({rise_text})",
            all(r >= rises["min_rise"] and f >= rises["min_rising_fraction"] for r, f in rise.values()),
            "eta-rises-like-warmup",
        ),
        Check(
            f"the sharpness does not rise on edge: λ1's median over the last {falls['window_steps']}-step window ≤ "
            f"{falls['max_ratio']:g}× the first's ({lam_ratio:.3g}×)",
            lam_ratio <= falls["max_ratio"],
            "sharpness-does-not-rise",
        ),
        Check(
            "slightly above the edge: the two-step effective η·λ1 of σ = "
            f"{n['edge_sigma']:g}, median over the last half of the pairs, ∈ [{above['low']:g}, {above['high']:g}] "
            f"({effective:.3g})",
            above["low"] <= effective <= above["high"],
            "slightly-above-the-edge",
        ),
        Check(
            f"minibatch: the best σ at batch {list(best)[0]} ({small:g}) is below the best at batch {list(best)[-1]} "
            f"({large:g}) by ≥ {shifts['min_shift']:g}",
            large - small >= shifts["min_shift"],
            "best-sigma-shifts-with-batch",
        ),
    ]


register_preregistered(NAME, run_cdat, checks_cdat, figures_cdat)
