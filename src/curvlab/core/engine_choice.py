"""``hvp_engine="auto"``: the exact double backward where it is possible *and right*, else finite differences.

Double backward can fail loudly (flash / memory-efficient attention kernels, fused ops without a second derivative)
or silently: a custom ``autograd.Function`` whose backward is ``@once_differentiable`` or written with non-
differentiable ops makes torch drop that layer's second-derivative term and raise nothing. So the first time a
model's curvature is asked for, one exact product on the first chunk is compared with finite-difference products at
three step sizes, 16× apart at the ends (their spread bounds the finite differences' own error: rounding, or ReLU
kinks crossed by the step) plus 100 u^(2/3) (their error order at the loss's roundoff u). An exact product that
fails, or that is further from every finite difference than 10× their spread plus that floor, switches this model
to ``"finite_difference"``, with one warning saying why (tests/test_finite_difference.py: a softplus network whose
backward is not differentiable is caught in float32 and float64, ReLU networks and the test zoo are not flagged).
Each product is replaced by a fingerprint as soon as it is made (itself up to ``SKETCH`` entries, else a count
sketch that keeps distances within a fraction of a per cent), so the check holds the direction and one product at a
time: no more memory than one exact product (docs/scale.md); after it, the heap memory it freed is given back
to the system (glibc's ``malloc_trim``), so that it does not stay resident under the solve's own peak. A Hessian
operator's first product while "auto" is unsettled makes the check itself (:mod:`curvlab.core.hessian`), along
that product's own direction: the finite differences first (``evidence_for``), then the product's first chunk's
part, made on the graph the operator keeps, is judged (``judge``), so the check builds no graph and makes no
exact product of its own.

Time and memory enter as well. The check times both engines' products on the first chunk (the double backward on
a kept graph, the graph's build apart, which a solve pays once, against the best of the three finite-difference
products): an exact product of ``TIMED_FROM`` seconds or more that takes more than ``TIME_MARGIN`` times a
finite-difference one settles finite differences, saying so with both times; before it does, the exact product is
timed once more and the faster timing counts, so that one slow call (setup, load) does not decide alone. The
margin is wide on purpose: on the models measured here the two cost about the same (GPT-2 small:
docs/benchmarks.md), and a choice made on a near tie would flip with the machine's load and change λ1 in its last
digits between runs; the floor keeps sub-50 ms products, whose timings are mostly noise and whose saving is
nothing, on double backward. Memory enters as the exact product failing to allocate (out of memory), which settles
finite differences as any failing double backward does: they hold one gradient's graph at a time, not a gradient's
graph of its own.
The choice is remembered per model and parameter selection; on a distributed objective every rank checks its own
chunk and all take finite differences if any rank's check says so.
"""

from __future__ import annotations

import math
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from curvlab.core.hvp import gradient_graph, hvp_finite_difference, hvp_from_grads
from curvlab.linalg.vectors import norms64
from curvlab.machine import return_freed_memory

AGREEMENT = 10.0  # an exact product further from every finite difference than this × their spread is wrong
UNRELIABLE = 1e-2  # a spread of the finite differences beyond this (relative) is worth a caution
STEPS = (1.0, 0.25, 1 / 16)  # finite-difference steps, × the rule's ε: kinks (ReLU) and rounding make them differ
TIME_MARGIN = 2.0  # an exact product this many times slower than a finite-difference one settles finite differences
TIMED_FROM = 0.05  # seconds: shorter exact products are not judged by time (noise; nothing to save)
LossOf = Callable[[Sequence[Tensor]], Tensor]
_CHOSEN: weakref.WeakKeyDictionary[Any, dict[Any, str]] = (
    weakref.WeakKeyDictionary()
)  # model → {selected names: engine}


def choose_engine(objective: Any) -> str:
    """The engine ``"auto"`` means for this objective's model and parameters (checked once, then remembered)."""
    known = remembered(objective)
    if known is not None:
        return known
    engine, reason = _check(objective)
    return_freed_memory()  # the check's products, freed, would otherwise stay resident under the solve's peak
    return settle(objective, engine, reason)


def remembered(objective: Any) -> str | None:
    """The engine already chosen for this objective's model and parameter selection, if any."""
    return _CHOSEN.get(objective.model, {}).get(tuple(objective.names))


def settle(objective: Any, engine: str | None, reason: str | None) -> str:
    """Record a check's verdict for the model and parameters (finite differences if any rank's says so, with one
    warning saying why) and return the engine; ``engine=None`` (a non-finite loss, nothing compared): the exact
    engine now, and a check next time."""
    # every rank of a distributed objective checks its own chunk: finite differences if any rank says so
    engine = "finite_difference" if objective.smallest_across(engine != "finite_difference") == 0 else engine
    if engine is None:
        return "reverse"
    if engine == "finite_difference" and reason is None:
        reason = "another process's check found double backward failing or wrong"
    if reason:
        model = type(objective.model).__name__
        warnings.warn(
            f"curvlab: hvp_engine='auto' uses finite differences of gradients for {model}: {reason}. Pass "
            "hvp_engine='finite_difference' to say so, or 'reverse' to insist on double backward",
            UserWarning,
            stacklevel=4,
        )
    _CHOSEN.setdefault(objective.model, {})[tuple(objective.names)] = engine
    return engine


class Evidence:
    """What finite differences along one direction say of the exact product there: their fingerprints at the
    three ``STEPS``, their spread (their own error: rounding, or kinks crossed) and the size of the product."""

    def __init__(self, loss_of: LossOf, params: Sequence[Tensor], vs: Sequence[Tensor], roundoff: float):
        self.prints: list[Tensor] = []
        self.spread, self.size, self.finite, self.seconds = 0.0, 0.0, True, math.inf
        for scale in STEPS:
            start = clock(params[0].device)
            loss, estimate = hvp_finite_difference(loss_of, params, vs, scale=scale, roundoff=roundoff)
            self.seconds = min(self.seconds, clock(params[0].device) - start)  # the cheapest of the three
            self.finite = self.finite and bool(torch.isfinite(loss))
            self.size, current = norms64(estimate), fingerprint(estimate)
            del estimate  # one product at a time: each replaced by its fingerprint as soon as it is made
            if self.prints:
                self.spread += _distance(self.prints[-1], current)  # ≥ the largest pairwise distance
            self.prints.append(current)
        self.size = max(self.size, 1e-300)
        self.rounding = 100 * roundoff ** (2 / 3) * self.size  # the finite differences' own error order

    def verdict(self, exact: Tensor, exact_finite: bool, exact_seconds: float | None = None) -> tuple[str, str | None]:
        """("reverse", None) when the exact product (its ``fingerprint``) agrees with the finite differences and
        is not too slow; ("finite_difference", why) when it is further from every one than ``AGREEMENT`` × their
        spread plus their rounding floor, or not finite, or when it took ``exact_seconds`` ≥ ``TIMED_FROM``, more
        than ``TIME_MARGIN`` × the cheapest finite-difference product."""
        mismatch = min(_distance(exact, p) for p in self.prints)
        if exact_finite and mismatch <= AGREEMENT * self.spread + self.rounding:
            return self.by_time(exact_seconds)
        size = self.size
        caution = (
            f"; beware: the finite-difference steps disagree by {self.spread / size:.1g} here (kinks such as "
            "ReLU's, which a step can cross, make finite differences unreliable)"
            if self.spread > UNRELIABLE * size
            else ""
        )
        return "finite_difference", (
            f"double backward runs but disagrees with finite differences of gradients (relative difference "
            f"{mismatch / size:.2g}, against {self.spread / size:.2g} between finite-difference steps): a layer's "
            "backward is probably not differentiable (a custom autograd.Function with @once_differentiable?)" + caution
        )

    def too_slow(self, exact_seconds: float) -> bool:
        """Whether an exact product that took ``exact_seconds`` settles finite differences for time (``by_time``).
        The checks time a second exact product before they let it (one timing can be a first call's setup or a
        load spike, where the finite differences had the best of three)."""
        slow = exact_seconds >= TIMED_FROM and exact_seconds > TIME_MARGIN * self.seconds
        return slow and self.spread <= UNRELIABLE * self.size

    def by_time(self, exact_seconds: float | None) -> tuple[str, str | None]:
        """The verdict on a right exact product that took ``exact_seconds`` (None: not timed): finite differences
        when it took ``TIMED_FROM`` seconds or more, over ``TIME_MARGIN`` × the cheapest finite-difference product,
        and the finite differences agree among themselves (a spread beyond ``UNRELIABLE``: kinks crossed, where
        finite differences are wrong)."""
        if exact_seconds is None or not self.too_slow(exact_seconds):
            return "reverse", None
        return "finite_difference", (
            f"an exact product (double backward) took {exact_seconds:.3g} s against {self.seconds:.3g} s for a "
            f"finite-difference one, {exact_seconds / self.seconds:.1f}× (auto takes finite differences above "
            f"{TIME_MARGIN:g}×); their error is of order u^(2/3) of the product (u: the loss's roundoff), and they "
            "are wrong across kinks such as ReLU's"
        )


def evidence_for(objective: Any, vs: Sequence[Tensor]) -> Evidence:
    """The finite differences along ``vs`` on the objective's first chunk, for the exact product along it to be
    judged by: a Hessian operator's check made on its first product, along that product's own direction (a
    solve's random start, unless it was given one), before its graph is built. Their memory is freed and given
    back before the graph is built."""
    with objective._measuring():
        chunk = next(iter(objective._chunks()))
        loss_of: LossOf = lambda ps: objective._chunk_loss(ps, chunk)  # noqa: E731
        evidence = Evidence(loss_of, objective._params(), vs, objective.loss_roundoff())
    return_freed_memory()
    return evidence


def check_direction(params: Sequence[Tensor]) -> list[Tensor]:
    """The check's direction: the same seeded random draw (float64, then the parameters' dtype) every time."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p) for p in params]


def judge(evidence: Evidence, exact: Sequence[Tensor], seconds: float | None = None) -> tuple[str | None, str | None]:
    """The verdict on the first chunk's exact product along the evidence's direction, which took ``seconds`` on a
    graph already built; (None, None) when the loss along it was not finite (nothing to compare)."""
    if not evidence.finite:
        return None, None
    return evidence.verdict(fingerprint(exact), math.isfinite(norms64(exact)), seconds)


def clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the device's queued work is done (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def failed(err: BaseException) -> tuple[str, str]:
    """The verdict when the exact product raised."""
    why = f"double backward fails ({_first_line(err)}); finite differences are right only where the loss is "
    return "finite_difference", why + "smooth (not across ReLU kinks: docs/core.md)"


def _check(objective: Any) -> tuple[str | None, str | None]:
    """("reverse", None) when one exact product on the first chunk agrees with finite differences;
    ("finite_difference", why) when it fails or disagrees; (None, None) when the loss there is not finite."""
    params = objective._params()
    vs = check_direction(params)
    with objective._measuring():
        chunk = next(iter(objective._chunks()))
        loss_of: LossOf = lambda ps: objective._chunk_loss(ps, chunk)  # noqa: E731
        try:
            loss, exact, seconds = _timed_exact_product(loss_of, params, vs)
        except RuntimeError as err:  # NotImplementedError included
            return failed(err)
        if not bool(torch.isfinite(loss)):
            return None, None
        exact_finite, exact_print = math.isfinite(norms64(exact)), fingerprint(exact)
        del exact  # the check holds one product at a time
        evidence = Evidence(loss_of, params, vs, objective.loss_roundoff())
        if evidence.too_slow(seconds):  # timed again before a switch for time (Evidence.too_slow)
            seconds = min(seconds, _timed_exact_product(loss_of, params, vs)[2])
    return evidence.verdict(exact_print, exact_finite, seconds)


def _timed_exact_product(
    loss_of: LossOf, params: Sequence[Tensor], vs: Sequence[Tensor]
) -> tuple[Tensor, list[Tensor], float]:
    """(loss, H v, seconds of the double backward alone): the graph's build is not timed, as a solve pays it
    once and each of its products only the double backward."""
    loss, leaves, grads = gradient_graph(loss_of, params)
    start = clock(loss.device)
    product = hvp_from_grads(grads, leaves, vs)
    return loss.detach(), product, clock(loss.device) - start


def _distance(a: Tensor, b: Tensor) -> float:
    """‖a − b‖ of two fingerprints: the distance of the products they stand for (exact, or within the sketch's
    error)."""
    return float(torch.linalg.vector_norm(a - b))


SKETCH = 1 << 17  # buckets of the count sketch standing for a product of more entries in the check's distances
SKETCH_CHUNK = 1 << 18  # entries sketched at a time (a few MB of draws), each chunk with its own seeded draws


def fingerprint(tensors: Sequence[Tensor]) -> Tensor:
    """A float64 vector standing for the concatenation of ``tensors`` (per-parameter products) in the check's
    distances: the concatenation itself up to ``SKETCH`` entries; beyond, its count sketch — each entry added, with
    a random sign, into a random one of ``SKETCH`` buckets, both drawn from a generator seeded by the entry's tensor
    and chunk, so that lists of the same shapes share the sketch — whose distances are the vectors' within about
    √(2/SKETCH) ≈ 0.4% (relative), ample against the check's factor-10 margin, in 1 MB where the product takes
    4 bytes a parameter."""
    if sum(t.numel() for t in tensors) <= SKETCH:
        return torch.cat([t.detach().reshape(-1).to(torch.float64).cpu() for t in tensors])
    out = torch.zeros(SKETCH, dtype=torch.float64, device=tensors[0].device)
    for index, t in enumerate(tensors):
        flat = t.detach().reshape(-1)
        for chunk, start in enumerate(range(0, flat.numel(), SKETCH_CHUNK)):
            part = flat[start : start + SKETCH_CHUNK]
            gen = torch.Generator().manual_seed(index * 2**32 + chunk)
            bucket = torch.randint(0, SKETCH, (part.numel(),), generator=gen).to(part.device)
            sign = torch.randint(0, 2, (part.numel(),), generator=gen, dtype=torch.int8).to(part.device) * 2 - 1
            out.index_add_(0, bucket, part.to(torch.float64) * sign)
    return out.cpu()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
