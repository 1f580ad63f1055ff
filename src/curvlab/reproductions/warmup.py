"""Reproduction 2: warmup (Gilmer et al. 2021): at a peak η where training without warmup
fails, linear warmup trains, with λ1 ≈ 2/η_t during warmup; a larger initialisation has a higher
initial sharpness and a lower maximal stable learning rate. Setting and checks: claims/warmup.toml."""

from __future__ import annotations

import math
from pathlib import Path

from curvlab.core.objective import Objective
from curvlab.data import load_dataset
from curvlab.experiments.run import read_status
from curvlab.geometry import sharpness
from curvlab.losses import onehot_mse
from curvlab.models import build_model
from curvlab.reproductions.base import Check, pyplot, register_preregistered, save_figure
from curvlab.reproductions.claims import thresholds
from curvlab.reproductions.training import full_batch_config, model_options, run_config, seed_colors, series

NAME = "warmup"


def _stable(run_dir: Path, initial_loss_bound: float | None = None) -> bool:
    status = read_status(run_dir)
    return status.get("status") == "finished" and (status.get("final_loss") or float("inf")) < (
        initial_loss_bound or float("inf")
    )


def run(out: Path, setting: dict, seed: int) -> dict:
    """The peak η without and with linear warmup (sharpness along the warmed-up run), then the initial λ1 and the
    largest stable constant η (over a grid, a few steps each) at the setting's small and large initialisations."""
    peak, warmup = setting["peak_lr"], setting["warmup_steps"]
    plain = run_config(full_batch_config("no_warmup", setting, {"name": "sgd", "lr": peak}, seed), out / "no_warmup")
    config = full_batch_config("warmup", setting, {"name": "sgd", "lr": peak}, seed)
    config["schedule"] = {"kind": "warmup_constant", "warmup_steps": warmup}
    warm = run_config(config, out / "warmup")
    plain_steps, plain_loss = series(plain, "loss")
    warm_steps, warm_loss = series(warm, "loss")
    steps_e, edge = series(warm, "lr_times_sharpness")
    steps_l, lam = series(warm, "sharpness")
    in_warmup = [v for s, v in zip(steps_e, edge) if s <= warmup]
    lam_in_warmup = [v for s, v in zip(steps_l, lam) if s <= warmup]
    scales = {k: _initialisation(out, setting, seed, setting[k]) for k in ("small_init_scale", "large_init_scale")}
    return {
        "peak_lr": peak,
        "warmup_steps": warmup,
        "no_warmup_status": read_status(out / "no_warmup").get("status"),
        "no_warmup_initial_loss": plain_loss[0],
        "no_warmup_final_loss": plain_loss[-1],
        "warmup_status": read_status(out / "warmup").get("status"),
        "warmup_initial_loss": warm_loss[0],
        "warmup_final_loss": warm_loss[-1],
        "sharpness_first": lam[0] if lam else float("nan"),
        "sharpness_end_of_warmup": lam_in_warmup[-1] if lam_in_warmup else float("nan"),
        "eta_lambda_during_warmup": in_warmup,
        "small_init_scale": setting["small_init_scale"],
        "large_init_scale": setting["large_init_scale"],
        **{f"initial_sharpness_{k}": v["initial_sharpness"] for k, v in scales.items()},
        **{f"max_stable_lr_{k}": v["max_stable_lr"] for k, v in scales.items()},
        "series": {"plain": [plain_steps, plain_loss], "warmup": [warm_steps, warm_loss], "edge": [steps_e, edge]},
    }


def _initialisation(out: Path, setting: dict, seed: int, scale: float) -> dict:
    """λ1 at initialisation ×``scale`` and the largest η of the setting's grid that trains for a few steps without
    warmup (finishes below its initial loss)."""
    options = {"subset": setting["subset"]} if setting.get("subset") else {}
    data = load_dataset(setting["data"], **options, **setting.get("data_options", {}), seed=seed)
    model = build_model(setting["model"], data, init_scale=scale, seed=seed, **model_options(setting))
    lam0 = float(sharpness(Objective(model, onehot_mse, (data.x_train, data.y_train))).eigenvalues[0])
    stable = []
    for lr in setting["stability_grid"]:
        c = full_batch_config(
            f"scale{scale:g}_lr{lr:g}", {**setting, "init_scale": scale}, {"name": "sgd", "lr": lr}, seed
        )
        c["train"]["steps"] = c["train"]["checkpoint_every"] = setting["stability_steps"]
        c["monitor"] = {"metrics": []}
        run_dir = out / "init_scale" / c["name"]
        _, losses = series(run_config(c, run_dir), "loss")
        if _stable(run_dir, losses[0]):
            stable.append(lr)
    return {"initial_sharpness": lam0, "max_stable_lr": max(stable) if stable else 0.0}


def figures(out: Path, per_seed: dict[int, dict]) -> None:
    colors = seed_colors(per_seed)
    fig, (a1, a2) = pyplot().subplots(1, 2, figsize=(11, 3.6))
    for seed, n in per_seed.items():
        c, series_ = colors[seed], n["series"]
        a1.plot(*series_["plain"], color=c, ls=":", label=f"seed {seed}: no warmup, η = {n['peak_lr']}")
        a1.plot(*series_["warmup"], color=c, label=f"seed {seed}: linear warmup over {n['warmup_steps']} steps")
        a2.plot(*series_["edge"], color=c, label=f"seed {seed}")
    a1.set_yscale("log"), a1.set_xlabel("step"), a1.set_title("training loss"), a1.legend(fontsize=6)
    warmup = next(iter(per_seed.values()))["warmup_steps"]
    a2.axhline(2, color="k", ls="--", lw=0.8), a2.axvline(warmup, color="grey", ls=":")
    a2.set_xlabel("step"), a2.set_title("η_t·λ1 with warmup"), a2.set_ylim(0, 4), a2.legend(fontsize=6)
    save_figure(fig, out / "warmup.png")


def checks(n: dict) -> list[Check]:
    """The pre-registered checks (claims/warmup.toml); thresholds from the claims file."""
    t = thresholds(NAME)
    fails, trains, tracks = t["no-warmup-diverges"], t["warmup-trains"], t["tracks-2-over-eta"]
    lo, hi = tracks["low"], tracks["high"]
    during = n["eta_lambda_during_warmup"]
    near = sum(lo <= v <= hi for v in during) / len(during) if during else 0.0
    bound = fails["min_final_over_initial"] * n["no_warmup_initial_loss"]
    diverged = n["no_warmup_status"] == "diverged" or not _below(n["no_warmup_final_loss"], bound)
    trained = n["warmup_status"] == "finished" and _below(
        n["warmup_final_loss"], trains["max_final_over_initial"] * n["warmup_initial_loss"]
    )
    fell = _below(n["sharpness_end_of_warmup"], trains["max_sharpness_ratio"] * n["sharpness_first"])
    small, large = "small_init_scale", "large_init_scale"
    ratio = t["sharper-init-lower-max-lr"]["min_scale_ratio"]
    sharper = n[f"initial_sharpness_{large}"] > ratio * n[f"initial_sharpness_{small}"]
    lower = n[f"max_stable_lr_{large}"] < n[f"max_stable_lr_{small}"]
    return [
        Check(
            f"without warmup, η = {n['peak_lr']:g} fails: diverged, or final loss ≥ "
            f"{fails['min_final_over_initial']:g} × initial ({n['no_warmup_status']}; final "
            f"{_g(n['no_warmup_final_loss'])}, initial {_g(n['no_warmup_initial_loss'])})",
            diverged,
            "no-warmup-diverges",
        ),
        Check(
            f"with {n['warmup_steps']} steps of linear warmup it trains ({n['warmup_status']}; final loss "
            f"{_g(n['warmup_final_loss'])} < {trains['max_final_over_initial']:g} × initial "
            f"{_g(n['warmup_initial_loss'])}) while λ1 falls (end of warmup {_g(n['sharpness_end_of_warmup'])} ≤ "
            f"{trains['max_sharpness_ratio']:g} × initial {_g(n['sharpness_first'])})",
            trained and fell,
            "warmup-trains",
        ),
        Check(
            f"during warmup λ1 ≈ 2/η_t: η_t·λ1 ∈ [{lo:g}, {hi:g}] at ≥ {tracks['min_fraction']:.0%} of the warmup's "
            f"measurements ({near:.0%} of {len(during)})",
            near >= tracks["min_fraction"],
            "tracks-2-over-eta",
        ),
        Check(
            f"a sharper initialisation (×{n['large_init_scale']:g} against ×{n['small_init_scale']:g}) has a higher "
            "initial λ1 "
            f"({_g(n[f'initial_sharpness_{large}'])} > {_g(n[f'initial_sharpness_{small}'])}) and a lower maximal "
            f"stable η ({n[f'max_stable_lr_{large}']:g} < {n[f'max_stable_lr_{small}']:g})",
            sharper and lower,
            "sharper-init-lower-max-lr",
        ),
    ]


def _below(value: float | None, bound: float | None) -> bool:
    return value is not None and bound is not None and math.isfinite(value) and value < bound


def _g(value: float | None) -> str:
    return "non-finite" if value is None or not math.isfinite(value) else f"{value:.4g}"


register_preregistered(NAME, run, checks, figures)
