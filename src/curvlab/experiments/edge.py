"""The edge of stability read off a run's records: did the sharpness the optimizer's threshold is about rise to
that threshold and hover there while the loss kept falling (definitions §9; Cohen et al. 2021, 2022)?

One owner for the verdict that the quickstart's report, ``curvlab report`` and the edge reproductions state:
:func:`edge_summary` computes it from the ``ratio_to_threshold`` rows (λ / threshold: η·λ1 / 2 for GD, the
preconditioned λ1 / (38/η) for Adam) and the training loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median
from typing import Any

REACHED = 0.95  # ratio to the threshold that counts as reaching the edge (η·λ1 = 1.9 for GD)
BAND = (0.9, 1.1)  # hovering: within ±10% of the threshold (η·λ1 ∈ [1.8, 2.2] for GD)
BELOW = 0.75  # sharpening: the first measurement at most this fraction of the threshold
HOVERS = 0.6  # the share of the measurements after reaching the edge that must lie in BAND
KIND_NAMES = {"gd": ("η·λ1", 2.0), "adam_preconditioned": ("preconditioned λ1 / its threshold", 1.0)}


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

    @property
    def first_at_edge(self) -> int | None:
        """Index of the first measurement at or above REACHED of the threshold (None: never)."""
        return next((i for i, v in enumerate(self.values) if v >= REACHED * self.scale), None)

    @property
    def after(self) -> list[float]:
        i = self.first_at_edge
        return [] if i is None else self.values[i + 1 :]

    @property
    def within_band(self) -> float:
        """Share of the measurements after first reaching the edge that lie within BAND of the threshold."""
        lo, hi = (b * self.scale for b in BAND)
        after = self.after
        return sum(lo <= v <= hi for v in after) / len(after) if after else math.nan

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
        return self.first_at_edge is not None and len(self.after) >= 3 and self.within_band >= HOVERS

    @property
    def loss_fell(self) -> bool:
        return len(self.losses) >= 2 and self.losses[-1] < 0.5 * self.losses[0]

    @property
    def at_the_edge(self) -> bool:
        """The finding: sharpened from below to the threshold, hovered there, and the loss kept falling."""
        return self.sharpened and self.hovered and self.loss_fell

    def sentence(self) -> str:
        """One sentence a reader can check against the figure, saying plainly when the run did not reach the edge."""
        f = lambda v: f"{v:.2f}"  # noqa: E731
        lo, hi = (b * self.scale for b in BAND)
        start = f"{self.run}: {self.label} started at {f(self.values[0])}"
        loss = f"the loss went from {self.losses[0]:.3g} to {self.losses[-1]:.3g}" if self.losses else ""
        i = self.first_at_edge
        if i is None:
            peak = max(range(len(self.values)), key=self.values.__getitem__)
            return (
                f"{start}, peaked at {f(self.values[peak])} at step {self.steps[peak]} and never reached "
                f"{f(REACHED * self.scale)}: no edge of stability in this run; {loss}."
            )
        reached = f"reached {f(self.values[i])} at step {self.steps[i]}"
        if not self.after:
            return f"{start} and {reached}, the last measurement: too late to tell whether it hovers; {loss}."
        stay = (
            f"stayed within [{f(lo)}, {f(hi)}] for {self.within_band:.0%} of the remaining "
            f"{len(self.after)} measurements (median {f(median(self.after))})"
        )
        rises = f", with {self.loss_increases} increases after the edge" if self.losses else ""
        verdict = "the edge of stability" if self.at_the_edge else "not the edge of stability: " + self._missing()
        return f"{start}, {reached} and {stay}; {loss}{rises}. Verdict: {verdict}."

    def _missing(self) -> str:
        missing = []
        if not self.sharpened:
            missing.append(f"it started above {BELOW:.0%} of the threshold (no sharpening from below)")
        if not self.hovered:
            missing.append(f"it spent less than {HOVERS:.0%} of the time after the edge within ±10%")
        if not self.loss_fell:
            missing.append("the loss did not fall by half")
        return "; ".join(missing)


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
    )
