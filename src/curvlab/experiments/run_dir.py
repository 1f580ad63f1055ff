"""A run directory: the resolved config, the records, the latest checkpoint and the status, each file
replaced atomically so that a killed run can always be resumed from what is on disk."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from curvlab.errors import MissingInputFile
from curvlab.files import atomic_write, atomic_write_text
from curvlab.monitor.records import RECORDS_FILE

CHECKPOINT, STATUS, CONFIG = "checkpoint.pt", "status.json", "config.toml"


def create(run_dir: Path, config_toml: str) -> None:
    """Make a new run directory holding the resolved config; refuse one that already holds a run."""
    if (run_dir / RECORDS_FILE).exists() or (run_dir / CHECKPOINT).exists():
        raise FileExistsError(
            f"run_dir: {run_dir} already holds a run; resume it with --resume or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG, config_toml)


def config_path(run_dir: Path) -> Path:
    """The run's config file; a folder without one is not a run directory."""
    path = run_dir / CONFIG
    if not path.exists():
        raise MissingInputFile(f"run_dir: {run_dir} holds no {CONFIG}; is it a curvlab run directory?")
    return path


def read_status(run_dir: str | Path) -> dict:
    """``{"status": "running" | "finished" | "diverged", "step": …, "final_loss": …}``; {} before any."""
    path = Path(run_dir) / STATUS
    return json.loads(path.read_text()) if path.exists() else {}


def write_status(run_dir: Path, status: str, step: int, loss: float = math.nan) -> None:
    payload = {"status": status, "step": step, "final_loss": loss if math.isfinite(loss) else None}
    atomic_write_text(run_dir / STATUS, json.dumps(payload))


def save_checkpoint(run_dir: Path, state: dict) -> None:
    atomic_write(run_dir / CHECKPOINT, lambda tmp: torch.save(state, tmp))


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The latest checkpoint, or None when the run was killed before its first one."""
    path = run_dir / CHECKPOINT
    return torch.load(path, weights_only=False) if path.exists() else None
