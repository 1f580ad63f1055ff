"""Reproduction 7: directional sharpness of the optimizers' updates (Pan & Li 2022, Tables 3–6, §3–4, App. A.3,
B.3), pre-registered in claims/directional-sharpness.toml, with the paper's protocol: 10 batches an epoch, 5 of
them sampled in each listed epoch, each optimizer's pseudo-update measured on the same geometry, its ratio to SGD's
averaged over the sampled batches of an epoch and then over the epochs."""

from __future__ import annotations

import random
from pathlib import Path
from statistics import mean

from curvlab.reproductions.base import Check, pyplot, register_preregistered, save_figure
from curvlab.reproductions.claims import thresholds
from curvlab.reproductions.training import final_value, run_config, seed_colors, series, widened_grid

NAME = "directional-sharpness"


def _sgd(lr: float, clip_percent: float = 0.0) -> dict:
    opt = {"name": "heavy_ball", "lr": lr, "momentum": 0.9, "dampening": True}  # Pan & Li 2022, Alg. 1
    return {**opt, "clip_percent": clip_percent} if clip_percent else opt


def batch_size(setting: dict) -> int:
    """The batch size that makes ``batches_per_epoch`` batches of the training set (Pan & Li: 10 of 1,024)."""
    return max(1, setting["train_size"] // setting["batches_per_epoch"])


def measured_steps(setting: dict, seed: int) -> dict[int, list[int]]:
    """By listed epoch, the steps measured: ``sampled_batches`` of its ``batches_per_epoch`` batches, drawn with
    the seed (steps count from 1: step s trains on batch (s − 1) mod k of epoch (s − 1) // k + 1, for k batches an
    epoch; the incomplete last batch of an epoch is dropped)."""
    k, rng, sampled = setting["batches_per_epoch"], random.Random(seed), setting["sampled_batches"]
    return {e: sorted((e - 1) * k + b + 1 for b in rng.sample(range(k), sampled)) for e in setting["epochs"]}


def _config(name: str, setting: dict, optimizer: dict, monitor: dict, seed: int) -> dict:
    steps = max(setting["epochs"]) * setting["batches_per_epoch"]
    data = {"name": setting["data"], **setting.get("data_options", {})}
    data.update(subset=setting["train_size"], measure_subset=setting["measure_subset"])
    config = {
        "name": name,
        "seed": seed,
        "data": data,
        "model": {"name": setting["model"], **setting.get("model_options", {})},
        "optimizer": optimizer,
        "train": {"batch_size": batch_size(setting), "steps": steps, "checkpoint_every": steps},
        "monitor": monitor,
    }
    if "loss" in setting:
        config["loss"] = {"name": setting["loss"]}
    return config


def _epoch_ratios(out: Path, setting: dict, seed: int, trajectory: str, optimizer: dict) -> dict[str, dict[str, float]]:
    """One trajectory with the shadows measured at the sampled steps: by optimizer, by epoch, the mean over the
    sampled batches of the ratio of its directional sharpness to SGD's."""
    steps = measured_steps(setting, seed)
    monitor = {"metrics": ["directional"], "schedules": {"directional": sorted(s for v in steps.values() for s in v)}}
    df = run_config(_config(trajectory, setting, optimizer, monitor, seed), out / trajectory)
    rows = df[df.metric == "sharpness_ratio_to_sgd"]
    epoch_of = {s: e for e, listed in steps.items() for s in listed}
    table: dict[str, dict[str, float]] = {}
    for name, group in rows.groupby("optimizer"):
        if name == "actual":
            continue
        by_epoch = group.assign(epoch=group.step.astype(int).map(epoch_of)).groupby("epoch").value.mean()
        table[name] = {str(int(e)): float(v) for e, v in by_epoch.items()}
    return table


def _final_loss(out: Path, setting: dict, seed: int, name: str, optimizer: dict) -> float:
    """The final full-training-set loss of one run (+∞ when it diverged)."""
    steps = max(setting["epochs"]) * setting["batches_per_epoch"]
    monitor = {
        "metrics": ["full_batch"],
        "schedules": {"full_batch": [steps]},
        "options": {"full_batch": {"gradients": False}},
    }
    _, loss = series(run_config(_config(name, setting, optimizer, monitor, seed), out / name), "loss_full")
    return final_value(loss)


def _tuned(out: Path, setting: dict, seed: int, label: str, clip_percent: float) -> dict[float, float]:
    """SGD (coordinate-clipped or not) on the widened grid: final loss by η."""

    def run_at(lr: float) -> float:
        return _final_loss(out, setting, seed, f"{label}_lr{lr:g}", _sgd(lr, clip_percent))

    grid = tuple(setting["lr_grid"])
    return widened_grid(run_at, lambda loss: loss, grid, setting["grid_factor"], setting["widenings"])


def _trajectory_optimizer(optimizer: dict, tuned_lr: float) -> dict:
    """A trajectory's optimizer, its ``lr = "tuned"`` replaced by SGD's tuned η."""
    return {**optimizer, "lr": tuned_lr} if optimizer["lr"] == "tuned" else optimizer


def run(out: Path, setting: dict, seed: int) -> dict:
    """SGD and clipped SGD each at its best η of the widened grid, then both trajectories' epoch ratios (a
    trajectory whose ``lr`` is ``"tuned"`` runs at SGD's best η)."""
    numbers: dict = {"measured_steps": {str(e): s for e, s in measured_steps(setting, seed).items()}}
    for label, clip in (("sgd", 0.0), ("sgd_clip", setting["clip_percent"])):
        finals = _tuned(out, setting, seed, label, clip)
        best = min(finals, key=lambda name: finals[name])
        numbers.update(
            {
                f"best_{label}_final_loss": finals[best],
                f"best_{label}_lr": best,
                f"best_{label}_lr_is_interior": min(finals) < best < max(finals),
                f"{label}_final_losses": {f"{lr:g}": loss for lr, loss in finals.items()},
            }
        )
    trajectories = {k: _trajectory_optimizer(o, numbers["best_sgd_lr"]) for k, o in setting["trajectories"].items()}
    ratios = {name: _epoch_ratios(out, setting, seed, name, optimizer) for name, optimizer in trajectories.items()}
    for trajectory, table in ratios.items():
        numbers.update({f"{trajectory}_mean_ratio_{name}": mean(t.values()) for name, t in table.items()})
    numbers.update(trajectory_lrs={k: o["lr"] for k, o in trajectories.items()}, ratios=ratios)
    return numbers


def figures(out: Path, per_seed: dict[int, dict]) -> None:
    """Each optimizer's ratio to SGD by epoch, one panel per trajectory, every seed."""
    colors = seed_colors(per_seed)
    trajectories = list(next(iter(per_seed.values()))["ratios"])
    fig, axes = pyplot().subplots(1, len(trajectories), figsize=(6 * len(trajectories), 4), squeeze=False)
    for ax, trajectory in zip(axes[0], trajectories):
        for seed, n in per_seed.items():
            for k, (name, by_epoch) in enumerate(sorted(n["ratios"][trajectory].items())):
                if name == "sgd":
                    continue
                epochs = [int(e) for e in by_epoch]
                kwargs = {"color": f"C{k}", "marker": "o", "ls": ("-", "--", ":")[list(colors).index(seed) % 3]}
                ax.plot(epochs, list(by_epoch.values()), label=f"{name} (seed {seed})", **kwargs)
        ax.set_yscale("log"), ax.axhline(1, color="k", lw=0.8), ax.set_xlabel("epoch (10 batches)")
        ax.set_ylabel("mean directional sharpness / SGD's"), ax.set_title(trajectory.replace("_", " "))
        ax.legend(fontsize=5, ncol=2)
    save_figure(fig, out / "directional_sharpness.png")


ADAPTIVE = ("adam", "normalized_sgd", "adafactor")
CLIPPED = {"sgd": "sgd_clip", "normalized_sgd": "normalized_sgd_clip", "adafactor": "adafactor_clip"}


def statistics(n: dict) -> dict[str, dict[tuple[str, str], float]]:
    """What the first two checks read, by (trajectory, optimizer): the epoch-averaged ratio to SGD of each adaptive
    optimizer (``adaptive``) and the clipped variant's over the unclipped one's (``clipped``)."""
    ratio = lambda trajectory, name: n[f"{trajectory}_mean_ratio_{name}"]  # noqa: E731
    trajectories = list(n["ratios"])
    return {
        "adaptive": {(tr, o): ratio(tr, o) for tr in trajectories for o in ADAPTIVE},
        "clipped": {(tr, b): ratio(tr, c) / ratio(tr, b) for tr in trajectories for b, c in CLIPPED.items()},
    }


def checks(n: dict) -> list[Check]:
    """The pre-registered checks (claims/directional-sharpness.toml), thresholds from the claims file."""
    t = thresholds(NAME)
    sharper, clipping, faster = t["sgd-much-sharper"], t["clipping-reduces-sharpness"], t["clipped-sgd-trains-faster"]
    stats = statistics(n)
    adaptive, clipped = stats["adaptive"], stats["clipped"]
    fmt = lambda d: "; ".join(f"{tr} {o}: {v:.3g}" for (tr, o), v in d.items())  # noqa: E731
    sgd, clip = n["best_sgd_final_loss"], n["best_sgd_clip_final_loss"]
    return [
        Check(
            f"SGD's update is much sharper: the epoch-averaged ratio to SGD's ≤ {sharper['max_ratio']:g} for Adam, "
            f"normalized SGD and Adafactor on both trajectories ({fmt(adaptive)})",
            all(v <= sharper["max_ratio"] for v in adaptive.values()),
            "sgd-much-sharper",
        ),
        Check(
            f"5% coordinate clipping reduces it: clipped over unclipped ≤ {clipping['max_ratio']:g} for SGD, "
            f"normalized SGD and Adafactor on both trajectories ({fmt(clipped)})",
            all(v <= clipping["max_ratio"] for v in clipped.values()),
            "clipping-reduces-sharpness",
        ),
        Check(
            f"clipped SGD trains faster: best final loss {clip:.4g} (η = {n['best_sgd_clip_lr']:g} of "
            f"{', '.join(n['sgd_clip_final_losses'])}) ≤ {1 - faster['min_gap_fraction']:g} × SGD's {sgd:.4g} "
            f"(η = {n['best_sgd_lr']:g} of {', '.join(n['sgd_final_losses'])})",
            clip <= (1 - faster["min_gap_fraction"]) * sgd,
            "clipped-sgd-trains-faster",
        ),
    ]


register_preregistered(NAME, run, checks, figures)
