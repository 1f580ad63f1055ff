"""The edge of stability read off a run's records: did the sharpness the optimizer's threshold is about rise to
that threshold and hover there while the loss kept falling (definitions §9; Cohen et al. 2021, 2022)?

The one owner of the edge verdict's thresholds for a user's run: :func:`edge_summary` computes it from the
``ratio_to_threshold`` rows (λ / threshold: η·λ1 / 2 for GD, the preconditioned λ1 / (38/η) for Adam) and the
training loss, and the quickstart's report and ``curvlab report`` state ``at_the_edge`` with the thresholds below.
The reproductions of Cohen et al.'s findings read their own, pre-registered thresholds from their claims files
(``curvlab/reproductions/claims/``), which test the papers' sentences more narrowly ("just above 2/η"); the
``LATE_*`` pair states the weaker "hovers near the threshold late in training" for Adam. docs/definitions.md states
both sets here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median
from typing import Any

# "At the edge of stability", on the scale λ / threshold (η·λ1 / 2 for GD):
BELOW = 0.6  # sharpening from below: the first measurement at most this (η·λ1 ≤ 1.2 for GD)
REACHED = 0.95  # reaching the edge: a measurement at least this (η·λ1 ≥ 1.9)
BAND = (0.9, 1.1)  # hovering: the median of the measurements after first reaching the edge within (η·λ1 ∈ [1.8, 2.2])
LOSS_FALLS_TO = 0.5  # while the loss falls: final below this fraction of the initial loss...
LOSS_RISES = 1  # ...non-monotonically: at least this many increases after the edge
# "Hovers near the threshold late in training" (the Adam reproduction's claim):
LATE_BELOW = 0.5  # the first measurement below this
LATE_BAND = (0.8, 1.2)  # the median over the last half of the measurements within
KIND_NAMES = {"gd": ("η·λ1", 2.0), "adam_preconditioned": ("preconditioned λ1 / its threshold", 1.0)}
THRESHOLD_FORMULAS = {"gd": "2/η", "heavy_ball": "(2 + 2β)/η", "adam_preconditioned": "(2 + 2β1)/((1 − β1)η)"}


@dataclass
class EdgeSummary:
    """The edge of stability in one run; values on the scale ``scale`` × λ / threshold (η·λ1 for GD)."""

    run: str
    kind: str
    steps: list[int]
    values: list[float]
    scale: float
    label: str
    loss_steps: list[int]
    losses: list[float]
    threshold: str = ""  # the threshold it divides by, with its formula and value (e.g. "(2 + 2β1)/((1 − β1)η) = …")

    @property
    def first_at_edge(self) -> int | None:
        """Index of the first measurement at or above REACHED of the threshold (None: never)."""
        return next((i for i, v in enumerate(self.values) if v >= REACHED * self.scale), None)

    @property
    def after(self) -> list[float]:
        i = self.first_at_edge
        return [] if i is None else self.values[i + 1 :]

    @property
    def median_after(self) -> float:
        """Median of the measurements after first reaching the edge (nan when there are none)."""
        return median(self.after) if self.after else math.nan

    @property
    def median_late(self) -> float:
        """Median of the last half of the measurements (on the ratio scale ``scale``)."""
        return median(self.values[len(self.values) // 2 :]) if self.values else math.nan

    @property
    def loss_increases(self) -> int:
        """Steps after the edge was first reached at which the training loss rose."""
        i = self.first_at_edge
        if i is None:
            return 0
        start = self.steps[i]
        pairs = zip(self.loss_steps[1:], self.losses, self.losses[1:])
        return sum(1 for s, a, b in pairs if s > start and b > a)

    @property
    def sharpened(self) -> bool:
        return bool(self.values) and self.values[0] <= BELOW * self.scale

    @property
    def hovered(self) -> bool:
        lo, hi = (b * self.scale for b in BAND)
        return self.first_at_edge is not None and len(self.after) >= 3 and lo <= self.median_after <= hi

    @property
    def loss_fell(self) -> bool:
        """The loss fell by the factor LOSS_FALLS_TO, non-monotonically (LOSS_RISES increases after the edge)."""
        fell = len(self.losses) >= 2 and self.losses[-1] < LOSS_FALLS_TO * self.losses[0]
        return fell and self.loss_increases >= LOSS_RISES

    @property
    def at_the_edge(self) -> bool:
        """The finding: sharpened from below to the threshold, hovered there, and the loss kept falling."""
        return self.sharpened and self.hovered and self.loss_fell

    @property
    def hovers_late(self) -> bool:
        """The weaker claim: started below LATE_BELOW of the threshold and the last half's median is within
        LATE_BAND of it."""
        lo, hi = (b * self.scale for b in LATE_BAND)
        return bool(self.values) and self.values[0] < LATE_BELOW * self.scale and lo <= self.median_late <= hi

    def sentence(self) -> str:
        """One sentence a reader can check against the figure, saying plainly when the run did not reach the edge."""
        lo, hi = (b * self.scale for b in BAND)
        against = f" (the threshold: {self.threshold})" if self.threshold else ""
        start = f"{self.run}: {self.label}{against} started at {_two(self.values[0])}"
        loss = f"; the loss went from {self.losses[0]:.3g} to {self.losses[-1]:.3g}" if self.losses else ""
        i = self.first_at_edge
        if i is None:
            peak = max(range(len(self.values)), key=self.values.__getitem__)
            return (
                f"{start}, peaked at {_two(self.values[peak])} at step {self.steps[peak]} and never reached "
                f"{_two(REACHED * self.scale)}: no edge of stability in this run{loss}."
            )
        reached = f"reached {_two(self.values[i])} at step {self.steps[i]}"
        if not self.after:
            return f"{start} and {reached}, the last measurement: too late to tell whether it hovers{loss}."
        stay = f"its median over the remaining {len(self.after)} measurements was {_two(self.median_after)}"
        rises = f", with {self.loss_increases} increases after the edge" if self.losses else ""
        verdict = "the edge of stability" if self.at_the_edge else "not the edge of stability: " + self._missing()
        return f"{start}, {reached} and {stay}{loss}{rises}. Verdict: {verdict}."

    def _missing(self) -> str:
        missing = []
        lo, hi = (b * self.scale for b in BAND)
        if not self.sharpened:
            missing.append(f"it started above {_two(BELOW * self.scale)} (no sharpening from below)")
        if not self.hovered:
            missing.append(
                f"its median after the edge is outside [{_two(lo)}, {_two(hi)}] or too few measurements followed"
            )
        if not self.loss_fell:
            missing.append(f"the loss did not fall below {LOSS_FALLS_TO:g}× its start with a rise after the edge")
        return "; ".join(missing)


def _two(value: float) -> str:
    """A quantity of the findings sentence, to two decimals."""
    return f"{value:.2f}"


def edge_summary(name: str, df: Any) -> EdgeSummary | None:
    """The edge of stability of one run from its records (a DataFrame), or None when it has no stability threshold
    measurements (an optimizer without a linear threshold, or no sharpness metric)."""
    if "metric" not in df:
        return None
    rows = df[(df.metric == "ratio_to_threshold")].dropna(subset=["value"]).sort_values("step")
    if not len(rows):
        return None
    kind = str(rows["kind"].iloc[-1]) if "kind" in rows else "gd"
    label, scale = KIND_NAMES.get(kind, ("λ1 / its threshold", 1.0))
    last_threshold = _last_threshold(df, kind)
    threshold = ""
    if last_threshold is not None:
        value, lr = last_threshold
        formula, per_lr = THRESHOLD_FORMULAS[kind], f"{value * lr:.3g}/η"
        threshold = f"{formula}{'' if per_lr == formula else ' = ' + per_lr} = {value:.4g} at η = {lr:g}"
        if scale == 1.0:
            label = f"{label.removesuffix(' / its threshold')} / ({per_lr})"
    loss = df[(df.metric == "loss")].dropna(subset=["value"])
    if "group" in loss and (loss.group == "train").any():
        loss = loss[loss.group == "train"]
    loss = loss.sort_values("step")
    return EdgeSummary(
        run=name,
        kind=kind,
        steps=rows.step.astype(int).tolist(),
        values=[scale * float(v) for v in rows.value],
        scale=scale,
        label=label,
        loss_steps=loss.step.astype(int).tolist(),
        losses=loss.value.astype(float).tolist(),
        threshold=threshold,
    )


def _last_threshold(df: Any, kind: str) -> tuple[float, float] | None:
    """(threshold, η) of the last threshold record, or None when the records hold no finite one with its learning
    rate (or the kind has no formula to name)."""
    rows = df[(df.metric == "threshold")].dropna(subset=["value"])
    if not len(rows) or "lr" not in rows or kind not in THRESHOLD_FORMULAS:
        return None
    last = rows.sort_values("step").iloc[-1]
    value, lr = float(last["value"]), float(last["lr"])
    if not (math.isfinite(value) and math.isfinite(lr) and lr > 0):
        return None
    return value, lr
