"""The Monitor: measures the geometry of training inside any ordinary PyTorch loop.

    monitor = Monitor(objective, optimizer, run_dir="runs/x")     # default: within 10% of the training time
    for epoch in range(epochs):
        for batch in loader:
            optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()
            monitor.step(loss, batch)          # after the optimizer step
        monitor.end_epoch()

With no metrics named, it records the step's own statistics (loss, gradient norm, update norm, learning
rate: no extra pass) and the Hessian's top eigenvalue with the optimizer's stability threshold, both at the
first step and then as often as a cost budget allows: all the time it spends stays within ``budget`` × the time
spent training (measured by its own clock between calls), the first measurement of each budgeted group aside,
unless its fixed per-step costs alone exceed that (it then says so in a record). Metrics with explicit schedules
run on them.

A numerical failure of a measurement (a NaN or ±inf loss, gradient or curvature product: a diverged run) never
raises into the training loop: the metric is recorded as non-finite with the reason, and the run is marked
diverged (``monitor.diverged``, one ``diverged`` record), as is a non-finite training loss passed to ``step``.
Programming errors still raise.

It never perturbs training: every evaluation runs through an Objective (model state, BatchNorm
statistics and RNG streams restored; parameters never written), shadow optimizers use their own
tensors, and the Monitor's own randomness has its own seeds. A run with a Monitor follows the same
trajectory, bit for bit, as one without.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

from torch import Tensor

from curvlab.checks import is_int
from curvlab.core.objective import Objective
from curvlab.distributed import rank, rank0_decides
from curvlab.errors import InputError, InputTypeError, NonFiniteError
from curvlab.monitor.metrics import METRICS, Metric, Sharpness, StepStats, make_metric, refuse_without_loss_fn
from curvlab.monitor.records import RecordWriter
from curvlab.monitor.schedules import Budgeted, CostClock, Never
from curvlab.monitor.schedules import budget as budget_schedule
from curvlab.monitor.snapshots import Snapshots
from curvlab.monitor.step import BatchEvaluation, CannotMeasure, StepInfo
from curvlab.optim.introspection import learning_rate


class Monitor:
    """Schedules measurements along training and writes tidy records (see module docs).

    Args:
        objective: the measurement set (an :class:`Objective` on the training set or a subset).
        optimizer: the optimizer (or tuner / wrapper) being used; read for learning rates, the
            stability threshold, preconditioners, momentum and random-scaling factors.
        metrics: names (``curvlab list`` shows them) or Metric objects with their own schedules; None =
            the default set: ``StepStats()`` every step and ``Sharpness(schedule=budget())``.
        run_dir: where ``records.jsonl`` is appended; None keeps records in memory only. Under
            torch.distributed only rank 0 writes; every rank keeps the same records in memory.
        reset: "epoch" (running sums and windows restart every epoch), "never", or an int window.
        budget: everything the Monitor spends (per-step statistics, snapshots, measurements on any schedule,
            writing and flushing records) counts against ``budget`` × the training time between its calls;
            budget-scheduled metrics run only in what the rest leaves (``overhead`` is the total over training).
        tensorboard: also send every scalar to TensorBoard (``run_dir/tensorboard``).
        wandb: also send every scalar to Weights & Biases (the active ``wandb.run``, else a new one; True or a
            dict of ``wandb.init`` arguments).
        context: extra fields written with every record (e.g. a run name, a seed).
    """

    def __init__(
        self,
        objective: Objective,
        optimizer: Any,
        metrics: Iterable[Any] | None = None,
        run_dir: str | Path | None = None,
        *,
        budget: float = 0.1,
        reset: str | int = "epoch",
        tensorboard: bool = False,
        wandb: bool | dict[str, Any] = False,
        context: dict[str, Any] | None = None,
        start_step: int = 0,
        start_epoch: int = 0,
        writer: RecordWriter | None = None,
    ):
        if not isinstance(objective, Objective):
            raise InputTypeError(f"objective: expected a curvlab.Objective, got {type(objective).__name__}")
        if not hasattr(optimizer, "param_groups"):
            raise InputTypeError(f"optimizer: expected an optimizer with param_groups, got {type(optimizer).__name__}")
        if reset not in ("epoch", "never") and not (is_int(reset) and reset >= 1):
            raise InputError(f"reset: expected 'epoch', 'never' or a positive window length, got {reset!r}")
        self.objective = objective
        self.optimizer = optimizer
        if isinstance(metrics, str):
            raise InputTypeError(
                "metrics: expected a list of names or Metric objects, got a string; write [" + repr(metrics) + "]"
            )
        self.metrics: list[Metric] = default_metrics() if metrics is None else [make_metric(m) for m in metrics]
        if objective.loss_fn is None:
            refuse_without_loss_fn(self.metrics)
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise InputError(f"metrics: each metric group once, got {names}")
        unsharded = [m.name for m in self.metrics if objective.sharding is not None and not m.shards]
        if unsharded:
            supported = sorted(name for name, cls in METRICS.items() if cls.shards)
            raise InputError(
                f"metrics: {unsharded} cannot measure an FSDP2-sharded model (they need whole vectors or per-batch "
                f"evaluations on one process); on a ShardedObjective use {supported}"
            )
        if any(m.uses_curvature for m in self.metrics):
            _ = objective.hvp_engine  # "auto" checks double backward once, now: a one-time cost, not a measurement's
        self.clock = CostClock(budget)
        budgeted = [part for m in self.metrics for part in m.schedule.parts() if isinstance(part, Budgeted)]
        for part in budgeted:
            part.clock, part.share = self.clock, part.weight / sum(p.weight for p in budgeted)
        self.clock.budgeted = budgeted
        self.reset = reset
        if writer is None and (run_dir is not None or wandb) and rank() == 0:  # under torchrun only rank 0 writes
            writer = RecordWriter(run_dir, tensorboard, wandb)
        self.writer = writer
        self.records: list[dict[str, Any]] = []
        self.context = dict(context or {})
        self.step_count = start_step
        self._lr_prev: float | None = None  # η of the step before the last (two-step stability)
        self._lr_now: float | None = None  # η of the last step
        self.epoch = start_epoch
        keeps_before = any(m.uses_previous_update for m in self.metrics)  # else two copies of x, not three
        self.snapshots = Snapshots(objective.parameters_vector, start_step, keeps_before)
        self.last_batch: Any = None
        self.n_measure = objective.count()
        self._observers = [m for m in self.metrics if type(m).observe is not Metric.observe]
        # every step reads x_{t−1} when something may run at any step; budget-paced metrics can wait one step
        paced = all(isinstance(part, (Budgeted, Never)) for m in self.metrics for part in m.schedule.parts())
        self._snapshot_every_step = keeps_before or bool(self._observers) or not paced
        self._all_paced = paced and bool(budgeted)
        self._next_look = 0.0  # with every metric budget-paced: no schedule is tested before this training time
        self._deferred: dict[str, str] = {}  # due at the last step, whose x_{t−1} had not been taken
        self._kinds = [sorted({part.kind for part in m.schedule.parts()}) for m in self.metrics]
        self._context: dict[str, Any] | None = (
            None  # the fields every record of this call carries (made at its first record)
        )
        self.divergence: str | None = None  # why the run is marked diverged (None while it is not)
        self._skipped: set[tuple[str, str]] = set()  # (metric, reason) already recorded as not measurable
        self._budget_said = False  # whether the "fixed costs exceed the budget" record was written
        self._say_budget = False  # rank 0's decision at this step to write it

    # ----- the two calls in a training loop --------------------------------------------------------
    def step(self, loss: Any = None, batch: Any = None) -> None:
        """Call once after every optimizer step, with the step's loss and batch (for the per-step metrics)."""
        self.clock.enter()
        try:
            self.step_count += 1
            self._lr_prev, self._lr_now = self._lr_now, learning_rate(self.optimizer)
            self._context = None
            self.last_batch = batch
            loss = _detached(loss)
            nonfinite_loss = loss is not None and not math.isfinite(loss)
            due, any_nonfinite = self._agreed_schedule(self.step_count, False, nonfinite_loss)
            due = self._take_snapshots(due)
            if any_nonfinite:
                seen = f"({loss})" if nonfinite_loss else "on another process"
                self.mark_diverged(f"non-finite training loss {seen} at step {self.step_count}")
            if due or self._observers or self._say_budget:  # else nothing to do: the common, cheap case
                self._measure_step(due, loss, batch)
            if isinstance(self.reset, int) and self.step_count % self.reset == 0:
                self._reset_windows()
        finally:
            self._flush()
            self.clock.leave()

    def end_epoch(self) -> None:
        """Call at the end of every epoch: runs the epoch-end schedules and resets the windows."""
        self.clock.enter()
        try:
            self._context = None
            info = StepInfo(
                self.step_count,
                self.epoch,
                True,
                self.x_prev,
                self.x_now,
                self.last_batch,
                self._scale(),
                lr_prev=self._lr_prev,
            )
            due = self._agreed_schedule(self.step_count, True)[0]
            if due:
                self._run_due(info, due)
            self.epoch += 1
            if self.reset == "epoch":
                self._reset_windows()
        finally:
            self._flush()
            self.clock.leave()

    def add_record(self, metric: str, value: float, group: str, **context: Any) -> None:
        """Write a value measured outside the Monitor (a trainer's own log: its loss, its gradient norm before
        clipping) as a tidy row at the current step, with ``group`` saying where it came from. Writing it counts
        inside the Monitor, against its budget."""
        with self.charged():
            self._context = None
            self._write(self._info_now(), metric, float(value), {"group": group, **context})
            self._flush()

    def charged(self) -> contextlib.AbstractContextManager[None]:
        """A block whose time counts inside the Monitor, not as training (an integration sending the Monitor's
        records to its trainer's loggers)."""
        return self.clock.apart()

    @property
    def diverged(self) -> bool:
        """True once a training loss or a measurement was not finite (``divergence`` says which)."""
        return self.divergence is not None

    def mark_diverged(self, reason: str, step: int | None = None) -> None:
        """Mark the run diverged, once: a ``diverged`` record with ``reason`` (at ``step``, default the last step
        seen). Training state is not touched; whether training goes on is the caller's choice (``curvlab run``
        stops)."""
        if self.divergence is not None:
            return
        self.divergence = reason
        step = self.step_count if step is None else step
        with self.charged():
            info = self._info_now(step)
            self._write(info, "diverged", 1.0, {"group": "monitor", "reason": reason})
            self._flush()

    @property
    def prev_update(self) -> Tensor | None:
        """The update before the last one, x_{t−1} − x_{t−2} (None before two steps, and when no metric reads it:
        the Monitor then keeps x_t and x_{t−1} only)."""
        return self.snapshots.previous_update() if self.step_count >= 2 else None

    @property
    def overhead(self) -> float:
        """All the time spent inside the Monitor so far, as a fraction of the time spent training between its calls."""
        return self.clock.inside / self.clock.training if self.clock.training > 0 else float("nan")

    def measure(self, names: Iterable[str] | None = None) -> None:
        """Measure now, whatever the schedules say (e.g. at initialisation, before any step)."""
        self.clock.enter()
        try:
            if not self.snapshots.fresh(self.step_count + 1):  # x_t not taken at this step: take it now
                self.snapshots.retake(self.step_count)
            self._context = None
            info = self._info_now(batch=self.last_batch)
            for metric in self.metrics:
                if names is None or metric.name in names:
                    seconds = self._timed(metric.name, lambda m=metric: m.measure(self, info), schedule="on_demand")
                    self.clock.charge(seconds)
            self.objective.release()
        finally:
            self._flush()
            self.clock.leave()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume measuring exactly where a checkpoint left off."""
        return {
            "step_count": self.step_count,
            "epoch": self.epoch,
            # the Monitor reuses its snapshot buffers: a copy outlives the next step; x_{t−1} may not have been taken
            "x_now": self.x_now.clone(),
            "x_prev": None if self.x_prev is None else self.x_prev.clone(),
            "snapshot_step": self.snapshots.step,
            "prev_update": self.prev_update,
            "metrics": {m.name: m.state_dict() for m in self.metrics},
            "divergence": self.divergence,
            "lr_now": self._lr_now,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (step and epoch counters, snapshots, every metric's state), to resume a
        run."""
        self.step_count, self.epoch = state["step_count"], state["epoch"]
        step = state.get("snapshot_step", self.step_count)  # older checkpoints took x_t at every step
        self.snapshots.restore(state["x_now"], state["x_prev"], step, state["prev_update"])
        self.divergence = state.get("divergence")
        self._lr_now = state.get("lr_now")
        for m in self.metrics:
            m.load_state_dict(state["metrics"].get(m.name, {}))

    def close(self) -> None:
        """Close the record file and the TensorBoard / W&B writers; records already written stay on disk."""
        if self.writer is not None:
            self.writer.close()

    # ----- services for the metrics --------------------------------------------------------------------
    def batch_evaluation(self, info: StepInfo) -> BatchEvaluation | None:
        """f, ∇f at x_{t−1} and x_t (and f at x_{t−2}) on the step's batch, computed once per step (None without a
        batch or without x_{t−1})."""
        if info.batch is None or info.x_prev is None:  # no batch, or x_{t−1} not taken (on demand, between paced ones)
            return None
        if "batch" not in info.cache:
            on_batch = self.objective.on([info.batch])
            before = self.snapshots.before if info.step == self.step_count and self.step_count >= 2 else None
            info.cache["batch"] = BatchEvaluation(
                on_batch.loss_and_grad, info.x_prev, info.x_now, on_batch.loss, before
            )
        return cast(BatchEvaluation, info.cache["batch"])

    # ----- internals ---------------------------------------------------------------------------------
    def _agreed_schedule(self, step: int, epoch_end: bool, nonfinite_loss: bool = False) -> tuple[dict[str, str], bool]:
        """The metrics due now ({name: the schedule kind that triggered it}) and whether a training loss was
        non-finite. On a distributed objective both are decided once for every rank (rank 0's schedules, any rank's
        loss): the measurements are collectives, and ranks whose clocks disagree must still run the same ones."""
        if self._all_paced and (epoch_end or self.clock.training < self._next_look):
            due = {}  # every budgeted schedule would say no: each has its own later time to look (Budgeted.not_before)
        else:
            due = {m.name: m.schedule.kind for m in self.metrics if m.schedule.due(step, epoch_end)}
            if self._all_paced:
                self._next_look = min(part.not_before for part in self.clock.budgeted)
        say_budget = self._budget_cannot_fit()  # whether to say so now: rank 0's clock, like the schedules
        if self.objective.collective:
            due, say_budget, nonfinite_loss = self._rank0_decides(due, say_budget, nonfinite_loss)
        self._say_budget = say_budget
        return due, nonfinite_loss

    def _rank0_decides(
        self, due: dict[str, str], say_budget: bool, nonfinite_loss: bool
    ) -> tuple[dict[str, Any], bool, bool]:
        """Rank 0's schedules and budget record, and whether any rank's loss was non-finite (one collective)."""
        codes = [1 + kinds.index(due[m.name]) if m.name in due else 0 for m, kinds in zip(self.metrics, self._kinds)]
        group = cast(Any, self.objective).group  # a DistributedObjective's: this runs only across processes
        decided, alarms = rank0_decides([*codes, int(say_budget)], [nonfinite_loss], group, self.objective.space.device)
        *codes, say = decided
        due = {m.name: kinds[code - 1] for m, kinds, code in zip(self.metrics, self._kinds, codes) if code}
        return due, bool(say), alarms[0]

    def _measure_step(self, due: dict[str, str], loss: float | None, batch: Any) -> None:
        """The observers, the metrics due and the budget's own record, at a step."""
        info = StepInfo(
            self.step_count,
            self.epoch,
            False,
            self.x_prev,
            self.x_now,
            batch,
            self._scale(),
            loss,
            lr_prev=self._lr_prev,
        )
        for metric in self._observers:
            self._timed(metric.name + ".observe", lambda m=metric: m.observe(self, info), write_rows=False)
        self._run_due(info, due)
        self._check_budget_fits(info)

    def _run_due(self, info: StepInfo, due: dict[str, str]) -> None:
        for metric in self.metrics:
            if metric.name not in due:
                continue
            kind = due[metric.name]
            if not metric.records_cost:  # reads what the step computed: no cost rows, but timed for its pacing
                t0 = time.perf_counter()
                extra = {"group": metric.name, "schedule": kind}
                rows, failure = _collect(functools.partial(metric.measure, self, info))
                for name, value, ctx in rows:
                    self._write(info, name, value, {**extra, **ctx})
                self._record_failure(info, metric.name, failure, extra)
                metric.schedule.record_cost(time.perf_counter() - t0)
                continue
            seconds = self._timed(metric.name, lambda m=metric: m.measure(self, info), info=info, schedule=kind)
            metric.schedule.record_cost(seconds, metric.next_cost(seconds))
            self.clock.charge(seconds)
        batch = info.cache.get("batch")
        if batch is not None and batch.passes:  # what the step's metrics and observers asked of the batch
            self._write_cost(info, "batch_evaluation", batch.seconds, hvps=0, passes=batch.passes)
            self.clock.charge(batch.seconds)
        self.objective.release()  # the metrics at this point shared the curvature graphs: free them

    def _timed(
        self, group: str, run: Any, info: StepInfo | None = None, write_rows: bool = True, schedule: str | None = None
    ) -> float:
        info = info or self._info_now()
        counts, batch_seconds = dict(self.objective.counts), _batch_seconds(info)
        t0 = time.perf_counter()
        rows, failure = _collect(run)
        # the shared batch evaluation is its own group: not charged to whichever metric asked first
        seconds = time.perf_counter() - t0 - (_batch_seconds(info) - batch_seconds)
        extra = {"group": group, **({"schedule": schedule} if schedule else {})}
        for name, value, ctx in rows:
            self._write(info, name, value, {**extra, **ctx})
        self._record_failure(info, group.removesuffix(".observe"), failure, extra)
        hvps = sum(self.objective.counts[k] - counts[k] for k in ("hvp", "ggn", "fisher"))  # curvature products
        passes = sum(self.objective.counts[k] - counts[k] for k in ("loss", "grad"))
        if write_rows or hvps or passes:
            self._write_cost(info, group, seconds, hvps, passes)
        return seconds

    def _record_failure(
        self, info: StepInfo, metric: str, failure: NonFiniteError | CannotMeasure | None, extra: dict[str, Any]
    ) -> None:
        """A measurement that met a non-finite value: one row (value NaN, the reason), and the run marked diverged.
        One that cannot measure here: one row (value NaN, ``skipped`` = why), the first time for each reason."""
        if failure is None:
            return
        if isinstance(failure, CannotMeasure):
            if (metric, str(failure)) not in self._skipped:
                self._skipped.add((metric, str(failure)))
                self._write(info, metric, math.nan, {**extra, "skipped": str(failure)})
            return
        self.objective.release()  # graphs kept at a non-finite point are of no further use
        self._write(info, metric, math.nan, {**extra, "reason": str(failure)})
        self.mark_diverged(f"{metric} at step {info.step}: {failure}", info.step)

    @property
    def x_now(self) -> Tensor:
        """The parameters as the Monitor last took them, after step ``snapshots.step`` (every step unless all its
        metrics are budget-paced: then at the steps they measure)."""
        return self.snapshots.now

    @property
    def x_prev(self) -> Tensor | None:
        """The parameters one step before :attr:`x_now`; None when they were not taken."""
        return self.snapshots.prev

    def _take_snapshots(self, due: dict[str, str]) -> dict[str, str]:
        """Advance the snapshots as this step needs, and return what to measure now. With every metric paced by the
        budget, the parameters are copied only when something is due: a measurement whose x_{t−1} was not taken
        takes x_t now and runs at the next step (with what is due then)."""
        snaps, step = self.snapshots, self.step_count
        if self._snapshot_every_step:
            snaps.advance(step)
            return due
        due, self._deferred = {**self._deferred, **due}, {}
        if not due:
            return due
        if snaps.fresh(step):
            snaps.advance(step)
            return due
        snaps.retake(step)
        self._deferred = due
        return {}

    def _budget_cannot_fit(self) -> bool:
        """Whether to say now (once) that the fixed costs alone exceed the budget (looked at every 50 steps)."""
        clock = self.clock
        looks = clock.intervals >= 50 and clock.intervals % 50 == 0
        return looks and not self._budget_said and bool(clock.budgeted) and clock.free_rate() <= 0

    def _check_budget_fits(self, info: StepInfo) -> None:
        """Say once when the fixed costs alone (per-step statistics, records, explicit schedules) exceed the
        budget, so that no budget-scheduled measurement can run: a run that measures nothing says why. Decided
        with the schedules (rank 0's clock under torch.distributed), so every rank writes the same records."""
        if not self._say_budget:
            return
        clock = self.clock
        self._budget_said = True
        reason = (
            f"the Monitor's fixed costs alone take {clock.fixed / clock.training:.0%} of the training time, above "
            f"budget={clock.budget:g}: no budget-scheduled measurement fits; raise budget=, or schedule the metrics "
            "explicitly (every(n))"
        )
        self._write(info, "budget", math.nan, {"group": "monitor", "skipped": reason})

    def _info_now(self, step: int | None = None, batch: Any = None) -> StepInfo:
        """The point the Monitor is at, for what it measures or writes outside a step (``measure()``, a record)."""
        step = self.step_count if step is None else step
        return StepInfo(step, self.epoch, False, self.x_prev, self.x_now, batch, 1.0, lr_prev=self._lr_prev)

    def _scale(self) -> float:
        return float(getattr(self.optimizer, "scale", 1.0))

    def _flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def _write_cost(self, info: StepInfo, group: str, seconds: float, hvps: int, passes: int) -> None:
        for name, value in (("cost_seconds", seconds), ("cost_hvps", hvps), ("cost_passes", passes)):
            self._write(info, name, value, {"group": group})

    def _step_context(self, info: StepInfo) -> dict[str, Any]:
        """The fields every record of this call carries."""
        return {
            "n_measure": self.n_measure,
            "bn_mode": self.objective.bn_mode,
            "dropout": self.objective.dropout,
            "lr": learning_rate(self.optimizer),
            **({"epoch_end": True} if info.epoch_end else {}),
            **self.context,
        }

    def _write(self, info: StepInfo, metric: str, value: float, ctx: dict[str, Any]) -> None:
        if self._context is None:
            self._context = self._step_context(info)
        record = {
            "step": info.step,
            "epoch": info.epoch,
            "metric": metric,
            "value": float(value),
            **self._context,
            **ctx,
        }
        if self.writer is not None:
            self.writer.write_record(record)
        self.records.append(record)

    def _reset_windows(self) -> None:
        for metric in self.metrics:
            metric.reset_window()


SHARPNESS_WEIGHT = 9.0  # the default sharpness' weight in the budget, against 1 for the step statistics
DEFAULT_SHARPNESS_TOL = 1e-2  # residual ≤ 1% of λ1: λ1 within 1% (Bauer–Fike), in practice within ~1e-4
DEFAULT_WARM_PRODUCTS = 8  # a warm-started solve's cap (docs/metrics/monitor.md: how it was chosen)


def default_metrics() -> list[Metric]:
    """The default set, both measured at the first step and then paced by the budget: the step's own statistics
    (every step unless they cost more than their share, as on sub-millisecond steps), and the sharpness the
    optimizer's stability threshold is about (λ1 against 2/η for SGD, the preconditioned λ1 against 38/η for
    Adam), with that threshold. The sharpness, a solve of many curvature products, gets nine tenths of what the
    budget leaves (``SHARPNESS_WEIGHT``), the step statistics the rest: every step once a step takes some tens of
    milliseconds, at fewer steps the shorter the step (docs/benchmarks.md, *steps with step statistics*). The first
    sharpness solve is cold, to a residual of 1% of λ. Each later solve of the plain Hessian (SGD's) starts from the
    last Ritz vector and stops at that residual or after ``DEFAULT_WARM_PRODUCTS`` products, whichever comes first (the
    record says which); the preconditioned one (Adam's) starts cold every time and runs to the residual
    (``Sharpness(warm="auto")``: docs/metrics/monitor.md, "Warm and cold starts")."""
    sharpness = Sharpness(
        schedule=budget_schedule(SHARPNESS_WEIGHT),
        tol=DEFAULT_SHARPNESS_TOL,
        plain="auto",
        max_products=DEFAULT_WARM_PRODUCTS,
    )
    return [StepStats(schedule=budget_schedule()), sharpness]


def _collect(run: Callable[[], Iterable[Any] | None]) -> tuple[list[Any], NonFiniteError | CannotMeasure | None]:
    """The rows a measurement yields, up to a numerical failure or a context it cannot measure in (then also the
    error): rows already measured are kept."""
    rows: list[Any] = []
    try:
        rows.extend(run() or ())
    except (NonFiniteError, CannotMeasure) as err:
        return rows, err
    return rows, None


def _batch_seconds(info: StepInfo) -> float:
    """Time spent so far on this step's shared batch evaluation."""
    batch = info.cache.get("batch")
    return batch.seconds if batch is not None else 0.0


def _detached(loss: Any) -> float | None:
    """The step's loss as a float (a tensor is read once, with no effect on its graph)."""
    if loss is None:
        return None
    return float(loss.item()) if isinstance(loss, Tensor) else float(loss)
