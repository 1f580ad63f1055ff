"""A run directory: the resolved config, the records, the latest checkpoint and the status, each file
replaced atomically so that a killed run can always be resumed from what is on disk.

Opening a run directory trusts none of its files to run code: the config is parsed as TOML, records and status as
JSON, and checkpoints load with ``torch.load(weights_only=True)``, which builds tensors and plain data only (and the
few classes ``_checkpoint_classes`` allows); a checkpoint that asks for anything else is refused with
:class:`UnsafeCheckpoint` before any of it runs."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import torch

from curvlab.errors import InputError, MissingInputFile
from curvlab.files import atomic_write, atomic_write_text
from curvlab.geometry.assumptions import AssumptionTracker, L0L1Fit
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


def read_status(run_dir: str | Path) -> dict[str, Any]:
    """``{"status": "running" | "finished" | "diverged", "step": …, "final_loss": …}``; {} before any."""
    path = Path(run_dir) / STATUS
    return json.loads(path.read_text()) if path.exists() else {}


def write_status(run_dir: Path, status: str, step: int, loss: float = math.nan) -> None:
    payload = {"status": status, "step": step, "final_loss": loss if math.isfinite(loss) else None}
    atomic_write_text(run_dir / STATUS, json.dumps(payload))


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    atomic_write(run_dir / CHECKPOINT, lambda tmp: torch.save(state, tmp))


class UnsafeCheckpoint(InputError):
    """A checkpoint that holds more than tensors and plain data: loading it could run code, so it is not loaded."""


def _checkpoint_classes() -> list[Any]:
    """The classes beside tensors and plain data that a checkpoint may hold: curvlab's own running sums (plain
    attributes, restored without running any of their code), and NumPy arrays (the NumPy RNG state of checkpoints
    written before it was stored as a tensor)."""

    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return [AssumptionTracker, L0L1Fit, np.ndarray, np.dtype, _reconstruct, type(np.dtype(np.uint32))]


def load_untrusted(source: Path | BinaryIO, name: str | None = None) -> Any:
    """``torch.load`` of a file from a run directory (or of one entry of it, ``name`` saying which), which may come
    from anyone: tensors, plain data and ``_checkpoint_classes()`` only; anything else is refused with
    :class:`UnsafeCheckpoint`, naming it."""
    try:
        with torch.serialization.safe_globals(_checkpoint_classes()):
            return torch.load(source, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise UnsafeCheckpoint(
            f"checkpoint: {name or source} holds more than tensors and plain data ({reason}); it is not loaded, "
            "since loading it could run code. Open only run directories you trust with torch.load(..., "
            "weights_only=False)"
        ) from None


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The latest checkpoint, or None when the run was killed before its first one."""
    path = run_dir / CHECKPOINT
    return load_untrusted(path) if path.exists() else None
