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
from curvlab.reproductions.base import Check, Reproduction, pyplot, register, save_figure
from curvlab.reproductions.training import run_config, series


def _qq_correlation(norms: torch.Tensor) -> float:
    theory, sample = qq_gaussian(norms)
    return float(torch.corrcoef(torch.stack([theory, sample]))[0, 1])


def run_noise(out: Path, quick: bool) -> dict:
    n_batches = 40 if quick else 200
    image = load_dataset("mnist", subset=2000, seed=0)
    text = load_dataset(
        "kjv", level="word", vocab_size=5000, n_sequences=2000, context=64, seed=0
    )  # word level, as PTB/WikiText
    results = {}
    for name, data, model_name, options, batch in (
        ("image", image, "lenet", {}, 64),
        ("language", text, "transformer", {"size": "tiny"}, 16),
    ):
        model = build_model(model_name, data, seed=0, **options)
        pool = (data.x_train, data.y_train)
        res = gradient_noise(Objective(model, cross_entropy, pool), pool, batch_size=batch, n_batches=n_batches)
        results[name] = res
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (name, res) in zip(axes, results.items()):
        (
            ax.hist((res.norms / res.norms.mean()).numpy(), bins=30),
            ax.set_title(f"{name} model: ‖g̃ − ∇F‖ / mean"),
            ax.set_xlabel("relative norm"),
        )
    for name, res in results.items():
        theory, sample = qq_gaussian(res.norms / res.norms.mean())
        axes[2].plot(theory, sample, ".", label=name)
    lo, hi = axes[2].get_xlim()
    (
        axes[2].plot([lo, hi], [lo, hi], "k", lw=0.8),
        axes[2].set_title("QQ against a fitted Gaussian"),
        axes[2].legend(fontsize=8),
    )
    save_figure(fig, out / "noise_histograms.png")
    return {
        "n_batches": n_batches,
        "tail_index_image": results["image"].tail_index,
        "tail_index_language": results["language"].tail_index,
        "qq_correlation_image": _qq_correlation(results["image"].norms),
        "qq_correlation_language": _qq_correlation(results["language"].norms),
    }


def checks_noise(n: dict) -> list[Check]:
    return [
        Check(
            f"tail index closer to Gaussian (α = 2) for the image model: α̂_image = {n['tail_index_image']:.3f} > "
            f"α̂_language = {n['tail_index_language']:.3f}",
            n["tail_index_image"] > n["tail_index_language"],
        ),
        Check(
            f"norms closer to a Gaussian in the QQ plot: r_image = {n['qq_correlation_image']:.4f} > r_language = "
            f"{n['qq_correlation_language']:.4f}",
            n["qq_correlation_image"] > n["qq_correlation_language"],
        ),
    ]


register(
    Reproduction(
        name="noise-histograms",
        claim="At initialisation, minibatch gradient-error norms are close to Gaussian for an image model and "
        "heavier-tailed for a language model.",
        source="Kunstner et al. 2023 Fig. 1, after Zhang et al. 2020",
        setting="‖g̃ − ∇F‖ over 200 minibatches at initialisation: LeNet-5-like CNN on 2,000 MNIST images (batch 64) "
        "vs the tiny causal "
        "transformer (2×64) on 2,000 word-level King James Bible sequences of 64 (vocabulary 5,000; batch 16); tail "
        "index by Mohammadi et al. 2015",
        run=run_noise,
        checks=checks_noise,
    )
)


def _assumption_config(name: str, data: dict, model: dict, optimizer: dict, steps: int, batch) -> dict:
    return {
        "name": name,
        "seed": 0,
        "data": data,
        "model": model,
        "optimizer": optimizer,
        "train": {"batch_size": batch, "steps": steps, "checkpoint_every": steps},
        "monitor": {"metrics": ["assumptions"], "reset": "never"},
    }


def run_assumptions(out: Path, quick: bool) -> dict:
    steps = 60 if quick else 400
    ls_steps = min(steps, 100)  # float32: beyond this GD is at roundoff, where f differences are noise
    ls = run_config(
        _assumption_config(
            "gd_least_squares",
            {"name": "least_squares"},
            {"name": "linear"},
            {"name": "sgd", "lr": 0.05},
            ls_steps,
            "full",
        ),
        out / "ls",
    )
    data = load_dataset("least_squares")
    x_aug = torch.cat([data.x_train, torch.ones(data.n_train, 1)], dim=1)  # the linear model has a bias
    lam_max = float(torch.linalg.eigvalsh(x_aug.T @ x_aug / data.n_train)[-1])
    _, gaps = series(ls, "inst_gap")
    _, smooth = series(ls, "inst_smooth")
    numbers = {
        "ls_fraction_gap_nonpositive": sum(g <= 1e-12 for g in gaps) / len(gaps),
        "ls_max_smooth": max(smooth),
        "ls_lambda_max": lam_max,
    }
    deep = {"name": "mnist", "subset": 2000}
    net = {"name": "mlp", "width": 64, "depth": 2, "activation": "relu"}
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, opt in (
        ("sgdm_rs", {"name": "delta_sgdm", "lr": 0.05, "momentum": 0.9, "random_scaling": True}),
        ("adamw_rs", {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01, "random_scaling": True}),
    ):
        df = run_config(_assumption_config(name, deep, net, opt, steps, 64), out / name)
        s, corr = series(df, "update_corr_rs_sum")
        _, diff = series(df, "loss_diff_sum")
        _, gaps = series(df, "inst_gap")
        _, smooth = series(df, "max_smooth")
        _, ratio = series(df, "convexity_ratio")
        numbers.update(
            {
                f"{name}_fraction_gap_nonpositive": sum(g <= 0 for g in gaps) / len(gaps),
                f"{name}_max_smooth_growth": smooth[-1] / smooth[0],
                f"{name}_final_convexity_ratio": ratio[-1],
                f"{name}_update_corr_rs_sum": corr[-1],
                f"{name}_loss_diff_sum": diff[-1],
                f"{name}_relative_gap": abs(corr[-1] - diff[-1]) / abs(diff[-1]),
            }
        )
        (
            axes[0 if name == "sgdm_rs" else 1].plot(s, corr, label="Σ update_corr_RS"),
            axes[0 if name == "sgdm_rs" else 1].plot(s, diff, label="Σ loss_diff"),
        )
        (
            axes[0 if name == "sgdm_rs" else 1].set_title(f"{name}: random scaling identity"),
            axes[0 if name == "sgdm_rs" else 1].legend(fontsize=8),
        )
    save_figure(fig, out / "random_scaling.png")
    return numbers


def checks_assumptions(n: dict) -> list[Check]:
    return [
        Check(
            f"GD on least squares: inst_gap ≤ 0 at every step (fraction {n['ls_fraction_gap_nonpositive']:.3f})",
            n["ls_fraction_gap_nonpositive"] == 1.0,
        ),
        Check(
            f"and smoothness bounded by λ_max = {n['ls_lambda_max']:.4f}: max inst_smooth = {n['ls_max_smooth']:.4f}",
            n["ls_max_smooth"] <= n["ls_lambda_max"] * (1 + 1e-6),
        ),
        Check(
            "random scaling: Σ update_corr_RS tracks Σ loss_diff within 25% for SGDM "
            f"({n['sgdm_rs_relative_gap']:.3f}) and AdamW ({n['adamw_rs_relative_gap']:.3f})",
            n["sgdm_rs_relative_gap"] < 0.25 and n["adamw_rs_relative_gap"] < 0.25,
        ),
    ]


register(
    Reproduction(
        name="optimization-assumptions",
        claim="GD on squared loss keeps the convexity gap ≤ 0 with bounded smoothness; on a deep network with random "
        "scaling, the cumulative "
        "update correlation tracks the cumulative loss difference (and we report how often inst_gap ≤ 0, max_smooth "
        "growth and the convexity ratio).",
        source="Tran, Zhang & Cutkosky 2024, appendix",
        setting="GD (η = 0.05, 100 steps, float32) on synthetic least squares; ReLU MLP 784-64-64-10 on 2,000 MNIST "
        "images, batch 64, SGDM (Δ form, η = 0.05, "
        "β = 0.9) and AdamW (η = 1e-3, wd 0.01), both with random scaling s ~ Exp(1); 400 steps; windows never reset",
        run=run_assumptions,
        checks=checks_assumptions,
    )
)
