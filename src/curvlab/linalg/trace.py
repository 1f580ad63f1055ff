"""Stochastic trace estimation (definitions §2): Hutchinson and Hutch++ with Rademacher probes."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from curvlab.checks import check_int
from curvlab.errors import InputError
from curvlab.linalg.eigs import orthonormal_columns
from curvlab.linalg.operator import LinearOperator, as_operator
from curvlab.linalg.progress import progress_bar
from curvlab.linalg.random import make_generator
from curvlab.linalg.vectors import F64

TRACE_METHODS = ("hutchinson", "hutch++")


@dataclass
class TraceResult:
    """``estimate`` ± ``stderr`` (the standard error of the stochastic part)."""

    estimate: float
    stderr: float
    n_matvecs: int
    method: str
    samples: Tensor

    def __repr__(self) -> str:
        return (
            f"TraceResult(estimate={self.estimate:.6g}, stderr={self.stderr:.3g}, method={self.method!r}, "
            f"n_matvecs={self.n_matvecs})"
        )


def trace(
    op: Any,
    method: str = "hutchinson",
    n_probes: int = 100,
    *,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> TraceResult:
    """tr(A) from ``n_probes`` products with A.

    Hutchinson: mean of zᵀAz over Rademacher z; stderr = sample std / √n.
    Hutch++ (Meyer et al. 2021): a third of the products sketch the dominant range Q of A, whose
    trace tr(QᵀAQ) is exact; the rest estimate tr of the deflated remainder by Hutchinson.

    Memory: Hutchinson draws its probes one at a time (two float64 vectors besides the product); Hutch++ keeps
    its sketch, 2 × ⌊n_probes/3⌋ float64 vectors (docs/scale.md).
    """
    op = as_operator(op)
    if method not in TRACE_METHODS:
        raise InputError(f"method: expected one of {TRACE_METHODS}, got {method!r}")
    minimum = 2 if method == "hutchinson" else 3
    check_int(n_probes, "n_probes", minimum, note=f"for method={method!r}")
    gen = make_generator(seed, generator)
    used_before = op.n_matvecs
    bar = progress_bar(n_probes, f"trace ({method})", progress)
    try:
        if method == "hutchinson":
            probes = (op.random("rademacher", gen) for _ in range(n_probes))  # drawn one at a time
            exact, samples = 0.0, _quadratic_forms(op, probes, bar)
        else:
            exact, samples = _hutchpp(op, n_probes, gen, bar)
    finally:
        bar.close()
    n = samples.numel()
    stderr = float(samples.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    return TraceResult(exact + float(samples.mean()), stderr, op.n_matvecs - used_before, method, samples)


def peak_bytes(method: str, dim: int, n_probes: int) -> int:
    """The most memory a trace estimate holds besides the operator's own products, in bytes (docs/scale.md):
    Hutchinson one float64 probe and its product at a time; Hutch++ with n = ⌊probes/3⌋, the larger of its QR
    (A·S and Q, 2n float64 vectors) and its last phase (Q, a probe, its projection onto Q and the projected probe:
    n + 3)."""
    if method == "hutchinson":
        return dim * 2 * 8
    n = n_probes // 3
    return dim * 8 * max(2 * n, n + 3)


def _apply(op: LinearOperator, v: Tensor) -> Tensor:
    return op.matvec(v.to(op.dtype)).to(F64)


def _quadratic_forms(op: LinearOperator, probes: Iterable[Tensor], bar: Any) -> Tensor:
    values = []
    for z in probes:
        values.append(op.dot(z, _apply(op, z)))
        del z  # freed before the next probe is drawn: one probe and its product at a time
        bar.update()
    return torch.tensor(values, dtype=F64)


def _hutchpp(op: LinearOperator, n_probes: int, gen: torch.Generator, bar: Any) -> tuple[float, Tensor]:
    n_sketch = n_probes // 3
    range_: Tensor | None = None  # A·S, one column at a time; each sketch probe is dropped once multiplied
    for j in range(n_sketch):
        product = _apply(op, op.random("rademacher", gen))
        if range_ is None:  # column-major, as QR takes it
            range_ = torch.empty((n_sketch, product.numel()), dtype=F64, device=product.device).T
        range_[:, j] = product
        del product
    bar.update(n_sketch)
    assert range_ is not None  # n_sketch ≥ 1: n_probes ≥ 3 is checked for Hutch++
    q = orthonormal_columns(op, range_)
    del range_
    exact = sum(op.dot(qi, _apply(op, qi)) for qi in q.T)
    bar.update(n_sketch)
    n_rest = n_probes - 2 * n_sketch
    probes = (z - q @ op.inner(q, z) for z in (op.random("rademacher", gen) for _ in range(n_rest)))
    return exact, _quadratic_forms(op, probes, bar)  # each probe with the sketched range projected out
