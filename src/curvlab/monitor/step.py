"""What a metric sees of one Monitor call: the step's facts (:class:`StepInfo`), the per-step batch
evaluation, and the Monitor's services (:class:`MonitorView`). Metrics depend on this module, the Monitor
on the metrics: no import runs the other way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import Tensor

from curvlab.core.objective import Objective


@dataclass
class BatchEvaluation:
    """f and ∇f at x_{t−1} and x_t on the step's own minibatch (the same-minibatch rule, definitions §4)."""

    f_old: float
    g_old: Tensor
    f_new: float
    g_new: Tensor


@dataclass
class StepInfo:
    """The step a measurement belongs to: its index, epoch, x_{t−1} and x_t, batch, random-scaling factor and
    loss; ``cache`` shares per-step results (the batch evaluation) between the metrics of one call."""

    step: int
    epoch: int
    epoch_end: bool
    x_prev: Tensor
    x_now: Tensor
    batch: Any
    scale: float
    loss: Any = None
    cache: dict = field(default_factory=dict)


class MonitorView(Protocol):
    """The Monitor as its metrics see it."""

    objective: Objective
    optimizer: Any
    metrics: Sequence[Any]

    @property
    def prev_update(self) -> Tensor | None: ...

    def batch_evaluation(self, info: StepInfo) -> BatchEvaluation | None: ...
