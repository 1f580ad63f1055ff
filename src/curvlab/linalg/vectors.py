"""Sums over the entries of flat vectors, exact enough in float64, and where a process's vectors sit in the whole.

An operator's vectors are either whole on every process, or split: each process holds a part (FSDP2 shards of
the parameters, :mod:`curvlab.fsdp`) and a :class:`Sharding` says where that part sits in the whole vector and
how to add up the partial sums of the processes. The solvers take every inner product and norm through the
operator (:meth:`curvlab.LinearOperator.dot`), so they run unchanged on either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

F64 = torch.float64
DOT_CHUNK = 1 << 18  # entries per float64 partial sum: exact-enough dot products without a float64 copy


def dot64(a: Tensor, b: Tensor) -> float:
    """⟨a, b⟩ summed in float64, in chunks: no float64 copy of a float32 vector is made."""
    if a.dtype == F64 and b.dtype == F64:
        return float(torch.dot(a, b))
    total = 0.0
    for start in range(0, a.numel(), DOT_CHUNK):
        stop = start + DOT_CHUNK
        total += float(torch.dot(a[start:stop].to(F64), b[start:stop].to(F64)))
    return total


def norm64(a: Tensor) -> float:
    return float(dot64(a, a) ** 0.5)


def norms64(tensors: Iterable[Tensor]) -> float:
    """‖(t₁, t₂, …)‖ over tensors of any shapes (a parameter list, or a generator of per-parameter differences,
    formed one at a time), summed in float64 without a float64 copy of any of them."""
    return math.sqrt(sum(norm64(t.detach().reshape(-1)) ** 2 for t in tensors))


@dataclass(frozen=True)
class Sharding:
    """This process's part of every vector of an operator whose vectors are split across processes.

    ``total`` adds up float64 partial sums over the processes (an all-reduce: every process must call it, in the
    same order). ``size`` is the length of the whole vector and ``ranges`` the [start, stop) positions of this
    process's entries in it, ascending, concatenated in order (``rank`` of ``world`` processes): random vectors
    are drawn whole and cut to them, so a split solve draws the same probes as a one-process one.
    """

    total: Callable[[Tensor], Tensor]
    size: int
    ranges: tuple[tuple[int, int], ...]
    rank: int
    world: int

    @property
    def local_size(self) -> int:
        return sum(stop - start for start, stop in self.ranges)

    def local_positions(self, positions: Tensor) -> Tensor:
        """Positions in the whole vector → the positions of those held here in this process's part (ascending);
        the others are dropped."""
        kept, local_start = [], 0
        for start, stop in self.ranges:
            inside = positions[(positions >= start) & (positions < stop)]
            kept.append(inside - start + local_start)
            local_start += stop - start
        return torch.sort(torch.cat(kept)).values if kept else positions[:0]

    def rank_major(self, local_size: int) -> Sharding:
        """The split, over the same processes, of vectors with no layout of their own (e.g. a diagonal block of the
        operator): the whole vector is the processes' parts one after the other in rank order (one all-reduce)."""
        mine = torch.zeros(self.world, dtype=F64)
        mine[self.rank] = local_size
        sizes = [int(s) for s in self.total(mine).tolist()]
        start = sum(sizes[: self.rank])
        return Sharding(self.total, sum(sizes), ((start, start + local_size),), self.rank, self.world)
