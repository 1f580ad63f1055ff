"""Reproductions 1 and 9: the edge of stability for GD (Cohen et al. 2021) and the preconditioned edge for Adam
(Cohen et al. 2022; Gilmer et al. 2021, App. H). The numbers come from :func:`curvlab.experiments.edge.edge_summary`
and the checks apply its thresholds (the one owner: the quickstart's report states the same verdict from them)."""

from __future__ import annotations

from pathlib import Path
from statistics import median

from curvlab.experiments import edge as criteria
from curvlab.experiments.edge import KIND_NAMES, EdgeSummary, edge_summary
from curvlab.reproductions.base import Check, Reproduction, by_quick_flag, pyplot, register, save_figure
from curvlab.reproductions.training import mlp_full_batch, run_config, seed_colors, tail_median

GD_LR = 0.1
ADAM_LR = 0.01


def _edge_numbers(edge: EdgeSummary) -> dict:
    """The series the figures draw and the numbers the checks read, from one run's edge summary."""
    i = edge.first_at_edge
    return {
        "steps": edge.steps,
        "values": edge.values,
        "loss_steps": edge.loss_steps,
        "losses": edge.losses,
        "first_value": edge.values[0],
        "max_value": max(edge.values),
        "first_step_at_edge": edge.steps[i] if i is not None else None,
        "median_after_edge": median(edge.after) if edge.after else float("nan"),
        "median_last_half": tail_median(edge.values),
        "initial_loss": edge.losses[0],
        "final_loss": edge.losses[-1],
        "loss_increases_after_edge": edge.loss_increases,
    }


def run_gd(out: Path, quick: bool, seed: int) -> dict:
    steps, subset = (300, 500) if quick else (800, 2000)
    df = run_config(mlp_full_batch("gd", {"name": "sgd", "lr": GD_LR}, steps, subset, seed=seed), out / "gd")
    return {"lr": GD_LR, **_edge_numbers(edge_summary("gd", df))}


def _summary(n: dict, kind: str) -> EdgeSummary:
    """The edge summary a seed's stored numbers hold (its series), so that stored runs re-score with the criteria."""
    label, scale = KIND_NAMES[kind]
    return EdgeSummary(kind, kind, n["steps"], n["values"], scale, label, n["loss_steps"], n["losses"])


def checks_gd(n: dict) -> list[Check]:
    edge = _summary(n, "gd")
    lo, hi = (2 * b for b in criteria.BAND)
    ratio = n["final_loss"] / n["initial_loss"]
    return [
        Check(
            f"progressive sharpening: λ1 starts ≤ {criteria.BELOW:g}·2/η (η·λ1 = {edge.values[0]:.3f} ≤ "
            f"{2 * criteria.BELOW:g})",
            edge.sharpened,
        ),
        Check(
            f"λ1 reaches the edge: max η·λ1 ≥ {2 * criteria.REACHED:g} (got {max(edge.values):.3f})",
            edge.first_at_edge is not None,
        ),
        Check(
            f"then hovers: median η·λ1 after first reaching {2 * criteria.REACHED:g} ∈ [{lo:g}, {hi:g}] "
            f"(got {edge.median_after:.3f}, over {len(edge.after)} measurements)",
            edge.hovered,
        ),
        Check(
            f"while the loss keeps decreasing, non-monotonically: final/initial < {criteria.LOSS_FALLS_TO:g} "
            f"({ratio:.3g}) and ≥ {criteria.LOSS_RISES} increase after the edge ({edge.loss_increases})",
            edge.loss_fell,
        ),
    ]


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


def run_adam(out: Path, quick: bool, seed: int) -> dict:
    steps, subset = (250, 500) if quick else (600, 2000)
    df = run_config(mlp_full_batch("adam", {"name": "adam", "lr": ADAM_LR}, steps, subset, seed=seed), out / "adam")
    return {"lr": ADAM_LR, "threshold": 38 / ADAM_LR, **_edge_numbers(edge_summary("adam", df))}


def checks_adam(n: dict) -> list[Check]:
    edge = _summary(n, "adam_preconditioned")
    lo, hi = criteria.LATE_BAND
    return [
        Check(
            "the preconditioned sharpness starts below the edge: ratio to 38/η at the first measurement < "
            f"{criteria.LATE_BELOW:g} (got {edge.values[0]:.3f})",
            edge.values[0] < criteria.LATE_BELOW,
        ),
        Check(
            f"and hovers near it: median ratio over the last half ∈ [{lo:g}, {hi:g}] (got {edge.median_late:.3f})",
            lo <= edge.median_late <= hi,
        ),
    ]


def figures_adam(out: Path, per_seed: dict[int, dict]) -> None:
    _figure(out, per_seed, "adam_preconditioned_edge", "preconditioned λ1 / (38/η)", 1.0, "Full-batch Adam")


register(
    Reproduction(
        name="edge-of-stability",
        claim="Full-batch GD with a fixed η: sharpness rises (progressive sharpening) until λ1 ≈ 2/η, then hovers "
        "there while the loss keeps decreasing, non-monotonically.",
        source="Cohen et al. 2021; Roulet et al. 2024 Fig. 1–3; Gilmer et al. 2021 §3",
        setting="tanh MLP 784-64-64-10, squared loss on one-hot targets, 2,000 MNIST images, full-batch GD η = "
        f"{GD_LR} (2/η = 20), 800 steps, λ1 every 10 steps",
        run=by_quick_flag(run_gd),
        checks=checks_gd,
        figures=figures_gd,
        chosen_after_first_look=True,
    )
)
register(
    Reproduction(
        name="adam-preconditioned-edge",
        claim="Full-batch Adam: the preconditioned sharpness λ_max(P^-1/2 H P^-1/2) rises to and hovers near "
        "(2+2β1)/((1−β1)η) = 38/η.",
        source="Cohen et al. 2022; Gilmer et al. 2021 App. H",
        setting="tanh MLP 784-64-64-10, squared loss on one-hot targets, 2,000 MNIST images, full-batch Adam η = "
        f"{ADAM_LR} (β1 = 0.9), 600 steps",
        run=by_quick_flag(run_adam),
        checks=checks_adam,
        figures=figures_adam,
        chosen_after_first_look=True,
    )
)
