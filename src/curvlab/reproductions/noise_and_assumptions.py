"""Reproductions 6 (noise histograms, Kunstner et al. 2023, Fig. 1) and 8 (optimization assumptions,
Tran, Zhang & Cutkosky 2024)."""

from __future__ import annotations

from pathlib import Path

import torch

from curvlab.core.objective import Objective
from curvlab.data import load_dataset
from curvlab.geometry import gradient_noise, qq_gaussian
from curvlab.losses import cross_entropy
from curvlab.models import build_model
from curvlab.reproductions.base import (
    Check,
    Reproduction,
    by_quick_flag,
    pyplot,
    register,
    register_preregistered,
    save_figure,
)
from curvlab.reproductions.claims import thresholds
from curvlab.reproductions.training import run_config, seed_colors, series


def _qq_correlation(norms: torch.Tensor) -> float:
    theory, sample = qq_gaussian(norms)
    return float(torch.corrcoef(torch.stack([theory, sample]))[0, 1])


NOISE = "noise-histograms"
ARMS = ("image", "language")


def _arm_data(arm: dict, seed: int):
    """An arm's data: an image set's ``subset`` of its training images (all with 0), or a text's ``data_options``
    (level, vocabulary, context, n_sequences)."""
    return load_dataset(arm["data"], subset=arm.get("subset") or None, seed=seed, **arm.get("data_options", {}))


def run_noise(out: Path, setting: dict, seed: int) -> dict:
    """‖g̃ − ∇F‖ over many minibatches at initialisation, for each arm (an image model and a language model by
    default): the tail index of the noise coordinates and the QQ correlation of the norms against a Gaussian."""
    numbers: dict = {"n_batches": setting["n_batches"]}
    for name in ARMS:
        arm = setting[name]
        data = _arm_data(arm, seed)
        model = build_model(arm["model"], data, seed=seed, **arm.get("model_options", {}))
        pool = (data.x_train, data.y_train)
        objective = Objective(model, cross_entropy, pool)
        res = gradient_noise(objective, pool, batch_size=arm["batch"], n_batches=setting["n_batches"], seed=seed)
        numbers[f"examples_{name}"] = len(data.y_train)
        numbers[f"tail_index_{name}"] = res.tail_index
        numbers[f"qq_correlation_{name}"] = _qq_correlation(res.norms)
        numbers[f"relative_norms_{name}"] = (res.norms / res.norms.mean()).tolist()
    return numbers


def figures_noise(out: Path, per_seed: dict[int, dict]) -> None:
    colors = seed_colors(per_seed)
    fig, axes = pyplot().subplots(1, 3, figsize=(13, 3.6))
    for ax, name in zip(axes, ARMS):
        for seed, n in per_seed.items():
            ax.hist(n[f"relative_norms_{name}"], bins=30, histtype="step", color=colors[seed], label=f"seed {seed}")
        ax.set_title(f"{name} model: ‖g̃ − ∇F‖ / mean"), ax.set_xlabel("relative norm"), ax.legend(fontsize=7)
    for seed, n in per_seed.items():
        for marker, name in ((".", "image"), ("x", "language")):
            theory, sample = qq_gaussian(torch.tensor(n[f"relative_norms_{name}"]))
            axes[2].plot(theory, sample, marker, ms=3, color=colors[seed], label=f"seed {seed}: {name}")
    lo, hi = axes[2].get_xlim()
    axes[2].plot([lo, hi], [lo, hi], "k", lw=0.8)
    axes[2].set_title("QQ against a fitted Gaussian"), axes[2].legend(fontsize=6)
    save_figure(fig, out / "noise_histograms.png")


def checks_noise(n: dict) -> list[Check]:
    """The pre-registered checks (claims/noise-histograms.toml); thresholds from the claims file."""
    t = thresholds(NOISE)
    tail, qq = t["tail-index"], t["qq-plot"]
    a_img, a_lang = n["tail_index_image"], n["tail_index_language"]
    r_img, r_lang = n["qq_correlation_image"], n["qq_correlation_language"]
    return [
        Check(
            f"the image model's noise is close to Gaussian, α̂ ≥ {tail['min_alpha_image']:g} ({a_img:.3f}), the "
            f"language model's heavier-tailed, α̂ ≤ {tail['max_alpha_language']:g} ({a_lang:.3f})",
            a_img >= tail["min_alpha_image"] and a_lang <= tail["max_alpha_language"],
            "tail-index",
        ),
        Check(
            f"in the QQ plot the image model's norms lie on a Gaussian's, r ≥ {qq['min_r_image']:g} ({r_img:.4f}), "
            f"and closer to it than the language model's ({r_lang:.4f})",
            r_img >= qq["min_r_image"] and r_img > r_lang,
            "qq-plot",
        ),
    ]


register_preregistered(NOISE, run_noise, checks_noise, figures_noise)


def _assumption_config(name: str, data: dict, model: dict, optimizer: dict, steps: int, batch, seed: int) -> dict:
    return {
        "name": name,
        "seed": seed,
        "data": data,
        "model": model,
        "optimizer": optimizer,
        "train": {"batch_size": batch, "steps": steps, "checkpoint_every": steps},
        "monitor": {"metrics": ["assumptions"], "reset": "never"},
    }


def run_assumptions(out: Path, quick: bool, seed: int) -> dict:
    steps = 60 if quick else 400
    numbers: dict = {"steps": steps, "random_scaling": {}, "series": {}}
    deep = {"name": "mnist", "subset": 2000}
    net = {"name": "mlp", "width": 64, "depth": 2, "activation": "relu"}
    for name, opt in (
        ("sgdm_rs", {"name": "delta_sgdm", "lr": 0.05, "momentum": 0.9, "random_scaling": True}),
        ("adamw_rs", {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01, "random_scaling": True}),
    ):
        df = run_config(_assumption_config(name, deep, net, opt, steps, 64, seed), out / name)
        s, corr = series(df, "update_corr_rs_sum")
        _, diff = series(df, "loss_diff_sum")
        _, gaps = series(df, "inst_gap")
        _, smooth = series(df, "inst_smooth")
        _, ratio = series(df, "convexity_ratio")
        numbers.update(
            {
                f"{name}_fraction_gap_positive": _fraction_positive_beyond_rounding(gaps),
                f"{name}_smooth_growth": _quarter_growth(smooth),
                f"{name}_max_smooth_growth": max(smooth) / smooth[0],
                f"{name}_final_convexity_ratio": ratio[-1],
                f"{name}_update_corr_rs_sum": corr[-1],
                f"{name}_loss_diff_sum": diff[-1],
                f"{name}_relative_gap": abs(corr[-1] - diff[-1]) / abs(diff[-1]),
            }
        )
        numbers["random_scaling"][name] = {"steps": s, "update_corr": corr, "loss_diff": diff}
        numbers["series"][name] = {"inst_gap": gaps, "inst_smooth": smooth}
    return numbers


ROUNDING = 0.01  # a positive gap counts when it exceeds this fraction of the run's median |inst_gap|


def _fraction_positive_beyond_rounding(gaps: list[float]) -> float:
    """The share of steps whose convexity gap is positive by more than rounding could make it: above ROUNDING ×
    the median |inst_gap| (on a convex function every gap is ≤ 0, up to rounding far below the typical gap)."""
    typical = float(torch.tensor(gaps).abs().median())
    return sum(g > ROUNDING * typical for g in gaps) / len(gaps)


def _quarter_growth(values: list[float]) -> float:
    """Median over the last quarter / median over the first quarter (≈ 1 for a stationary sequence)."""
    quarter = max(1, len(values) // 4)
    return float(torch.tensor(values[-quarter:]).median() / torch.tensor(values[:quarter]).median())


def figures_assumptions(out: Path, per_seed: dict[int, dict]) -> None:
    colors = seed_colors(per_seed)
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 3.6))
    for seed, n in per_seed.items():
        for ax, (name, r) in zip(axes, n["random_scaling"].items()):
            ax.plot(r["steps"], r["update_corr"], color=colors[seed], label=f"seed {seed}: Σ update_corr_RS")
            ax.plot(r["steps"], r["loss_diff"], color=colors[seed], ls="--", label=f"seed {seed}: Σ loss_diff")
            ax.set_title(f"{name}: random scaling identity"), ax.legend(fontsize=6)
    save_figure(fig, out / "random_scaling.png")


def checks_assumptions(n: dict) -> list[Check]:
    """Written before the run they score (2026-12-04), each one a check that a convex quadratic or a stationary
    sequence would fail."""
    opts = ("sgdm_rs", "adamw_rs")
    positive = {o: n[f"{o}_fraction_gap_positive"] for o in opts}
    growth = {o: n[f"{o}_smooth_growth"] for o in opts}
    return [
        Check(
            f"convexity fails along the trajectory: inst_gap > {ROUNDING:g}·median|inst_gap| (beyond rounding; a "
            f"convex function has none) at ≥ 5% of the steps for SGDM ({positive['sgdm_rs']:.1%}) and AdamW "
            f"({positive['adamw_rs']:.1%})",
            all(v >= 0.05 for v in positive.values()),
        ),
        Check(
            "the local smoothness grows along training: median inst_smooth over the last quarter ≥ 2× the first "
            f"quarter's (a stationary sequence gives ≈ 1×) for SGDM ({growth['sgdm_rs']:.3g}×) and AdamW "
            f"({growth['adamw_rs']:.3g}×)",
            all(v >= 2 for v in growth.values()),
        ),
        Check(
            "random scaling: Σ update_corr_RS tracks Σ loss_diff within 25%, both on the next step's batch, for SGDM "
            f"({n['sgdm_rs_relative_gap']:.3f}) and AdamW ({n['adamw_rs_relative_gap']:.3f})",
            n["sgdm_rs_relative_gap"] < 0.25 and n["adamw_rs_relative_gap"] < 0.25,
        ),
    ]


register(
    Reproduction(
        name="optimization-assumptions",
        claim="On a deep network trained with SGDM and AdamW, the classical assumptions fail along the trajectory: "
        "the instantaneous convexity gap is positive at a share of the steps and the local smoothness grows as "
        "training proceeds, so no constant seen early bounds it; with random scaling, the cumulative update "
        "correlation tracks the cumulative loss difference (we also report the convexity ratio).",
        source="Tran, Zhang & Cutkosky 2024, Empirical tests of optimization assumptions in deep learning",
        setting="ReLU MLP 784-64-64-10 on 2,000 MNIST images, batch 64, SGDM (Δ form, η = 0.05, β = 0.9) and AdamW "
        "(η = 1e-3, wd 0.01), both with random scaling s ~ Exp(1); 400 steps; windows never reset",
        run=by_quick_flag(run_assumptions),
        checks=checks_assumptions,
        figures=figures_assumptions,
        chosen_after_first_look=True,
    )
)
