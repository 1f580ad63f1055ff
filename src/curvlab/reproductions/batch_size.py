"""Reproduction 5: batch size and sign descent (Kunstner et al. 2023, Fig. 3–7), with the
paper's protocol: step sizes grid-searched per optimizer and batch size (powers of 10, then half
powers; 3 seeds; the max over seeds of the final training loss; diverged = +∞). Not yet pre-registered: its
setting is FULL below, changed by scales.toml at the quick and paper scales."""

from __future__ import annotations

from pathlib import Path

from curvlab.experiments.config import validate
from curvlab.experiments.sweep import run_sweep
from curvlab.reproductions.base import Check, Reproduction, pyplot, register, save_figure

OPTIMIZERS = {
    "sgd+m": {"name": "heavy_ball", "momentum": 0.9},
    "sign+m": {"name": "sign", "momentum": 0.9},
    "normalized+m": {"name": "normalized_gd", "momentum": 0.9},
    "adam": {"name": "adam"},
    "sgd-m": {"name": "heavy_ball", "momentum": 0.0},
    "sign-m": {"name": "sign", "momentum": 0.0},
}
FULL = {  # the full setting (not yet pre-registered); scales.toml changes it for the quick and paper scales
    "data": "kjv",
    "data_options": {"level": "word", "vocab_size": 500, "context": 32, "n_sequences": 64},
    "model": "transformer",
    "model_options": {"size": "tiny"},
    "batch_sizes": {"S": 8, "M": 16, "L": 32, "Full": "full"},
    "steps": 60,  # per run: one number, or one per batch-size label (Kunstner et al.'s Table 1)
    "lr_powers": [-3, -2, -1, 0],
    "workers": 2,
}


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


def run(out: Path, setting: dict, seed: int) -> dict:
    """For each optimizer and batch size, the best final full-training-set loss of the step-size search (one
    reproduction seed per search: the three seeds are the reproduction's); without momentum, the smallest and the
    full batch only."""
    s = {**FULL, **{k: v for k, v in setting.items() if k != "scale"}}
    sizes = s["batch_sizes"]
    best: dict[str, dict[str, float]] = {}
    for label, opt in OPTIMIZERS.items():
        use = sizes if not label.endswith("-m") else {k: sizes[k] for k in (next(iter(sizes)), "Full")}
        best[label] = {}
        for size_label, size in use.items():
            sweep = {
                "kind": "lr_search",
                "seeds": [seed],
                "lr_powers": s["lr_powers"],
                "values": {"train.batch_size": [size]},
                "workers": s["workers"],
                "executor": "process",
                "quiet": True,
            }
            folder = out / "sweeps" / label.replace("+", "_p").replace("-", "_m") / size_label
            summary = run_sweep(_base(s, opt, steps_for(s, size_label), seed), sweep, folder)
            best[label][size_label] = summary["results"][0]["best_score"]
    numbers = {f"{label}_{size}": value for label, values in best.items() for size, value in values.items()}
    numbers.update({"steps": s["steps"], "sequences": s["data_options"].get("n_sequences"), "best": best})
    return numbers


def figures(out: Path, per_seed: dict[int, dict]) -> None:
    colors = {label: f"C{i}" for i, label in enumerate(("sgd+m", "normalized+m", "sign+m", "adam"))}
    fig, ax = pyplot().subplots(figsize=(7, 4))
    for k, (seed, n) in enumerate(per_seed.items()):
        for label, color in colors.items():
            values = n["best"][label]
            ax.plot(
                list(values),
                list(values.values()),
                marker="o",
                color=color,
                alpha=0.8,
                ls=("-", "--", ":")[k % 3],
                label=f"{label} (seed {seed})",
            )
    ax.set_yscale("log"), ax.set_xlabel("batch size"), ax.set_ylabel("final training loss (best step size)")
    ax.set_title("The Adam–SGD gap grows with batch size"), ax.legend(fontsize=6, ncol=2)
    save_figure(fig, out / "batch_size.png")


def checks(n: dict) -> list[Check]:
    gap = lambda size: n[f"sgd+m_{size}"] / n[f"adam_{size}"]  # noqa: E731
    at_small = {o: n[f"{o}_S"] for o in ("sgd+m", "sign+m", "normalized+m", "adam")}
    helps = lambda o, size: n[f"{o}-m_{size}"] / n[f"{o}+m_{size}"]  # noqa: E731
    return [
        Check(
            f"the Adam–SGD gap grows with batch size: loss(SGD)/loss(Adam) {gap('S'):.3g} at S < {gap('Full'):.3g} in "
            "full batch",
            gap("Full") > gap("S"),
        ),
        Check(
            f"sign descent is worst at small batch: {', '.join(f'{k} {v:.4g}' for k, v in at_small.items())}",
            max(at_small, key=at_small.get) == "sign+m",
        ),
        Check(
            f"and close to Adam in full batch: sign {n['sign+m_Full']:.4g} ≤ 1.1 × Adam {n['adam_Full']:.4g}",
            n["sign+m_Full"] <= 1.1 * n["adam_Full"],
        ),
        Check(
            f"normalized GD in between in full batch: sign {n['sign+m_Full']:.4g} ≤ normalized "
            f"{n['normalized+m_Full']:.4g} ≤ SGD {n['sgd+m_Full']:.4g}",
            n["sign+m_Full"] <= n["normalized+m_Full"] <= n["sgd+m_Full"],
        ),
        Check(
            f"momentum helps more at large batch: loss(−m)/loss(+m) SGD {helps('sgd', 'S'):.3g} → "
            f"{helps('sgd', 'Full'):.3g}, sign {helps('sign', 'S'):.3g} → {helps('sign', 'Full'):.3g}",
            helps("sgd", "Full") > helps("sgd", "S") and helps("sign", "Full") > helps("sign", "S"),
        ),
    ]


register(
    Reproduction(
        name="batch-size-sign-descent",
        claim="On a transformer LM the Adam–SGD gap grows with batch size; sign descent is worst at small batch and "
        "close to Adam in full batch; "
        "normalized GD lies in between; momentum helps more at large batch.",
        source="Kunstner et al. 2023 Fig. 3–7",
        setting="tiny causal transformer (2×64) on word-level King James Bible (vocabulary 500, 64 sequences of 32); "
        f"batch 8, 16, 32 and full (1/8, 1/4, 1/2 and all of the data); {FULL['steps']} steps each; step size per "
        "optimizer and batch size by definitions §9's grid search (10^-3…10^0, "
        "then half powers) on the final full-training-set loss, run once per reproduction seed (the paper takes "
        "the max over 3 seeds inside each search; here each of the 3 seeds is a separate verdict)",
        run=run,
        checks=checks,
        figures=figures,
        chosen_after_first_look=True,
    )
)
