"""One run: config → run directory with the resolved config, records, checkpoints and status.

Resumable: a checkpoint (model, optimizer, schedule, Monitor, every RNG and the data order) is written
atomically every ``train.checkpoint_every`` steps and at the end; ``resume`` drops the records of
steps after the checkpoint (they will be measured again) and continues bit for bit. Divergence: the
first non-finite training loss ends the run, marked diverged, with every record kept.

The jobs live apart: the run directory's files in :mod:`curvlab.experiments.run_dir`, the training loop in
:mod:`curvlab.experiments.training`, the process group in :mod:`curvlab.distributed`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from curvlab.distributed import barrier, finish, join_process_group, rank
from curvlab.experiments import run_dir as files
from curvlab.experiments.config import load_config, to_toml, validate
from curvlab.experiments.run_dir import read_status
from curvlab.experiments.training import RunResult, Trainer

__all__ = ["RunResult", "read_status", "resume_run", "start_run"]


def start_run(config: dict[str, Any] | str | Path, run_dir: str | Path, quiet: bool = False) -> RunResult:
    """Start a new run in an empty (or new) ``run_dir``."""
    config = load_config(config) if isinstance(config, (str, Path)) else validate(config)
    run_dir = Path(run_dir)
    join_process_group()
    if rank() == 0:
        files.create(run_dir, to_toml(config))
    barrier()
    try:
        return Trainer(config, run_dir, quiet or rank() != 0).train()
    finally:
        finish()


def resume_run(run_dir: str | Path, quiet: bool = False) -> RunResult:
    """Continue an interrupted run from its last checkpoint, using only what the run directory holds."""
    run_dir = Path(run_dir)
    config_path = files.config_path(run_dir)
    status = read_status(run_dir)
    if status.get("status") in ("finished", "diverged"):
        return RunResult(run_dir, status["status"], status["step"], status.get("final_loss", math.nan))
    config = load_config(config_path)
    join_process_group()
    try:
        return Trainer(config, run_dir, quiet or rank() != 0).train(resume=True)
    finally:
        finish()
