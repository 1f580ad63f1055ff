"""When a metric is measured: every k steps, at epoch ends, at log-spaced steps, at listed steps,
or any union of these (``every(100) | epoch_end()``); or whenever a cost budget allows (``budget()``).
Steps count optimizer steps taken (from 1)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Iterator

from curvlab.checks import check_int, is_number
from curvlab.errors import InputError, InputTypeError


class Schedule:
    """When a metric measures: combine with ``|`` (``every(100) | epoch_end()``); see also ``budget()``."""

    kind = "fixed"  # written with every record it triggers

    def due(self, step: int, epoch_end: bool = False) -> bool:
        """Whether a measurement is due after optimizer step ``step`` (``epoch_end``: that step ended an epoch)."""
        raise NotImplementedError

    def record_cost(self, seconds: float, expected: float | None = None) -> None:
        """Told the cost of each measurement it triggered, and what the metric expects its next one to cost when it
        knows better than "the same" (only cost-aware schedules use them)."""

    def parts(self) -> Iterable[Schedule]:
        """The simple schedules this one is made of."""
        yield self

    def __or__(self, other: Schedule) -> Schedule:
        return AnyOf(self, other)


class AnyOf(Schedule):
    def __init__(self, *schedules: Schedule):
        self.schedules = schedules
        self.kind = "fixed"

    def due(self, step: int, epoch_end: bool = False) -> bool:
        first = next((s for s in self.schedules if s.due(step, epoch_end)), None)
        if first is not None:
            self.kind = first.kind  # the part that triggered this measurement
        return first is not None

    def record_cost(self, seconds: float, expected: float | None = None) -> None:
        for s in self.schedules:
            s.record_cost(seconds, expected)

    def parts(self) -> Iterable[Schedule]:
        for s in self.schedules:
            yield from s.parts()


class Every(Schedule):
    def __init__(self, k: int):
        check_int(k, "k")
        self.k = k

    def due(self, step: int, epoch_end: bool = False) -> bool:
        return not epoch_end and step % self.k == 0


class EveryPair(Schedule):
    """Due at consecutive pairs of steps, k and k + 1, 2k and 2k + 1, ... (and at step 1): both parities of a
    period-two oscillation (a tuner whose η alternates every step) are sampled, where every(k) with an even k
    would always read the same half of the cycle."""

    def __init__(self, k: int):
        check_int(k, "k")
        if k < 2:
            raise InputError(f"k: expected an interval of at least 2 steps between pairs, got {k}")
        self.k = k

    def due(self, step: int, epoch_end: bool = False) -> bool:
        return not epoch_end and step % self.k in (0, 1)


class AtSteps(Schedule):
    def __init__(self, steps: Iterable[int]):
        self.steps = {int(s) for s in steps}
        if any(s < 0 for s in self.steps):
            raise InputError("steps: expected non-negative step numbers")

    def due(self, step: int, epoch_end: bool = False) -> bool:
        return not epoch_end and step in self.steps


class EpochEnd(Schedule):
    def due(self, step: int, epoch_end: bool = False) -> bool:
        return epoch_end


class Never(Schedule):
    def due(self, step: int, epoch_end: bool = False) -> bool:
        return False


class CostClock:
    """The Monitor's clocks: time spent training (wall time between its calls; it starts when the first call
    ends), time spent inside its calls (everything it does: per-step statistics, snapshots, measurements,
    observers, writing and flushing records), and the part of that charged to measurements (metric groups that
    make passes over data). The budget bounds everything inside but the first measurement of each budgeted group
    (its calibration): budget-scheduled groups share what the rest leaves of ``budget`` × training."""

    def __init__(self, budget: float):
        if not is_number(budget) or not 0 < budget < math.inf:
            raise InputError(f"budget: expected a positive fraction of the training time (e.g. 0.1), got {budget!r}")
        self.budget = float(budget)
        self.training = 0.0
        self.intervals = 0
        self.inside = 0.0
        self.charged = 0.0
        self.budgeted: list[Budgeted] = []  # the budget-scheduled parts sharing what the fixed costs leave
        self._left_at: float | None = None
        self._entered_at = 0.0
        self._is_inside = False

    def enter(self) -> None:
        now = time.perf_counter()
        if self._left_at is not None:
            self.training += now - self._left_at
            self.intervals += 1
        self._entered_at = now
        self._is_inside = True

    def leave(self) -> None:
        now = time.perf_counter()
        self.inside += now - self._entered_at
        self._left_at = now
        self._is_inside = False

    @contextlib.contextmanager
    def apart(self) -> Iterator[None]:
        """Time spent in the block (a record written between the Monitor's calls: a trainer's own log, scalars
        sent to its loggers) counts inside the Monitor, not as training; no training interval ends. Inside a
        Monitor call it is counted there already."""
        if self._is_inside:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            self.inside += spent
            if self._left_at is not None:
                self._left_at += spent

    def charge(self, seconds: float) -> None:
        self.charged += seconds

    @property
    def calibration(self) -> float:
        """The first measurement of each budget-scheduled group: made at once, to learn its cost, and the only
        time inside the Monitor the budget does not bound."""
        return sum(part.first_cost for part in self.budgeted)

    def allows(self, cost: float) -> bool:
        """Would spending ``cost`` more seconds keep the time inside the Monitor (less the calibration) ≤ budget ×
        training?"""
        return self.intervals > 0 and self.inside - self.calibration + cost <= self.budget * self.training

    @property
    def fixed(self) -> float:
        """Time inside the Monitor not spent by budget-scheduled measurements (per-step statistics, records,
        explicitly scheduled groups...)."""
        return self.inside - self.calibration - sum(part.spent for part in self.budgeted)

    def free_rate(self) -> float:
        """The fraction of the training time left to budget-scheduled measurements: budget − fixed / training."""
        return max(0.0, self.budget - self.fixed / self.training) if self.training > 0 else 0.0


LOOK_AHEAD = 0.02  # a budgeted schedule tests again after at most this fraction more training time


class Budgeted(Schedule):
    """Measure whenever the Monitor's cost budget allows (docs/metrics/monitor.md, "Cost budget").

    Everything the Monitor spends counts against ``budget`` × training; budget-scheduled metrics share what the
    rest (the per-step statistics, records, explicitly scheduled groups: the clock's ``fixed``) leaves of it. Each owns
    a ``share`` of that in proportion to its ``weight`` (equal weights: 1/n each), so a cheap metric cannot starve an
    expensive one, and may use what the others leave unused beyond the cost of their next measurement (:meth:`spare`). A
    measurement is due when (1) this metric's spending plus its last cost stays within that allowance, (2) the
    allowance's rate × the training time since its last measurement covers that cost (measurements spread evenly,
    no bursts from banked credit), and (3) all the time inside the Monitor stays within budget × training time.
    A metric never measured yet is measured at once (the first call): its cost is known only then, and that one
    calibration measurement is outside the budget (``CostClock.calibration``). The Monitor binds the clock and
    the share.
    """

    kind = "budget"

    def __init__(self, weight: float = 1.0) -> None:
        if not is_number(weight) or not 0 < weight < math.inf:
            raise InputError(f"weight: expected a positive number (its part of the budget), got {weight!r}")
        self.weight = float(weight)
        self.clock: CostClock | None = None
        self.share = 1.0
        self.expected_cost: float | None = None
        self.first_cost = 0.0  # the calibration: outside the budget
        self.spent = 0.0  # every later measurement's cost
        self.training_at_last = 0.0
        self.not_before = 0.0  # the training time before which the test is not made (it cannot hold, or not yet)

    def due(self, step: int, epoch_end: bool = False) -> bool:
        clock = self._attached_clock()
        if epoch_end:
            return False
        if self.expected_cost is None:
            return True  # at the first call, so that every run shows where it began; then paced by its cost
        if clock.training < self.not_before:  # not yet (see record_cost and _next_look)
            return False
        cost = self.expected_cost
        free = clock.free_rate() * clock.training  # what the budgeted metrics together may have spent by now
        allowance = self.share * free + sum(part.spare(free) for part in clock.budgeted if part is not self)
        within_share = self.spent + cost <= allowance
        earned = allowance / clock.training * (clock.training - self.training_at_last) >= cost
        if within_share and earned and clock.allows(cost):
            return True
        self.not_before = self._next_look(allowance / clock.training, cost)
        return False

    def _next_look(self, rate: float, cost: float) -> float:
        """When to test again: halfway to the training time at which (1) and (2) would hold if this metric's rate
        stayed as it is now, and after at most 2% more training. Only a hint that saves the test on the steps between
        (the test still decides): a rate that grows less than twofold meanwhile delays no measurement, and one that
        jumps (early in a run, the fixed costs' fraction settles) delays it by at most 2% of the training so far."""
        now = self._attached_clock().training
        ready = max((self.spent + cost) / rate, self.training_at_last + cost / rate) if rate > 0 else math.inf
        return now + min(0.5 * max(0.0, ready - now), LOOK_AHEAD * now)

    def spare(self, free: float) -> float:
        """What this metric leaves of its share that another may use: its unspent allowance less what its next
        measurement will cost, so that a cheap metric never spends what an expensive one is saving up for."""
        return max(0.0, self.share * free - self.spent - (self.expected_cost or 0.0))

    def record_cost(self, seconds: float, expected: float | None = None) -> None:
        clock = self._attached_clock()
        if self.expected_cost is None:
            self.first_cost = seconds
        else:
            self.spent += seconds
        self.expected_cost = seconds if expected is None else expected
        self.training_at_last = clock.training
        # (2) cannot hold before: no metric's rate exceeds the budget
        self.not_before = max(self.training_at_last + self.expected_cost / clock.budget, math.nextafter(0.0, 1.0))

    def _attached_clock(self) -> CostClock:
        if self.clock is None:
            raise RuntimeError("budget(): the schedule is not attached to a Monitor")
        return self.clock


def every(k: int) -> Schedule:
    """A schedule due every ``k`` optimizer steps (steps k, 2k, ...)."""
    return Every(k)


def every_pair(k: int) -> Schedule:
    """A schedule due at steps k and k + 1, 2k and 2k + 1, ...: consecutive pairs, so a quantity that alternates
    every step is read on both parities (as a string in configs: ``"pairs:K"``)."""
    return EveryPair(k)


def at_steps(steps: Iterable[int]) -> Schedule:
    """A schedule due at the given optimizer steps only."""
    return AtSteps(steps)


def epoch_end() -> Schedule:
    """A schedule due at every epoch end (``Monitor.end_epoch``)."""
    return EpochEnd()


def budget(weight: float = 1.0) -> Schedule:
    """Measure at the first call, then whenever the Monitor's cost budget allows (``Monitor(..., budget=0.1)``).
    Budget-scheduled metrics share what the Monitor's other costs leave of the budget in proportion to their
    ``weight``."""
    return Budgeted(weight)


def log_spaced(n: int, max_step: int) -> Schedule:
    """About ``n`` steps spaced evenly in log scale between 1 and ``max_step`` (distinct integers)."""
    if n < 1 or max_step < 1:
        raise InputError(f"n, max_step: expected positive integers, got {n}, {max_step}")
    if n == 1:
        return AtSteps([max_step])
    ratio = math.log(max_step) / (n - 1)
    return AtSteps(round(math.exp(i * ratio)) for i in range(n))


def as_schedule(value: Schedule | int | Iterable[int] | str | None) -> Schedule:
    """Accept a Schedule, an int k (every k), a list of steps, "epoch", "budget", "pairs:K" (every_pair(K)), or
    None (never)."""
    if value is None:
        return Never()
    if isinstance(value, Schedule):
        return value
    if isinstance(value, bool):
        raise InputTypeError("schedule: expected a Schedule, an int, a list of steps or 'epoch'")
    if isinstance(value, int):
        return Every(value)
    if value == "epoch":
        return EpochEnd()
    if value == "budget":
        return Budgeted()
    if isinstance(value, str) and value.startswith("pairs:") and value[len("pairs:") :].isdigit():
        return EveryPair(int(value[len("pairs:") :]))
    if isinstance(value, str):
        raise InputError(
            f"schedule: unknown schedule {value!r}; use an int, a list of steps, 'epoch', 'budget' or 'pairs:K'"
        )
    return AtSteps(value)
