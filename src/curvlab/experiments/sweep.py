"""Sweeps (definitions §9): Cartesian grids, the learning-rate grid search and batch-size ladders, run on a
local process pool; resumable (finished or diverged runs are never run again).

A sweep config is a run config plus a ``[sweep]`` section:

    [sweep]
    kind = "lr_search"          # "grid" | "lr_search" | "batch_ladder"
    seeds = [0, 1, 2]
    lr_powers = [-3, -2, -1, 0] # lr_search: 10^p first, then half powers around the best
    values = { "optimizer.name" = ["sgd", "adam"] }      # grid: any dotted config keys (× seeds)
    batch_sizes = [32, 128, "full"]                      # batch_ladder, with epochs per size
    epochs = [1, 4, 16]
    workers = 2                 # processes (default: the machine's cores)
    executor = "process"        # or "ray" (the ray extra): a local Ray instance, or ray_address = "…"
"""

from __future__ import annotations

import atexit
import copy
import functools
import itertools
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from curvlab.experiments.config import ConfigError, read_toml, validate
from curvlab.experiments.run import read_status, resume_run, start_run
from curvlab.linalg.progress import progress_bar
from curvlab.monitor.records import read_records

KINDS = ("grid", "lr_search", "batch_ladder")
EXECUTORS = ("process", "ray")
SWEEP_KEYS = {"kind", "seeds", "lr_powers", "values", "batch_sizes", "epochs", "workers", "executor", "ray_address"}


def load_sweep(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(validated base run config, validated sweep section)."""
    raw = read_toml(path)
    sweep = raw.pop("sweep", None)
    if not isinstance(sweep, dict):
        raise ConfigError("config: sweep: a sweep config needs a [sweep] section")
    return validate(raw), _check_sweep(sweep)


def _check_sweep(s: dict[str, Any]) -> dict[str, Any]:
    unknown = set(s) - SWEEP_KEYS
    if unknown:
        raise ConfigError(f"config: sweep.{sorted(unknown)[0]}: unknown key; expected one of {sorted(SWEEP_KEYS)}")
    s = {"seeds": [0], "values": {}, "workers": os.cpu_count() or 1, "executor": "process", "ray_address": None, **s}
    if s["executor"] not in EXECUTORS:
        raise ConfigError(f"config: sweep.executor: expected one of {EXECUTORS}, got {s['executor']!r}")
    if s.get("kind") not in KINDS:
        raise ConfigError(f"config: sweep.kind: expected one of {KINDS}, got {s.get('kind')!r}")
    if not isinstance(s["seeds"], list) or not s["seeds"] or not all(isinstance(x, int) for x in s["seeds"]):
        raise ConfigError("config: sweep.seeds: expected a non-empty list of integers")
    if not isinstance(s["values"], dict) or not all(isinstance(v, list) and v for v in s["values"].values()):
        raise ConfigError("config: sweep.values: expected a table of dotted keys to non-empty lists")
    if s["kind"] == "lr_search" and not (isinstance(s.get("lr_powers"), list) and s["lr_powers"]):
        raise ConfigError('config: sweep.lr_powers: required for kind = "lr_search" (a list of powers of 10)')
    if s["kind"] == "batch_ladder":
        sizes, epochs = s.get("batch_sizes"), s.get("epochs")
        if not (isinstance(sizes, list) and isinstance(epochs, list) and len(sizes) == len(epochs) and sizes):
            raise ConfigError("config: sweep.batch_sizes: needs sweep.epochs of the same length")
    if isinstance(s["workers"], bool) or not isinstance(s["workers"], int) or s["workers"] < 1:
        raise ConfigError(f"config: sweep.workers: expected a positive integer, got {s['workers']!r}")
    return s


def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    section, _, key = dotted.rpartition(".")
    (config.setdefault(section, {}) if section else config)[key] = value


def _variant(base: dict[str, Any], settings: dict[str, Any], seed: int) -> dict[str, Any]:
    config = copy.deepcopy(base)
    for dotted, value in settings.items():
        _set(config, dotted, value)
    config["seed"] = seed
    label = "__".join(f"{k.split('.')[-1]}={v}" for k, v in settings.items())
    config["name"] = f"{base['name']}__{label}__seed={seed}" if label else f"{base['name']}__seed={seed}"
    try:
        return validate(config)
    except ConfigError as err:
        raise ConfigError(f"{err} (in sweep variant {config['name']})") from err


def _grid(settings: dict[str, Any]) -> list[dict[str, Any]]:
    keys = list(settings)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(settings[k] for k in keys))]


def _execute(configs: list[dict[str, Any]], sweep_dir: Path, sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """Run (or resume, or skip when done) every config; returns one summary row per run."""
    todo = [
        c for c in configs if read_status(sweep_dir / "runs" / c["name"]).get("status") not in ("finished", "diverged")
    ]
    dirs = [str(sweep_dir / "runs" / c["name"]) for c in todo]
    if todo and sweep["executor"] == "ray":
        _execute_on_ray(todo, dirs, sweep)
    elif todo and sweep["workers"] == 1:  # in this process: no start-up cost, caches shared across runs
        for config, run_dir in zip(todo, dirs):
            _run_in_process(config, run_dir)
    elif todo:
        bar = progress_bar(len(todo), "sweep runs", not sweep.get("quiet", True))
        pool = worker_pool(sweep["workers"])
        for future in as_completed([pool.submit(_run_one, c, d) for c, d in zip(todo, dirs)]):
            future.result()
            bar.update()
        bar.close()
    rows = []
    for c in configs:
        status = read_status(sweep_dir / "runs" / c["name"])
        loss = _final_training_loss(sweep_dir / "runs" / c["name"], status)
        rows.append(
            {
                "name": c["name"],
                "status": status.get("status"),
                "final_loss": math.inf if status.get("status") == "diverged" or loss is None else loss,
                "lr": c["optimizer"]["lr"],
                "seed": c["seed"],
                "batch_size": c["train"]["batch_size"],
                "steps": status.get("step"),
            }
        )
    return rows


_POOLS: dict[int, ProcessPoolExecutor] = {}


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """One process pool per worker count, of one torch thread per process, kept for the whole program: starting
    workers (importing torch, tokenising text) costs seconds, and a sweep calls this many times."""
    if workers not in _POOLS:
        _POOLS[workers] = ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"), initializer=torch.set_num_threads, initargs=(1,)
        )
        atexit.register(_POOLS[workers].shutdown)
    return _POOLS[workers]


def _execute_on_ray(configs: list[dict[str, Any]], dirs: list[str], sweep: dict[str, Any]) -> None:
    """One Ray task per run (one CPU each): a cluster at ``sweep.ray_address``, else a local instance.
    Run directories must be on storage every node sees."""
    try:
        import ray
    except ImportError as err:
        raise ConfigError("config: sweep.executor: 'ray' needs the ray package: pip install 'curvlab[ray]'") from err
    started = not ray.is_initialized()
    if started:
        ray.init(
            address=sweep["ray_address"],
            num_cpus=None if sweep["ray_address"] else sweep["workers"],
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        task = ray.remote(num_cpus=1)(_run_one)
        ray.get([task.remote(c, d) for c, d in zip(configs, dirs)])
    finally:
        if started:
            ray.shutdown()


def _final_training_loss(run_dir: Path, status: dict[str, Any]) -> float | None:
    """The loss on the whole training set at the end (a `loss_full` record at the last step) when the run
    measured it, else the last training-step loss (a minibatch's, noisy for small batches)."""
    full = (
        [r for r in read_records(run_dir) if r["metric"] == "loss_full" and r["step"] == status.get("step")]
        if status
        else []
    )
    return full[-1]["value"] if full else status.get("final_loss")


def _run_one(config: dict[str, Any], run_dir: str) -> None:
    torch.set_num_threads(1)  # one core per process: the pool parallelises over runs
    _run_in_process(config, run_dir)


def _run_in_process(config: dict[str, Any], run_dir: str) -> None:
    if (Path(run_dir) / "config.toml").exists():
        resume_run(run_dir, quiet=True)
    else:
        start_run(config, run_dir, quiet=True)


def run_sweep(base: dict[str, Any], sweep: dict[str, Any], sweep_dir: str | Path) -> dict[str, Any]:
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    kind, seeds, grid = sweep["kind"], sweep["seeds"], _grid(sweep["values"])
    if kind == "grid":
        rows = _execute([_variant(base, s, seed) for s in grid for seed in seeds], sweep_dir, sweep)
        summary = {"kind": kind, "runs": rows}
    elif kind == "lr_search":
        summary = _lr_search(base, sweep, grid, seeds, sweep_dir)
    else:
        summary = _ladder(base, sweep, grid, seeds, sweep_dir)
    (sweep_dir / "sweep.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _score(rows: list[dict[str, Any]]) -> float:
    """The max over seeds of the final training loss (diverged = +∞), definitions §9."""
    return float(max(r["final_loss"] for r in rows))


def _score_at(rows: list[dict[str, Any]], power: float) -> float:
    """The score of the runs at η = 10^power."""
    return _score([r for r in rows if math.isclose(r["lr"], 10.0**power)])


def _lr_search(
    base: dict[str, Any], sweep: dict[str, Any], grid: list[dict[str, Any]], seeds: list[int], sweep_dir: Path
) -> dict[str, Any]:
    """Per setting of the other swept keys: powers of 10, then half powers around the best. Every setting's
    first phase runs as one batch, then every second phase: the workers wait only twice."""

    def runs_for(powers_per_setting: list[list[float]]) -> list[list[dict[str, Any]]]:
        configs = [
            [_variant(base, {**settings, "optimizer.lr": 10.0**p}, seed) for p in powers for seed in seeds]
            for settings, powers in zip(grid, powers_per_setting)
        ]
        rows = iter(_execute([c for group in configs for c in group], sweep_dir, sweep))
        return [[next(rows) for _ in group] for group in configs]

    powers = sweep["lr_powers"]
    phase1 = runs_for([powers] * len(grid))
    best_powers = [min(powers, key=functools.partial(_score_at, rows)) for rows in phase1]
    phase2 = runs_for([[p - 0.5, p + 0.5] for p in best_powers])
    results = []
    for settings, rows in zip(grid, (a + b for a, b in zip(phase1, phase2))):
        by_lr: dict[float, list[dict[str, Any]]] = {}
        for r in rows:
            by_lr.setdefault(r["lr"], []).append(r)
        scores = {lr: _score(rs) for lr, rs in sorted(by_lr.items())}
        best = min(scores, key=lambda lr: scores[lr])
        results.append(
            {"settings": settings, "best_lr": best, "best_score": scores[best], "scores": scores, "runs": rows}
        )
    return {"kind": "lr_search", "results": results}


def _ladder(
    base: dict[str, Any], sweep: dict[str, Any], grid: list[dict[str, Any]], seeds: list[int], sweep_dir: Path
) -> dict[str, Any]:
    """Batch sizes with their epochs; the comparable-iteration table (Kunstner et al. 2023, Tables 1–2)."""
    table, all_rows = [], []
    for settings in grid:
        for size, epochs in zip(sweep["batch_sizes"], sweep["epochs"]):
            configs = [
                _variant(
                    base, {**settings, "train.batch_size": size, "train.epochs": epochs, "train.steps": None}, seed
                )
                for seed in seeds
            ]
            rows = _execute(configs, sweep_dir, sweep)
            all_rows += rows
            losses = sorted(r["final_loss"] for r in rows)
            table.append(
                {
                    "settings": settings,
                    "batch_size": size,
                    "epochs": epochs,
                    "iterations": rows[0]["steps"],
                    "median_final_loss": losses[len(losses) // 2],
                    "max_final_loss": losses[-1],
                }
            )
    return {"kind": "batch_ladder", "table": table, "runs": all_rows}
