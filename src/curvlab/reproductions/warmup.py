"""Reproduction 2: warmup (Gilmer et al. 2021): at a peak η where training without warmup
fails, linear warmup trains, with λ1 ≈ 2/η_t during warmup; a larger initialisation has a higher
initial sharpness and a lower maximal stable learning rate."""

from __future__ import annotations

from pathlib import Path

from curvlab.core.objective import Objective
from curvlab.data import load_dataset
from curvlab.experiments.run import read_status
from curvlab.geometry import sharpness
from curvlab.losses import onehot_mse
from curvlab.models import build_model
from curvlab.reproductions.base import Check, Reproduction, by_quick_flag, pyplot, register, save_figure
from curvlab.reproductions.training import mlp_full_batch, run_config, seed_colors, series

PEAK_LR = 0.5
WARMUP, STEPS = 200, 500  # full scale: linear warmup over 200 steps, then 300 at the peak
QUICK = {"subset": 500, "steps": 300, "warmup": 200}
LR_GRID = (0.05, 0.1, 0.2, 0.4, 0.8)


def _stable(run_dir: Path, initial_loss_bound: float | None = None) -> bool:
    status = read_status(run_dir)
    return status.get("status") == "finished" and (status.get("final_loss") or float("inf")) < (
        initial_loss_bound or float("inf")
    )


def run(out: Path, quick: bool, seed: int) -> dict:
    subset, steps, warmup = (QUICK["subset"], QUICK["steps"], QUICK["warmup"]) if quick else (2000, STEPS, WARMUP)
    peak = {"name": "sgd", "lr": PEAK_LR}
    plain = run_config(mlp_full_batch("no_warmup", peak, steps=steps, subset=subset, seed=seed), out / "no_warmup")
    config = mlp_full_batch("warmup", peak, steps=steps, subset=subset, seed=seed)
    config["schedule"] = {"kind": "warmup_constant", "warmup_steps": warmup}
    warm = run_config(config, out / "warmup")
    plain_steps, plain_loss = series(plain, "loss")
    warm_steps, warm_loss = series(warm, "loss")
    steps_e, edge = series(warm, "lr_times_sharpness")
    in_warmup = [(s, v) for s, v in zip(steps_e, edge) if s <= warmup]
    first = next((i for i, (_, v) in enumerate(in_warmup) if v >= 1.8), None)
    tracked = sorted(v for _, v in in_warmup[first:]) if first is not None else []
    scales = {}
    data = load_dataset("mnist", subset=subset, seed=seed)
    for scale in (1.0, 2.0):
        model = build_model("mlp", data, init_scale=scale, seed=seed, width=64, depth=2, activation="tanh")
        lam0 = float(sharpness(Objective(model, onehot_mse, (data.x_train, data.y_train))).eigenvalues[0])
        stable = []
        for lr in LR_GRID:
            c = mlp_full_batch(f"scale{scale}_lr{lr}", {"name": "sgd", "lr": lr}, steps=30, subset=subset, seed=seed)
            c["model"]["init_scale"] = scale
            c["monitor"] = {"metrics": []}
            df = run_config(c, out / "init_scale" / c["name"])
            _, losses = series(df, "loss")
            if _stable(out / "init_scale" / c["name"], losses[0]):
                stable.append(lr)
        scales[scale] = {"initial_sharpness": lam0, "max_stable_lr": max(stable) if stable else 0.0}
    median = tracked[len(tracked) // 2] if tracked else float("nan")
    return {
        "peak_lr": PEAK_LR,
        "warmup_steps": warmup,
        "no_warmup_status": read_status(out / "no_warmup").get("status"),
        "no_warmup_initial_loss": plain_loss[0],
        "no_warmup_final_loss": plain_loss[-1] if plain_loss else float("nan"),
        "warmup_initial_loss": warm_loss[0],
        "warmup_final_loss": warm_loss[-1],
        "median_eta_lambda_during_warmup_after_edge": median,
        "initial_sharpness_scale1": scales[1.0]["initial_sharpness"],
        "initial_sharpness_scale2": scales[2.0]["initial_sharpness"],
        "max_stable_lr_scale1": scales[1.0]["max_stable_lr"],
        "max_stable_lr_scale2": scales[2.0]["max_stable_lr"],
        "series": {
            "plain": [plain_steps, plain_loss],
            "warmup": [warm_steps, warm_loss],
            "edge": [steps_e, edge],
        },
    }


def figures(out: Path, per_seed: dict[int, dict]) -> None:
    colors = seed_colors(per_seed)
    fig, (a1, a2) = pyplot().subplots(1, 2, figsize=(11, 3.6))
    for seed, n in per_seed.items():
        c, series_ = colors[seed], n["series"]
        a1.plot(*series_["plain"], color=c, ls=":", label=f"seed {seed}: no warmup, η = {PEAK_LR}")
        a1.plot(*series_["warmup"], color=c, label=f"seed {seed}: linear warmup over {n['warmup_steps']} steps")
        a2.plot(*series_["edge"], color=c, label=f"seed {seed}")
    a1.set_yscale("log"), a1.set_xlabel("step"), a1.set_title("training loss"), a1.legend(fontsize=6)
    warmup = next(iter(per_seed.values()))["warmup_steps"]
    a2.axhline(2, color="k", ls="--", lw=0.8), a2.axvline(warmup, color="grey", ls=":")
    a2.set_xlabel("step"), a2.set_title("η_t·λ1 with warmup"), a2.set_ylim(0, 4), a2.legend(fontsize=6)
    save_figure(fig, out / "warmup.png")


def checks(n: dict) -> list[Check]:
    failed = n["no_warmup_status"] == "diverged" or not (n["no_warmup_final_loss"] < n["no_warmup_initial_loss"])
    return [
        Check(
            f"without warmup, η = {n['peak_lr']} fails: {n['no_warmup_status']}, final loss "
            f"{n['no_warmup_final_loss']:.4g} vs initial {n['no_warmup_initial_loss']:.4g}",
            failed,
        ),
        Check(
            f"with linear warmup it trains: final loss {n['warmup_final_loss']:.4g} < ½ × initial "
            f"{n['warmup_initial_loss']:.4g}",
            n["warmup_final_loss"] < 0.5 * n["warmup_initial_loss"],
        ),
        Check(
            "during warmup λ1 tracks 2/η_t: median η_t·λ1 after first reaching 1.8 ∈ [1.6, 2.4] (got "
            f"{n['median_eta_lambda_during_warmup_after_edge']:.3f})",
            1.6 <= n["median_eta_lambda_during_warmup_after_edge"] <= 2.4,
        ),
        Check(
            f"a ×2 initialisation has higher initial λ1 ({n['initial_sharpness_scale2']:.3g} > "
            f"{n['initial_sharpness_scale1']:.3g}) and a lower "
            f"maximal stable η ({n['max_stable_lr_scale2']} < {n['max_stable_lr_scale1']})",
            n["initial_sharpness_scale2"] > n["initial_sharpness_scale1"]
            and n["max_stable_lr_scale2"] < n["max_stable_lr_scale1"],
        ),
    ]


register(
    Reproduction(
        name="warmup",
        claim="At a peak learning rate where training without warmup fails, linear warmup trains, with λ1 ≈ 2/η_t "
        "during warmup; "
        "a larger initialisation has a higher initial sharpness and a lower maximal stable learning rate.",
        source="Gilmer et al. 2021 §4–5",
        setting="tanh MLP 784-64-64-10, squared loss on one-hot targets, 2,000 MNIST images, full-batch GD at peak η "
        f"= {PEAK_LR} "
        f"(2/η = 4), linear warmup over {WARMUP} of {STEPS} steps; init scales 1 and 2, maximal stable η over "
        f"{list(LR_GRID)} (30 steps)",
        run=by_quick_flag(run),
        checks=checks,
        figures=figures,
    )
)
