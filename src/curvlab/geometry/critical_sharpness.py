"""Critical sharpness, from D. S. Kalra, J.-C. Gagnon-Audet, A. Gromov, I. Mediratta, K. Niu, A. H. Miller and
M. Shvartsman (2026), "A Scalable Measure of Loss Landscape Curvature for Analyzing the Training Dynamics of LLMs".

The optimizer's update u at learning rate η₀ (u = x_{t+1} − x_t, e.g. −η₀·g for SGD) defines the direction at unit
learning rate, u/η₀, and the steps x + η·u/η₀. The critical learning rate η_c is the smallest η > 0 at which the
loss rises above F(x); the critical sharpness is λ_c = 2/η_c. It needs forward passes only (no second
derivative), so it works on any model at any size. On a quadratic, with d = −u/η₀ (d = g for SGD),
F(x − ηd) − F(x) = −η gᵀd + ½η² dᵀHd, so λ_c = dᵀHd / gᵀd exactly: the directional sharpness along g when d = g,
and η₀·λ_c > 2 exactly when the update raised the loss.

The *relative* critical sharpness (the curvature of one loss while optimizing another) is the same search with
the update of the optimized loss and the objective of the other: pass that other Objective.

Search: one evaluation at x, then bracketing by factors of ``growth`` from ``eta0`` until one step lowers the
loss below F(x) and a larger one raises it, then refinement: the root of the parabola φ(η) = aη + bη² through
the bracket's two points (exact on a quadratic), evaluated there and just past it, then Illinois false position
(geometric bisection while an end is non-finite), until the bracket's relative width is below ``rtol`` or
``max_evals`` forward passes are spent (docs/metrics/critical_sharpness.md). A non-finite loss at a trial step
counts as a rise. A loss *unchanged* at a step (in float32 a small step can leave it bit-identical) says nothing
about the direction: it is neither a descent nor a rise, unless a smaller step has already descended (then the
loss has come back up to F(x): the crossing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from curvlab.checks import check_int, check_positive
from curvlab.errors import InputError, NonFiniteError

OUTCOMES = {
    "bracketed": "η_c bracketed to rtol, or as closely as max_evals allowed",
    "no rise": "the loss never rose at the steps tried: value = 2/η for the largest η tried, an upper bound",
    "no descent": "the loss rose at every step tried: the update is not a descent direction; value = inf",
    "unresolved": "the loss did not change at the small steps tried and rose or stayed at the larger ones: "
    "below the loss's rounding no decrease can be seen; value = nan",
}


@dataclass
class CriticalSharpnessResult:
    """The result of :func:`critical_sharpness`.

    ``value`` is λ_c = 2/η_c, η_c (``eta``) in the units of the learning rate. ``outcome`` says what the search
    found (:data:`OUTCOMES`): "bracketed" (``bracketed`` True), "no rise" (an upper bound), "no descent" (inf)
    or "unresolved" (nan).
    """

    value: float
    eta: float
    bracket: tuple[float, float]
    n_evals: int
    bracketed: bool
    loss: float
    outcome: str = "bracketed"


def critical_sharpness(
    objective: Any,
    update: Tensor,
    lr: float,
    *,
    at: Tensor | None = None,
    eta0: float | None = None,
    max_evals: int = 10,
    rtol: float = 1e-2,
    growth: float = 4.0,
) -> CriticalSharpnessResult:
    """λ_c = 2/η_c along an optimizer's update (steps ``x + η·update/lr``) by forward passes only.

    Args:
        objective: the loss to watch (an :class:`~curvlab.Objective`); for the relative critical sharpness,
            the Objective of the *other* loss.
        update: the optimizer's update as it has it, x_{t+1} − x_t, a flat vector (for SGD −lr·g; for any
            optimizer the difference of the parameter vectors before and after its step).
        lr: the learning rate that update was made with; η_c is measured in its units, so lr·λ_c > 2 exactly
            when the update raised the loss.
        at: the point x (a flat vector); None = the model's current parameters.
        eta0: the first learning rate tried (default ``lr``).
        max_evals: the most forward passes over the measurement set, the one at x included.
        rtol: stop when the bracket around η_c is narrower than this, relative to η_c.
        growth: the factor by which the bracketing search enlarges or shrinks η.

    Raises:
        InputError: an update that is not finite or is zero (there is no direction to search along).
    """
    check_positive(lr, "lr", finite=True)
    eta0 = lr if eta0 is None else check_positive(eta0, "eta0", finite=True)
    check_positive(rtol, "rtol", finite=True)
    check_int(max_evals, "max_evals", 3, note="(one at x, two to bracket)")
    if not (isinstance(growth, (int, float)) and growth > 1):
        raise InputError(f"growth: expected a number > 1, got {growth!r}")
    x = objective.parameters_vector() if at is None else at
    u = objective.space.check_vector(update, "update")
    if not objective.all_finite(u):
        raise InputError("update: has non-finite entries (NaN or inf); expected the step x_{t+1} − x_t")
    if objective.norm(u) == 0:
        raise InputError("update: is zero; there is no direction to search along")
    direction = u / lr
    f0 = objective.loss(at=x)
    if not math.isfinite(f0):
        where = "at the model's current parameters" if at is None else "at the given point"
        raise NonFiniteError("loss", where, f"({f0})", "critical_sharpness needs a finite loss to start from")
    search = _Search(lambda eta: objective.loss(at=x + eta * direction) - f0, max_evals - 1)
    search.bracket(float(eta0), float(growth))
    if search.bracketed:
        search.refine(rtol)
    return search.result(f0)


class _Search:
    """The state of one line search on φ(η) = F(x − ηd) − F(x): ``lo`` keeps φ ≤ 0, ``hi`` has φ > 0."""

    def __init__(self, phi: Any, budget: int):
        self.phi, self.budget = phi, budget
        self.lo, self.phi_lo = 0.0, 0.0
        self.hi, self.phi_hi = math.inf, math.inf
        self.flats: list[float] = []  # the η at which the loss did not change, with no descent seen below them
        self.estimate = math.nan
        self.n_evals = 1  # the evaluation at x

    @property
    def bracketed(self) -> bool:
        return self.lo > 0 and math.isfinite(self.hi)

    def evaluate(self, eta: float) -> None:
        value = self.phi(eta)
        self.n_evals += 1
        self.budget -= 1
        if value == 0 and not 0 < self.lo < eta:
            self.flats.append(eta)  # unchanged, with no descent seen below: too small to register, or the crossing
        elif math.isfinite(value) and value < 0:
            self.lo, self.phi_lo = eta, value
            above = [f for f in self.flats if f > eta]
            if above and min(above) < self.hi:  # back at F(x) above a descent: that was the crossing
                self.hi, self.phi_hi = min(above), 0.0
        else:  # a rise, a non-finite loss, or back at F(x) after a descent at a smaller step
            self.hi, self.phi_hi = eta, value

    def bracket(self, eta: float, growth: float) -> None:
        self.evaluate(eta)
        while not self.bracketed and self.budget > 0:
            self.evaluate(self._next_trial(growth))

    def _next_trial(self, growth: float) -> float:
        if self.lo > 0:
            return self.lo * growth
        if self.flats and math.isinf(self.hi):  # unchanged so far: larger steps
            return max(self.flats) * growth
        if self.flats:  # unchanged below a rise: a descent, if any, is below the unchanged steps
            return min(self.flats) / growth
        return self.hi / growth

    def refine(self, rtol: float) -> None:
        """First the root of the parabola through φ(0) = 0 and the bracket's ends, evaluated there and just past
        it on the other side: exact on a quadratic, so the bracket closes in two passes. Then, where φ is far
        from a parabola, Illinois false position on the bracket (geometric bisection while an end is not
        finite), which keeps both ends moving."""
        root = self._interpolated_root()
        if self.budget <= 0 or self._width() <= rtol:
            self.estimate = root
            return
        self.evaluate(root)
        if self.budget > 0 and self._width() > rtol:
            nudge = root * (1 + rtol / 2) if self.lo == root else root * (1 - rtol / 2)
            self.evaluate(min(max(nudge, self.lo), self.hi))
        weights, last_side = [1.0, 1.0], None
        while self.budget > 0 and self._width() > rtol:
            if not math.isfinite(self.phi_hi):
                eta = math.sqrt(self.lo * self.hi)
            else:
                f_lo, f_hi = self.phi_lo * weights[0], self.phi_hi * weights[1]
                eta = (self.lo * f_hi - self.hi * f_lo) / (f_hi - f_lo)
                eta = min(max(eta, self.lo + 1e-3 * (self.hi - self.lo)), self.hi - 1e-3 * (self.hi - self.lo))
            before = self.lo
            self.evaluate(eta)
            side = 0 if self.lo != before else 1
            weights = (
                [1.0, 1.0] if side != last_side else ([1.0, weights[1] / 2] if side == 0 else [weights[0] / 2, 1.0])
            )
            last_side = side
        self.estimate = self._interpolated_root()

    def _width(self) -> float:
        """The bracket's width relative to its lower end."""
        return (self.hi - self.lo) / self.lo

    def _interpolated_root(self) -> float:
        """The positive root −a/b of φ(η) = aη + bη² through (lo, φ_lo) and (hi, φ_hi), kept inside the bracket."""
        lo, hi = self.lo, self.hi
        middle = math.sqrt(lo * hi)
        if not math.isfinite(self.phi_hi):
            return middle
        b = (self.phi_hi / hi - self.phi_lo / lo) / (hi - lo)
        a = self.phi_lo / lo - b * lo
        root = -a / b if b > 0 and a < 0 else middle
        slack = 1e-9 * hi  # a root at a bracket end may fall just outside it by rounding
        return min(max(root, lo), hi) if lo - slack <= root <= hi + slack else middle

    def result(self, f0: float) -> CriticalSharpnessResult:
        if self.bracketed:
            eta, outcome = self.estimate, "bracketed"
        elif self.lo > 0:
            eta, outcome = self.lo, "no rise"  # λ_c ≤ 2/η for the largest η tried
        elif self.flats:
            eta, outcome = math.nan, "unresolved"
        else:
            eta, outcome = 0.0, "no descent"
        value = math.nan if math.isnan(eta) else (2.0 / eta if eta > 0 else math.inf)
        return CriticalSharpnessResult(value, eta, (self.lo, self.hi), self.n_evals, self.bracketed, f0, outcome)
