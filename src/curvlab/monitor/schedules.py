"""When a metric is measured: every k steps, at epoch ends, at log-spaced steps, at listed steps,
or any union of these (``every(100) | epoch_end()``). Steps count optimizer steps taken (from 1)."""

from __future__ import annotations

import math
from typing import Iterable


class Schedule:
    def due(self, step: int, epoch_end: bool = False) -> bool:
        raise NotImplementedError

    def __or__(self, other: "Schedule") -> "Schedule":
        return AnyOf(self, other)


class AnyOf(Schedule):
    def __init__(self, *schedules: Schedule):
        self.schedules = schedules

    def due(self, step: int, epoch_end: bool = False) -> bool:
        return any(s.due(step, epoch_end) for s in self.schedules)


class Every(Schedule):
    def __init__(self, k: int):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive integer, got {k!r}")
        self.k = k

    def due(self, step: int, epoch_end: bool = False) -> bool:
        return not epoch_end and step % self.k == 0


class AtSteps(Schedule):
    def __init__(self, steps: Iterable[int]):
        self.steps = {int(s) for s in steps}
        if any(s < 0 for s in self.steps):
            raise ValueError("steps: expected non-negative step numbers")

    def due(self, step: int, epoch_end: bool = False) -> bool:
        return not epoch_end and step in self.steps


class EpochEnd(Schedule):
    def due(self, step: int, epoch_end: bool = False) -> bool:
        return epoch_end


class Never(Schedule):
    def due(self, step: int, epoch_end: bool = False) -> bool:
        return False


def every(k: int) -> Schedule:
    return Every(k)


def at_steps(steps: Iterable[int]) -> Schedule:
    return AtSteps(steps)


def epoch_end() -> Schedule:
    return EpochEnd()


def log_spaced(n: int, max_step: int) -> Schedule:
    """About ``n`` steps spaced evenly in log scale between 1 and ``max_step`` (distinct integers)."""
    if n < 1 or max_step < 1:
        raise ValueError(f"n, max_step: expected positive integers, got {n}, {max_step}")
    if n == 1:
        return AtSteps([max_step])
    ratio = math.log(max_step) / (n - 1)
    return AtSteps(round(math.exp(i * ratio)) for i in range(n))


def as_schedule(value: Schedule | int | Iterable[int] | str | None) -> Schedule:
    """Accept a Schedule, an int k (every k), a list of steps, "epoch", or None (never)."""
    if value is None:
        return Never()
    if isinstance(value, Schedule):
        return value
    if isinstance(value, bool):
        raise TypeError("schedule: expected a Schedule, an int, a list of steps or 'epoch'")
    if isinstance(value, int):
        return Every(value)
    if value == "epoch":
        return EpochEnd()
    if isinstance(value, str):
        raise ValueError(f"schedule: unknown schedule {value!r}; use an int, a list of steps or 'epoch'")
    return AtSteps(value)
