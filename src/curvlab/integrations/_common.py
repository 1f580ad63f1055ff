"""What both trainer callbacks share: checking their arguments when made, and reading the Monitor's new records as
named scalars for a trainer's logger."""

from __future__ import annotations

import inspect
from typing import Any

from curvlab.core.objective import Objective
from curvlab.errors import InputError, InputTypeError
from curvlab.monitor.metrics import make_metric, refuse_without_loss_fn
from curvlab.monitor.records import logger_name

TRAINER_GROUP = "trainer"  # records of what the trainer itself logged (its loss, its gradient norm)


class ScalarCursor:
    """Reads the records a Monitor added since the last call, as ``{"curvlab/<name>": latest value}``."""

    def __init__(self, monitor: Any):
        self.monitor, self.seen = monitor, len(monitor.records)

    def new_scalars(self) -> dict[str, float]:
        rows = self.monitor.records[self.seen :]
        self.seen = len(self.monitor.records)
        return {
            logger_name(r["metric"], r): r["value"]
            for r in rows
            if not r["metric"].startswith("cost_") and r.get("group") != TRAINER_GROUP  # the trainer has those
        }


def check_callback_arguments(
    data: Any, objective_options: dict[str, Any], loss_fn: Any = None, metrics: Any = None
) -> None:
    """What a callback can check when it is made, rather than when ``fit`` starts: the measurement set is not a
    string, every extra option is one the Objective takes, and without ``loss_fn`` no metric needs it."""
    if isinstance(data, (str, bytes)):
        raise InputTypeError(
            f"data: expected the measurement set (a list of batches, an (inputs, targets) pair, a Dataset or a "
            f"DataLoader), got a {type(data).__name__}"
        )
    known = set(inspect.signature(Objective.__init__).parameters) - {"self", "model", "loss_fn", "data"}
    unknown = sorted(set(objective_options) - known)
    if unknown:
        raise InputError(
            f"{', '.join(unknown)}: not an option of the callback or of the Objective; the callback takes data, "
            "loss_fn, metrics, budget, run_dir, tensorboard, wandb, autocast and the Objective's options "
            f"{sorted(known)}"
        )
    if loss_fn is None and metrics is not None and not isinstance(metrics, str):  # a string: the Monitor says so
        refuse_without_loss_fn([make_metric(m) for m in metrics])
