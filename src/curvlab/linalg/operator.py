"""Symmetric linear operators v ↦ A v on flat vectors: the only thing the solvers see."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from curvlab.checks import check_int
from curvlab.errors import InputError, InputTypeError, NonFiniteError, nonfinite_detail
from curvlab.linalg.random import random_vector
from curvlab.linalg.vectors import Sharding, dot64

FINITE_CHUNK = 1 << 18


def all_finite(t: Tensor) -> bool:
    """No NaN or ±inf in ``t``. A NaN or an infinity makes the sum non-finite, so a finite sum settles it with one
    reduction in ``t``'s own dtype (no copy); only a non-finite sum (possibly an overflow of finite entries) is
    checked entry by entry, a chunk at a time: ``torch.isfinite`` on a whole vector makes a float copy of it (its
    absolute value) and two masks, a full extra vector at the peak of every product."""
    flat = t.reshape(-1)
    if flat.is_floating_point() and math.isfinite(float(flat.sum())):
        return True
    return all(bool(torch.isfinite(part).all()) for part in flat.split(FINITE_CHUNK))


class LinearOperator:
    """A symmetric linear map on flat vectors of length ``dim``.

    ``matvec`` receives a 1-D tensor of ``dtype`` on ``device`` and returns ``A v`` of the same length.
    Every product is counted in ``n_matvecs``; a product with a NaN or ±inf entry raises
    :class:`~curvlab.errors.NonFiniteError` naming the operator (``name``) instead of reaching a solver.
    Wrap any callable this way, e.g. a preconditioned Hessian ``LinearOperator(lambda v: d * H(d * v), dim=H.dim)``.
    """

    def __init__(
        self,
        matvec: Callable[[Tensor], Tensor],
        dim: int,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        name: str = "operator",
        sharding: Sharding | None = None,
    ):
        if not callable(matvec):
            raise InputTypeError(f"matvec: expected a callable v -> A v, got {type(matvec).__name__}")
        check_int(dim, "dim", 0 if sharding is not None else 1)  # a process may hold none of a split vector
        self._matvec = matvec
        self.dim = dim
        self.dtype = dtype
        self.device = torch.device(device)
        self.n_matvecs = 0
        self.name = name
        self.across: Callable[[float], float] | None = None  # set by operators whose products are collectives
        self.sharding = sharding  # where this process's part of the vectors sits, when they are split across processes

    def smallest_across(self, value: float) -> float:
        """The smallest of ``value`` over the processes that compute this operator's products together (``value``
        itself for an operator of one process): solvers base local choices on it, so every rank makes the same."""
        return value if self.across is None else self.across(value)

    @property
    def size(self) -> int:
        """The length of the whole vectors: ``dim``, or, when they are split across processes, the sum of every
        process's ``dim`` (what the solvers' step limits count)."""
        return self.dim if self.sharding is None else self.sharding.size

    def sums(self, partial: Tensor) -> Tensor:
        """Float64 sums over the entries of this operator's vectors: this process's ``partial`` sums, added up over
        the processes when the vectors are split (:class:`~curvlab.linalg.vectors.Sharding`), else as given."""
        partial = partial.to(torch.float64)
        return partial if self.sharding is None else self.sharding.total(partial)

    def dot(self, a: Tensor, b: Tensor) -> float:
        """⟨a, b⟩ of two of this operator's vectors, summed in float64 (over every process's part)."""
        return float(self.sums(torch.tensor([dot64(a, b)], dtype=torch.float64))[0])

    def norm(self, a: Tensor) -> float:
        """The norm ‖a‖ in the operator's inner product (summed across ranks for a sharded space)."""
        return float(max(self.dot(a, a), 0.0) ** 0.5)

    def inner(self, q: Tensor, v: Tensor) -> Tensor:
        """Qᵀv for the columns of ``q`` (one all-reduce for all of them when the vectors are split)."""
        return self.sums(q.to(torch.float64).T @ v.to(torch.float64))

    def random(self, kind: str, gen: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
        """A random vector of this operator's space ("gaussian" or "rademacher"; float64 draws, stored in ``dtype``);
        when the vectors are split, this process's part of one whole vector drawn alike on every process."""
        if self.sharding is None:
            return random_vector(kind, self.dim, gen, self.device, dtype=dtype)
        return random_vector(kind, self.sharding.size, gen, self.device, self.sharding.ranges, dtype)

    def all_finite(self, t: Tensor) -> bool:
        """No NaN or ±inf in ``t`` — in any process's part when the vectors are split (so every process agrees)."""
        local = all_finite(t)
        if self.sharding is None:
            return local
        return float(self.sums(torch.tensor([0.0 if local else 1.0]))[0]) == 0.0

    def derive(self, matvec: Callable[[Tensor], Tensor], *, dim: int | None = None, **options: Any) -> LinearOperator:
        """A new operator on the same processes (``matvec`` built from this one's products): it shares the collective
        choices and, without a new ``dim``, the split of the vectors (a new ``dim`` of split vectors is laid out rank
        after rank: :meth:`~curvlab.linalg.vectors.Sharding.rank_major`)."""
        if dim is None:
            dim, sharding = self.dim, self.sharding
        else:
            sharding = None if self.sharding is None else self.sharding.rank_major(dim)
        options = {"dtype": self.dtype, "device": self.device, "name": self.name, "sharding": sharding, **options}
        derived = LinearOperator(matvec, dim, **options)
        derived.across = self.across
        return derived

    def matvec(self, v: Tensor) -> Tensor:
        """A v, with ``v`` cast to the operator's dtype and device; the result has the same."""
        out = self._product_of(self._checked(v))
        self.n_matvecs += 1
        if not self.all_finite(out):
            raise self._nonfinite(out)
        return out.reshape(-1).to(self.dtype)

    def matvec_add(self, v: Tensor, out: Tensor, scale: float) -> Tensor:
        """``out`` ← scale · out + A v, in place; returns ``out`` (a flat vector of the operator's length on its
        device). An operator that can add its product straight into ``out`` (:meth:`_add_product_to`: the kept-graph
        Hessian of one chunk) never holds A v apart from it: the three-term Lanczos recurrence, which adds the product
        to the scaled previous vector, then forms no per-parameter product list nor flat copy of it. That vector
        itself is still held through the product (docs/scale.md, docs/benchmarks.md "Language models")."""
        v = self._checked(v)
        if not isinstance(out, Tensor) or out.dim() != 1 or out.numel() != self.dim or out.device != self.device:
            raise InputError(f"out: expected a flat vector of length {self.dim} on {self.device}")
        out.mul_(scale)
        if not self._add_product_to(v, out):
            out.add_(self._product_of(v).reshape(-1).to(out.dtype))
        self.n_matvecs += 1
        if not self.all_finite(out):
            raise self._nonfinite(out)
        return out

    def _checked(self, v: Tensor) -> Tensor:
        """``v`` validated (a finite flat vector of length ``dim``) and cast to the operator's dtype and device."""
        if not isinstance(v, Tensor):
            raise InputTypeError(f"v: expected a torch.Tensor, got {type(v).__name__}")
        if v.dim() != 1 or v.numel() != self.dim:
            raise InputError(f"v: expected a flat vector of length {self.dim}, got shape {tuple(v.shape)}")
        if not self.all_finite(v):
            raise InputError(f"v: expected a finite vector, got {nonfinite_detail(v)}")
        return v.to(device=self.device, dtype=self.dtype)

    def _product_of(self, v: Tensor) -> Tensor:
        out = self._matvec(v)
        if not isinstance(out, Tensor) or out.numel() != self.dim:
            raise InputError(f"matvec: must return a vector of length {self.dim}")
        return out

    def adds_in_place(self, dtype: torch.dtype) -> bool:
        """Whether :meth:`matvec_add` into a vector of ``dtype`` now adds the product without forming it apart
        (then a product into zeros holds one vector fewer than :meth:`matvec` and the copy it returns)."""
        return False

    def _add_product_to(self, v: Tensor, out: Tensor) -> bool:
        """Add A v into ``out`` in place without forming A v apart, where this operator can (then True); here it
        cannot: :meth:`matvec_add` then adds a product made as :meth:`matvec` makes it."""
        return False

    def _nonfinite(self, product: Tensor) -> NonFiniteError:
        """The error for a product with a NaN or ±inf entry (an operator that knows its point says more)."""
        return NonFiniteError(f"{self.name}-vector product", values=nonfinite_detail(product))

    __call__ = matvec
    __matmul__ = matvec

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, dtype={self.dtype}, device={self.device})"


def symmetric_scaling(op: LinearOperator, scale: Tensor, name: str | None = None) -> LinearOperator:
    """D A D with D = diag(``scale``): v ↦ s ⊙ A(s ⊙ v), e.g. P^{-1/2} H P^{-1/2} for a preconditioner P."""
    scale = scale.reshape(-1).to(device=op.device, dtype=op.dtype)
    if scale.numel() != op.dim:
        raise InputError(f"scale: expected {op.dim} entries (one per dimension), got {scale.numel()}")
    if not op.all_finite(scale):
        raise NonFiniteError("scaling (preconditioner) entries", values=nonfinite_detail(scale))
    return op.derive(lambda v: scale * op(scale * v), name=name or f"scaled {op.name}")


class MatrixOperator(LinearOperator):
    """An explicit symmetric matrix as an operator (tests, toy problems, small Hessians)."""

    def __init__(self, matrix: Tensor | np.ndarray, *, check_symmetric: bool = True):
        matrix = torch.as_tensor(matrix)
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise InputError(f"matrix: expected a square 2-D matrix, got shape {tuple(matrix.shape)}")
        if not matrix.is_floating_point():
            matrix = matrix.to(torch.float64)
        if check_symmetric:
            scale = matrix.abs().max().clamp_min(1e-300)
            if ((matrix - matrix.T).abs().max() / scale) > 1e-6:
                raise InputError("matrix: expected a symmetric matrix (max |A - A^T| / max |A| > 1e-6)")
        self.matrix = matrix
        super().__init__(lambda v: matrix @ v, matrix.shape[0], dtype=matrix.dtype, device=matrix.device)


def as_operator(op: Any, dim: int | None = None) -> LinearOperator:
    """Accept an operator, anything with a ``hessian()`` (an Objective), a matrix, or a callable with ``dim``."""
    if isinstance(op, LinearOperator):
        return op
    if callable(getattr(op, "hessian", None)):
        return cast(LinearOperator, op.hessian())
    if isinstance(op, (Tensor, np.ndarray)):
        return MatrixOperator(op)
    if callable(op):
        if dim is None:
            dim = getattr(op, "dim", None)
        if dim is None:
            raise InputTypeError(
                "op: a plain callable has no known dimension; wrap it as curvlab.LinearOperator(fn, dim=...)"
            )
        return LinearOperator(op, dim)
    raise InputTypeError(
        f"op: expected a curvlab.LinearOperator, an Objective, a square matrix or a callable, got {type(op).__name__}"
    )
