"""Reproduction 5: batch size and sign descent (Kunstner et al. 2023, §3–4, Fig. 3–7), pre-registered in
claims/batch-size-sign-descent.toml, with the paper's protocol: the step size grid-searched per optimizer and batch
size (powers of 10, then the two half powers around the best), the final training loss on the full training set,
diverged = +∞; larger batch sizes run fewer steps (the paper's Table 1)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from curvlab.experiments.config import validate
from curvlab.experiments.sweep import run_sweep
from curvlab.reproductions.base import Check, pyplot, register_preregistered, save_figure
from curvlab.reproductions.claims import thresholds

NAME = "batch-size-sign-descent"
OPTIMIZERS: dict[
    str, dict[str, Any]
] = {  # Kunstner et al.'s Alg. 1 (heavy-ball momentum on the transformed gradient) and Alg. 2 (Adam)
    "sgd+m": {"name": "heavy_ball", "momentum": 0.9},
    "sign+m": {"name": "sign", "momentum": 0.9},
    "normalized+m": {"name": "normalized_gd", "momentum": 0.9},
    "adam": {"name": "adam"},
    "sgd-m": {"name": "heavy_ball", "momentum": 0.0},
    "adam-m": {"name": "adam", "betas": [0.0, 0.999]},
}
WITHOUT_MOMENTUM = {"sgd-m": "sgd+m", "adam-m": "adam"}  # run at the smallest and the full batch only


def _base(setting: dict, opt: dict, steps: int, seed: int) -> dict:
    return validate(
        {
            "name": "lm",
            "seed": seed,
            "data": {"name": setting["data"], **setting["data_options"]},
            "model": {"name": setting["model"], **setting["model_options"]},
            "optimizer": {**opt, "lr": 1e-2},
            "train": {"batch_size": 16, "steps": steps, "checkpoint_every": steps},
            "monitor": {
                "metrics": ["full_batch"],
                "schedules": {"full_batch": [steps]},
                "options": {"full_batch": {"gradients": False}},  # the search scores the loss only
            },
        }
    )


def steps_for(setting: dict, label: str) -> int:
    """The steps of a run at batch-size ``label``: the setting's one number, or its entry for the label."""
    steps = setting["steps"]
    return int(steps[label]) if isinstance(steps, dict) else int(steps)


def lr_powers_for(setting: dict, optimizer: str) -> list[float]:
    """The powers of 10 the step-size search starts from: the setting's one list, or its list for ``optimizer``."""
    powers = setting["lr_powers"]
    return list(powers[optimizer] if isinstance(powers, dict) else powers)


def _sizes_for(setting: dict, optimizer: str) -> dict:
    sizes = setting["batch_sizes"]
    if optimizer not in WITHOUT_MOMENTUM:
        return sizes
    return {k: sizes[k] for k in (next(iter(sizes)), "Full")}


def run(out: Path, setting: dict, seed: int) -> dict:
    """For each optimizer and batch size, the best final full-training-set loss of the step-size search (one
    reproduction seed per search: the three seeds are the reproduction's), its step size, and whether that step
    size is inside the searched grid."""
    best: dict[str, dict[str, float]] = {}
    best_lr: dict[str, dict[str, float]] = {}
    interior: dict[str, dict[str, bool]] = {}
    for label, opt in OPTIMIZERS.items():
        best[label], best_lr[label], interior[label] = {}, {}, {}
        for size_label, size in _sizes_for(setting, label).items():
            sweep = {
                "kind": "lr_search",
                "seeds": [seed],
                "lr_powers": lr_powers_for(setting, label),
                "values": {"train.batch_size": [size]},
                "workers": setting["workers"],
                "executor": "process",
                "quiet": True,
            }
            folder = out / "sweeps" / label.replace("+", "_p").replace("-", "_m") / size_label
            result = run_sweep(_base(setting, opt, steps_for(setting, size_label), seed), sweep, folder)["results"][0]
            lrs = sorted(float(lr) for lr in result["scores"])
            best[label][size_label], best_lr[label][size_label] = result["best_score"], float(result["best_lr"])
            interior[label][size_label] = lrs[0] < float(result["best_lr"]) < lrs[-1]
    numbers: dict[str, Any] = {
        f"{label}_{size}": value for label, values in best.items() for size, value in values.items()
    }
    numbers.update({"steps": setting["steps"], "sequences": setting["data_options"].get("n_sequences")})
    numbers.update({"best": best, "best_lr": best_lr, "interior": interior})
    return numbers


def _log_ratio(a: float, b: float) -> float:
    """log(a / b), +∞ or −∞ where one side diverged (+∞) or reached zero, NaN where both did."""
    if 0 < a < math.inf and 0 < b < math.inf:
        return math.log(a / b)
    return math.inf if a > b else -math.inf if a < b else math.nan


def statistics(n: dict) -> dict[str, float]:
    """What the checks read from one seed's best losses L(optimizer, batch size), S the smallest batch size:

    - ``gap_growth``: (L(SGD)/L(Adam) in full batch) / (the same at S), both with momentum;
    - ``sign_over_normalized_S`` and ``..._Full``: L(sign)/L(normalized GD), both with momentum;
    - ``gap_closed``: the share of the SGD–Adam gap in log-loss that sign descent closes in full batch,
      log(L(SGD)/L(sign)) / log(L(SGD)/L(Adam)) (NaN where Adam is not below SGD);
    - ``normalized_over_sgd_<size>``: L(normalized GD)/L(SGD) at each batch size;
    - ``momentum_gain_<opt>_<size>``: L(without momentum)/L(with) for SGD and Adam at S and in full batch."""
    best, small = n["best"], next(iter(n["best"]["sgd+m"]))
    loss = lambda opt, size: best[opt][size] if best[opt][size] is not None else math.inf  # noqa: E731
    ratio = lambda a, b: math.exp(_log_ratio(a, b))  # noqa: E731  (exp keeps NaN, +∞ and −∞ → 0)
    gap = lambda size: ratio(loss("sgd+m", size), loss("adam", size))  # noqa: E731
    sgd_adam = _log_ratio(loss("sgd+m", "Full"), loss("adam", "Full"))
    stats = {
        "gap_growth": gap("Full") / gap(small) if math.isfinite(gap(small)) else math.nan,
        "sign_over_normalized_S": ratio(loss("sign+m", small), loss("normalized+m", small)),
        "sign_over_normalized_Full": ratio(loss("sign+m", "Full"), loss("normalized+m", "Full")),
        "gap_closed": _log_ratio(loss("sgd+m", "Full"), loss("sign+m", "Full")) / sgd_adam
        if sgd_adam > 0
        else math.nan,
    }
    stats |= {f"normalized_over_sgd_{s}": ratio(loss("normalized+m", s), loss("sgd+m", s)) for s in best["sgd+m"]}
    for without, with_ in WITHOUT_MOMENTUM.items():
        for size in (small, "Full"):
            stats[f"momentum_gain_{with_}_{size}"] = ratio(loss(without, size), loss(with_, size))
    return stats


def checks(n: dict) -> list[Check]:
    """The pre-registered checks (claims/batch-size-sign-descent.toml), thresholds from the claims file."""
    t, s, small = thresholds(NAME), statistics(n), next(iter(n["best"]["sgd+m"]))
    grows, switch, closes = (
        t["gap-grows-with-batch-size"],
        t["sign-and-normalized-switch"],
        t["sign-closes-most-of-gap"],
    )
    normalized, momentum = t["normalized-improves-on-sgd"], t["momentum-helps-more-at-large-batch"]
    sizes = list(n["best"]["sgd+m"])
    below = [s[f"normalized_over_sgd_{k}"] for k in sizes]
    gains = {o: (s[f"momentum_gain_{o}_{small}"], s[f"momentum_gain_{o}_Full"]) for o in WITHOUT_MOMENTUM.values()}
    return [
        Check(
            f"the Adam–SGD gap grows with batch size: loss(SGD)/loss(Adam) in full batch over the same at {small}, "
            f"{s['gap_growth']:.3g} ≥ {grows['min_growth']:g}",
            s["gap_growth"] >= grows["min_growth"],
            "gap-grows-with-batch-size",
        ),
        Check(
            f"normalized GD beats sign descent at {small}, sign descent beats it in full batch: loss(sign)/"
            f"loss(normalized) {s['sign_over_normalized_S']:.3g} > {switch['min_ratio_small']:g} at {small}, "
            f"{s['sign_over_normalized_Full']:.3g} < {switch['max_ratio_full']:g} in full batch",
            s["sign_over_normalized_S"] > switch["min_ratio_small"]
            and s["sign_over_normalized_Full"] < switch["max_ratio_full"],
            "sign-and-normalized-switch",
        ),
        Check(
            f"sign descent closes most of the SGD–Adam gap in full batch: share of log(loss(SGD)/loss(Adam)) closed "
            f"{s['gap_closed']:.3g} ≥ {closes['min_share']:g} (SGD {n['sgd+m_Full']:.4g}, sign {n['sign+m_Full']:.4g}, "
            f"Adam {n['adam_Full']:.4g})",
            s["gap_closed"] >= closes["min_share"],
            "sign-closes-most-of-gap",
        ),
        Check(
            f"normalized GD improves on SGD at every batch size: loss(normalized)/loss(SGD) "
            f"{', '.join(f'{k} {v:.3g}' for k, v in zip(sizes, below))} < {normalized['max_ratio']:g}",
            all(v < normalized["max_ratio"] for v in below),
            "normalized-improves-on-sgd",
        ),
        Check(
            f"momentum helps more in full batch than at {small}: loss(−m)/loss(+m) "
            + ", ".join(f"{o} {a:.3g} → {b:.3g}" for o, (a, b) in gains.items())
            + f", each rising by a factor > {momentum['min_growth']:g}",
            all(b > momentum["min_growth"] * a for a, b in gains.values()),
            "momentum-helps-more-at-large-batch",
        ),
    ]


def figures(out: Path, per_seed: dict[int, dict]) -> None:
    colors = {label: f"C{i}" for i, label in enumerate(("sgd+m", "normalized+m", "sign+m", "adam"))}
    fig, ax = pyplot().subplots(figsize=(7, 4))
    for k, (seed, n) in enumerate(per_seed.items()):
        for label, color in colors.items():
            values = n["best"][label]
            ax.plot(
                list(values),
                [math.inf if v is None else v for v in values.values()],
                marker="o",
                color=color,
                alpha=0.8,
                ls=("-", "--", ":")[k % 3],
                label=f"{label} (seed {seed})",
            )
    ax.set_yscale("log"), ax.set_xlabel("batch size"), ax.set_ylabel("final training loss (best step size)")
    ax.set_title("Training loss against batch size, each optimizer at its best step size")
    ax.legend(fontsize=6, ncol=2)
    save_figure(fig, out / "batch_size.png")


register_preregistered(NAME, run, checks, figures)
