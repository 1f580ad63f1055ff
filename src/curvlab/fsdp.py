"""Measurement on models sharded by FSDP2 (``torch.distributed.fsdp.fully_shard``), from this rank's shards alone.

Every parameter of a ``fully_shard``-ed model is a DTensor of which this rank holds a block of rows. A
:class:`ShardedObjective`'s flat vectors are those local blocks, concatenated: no rank ever holds a whole vector.
Inner products and norms add up the ranks' partial sums (one all-reduce; the operators' ``sharding``), random
probes are cut from one whole vector drawn alike on every rank, so a solve sees the same numbers as a one-process
solve of the unsharded model.

Products come from gradients alone, through the sharded model's own forward and backward (double backward
through FSDP2 fails: its unsharded parameters are freed after use): the central difference
(∇F(x + εv) − ∇F(x − εv)) / 2ε of :mod:`curvlab.core.hvp`, with the shards written in place for the two
gradients and restored bit for bit afterwards. The gradient of the whole measurement set is FSDP2's own
reduce-scatter of every rank's weighted loss. Every rank runs the same number of forward and backward passes
(ranks with fewer batches repeat their last with weight 0), so the collectives of FSDP2 always pair up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn

from curvlab.core.batches import Chunk
from curvlab.core.curvature import AtOnePoint, nonempty, nonfinite_error
from curvlab.core.errors import explain_error
from curvlab.core.hvp import STEP_FACTOR
from curvlab.core.objective import Objective, model_loss
from curvlab.core.params import ParamSpace
from curvlab.core.params import local_part as local
from curvlab.errors import InputError, InputTypeError
from curvlab.linalg.operator import LinearOperator
from curvlab.linalg.vectors import F64, Sharding, dot64

ENGINES = ("auto", "finite_difference")


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` holds FSDP2-sharded parameters (DTensors)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


class ShardedObjective(Objective):
    """An :class:`~curvlab.Objective` on an FSDP2 (``fully_shard``) model; ``data`` is this rank's part of the
    measurement set (parts may be uneven). Same arguments as an Objective, except that products come from the
    finite-difference engine only (``hvp_engine="auto"`` or ``"finite_difference"``) and that the Gauss–Newton and
    Fisher are not available. Flat vectors are this rank's shards (``objective.dim`` entries; ``objective.size``
    for the whole); every evaluation is a collective: all ranks must make the same calls in the same order.
    """

    collective = True
    measures_shards = True

    def __init__(self, model: nn.Module, loss_fn: Any, data: Any, **kwargs: Any):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("ShardedObjective: torch.distributed is not initialised; call init_process_group first")
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        engine = kwargs.pop("hvp_engine", "auto")
        if engine not in ENGINES:
            raise InputError(
                f"hvp_engine: an FSDP2 model's products come from gradients alone, {ENGINES}; got {engine!r} (double "
                "backward through fully_shard fails: its unsharded parameters are freed after use)"
            )
        super().__init__(model, loss_fn, data, hvp_engine="finite_difference", **kwargs)
        self.mesh = _one_mesh(self._selected)
        self.group = self.mesh.get_group()
        self.rank, self.world = dist.get_rank(self.group), dist.get_world_size(self.group)
        self._locals = [local(p) for _, p in self._selected]
        self.space = ParamSpace(
            self.space.names, tuple(t.shape for t in self._locals), self.space.dtype, self.space.device
        )
        self.sharding = Sharding(self.sums, *_global_ranges(self._selected, self._locals), self.rank, self.world)
        self._divisor = _gradient_divisor(model, self.mesh)
        self._own_bumps = [0] * len(self._locals)  # version increments of our own writes (restored exactly)
        self._passes: int | None = None  # forward passes per evaluation, the same on every rank
        self._total_weight: float | None = None  # of the whole measurement set

    # ----- description ---------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Entries of the whole x, over every rank (``dim`` is this rank's share)."""
        assert self.sharding is not None  # set when made
        return self.sharding.size

    @property
    def settings(self) -> dict[str, Any]:
        return {**super().settings, "dim": self.size, "sharded": f"FSDP2 over {self.world} ranks"}

    def on(self, data: Any, batch_size: int | None = None) -> Objective:
        raise InputError(
            "on: an FSDP2 model is measured by all its ranks together; build a ShardedObjective on the new data on "
            "every rank"
        )

    def flatten(self, tensors: Sequence[Tensor]) -> Tensor:
        """Per-parameter tensors (this rank's blocks, or DTensors shaped like the parameters) → flat local vector."""
        return self.space.flatten([local(t) for t in tensors])

    def parameters_vector(self, out: Tensor | None = None) -> Tensor:
        views = [t.detach().reshape(-1) for t in self._locals]
        return torch.cat(views) if out is None else torch.cat(views, out=out)

    def dot(self, a: Tensor, b: Tensor) -> float:
        return float(self.sums(torch.tensor([dot64(a, b)], dtype=F64))[0])

    def norm(self, a: Tensor) -> float:
        return float(max(self.dot(a, a), 0.0) ** 0.5)

    def point_versions(self) -> list[int]:
        """Version counters of the local shards and buffers, less this Objective's own (exactly undone) writes."""
        shards = [t._version - bump for t, bump in zip(self._locals, self._own_bumps)]
        return shards + [b._version for b in self.model.buffers()]

    # ----- evaluations ---------------------------------------------------------------------------
    def loss(self, at: Tensor | None = None) -> float:
        self.counts["loss"] += 1
        with self._at(at):
            return self._pass(backward=False)[0]

    def loss_and_grad(self, at: Tensor | None = None) -> tuple[float, Tensor]:
        self.counts["grad"] += 1
        with self._at(at):
            loss, grad = self._pass(backward=True)
        assert grad is not None  # backward=True
        return loss, grad

    def hvp(self, v: Tensor, at: Tensor | None = None) -> Tensor:
        """∇²F(x) v by the central difference of two gradients through the sharded model (module docs)."""
        v = self.space.check_vector(v, "v")
        self.counts["hvp"] += 1
        with self._at(at):
            product = self._difference(v)
        if not self.all_finite(product):  # agreed: every rank raises, none waits
            raise nonfinite_error(product, "Hessian-vector product", lambda: self.loss(at))
        return product

    def quad(self, u: Tensor, at: Tensor | None = None) -> float:
        u = self.space.check_vector(u, "u")
        return self.dot(u, self.hvp(u, at))

    def grad_and_quads(self, directions: Sequence[Tensor], at: Tensor | None = None) -> tuple[Tensor, list[float]]:
        return self.grad(at), [self.quad(u, at) for u in directions]

    def hessian(self, cache: bool | str = "auto") -> ShardedHessian:  # type: ignore[override]
        """∇²F at the current parameters as an operator on the local shards (``cache`` has no effect: nothing is
        kept between products). Changing the parameters makes it stale: a product then raises."""
        return self._shared(("hessian",), lambda: ShardedHessian(self))

    def ggn(self, cache: bool | str = "auto") -> Any:
        raise InputError(_NO_SPLIT.format(what="ggn"))

    def fisher(self, *args: Any, **kwargs: Any) -> Any:
        raise InputError(_NO_SPLIT.format(what="fisher"))

    def loss_roundoff(self) -> float:
        """The machine epsilon (finfo.eps, twice the unit roundoff) of the computation: the parameters', the loss's
        or FSDP2's compute dtype's, whichever is coarsest (a mixed-precision policy computes in its ``param_dtype``)."""
        if self._roundoff is None:
            with self._measuring(), torch.no_grad():
                chunk = next(iter(self._chunks()))
                loss = self._chunk_loss([], chunk)
            dtypes = [self.space.dtype, loss.dtype, *_compute_dtypes(self.model)]
            self._roundoff = max(torch.finfo(d).eps for d in dtypes)
        return self._roundoff

    def smallest_across(self, value: float) -> float:
        smallest = torch.tensor([float(value)], dtype=F64)
        dist.all_reduce(smallest, op=dist.ReduceOp.MIN, group=self.group)
        return float(smallest)

    def _combine_count(self, n: float) -> float:
        return float(self.sums(torch.tensor([float(n)], dtype=F64))[0])

    # ----- internals -----------------------------------------------------------------------------
    def sums(self, partial: Tensor) -> Tensor:
        """Float64 sums over the ranks (one all-reduce)."""
        values = partial.to(F64).clone()
        dist.all_reduce(values, group=self.group)
        return values

    def _chunk_outputs(self, leaves: Sequence[Tensor], chunk: Chunk) -> Any:
        """The sharded model's own forward (its hooks gather and free the parameters): ``leaves`` are ignored, the
        point is whatever the shards hold (see :meth:`_at`)."""
        try:
            return self.model(*chunk.args, **chunk.kwargs)
        except RuntimeError as err:
            raise explain_error(err) from err

    def _chunk_loss(self, leaves: Sequence[Tensor], chunk: Chunk) -> Tensor:
        outputs = self._chunk_outputs(leaves, chunk)
        loss = self.loss_fn(outputs, chunk.targets) if self.loss_fn is not None else model_loss(outputs)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise InputError(f"loss_fn: must return a scalar tensor (the batch's mean loss), got {shape}")
        return loss.reshape(())

    def _agree_on_passes(self) -> None:
        """Count the chunks and their weight once; every rank learns the most chunks any rank has, and all raise
        together when one has none."""
        if self._passes is not None:
            return
        sizes = [chunk.size for chunk in self.chunks]
        counts = torch.tensor([len(sizes), -len(sizes)], dtype=torch.int64)
        dist.all_reduce(counts, op=dist.ReduceOp.MAX, group=self.group)
        if int(counts[1]) == 0:
            raise InputError("data: a rank's part of the measurement set is empty; give every rank at least one batch")
        self._passes = int(counts[0])
        self._total_weight = nonempty(self._combine_count(sum(sizes)))

    def _agreed_chunks(self) -> Iterator[Chunk]:
        """This rank's chunks, then its last one again with weight 0 until every rank has made as many passes."""
        done, last = 0, None
        for chunk in self._chunks():
            done, last = done + 1, chunk
            yield chunk
        assert self._passes is not None and last is not None  # agreed first; a rank without chunks raised there
        for _ in range(self._passes - done):
            yield Chunk(last.args, last.kwargs, last.targets, 0.0)

    def _pass(self, backward: bool) -> tuple[float, Tensor | None]:
        """F at the point the shards hold, and with ``backward`` its gradient (this rank's shard): one forward (and
        backward) per chunk, each chunk's loss weighted so that FSDP2's reduce-scatter yields the weighted mean."""
        self._agree_on_passes()
        total_n = self._total_weight
        assert total_n is not None  # set by _agree_on_passes
        saved = [p.grad for _, p in self._selected]
        local_loss = 0.0
        try:
            with self._measuring(), torch.set_grad_enabled(backward):
                _reshard(self.model)
                for _, p in self._selected:
                    p.grad = None
                for chunk in self._agreed_chunks():
                    loss = self._chunk_loss([], chunk)
                    if chunk.size:
                        local_loss += chunk.size * float(loss.detach())
                    if backward:
                        (loss * (chunk.size * self._divisor / total_n)).backward()
            grad = self.flatten([_grad_or_zeros(p) for _, p in self._selected]) if backward else None
        except RuntimeError as err:
            raise explain_error(err) from err
        finally:
            for (_, p), g in zip(self._selected, saved):
                p.grad = g
        return float(self.sums(torch.tensor([local_loss], dtype=F64))[0]) / total_n, grad

    def _difference(self, v: Tensor) -> Tensor:
        """(∇F(x + εv) − ∇F(x − εv)) / 2ε with ε = c·u^(1/3)·max(1, rms(x))/‖v‖ over the whole vectors."""
        v_norm = self.dot(v, v) ** 0.5
        if v_norm == 0:
            return torch.zeros_like(v)
        x = self.parameters_vector()
        rms = (self.dot(x, x) / self.size) ** 0.5
        eps = STEP_FACTOR * self.loss_roundoff() ** (1 / 3) * max(rms, 1.0) / v_norm
        halves: list[Tensor] = []
        with self._writing() as write:
            for sign in (1.0, -1.0):
                write(x + (sign * eps) * v)
                grad = self._pass(backward=True)[1]
                assert grad is not None  # backward=True
                halves.append(grad)
        return (halves[0] - halves[1]).div_(2 * eps)

    @contextlib.contextmanager
    def _at(self, at: Tensor | None) -> Iterator[None]:
        """Evaluate at the flat point ``at`` (written into the shards, then restored), or where the model is."""
        if at is None:
            yield
            return
        at = self.space.check_vector(at, "at")
        with self._writing() as write:
            write(at)
            yield

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Any]:
        """Yields ``write(x)``, which puts the flat point x into the shards; on exit the shards get back their exact
        values and the version increments are booked as this Objective's own."""
        saved = [t.detach().clone() for t in self._locals]
        before = [t._version for t in self._locals]

        def write(x: Tensor) -> None:
            with torch.no_grad():
                for t, part in zip(self._locals, self.space.unflatten(x)):
                    t.copy_(part)

        try:
            yield write
        finally:
            with torch.no_grad():
                for t, s in zip(self._locals, saved):
                    t.copy_(s)
            _reshard(self.model)
            for i, (t, b) in enumerate(zip(self._locals, before)):
                self._own_bumps[i] += t._version - b


_NO_SPLIT = (
    "{what}: the Gauss–Newton and Fisher of an FSDP2 model are not available (they need the model's outputs and "
    "per-example gradients through the sharded forward); measure the Hessian, or a one-process copy of the model"
)


class ShardedHessian(AtOnePoint, LinearOperator):
    """∇²F of a :class:`ShardedObjective` at its current point, on this rank's shards (``sharding`` says where they
    sit in the whole vector); a product is a collective over the ranks."""

    def __init__(self, objective: ShardedObjective):
        space = objective.space
        options: dict[str, Any] = {
            "dtype": space.dtype,
            "device": space.device,
            "name": "Hessian",
            "sharding": objective.sharding,
        }
        super().__init__(self._product, objective.dim, **options)
        self.bind(objective)
        self.across = objective.smallest_across

    def _product(self, v: Tensor) -> Tensor:
        self.check_fresh()
        return cast(Tensor, self.objective.hvp(v))

    def release(self) -> None:
        """Nothing is kept between products."""


def _one_mesh(selected: list[tuple[str, Tensor]]) -> Any:
    """The one 1-D device mesh all selected parameters are sharded over (dimension 0)."""
    from torch.distributed.tensor import DTensor, Shard

    meshes = set()
    for name, p in selected:
        if not isinstance(p, DTensor):
            raise InputError(
                f"model: parameter {name!r} is not sharded; wrap the whole model with fully_shard (the root too) so "
                "that every measured parameter is an FSDP2 shard"
            )
        if p.device_mesh.ndim != 1 or p.placements != (Shard(0),):
            raise InputError(
                f"model: parameter {name!r} is placed {p.placements} on a {p.device_mesh.ndim}-D mesh; measurement "
                "supports FSDP2's plain sharding (Shard(0) on a 1-D mesh), not HSDP or tensor parallelism"
            )
        meshes.add(p.device_mesh)
    if len(meshes) != 1:
        raise InputError("model: the parameters are sharded over different device meshes; measurement needs one")
    return meshes.pop()


def _global_ranges(
    selected: list[tuple[str, Tensor]], locals_: list[Tensor]
) -> tuple[int, tuple[tuple[int, int], ...]]:
    """(length of the whole flat vector, positions of this rank's entries in it): each parameter's rows
    [start, start + local rows), FSDP2 cutting dimension 0 like ``torch.chunk``."""
    mesh = cast(Any, selected[0][1]).device_mesh  # a DTensor's
    rank, world = mesh.get_local_rank(), mesh.size()
    offset, ranges = 0, []
    for (name, p), block in zip(selected, locals_):
        rows = p.shape[0] if p.dim() else 1
        per_rank = -(-rows // world)
        first = min(rank * per_rank, rows)
        row_size = p.numel() // max(rows, 1)
        expected = (min(first + per_rank, rows) - first) * row_size
        if block.numel() != expected:
            raise InputError(f"model: parameter {name!r}'s shard has {block.numel()} entries, expected {expected}")
        if expected:
            ranges.append((offset + first * row_size, offset + first * row_size + expected))
        offset += p.numel()
    return offset, tuple(ranges)


def _fsdp_states(model: nn.Module) -> list[Any]:
    from torch.distributed.fsdp import FSDPModule

    return [m._get_fsdp_state() for m in model.modules() if isinstance(m, FSDPModule)]


def _gradient_divisor(model: nn.Module, mesh: Any) -> float:
    """What FSDP2 divides the sum of the ranks' gradients by: its gradient divide factor if one was set, else the
    number of ranks (the mean)."""
    factors = {group.gradient_divide_factor for state in _fsdp_states(model) for group in state._fsdp_param_groups} or {
        None
    }
    if len(factors) != 1:
        raise InputError(f"model: its FSDP2 modules divide gradients by different factors {factors}")
    factor = factors.pop()
    return float(mesh.size() if factor is None else factor)


def _compute_dtypes(model: nn.Module) -> list[torch.dtype]:
    """The dtypes FSDP2's mixed-precision policies compute in (none without a policy)."""
    dtypes = []
    for state in _fsdp_states(model):
        for group in state._fsdp_param_groups:
            dtype = getattr(group.mp_policy, "param_dtype", None)
            if dtype is not None:
                dtypes.append(dtype)
    return dtypes


def _reshard(model: nn.Module) -> None:
    """Free every gathered (unsharded) parameter, so that the next forward gathers what the shards hold now."""
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def _grad_or_zeros(p: Tensor) -> Tensor:
    return local(p.grad) if p.grad is not None else torch.zeros_like(local(p))
