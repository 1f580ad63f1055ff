"""Windowed statistics of a series of records: the median or the geometric mean over consecutive windows of steps,
for quantities that oscillate from step to step (a tuner's η, η·λ1, the two-step factor), where one sample or a
first spike reads a single phase of the oscillation (definitions §2)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from curvlab.checks import check_int
from curvlab.errors import InputError

STATISTICS = ("median", "geometric_mean", "mean")


@dataclass(frozen=True)
class Window:
    """One window: its steps [start, stop), the statistic of the values in it, and how many there were."""

    start: int
    stop: int
    value: float
    count: int


def windowed(steps: Sequence[int], values: Sequence[float], window: int, statistic: str = "median") -> list[Window]:
    """The ``statistic`` ("median", "geometric_mean" or "mean") of ``values`` over consecutive windows of ``window``
    steps, from the first step on; a window with no value is left out, and so is a last, partial window. A
    non-finite value makes its window's statistic non-finite; the geometric mean needs positive values."""
    check_int(window, "window")
    if statistic not in STATISTICS:
        raise InputError(f"statistic: expected one of {list(STATISTICS)}, got {statistic!r}")
    if len(steps) != len(values):
        raise InputError(f"steps, values: expected equal lengths, got {len(steps)} and {len(values)}")
    if not len(steps):
        return []
    pairs = sorted(zip((int(s) for s in steps), (float(v) for v in values)))
    first, last = pairs[0][0], pairs[-1][0]
    out = []
    for k in range((last - first + 1) // window):
        start, stop = first + k * window, first + (k + 1) * window
        inside = [v for s, v in pairs if start <= s < stop]
        if inside:
            out.append(Window(start, stop, _statistic(inside, statistic), len(inside)))
    return out


def _statistic(values: list[float], statistic: str) -> float:
    if not all(math.isfinite(v) for v in values):
        return math.nan
    if statistic == "median":
        return median(values)
    if statistic == "mean":
        return sum(values) / len(values)
    if any(v <= 0 for v in values):
        raise InputError("values: the geometric mean needs positive values")
    return math.exp(sum(math.log(v) for v in values) / len(values))
