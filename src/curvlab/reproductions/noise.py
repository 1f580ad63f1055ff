"""Reproduction 6: noise histograms (Kunstner et al. 2023, Fig. 1), pre-registered in claims/noise-histograms.toml."""

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
    pyplot,
    register_preregistered,
    save_figure,
)
from curvlab.reproductions.claims import thresholds
from curvlab.reproductions.training import seed_colors


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
