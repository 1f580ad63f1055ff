"""Data-parallel measurement with torch.distributed.

Each rank holds a shard of the measurement set. Every evaluation computes this rank's size-weighted
means, then combines them across ranks with an explicit all-reduce, F = Σ_r n_r F_r / Σ_r n_r (and
the same for ∇F and ∇²F v), so that every solver, metric and tuner built on an Objective works
unchanged and gets identical results on every rank. ``torch.autograd.grad`` bypasses DDP's gradient
hooks, so a DistributedDataParallel model is unwrapped and the reduction is done here.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from curvlab.core.objective import Objective
from curvlab.errors import InputError
from curvlab.fsdp import ShardedObjective, is_sharded


class DistributedObjective(Objective):
    """An :class:`Objective` over a measurement set sharded across the ranks of ``group``.

    Use it like an Objective (same arguments; ``data`` is this rank's shard, shards may be uneven).
    Random probes in the solvers come from explicit seeds, so all ranks draw the same ones. Every rank must
    make the same calls in the same order (each is a collective); a :class:`~curvlab.Monitor` on it makes its
    schedule decisions once and shares them (:func:`rank0_decides`).
    """

    collective = True

    def __init__(self, model: nn.Module, loss_fn: Any, data: Any, *, group: Any = None, **kwargs: Any):
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "DistributedObjective: torch.distributed is not initialised; call init_process_group first (torchrun "
                "does)"
            )
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        super().__init__(model, loss_fn, data, **kwargs)
        self.group = group

    def smallest_across(self, value: float) -> float:
        smallest = torch.tensor([float(value)], dtype=torch.float64, device=self.space.device)
        dist.all_reduce(smallest, op=dist.ReduceOp.MIN, group=self.group)
        return float(smallest)

    def _combine_count(self, n: float) -> float:
        total = torch.tensor([float(n)], dtype=torch.float64, device=self.space.device)
        dist.all_reduce(total, group=self.group)
        return float(total)

    def _combine(self, loss: float, vector: Tensor | None, n: float) -> tuple[float, Tensor | None]:
        sums = torch.tensor([loss * n, float(n)], dtype=torch.float64, device=self.space.device)
        dist.all_reduce(sums, group=self.group)
        total_n = float(sums[1])
        if vector is None:
            return float(sums[0]) / total_n, None
        weighted = vector.to(torch.float64) * n
        dist.all_reduce(weighted, group=self.group)
        return float(sums[0]) / total_n, (weighted / total_n).to(vector.dtype)


def rank0_decides(
    decisions: Sequence[int], alarms: Sequence[bool], group: Any = None, device: Any = None
) -> tuple[list[int], list[bool]]:
    """Make per-process choices agree across the ranks of ``group``, in one all-reduce: every rank gets rank 0's
    ``decisions`` (non-negative codes, e.g. which measurements are due) and, for each of ``alarms``, whether any
    rank raised it (e.g. saw a non-finite loss). Outside torch.distributed, the arguments come back as given."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(decisions), list(alarms)
    mine = list(decisions) if dist.get_rank(group) == 0 else [0] * len(decisions)
    codes = torch.tensor([*mine, *(int(bool(a)) for a in alarms)], dtype=torch.int64, device=device)
    dist.all_reduce(codes, op=dist.ReduceOp.MAX, group=group)
    values = codes.tolist()
    return values[: len(decisions)], [bool(v) for v in values[len(decisions) :]]


def rank() -> int:
    """This process's rank (0 when torch.distributed is not initialised)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def shard(n: int, world_size: int, rank_: int) -> slice:
    """The contiguous slice of ``n`` examples that rank ``rank_`` of ``world_size`` holds (uneven when
    ``n`` does not divide: the first ``n % world_size`` ranks hold one more)."""
    base, extra = divmod(n, world_size)
    start = rank_ * base + min(rank_, extra)
    return slice(start, start + base + (1 if rank_ < extra else 0))


def finish() -> None:
    """Leave the process group cleanly: a barrier first, since a rank that destroys the group while
    another still has the last message of a collective in flight makes that rank abort (gloo)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # a DistributedDataParallel left for later collection would outlive its process group
        dist.barrier()
        dist.destroy_process_group()


def world_size() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def join_process_group() -> int:
    """Under torchrun: join the process group (NCCL on a GPU, gloo otherwise); returns the world size."""
    world = world_size()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return world


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(value: float) -> float:
    """The sum of ``value`` over the ranks (float64), on every rank."""
    total = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total)


def sharded_objective(
    model: Any, loss_fn: Any, data: Any, world: int, rank_: int, options: dict[str, Any]
) -> Objective:
    """An Objective on ``data``; with several processes, a DistributedObjective on this rank's shard of it
    (tensor pairs and lists of batches are split; any other data is taken as this rank's shard); for a model whose
    parameters are FSDP2 shards, a :class:`~curvlab.fsdp.ShardedObjective` on this rank's shard."""
    if is_sharded(model):
        return ShardedObjective(model, loss_fn, rank_shard(data, world, rank_), **options)
    if world <= 1:
        return Objective(model, loss_fn, data, **options)
    return DistributedObjective(model, loss_fn, rank_shard(data, world, rank_), **options)


def rank_shard(data: Any, world: int, rank_: int) -> Any:
    """This rank's part of a data set: a contiguous slice of tensors, every world-th batch of a list."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        part = shard(len(data[1]), world, rank_)
        return data[0][part], data[1][part]
    if isinstance(data, list):
        if len(data) < world:
            raise InputError(
                f"data: a list of {len(data)} batch(es) cannot be shared by {world} processes (each measures whole "
                "batches of it); give at least one batch per process, or an (inputs, targets) pair to be split"
            )
        return data[rank_::world]
    return data
