"""Tidy records: one JSON line per measurement (step, epoch, metric, value, plus context), appended
and flushed after every step so an interrupted run loses nothing; ``load_records`` gives a DataFrame.
The same values can go to TensorBoard and Weights & Biases under the names :func:`scalar_name` gives."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from curvlab.errors import InputError, MissingInputFile
from curvlab.files import atomic_write_text

RECORDS_FILE = "records.jsonl"
_STRICT = json.JSONEncoder(allow_nan=False)  # raises on NaN/inf, which JSON cannot hold

if TYPE_CHECKING:  # pandas is imported where records are loaded, not when curvlab is
    import pandas as pd


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: they are written as null (and read back as NaN by pandas)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RecordWriter:
    """Appends records to ``run_dir/records.jsonl`` and sends their values to the scalar sinks.

    Records are written as they come and flushed to the operating system by :meth:`flush` (the Monitor
    calls it at the end of every step), so a killed process loses nothing already flushed; the file is
    fsync'ed at most once a second and on close. ``run_dir=None`` writes no file (sinks only).
    """

    def __init__(self, run_dir: str | Path | None, tensorboard: bool = False, wandb: bool | dict[str, Any] = False):
        if run_dir is None and tensorboard:
            raise InputError("tensorboard: the TensorBoard output goes to run_dir/tensorboard; give a run_dir")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._file = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.path = self.run_dir / RECORDS_FILE
            self._file = open(self.path, "a", encoding="utf-8")
        self._synced_at = time.monotonic()
        self._unsynced = False  # lines written since the last fsync (flushed to the OS or not)
        self._unflushed = False  # lines written since the last flush
        self.sinks: list[Any] = []
        if tensorboard and self.run_dir is not None:  # run_dir=None with tensorboard is refused above
            self.sinks.append(TensorBoardSink(self.run_dir))
        if wandb:
            self.sinks.append(WandbSink({} if wandb is True else dict(wandb)))

    def reopen(self) -> None:
        """Reopen the file (after it was replaced on disk, e.g. truncated for a resume)."""
        if self._file is not None:
            self._file.close()
            self._file = open(self.path, "a", encoding="utf-8")

    def write(self, step: int, epoch: int, metric: str, value: float, **context: Any) -> dict[str, Any]:
        """Append one record (``value`` and context values that are NaN or ±inf are written as null)."""
        record = {"step": step, "epoch": epoch, "metric": metric, "value": float(value), **context}
        self.write_record(record)
        return record

    def write_record(self, record: dict[str, Any]) -> None:
        """Append a record already made (``step``, ``epoch``, ``metric``, a float ``value``, context); it is not
        changed."""
        if self._file is not None:
            try:
                line = _STRICT.encode(record)  # the common case: every value finite, no cleaning pass
            except ValueError:  # a non-finite value: null, as JSON has no NaN
                line = _STRICT.encode({k: _clean(v) for k, v in record.items()})
            self._file.write(line + "\n")
            self._unsynced = self._unflushed = True
        value = record["value"]
        if self.sinks and math.isfinite(value):
            name = scalar_name(record["metric"], record)
            for sink in self.sinks:
                sink.add(record["step"], name, value)

    def flush(self) -> None:
        """Hand everything written so far to the operating system (and to the sinks); fsync once a second."""
        if self._file is not None and self._unsynced:
            if self._unflushed:
                self._file.flush()
                self._unflushed = False
            if time.monotonic() - self._synced_at > 1.0:
                os.fsync(self._file.fileno())
                self._synced_at, self._unsynced = time.monotonic(), False
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        """Flush, fsync and close; closing twice is harmless."""
        if self._file is not None and self._file.closed:
            return
        self.flush()
        if self._file is not None:
            os.fsync(self._file.fileno())
            self._file.close()
        for sink in self.sinks:
            sink.close()


LOGGER_PREFIX = "curvlab/"  # names in loggers curvlab shares with the user's own scalars (W&B, a trainer's)


def logger_name(metric: str, context: dict[str, Any]) -> str:
    """The name under which curvlab sends a record to someone else's logger (W&B, a trainer's loggers)."""
    return LOGGER_PREFIX + scalar_name(metric, context)


def scalar_name(metric: str, context: dict[str, Any]) -> str:
    """The name a record's value takes in scalar loggers (TensorBoard, W&B, a trainer's logger):
    the metric, then the context entry that tells its series apart (``sharpness/1``, ``cost_seconds/trace``)."""
    for key in ("direction", "optimizer", "loss", "group", "index"):
        if key in context and not (key == "group" and not metric.startswith("cost_")):
            return f"{metric}/{context[key]}"
    return metric


class TensorBoardSink:
    """Scalars to ``run_dir/tensorboard`` (needs the tensorboard package)."""

    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "tensorboard: the TensorBoard output needs the tensorboard package: pip install tensorboard"
            ) from err
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def add(self, step: int, name: str, value: float) -> None:
        self.writer.add_scalar(name, value, step)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """Scalars to Weights & Biases as ``curvlab/<name>`` against their own step axis ``curvlab/step``, so
    they never clash with the steps a training script logs itself. Uses the active run, else starts one
    with ``init_args`` (and finishes only a run it started)."""

    def __init__(self, init_args: dict[str, Any]):
        try:
            import wandb
        except ImportError as err:
            raise ImportError("wandb: the Weights & Biases output needs the wandb package: pip install wandb") from err
        self.owned = wandb.run is None
        self.run = cast(Any, wandb.init(**init_args) if self.owned else wandb.run)  # wandb's stubs: Run | None
        self.run.define_metric(LOGGER_PREFIX + "step")
        self.run.define_metric(LOGGER_PREFIX + "*", step_metric=LOGGER_PREFIX + "step")
        self.pending: dict[int, dict[str, float]] = {}

    def add(self, step: int, name: str, value: float) -> None:
        self.pending.setdefault(step, {})[LOGGER_PREFIX + name] = value

    def flush(self) -> None:
        for step, values in sorted(self.pending.items()):
            self.run.log({LOGGER_PREFIX + "step": step, **values})
        self.pending.clear()

    def close(self) -> None:
        self.flush()
        if self.owned:
            self.run.finish()


def read_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run as a list of dicts; a torn last line (a run killed mid-write) is skipped."""
    path = Path(run_dir) / RECORDS_FILE
    if not path.exists():
        raise MissingInputFile(f"run_dir: no {RECORDS_FILE} in {run_dir}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def load_records(run_dir: str | Path) -> pd.DataFrame:
    """The records of a run as a pandas DataFrame (one row per measurement)."""
    import pandas as pd

    return pd.DataFrame(read_records(run_dir))


def truncate_records(run_dir: str | Path, step: int) -> None:
    """Keep the records of steps ≤ ``step`` (those written before a checkpoint at ``step``), atomically."""
    path = Path(run_dir) / RECORDS_FILE
    if path.exists():
        kept = [r for r in read_records(run_dir) if r["step"] <= step]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
