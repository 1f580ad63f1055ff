"""Tidy records: one JSON line per measurement (step, epoch, metric, value, plus context), appended
and flushed per record so an interrupted run loses nothing; ``load_records`` gives a DataFrame."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

RECORDS_FILE = "records.jsonl"


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: they are written as null (and read back as NaN by pandas)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RecordWriter:
    """Appends records to ``run_dir/records.jsonl``; each write is flushed and fsync'ed."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = False):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / RECORDS_FILE
        self._file = open(self.path, "a", encoding="utf-8")
        self._tb = _tensorboard_writer(self.run_dir) if tensorboard else None

    def reopen(self) -> None:
        """Reopen the file (after it was replaced on disk, e.g. truncated for a resume)."""
        self._file.close()
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, step: int, epoch: int, metric: str, value: float, **context: Any) -> dict:
        record = {"step": step, "epoch": epoch, "metric": metric, "value": _clean(float(value)), **{k: _clean(v) for k, v in context.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        if self._tb is not None and record["value"] is not None:
            self._tb.add_scalar(_tb_tag(metric, context), record["value"], step)
        return record

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _tb_tag(metric: str, context: dict) -> str:
    for key in ("direction", "optimizer", "group", "index"):
        if key in context:
            return f"{metric}/{context[key]}"
    return metric


def _tensorboard_writer(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError("tensorboard: the TensorBoard output needs the tensorboard package: pip install tensorboard") from err
    return SummaryWriter(str(run_dir / "tensorboard"))


def read_records(run_dir: str | Path) -> list[dict]:
    """The records of a run as a list of dicts; a torn last line (a run killed mid-write) is skipped."""
    path = Path(run_dir) / RECORDS_FILE
    if not path.exists():
        raise FileNotFoundError(f"run_dir: no {RECORDS_FILE} in {run_dir}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def load_records(run_dir: str | Path):
    """The records of a run as a pandas DataFrame (one row per measurement)."""
    import pandas as pd

    return pd.DataFrame(read_records(run_dir))
