"""Reproductions 1 and 9: the edge of stability for GD (Cohen et al. 2021; seeds 002/003) and the
preconditioned edge for Adam (Cohen et al. 2022; Gilmer et al. 2021, App. H)."""

from __future__ import annotations

from pathlib import Path
from statistics import median

from curvlab.reproductions.base import Check, Reproduction, pyplot, register, save_figure
from curvlab.reproductions.training import mlp_full_batch, run_config, series, tail_median

GD_LR = 0.1


def run_gd(out: Path, quick: bool) -> dict:
    df = run_config(
        mlp_full_batch("gd", {"name": "sgd", "lr": GD_LR}, steps=300 if quick else 800, subset=500 if quick else 2000),
        out / "gd",
    )
    steps, edge = series(df, "lr_times_sharpness")
    loss_steps, losses = series(df, "loss")
    first = next((i for i, v in enumerate(edge) if v >= 1.9), None)
    after = edge[first:] if first is not None else []
    edge_step = steps[first] if first is not None else None
    increases = sum(
        1 for s, a, b in zip(loss_steps[1:], losses, losses[1:]) if edge_step is not None and s > edge_step and b > a
    )
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6))
    (
        a1.plot(steps, edge),
        a1.axhline(2, color="k", ls="--", lw=0.8),
        a1.set_xlabel("step"),
        a1.set_ylabel("η·λ1"),
        a1.set_title("GD: η·λ1 against the edge 2"),
    )
    (
        a2.plot(loss_steps, losses),
        a2.set_yscale("log"),
        a2.set_xlabel("step"),
        a2.set_ylabel("training loss"),
        a2.set_title("GD: loss"),
    )
    save_figure(fig, out / "edge_of_stability.png")
    return {
        "lr": GD_LR,
        "first_eta_lambda": edge[0],
        "max_eta_lambda": max(edge),
        "first_step_at_edge": edge_step,
        "median_eta_lambda_after_edge": median(after) if after else float("nan"),
        "initial_loss": losses[0],
        "final_loss": losses[-1],
        "loss_increases_after_edge": increases,
    }


def checks_gd(n: dict) -> list[Check]:
    return [
        Check(
            f"progressive sharpening: λ1 starts ≤ 0.6·2/η (η·λ1 = {n['first_eta_lambda']:.3f} ≤ 1.2)",
            n["first_eta_lambda"] <= 1.2,
        ),
        Check(f"λ1 reaches the edge: max η·λ1 ≥ 1.9 (got {n['max_eta_lambda']:.3f})", n["max_eta_lambda"] >= 1.9),
        Check(
            "then hovers: median η·λ1 after first reaching 1.9 ∈ [1.8, 2.2] (got "
            f"{n['median_eta_lambda_after_edge']:.3f})",
            1.8 <= n["median_eta_lambda_after_edge"] <= 2.2,
        ),
        Check(
            "while the loss keeps decreasing, non-monotonically: final/initial < 0.5 "
            f"({n['final_loss'] / n['initial_loss']:.3g}) and "
            f"≥ 1 increase after the edge ({n['loss_increases_after_edge']})",
            n["final_loss"] < 0.5 * n["initial_loss"] and n["loss_increases_after_edge"] >= 1,
        ),
    ]


def run_adam(out: Path, quick: bool) -> dict:
    lr = 0.01
    df = run_config(
        mlp_full_batch("adam", {"name": "adam", "lr": lr}, steps=250 if quick else 600, subset=500 if quick else 2000),
        out / "adam",
    )
    steps, ratio = series(df, "ratio_to_threshold")
    _, pre = series(df, "preconditioned_sharpness")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    (
        ax.plot(steps, pre, label="preconditioned λ1"),
        ax.axhline(38 / lr, color="k", ls="--", lw=0.8, label="(2+2β1)/((1−β1)η) = 38/η"),
    )
    (
        ax.set_yscale("log"),
        ax.set_xlabel("step"),
        ax.set_title("Full-batch Adam: the preconditioned edge"),
        ax.legend(fontsize=8),
    )
    save_figure(fig, out / "adam_preconditioned_edge.png")
    return {
        "lr": lr,
        "threshold": 38 / lr,
        "first_ratio": ratio[0],
        "median_ratio_last_half": tail_median(ratio),
        "max_ratio": max(ratio),
    }


def checks_adam(n: dict) -> list[Check]:
    return [
        Check(
            "the preconditioned sharpness starts below the edge: ratio to 38/η at the first measurement < 0.5 (got "
            f"{n['first_ratio']:.3f})",
            n["first_ratio"] < 0.5,
        ),
        Check(
            f"and hovers at it: median ratio over the last half ∈ [0.8, 1.2] (got {n['median_ratio_last_half']:.3f})",
            0.8 <= n["median_ratio_last_half"] <= 1.2,
        ),
    ]


register(
    Reproduction(
        name="edge-of-stability",
        claim="Full-batch GD with a fixed η: sharpness rises (progressive sharpening) until λ1 ≈ 2/η, then hovers "
        "there while the loss keeps decreasing, non-monotonically.",
        source="Cohen et al. 2021; Roulet et al. 2024 Fig. 1–3; Gilmer et al. 2021 §3",
        setting="tanh MLP 784-64-64-10, squared loss on one-hot targets, 2,000 MNIST images, full-batch GD η = "
        f"{GD_LR} (2/η = 20), 800 steps, λ1 every 10 steps",
        run=run_gd,
        checks=checks_gd,
    )
)
register(
    Reproduction(
        name="adam-preconditioned-edge",
        claim="Full-batch Adam: the preconditioned sharpness λ_max(P^-1/2 H P^-1/2) rises to and hovers near "
        "(2+2β1)/((1−β1)η) = 38/η.",
        source="Cohen et al. 2022; Gilmer et al. 2021 App. H",
        setting="tanh MLP 784-64-64-10, squared loss on one-hot targets, 2,000 MNIST images, full-batch Adam η = 0.01 "
        "(β1 = 0.9), 600 steps",
        run=run_adam,
        checks=checks_adam,
    )
)
