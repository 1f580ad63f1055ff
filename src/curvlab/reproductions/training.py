"""Shared helpers for the training-based reproductions: run a config dict, read its records."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import median
from typing import Any, TypeVar

from curvlab.experiments import start_run
from curvlab.experiments.sweep import worker_pool
from curvlab.monitor import load_records

Run = TypeVar("Run")


def run_config(config: dict, run_dir: Path) -> Any:
    """A fresh run of ``config`` in ``run_dir`` (replaced if it exists); returns its records DataFrame."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    start_run(config, run_dir, quiet=True)
    return load_records(run_dir)


def series(df: Any, metric: str) -> tuple[list[int], list[float]]:
    rows = df[df.metric == metric].dropna(subset=["value"]).sort_values("step")
    return rows.step.astype(int).tolist(), rows.value.astype(float).tolist()


def model_options(setting: dict) -> dict:
    """The model builder's options a setting names: an MLP's width, depth and activation; none for other models."""
    if setting["model"] != "mlp":
        return {}
    return {"width": setting["width"], "depth": setting["depth"], "activation": setting["activation"]}


def full_batch_config(name: str, setting: dict, optimizer: dict, seed: int) -> dict:
    """A full-batch run of a pre-registered setting: its data (``data``, ``subset``, ``data_options``), model
    (``model``, ``width``, ``depth``, ``activation``, ``init_scale``), loss, ``steps``, and the sharpness every
    ``sharpness_every`` steps (an odd interval samples both parities of a period-two oscillation)."""
    model = {"name": setting["model"], "init_scale": setting.get("init_scale", 1.0), **model_options(setting)}
    data = {"name": setting["data"], **setting.get("data_options", {})}
    if setting.get("subset"):
        data["subset"] = setting["subset"]
    steps = setting["steps"]
    return {
        "name": name,
        "seed": seed,
        "data": data,
        "model": model,
        "loss": {"name": setting["loss"]},
        "optimizer": optimizer,
        "train": {"batch_size": "full", "steps": steps, "checkpoint_every": steps},
        "monitor": {"metrics": ["sharpness"], "schedules": {"sharpness": setting["sharpness_every"]}},
    }


def final_value(values: Sequence[float | None]) -> float:
    """The last value of a series; +∞ when the series is empty or ends non-finite (a diverged run, definitions §9)."""
    value = values[-1] if values else None
    return value if value is not None and math.isfinite(value) else math.inf


def tail_median(values: list[float], fraction: float = 0.5) -> float:
    return median(values[int(len(values) * (1 - fraction)) :])


def seed_colors(per_seed: dict[int, Any]) -> dict[int, str]:
    """One matplotlib colour per seed, the same in every figure of a reproduction."""
    return {seed: f"C{i}" for i, seed in enumerate(per_seed)}


def widened_grid(
    run: Callable[[float], Run], score: Callable[[Run], float], grid: tuple[float, ...], factor: float, widenings: int
) -> dict[float, Run]:
    """``run(η)`` for every η of ``grid``, then, while the best score (lowest) is at an end of the grid, one more η
    beyond that end (× or ÷ ``factor``), at most ``widenings`` times: a tuned baseline's best η must be interior.
    Returns every run by η."""
    runs = {lr: run(lr) for lr in grid}
    for _ in range(widenings):
        lrs = sorted(runs)
        best = min(lrs, key=lambda lr: score(runs[lr]))
        if best == lrs[0]:
            runs[lrs[0] / factor] = run(lrs[0] / factor)
        elif best == lrs[-1]:
            runs[lrs[-1] * factor] = run(lrs[-1] * factor)
        else:
            break
    return dict(sorted(runs.items()))


def in_parallel(jobs: list[tuple[Callable[..., Any], tuple]], workers: int = 2) -> list[Any]:
    """``[fn(*args) for fn, args in jobs]``, run at once on the sweeps' pool of ``workers`` processes of one torch
    thread each (independent runs of small models use two cores better so than as two threads in one process); in
    order. Each ``fn`` must be a module-level function."""
    pool = worker_pool(workers)
    return [future.result() for future in [pool.submit(fn, *args) for fn, args in jobs]]
