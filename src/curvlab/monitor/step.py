"""What a metric sees of one Monitor call: the step's facts (:class:`StepInfo`), the per-step batch
evaluation, and the Monitor's services (:class:`MonitorView`). Metrics depend on this module, the Monitor
on the metrics: no import runs the other way."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from torch import Tensor

from curvlab.core.objective import Objective


class CannotMeasure(Exception):
    """Raised by a metric that cannot measure in this context (no batch was passed, the optimizer has no state
    yet...): the Monitor writes one record saying why, once per reason, instead of measuring nothing silently."""


NO_BATCH = (
    "no batch: monitor.step(loss, batch) was called without the step's batch (the Hugging Face Trainer's callbacks "
    "get none)"
)


class BatchEvaluation:
    """f and ∇f at x_{t−1} and x_t on the step's own minibatch (the same-minibatch rule, definitions §4), and f at
    x_{t−2} on it (the previous update's loss difference on a batch it did not see).

    Each point is evaluated when a metric first asks for it: the shadow optimizers need x_{t−1} only, and
    pay one gradient pass per step instead of two. ``passes`` and ``seconds`` say what was spent."""

    def __init__(
        self,
        evaluate: Callable[[Tensor], tuple[float, Tensor]],
        x_old: Tensor,
        x_new: Tensor,
        loss: Callable[[Tensor], float] | None = None,
        x_before: Tensor | None = None,
    ):
        self._evaluate, self._loss = evaluate, loss
        self._points = {"old": x_old, "new": x_new, "before": x_before}
        self._values: dict[str, Any] = {}
        self.seconds = 0.0

    @property
    def passes(self) -> int:
        return len(self._values)

    def _at(self, point: str) -> Any:
        if point not in self._values:
            t0 = time.perf_counter()
            x = self._points[point]
            assert x is not None and (point != "before" or self._loss is not None)  # asked only where they were given
            self._values[point] = self._evaluate(x) if point != "before" else cast(Callable[..., Any], self._loss)(x)
            self.seconds += time.perf_counter() - t0
        return self._values[point]

    @property
    def f_old(self) -> float:
        return cast(float, self._at("old")[0])

    @property
    def g_old(self) -> Tensor:
        return cast(Tensor, self._at("old")[1])

    @property
    def f_new(self) -> float:
        return cast(float, self._at("new")[0])

    @property
    def g_new(self) -> Tensor:
        return cast(Tensor, self._at("new")[1])

    @property
    def f_before(self) -> float | None:
        """f(x_{t−2}) on the step's batch; None when the Monitor does not keep x_{t−2}."""
        if self._points["before"] is None or self._loss is None:
            return None
        return cast(float, self._at("before"))


NO_UPDATE = (
    "no update: x_{t−1} was not taken (a measurement made on demand between budget-paced ones, which copy the "
    "parameters only at the steps they measure)"
)


@dataclass
class StepInfo:
    """The step a measurement belongs to: its index, epoch, x_{t−1} and x_t, batch, random-scaling factor,
    loss and the learning rate of the step before (``lr_prev``, for two-step stability); ``cache`` shares
    per-step results (the batch evaluation) between the metrics of one call. ``x_prev`` is None when the
    Monitor did not take x_{t−1} (a measurement made on demand, between budget-paced ones)."""

    step: int
    epoch: int
    epoch_end: bool
    x_prev: Tensor | None
    x_now: Tensor
    batch: Any
    scale: float
    loss: Any = None
    cache: dict[str, Any] = field(default_factory=dict)
    lr_prev: float | None = None  # η of the step before this one (None before the second step)

    @property
    def update(self) -> Tensor | None:
        """The last update x_t − x_{t−1}, or None when x_{t−1} was not taken."""
        return None if self.x_prev is None else self.x_now - self.x_prev

    def known_update(self) -> Tensor:
        """The last update x_t − x_{t−1}; raises :class:`CannotMeasure` when x_{t−1} was not taken."""
        if self.x_prev is None:
            raise CannotMeasure(NO_UPDATE)
        return self.x_now - self.x_prev


class MonitorView(Protocol):
    """The Monitor as its metrics see it (read-only: a metric reads these, never rebinds them)."""

    @property
    def objective(self) -> Objective: ...

    @property
    def optimizer(self) -> Any: ...

    @property
    def metrics(self) -> Sequence[Any]: ...

    @property
    def prev_update(self) -> Tensor | None: ...

    def batch_evaluation(self, info: StepInfo) -> BatchEvaluation | None: ...
