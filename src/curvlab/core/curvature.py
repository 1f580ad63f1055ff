"""The one operator type behind the Hessian, Gauss–Newton and Fisher: a symmetric curvature of the
Objective at its current point, the size-weighted mean of per-chunk curvatures (like F itself).

Each chunk's products start from a *chunk state* built once per point — the first-order graph the
products backpropagate through. States are kept across the products of a solve (and shared by every
metric measured at the same point, see :meth:`Objective.hessian`) while they fit the Objective's
``graph_memory`` budget; chunks past the budget rebuild their state for every product.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import torch
from torch import Tensor

from curvlab.core.errors import explain_error
from curvlab.errors import InputError, NonFiniteError, nonfinite_detail
from curvlab.linalg.operator import LinearOperator, all_finite
from curvlab.machine import return_freed_memory

CACHE_CHOICES = (True, False, "auto")
TRIM_FROM = 1 << 26  # a kept graph of this many bytes or more: what its building freed is given back (malloc_trim,
# a few milliseconds on a fragmented heap: worth it beside a large graph, not on every measurement of a small model)


class WeightedMean:
    """Σ n_i v_i / Σ n_i over chunks, in place; a single chunk's vector is returned untouched."""

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.n: float = 0
        self.count = 0

    def add(self, vec: Tensor, size: float) -> None:
        if self.total is None:
            self.total = vec
        else:
            if self.count == 1:
                self.total.mul_(self.n)
            self.total.add_(vec, alpha=size)
        self.n += size
        self.count += 1

    def result(self) -> Tensor:
        nonempty(self.n)
        assert self.total is not None  # n > 0: something was added
        return self.total if self.count == 1 else self.total.div_(self.n)


def nonempty(n: float) -> float:
    if n == 0:
        raise InputError("data: the measurement set is empty (no examples)")
    return n


class AtOnePoint:
    """Mixed into an operator of an Objective's curvature at the point where it was made (``bind`` records it):
    ``stale`` once the model's parameters or buffers change, and a product then raises rather than return a wrong
    value."""

    method = "hessian"  # the Objective's method that makes it

    def bind(self, objective: Any) -> None:
        self.objective, self.versions = objective, objective.point_versions()

    @property
    def stale(self) -> bool:
        return bool(self.objective.point_versions() != self.versions)

    def check_fresh(self) -> None:
        if self.stale:
            raise RuntimeError(
                f"{type(self).__name__}: the model's parameters or buffers changed since this operator was made; "
                f"call objective.{self.method}() again at the new point"
            )


class CurvatureOperator(AtOnePoint, LinearOperator):
    """A curvature matrix of ``objective`` at the parameters it had when the operator was made.

    Subclasses say how to build a chunk's state (``chunk_state``) and how to multiply with it
    (``chunk_product``); this class owns the chunk loop, the size weighting, the state cache under
    the memory budget, staleness and errors. Changing the model's parameters or buffers afterwards
    makes the operator stale: a product then raises rather than return a wrong value.
    """

    count_key = "hvp"  # the Objective's counter of this operator's products
    quantity = "Hessian-vector product"  # what a non-finite product is called in the error

    def __init__(self, objective: Any, cache: bool | str = "auto"):
        if cache not in CACHE_CHOICES:
            raise InputError(f"cache: expected True, False or 'auto', got {cache!r}")
        space = objective.space
        name = self.quantity.removesuffix("-vector product")
        super().__init__(self._product, objective.dim, dtype=space.dtype, device=space.device, name=name)
        self.bind(objective)
        self.across = objective.smallest_across
        self.cache = cache
        self._states: list[Any] | None = None  # kept chunk states, in chunk order
        self._complete = False  # every chunk's state is kept
        self.graph_bytes = 0  # memory held by the kept states (saved tensors), as measured

    # ----- to implement -------------------------------------------------------------------------
    def chunk_state(self, index: int, chunk: Any) -> Any:
        """Whatever this chunk's products reuse at this point (built in measurement mode)."""
        raise NotImplementedError

    def chunk_product(self, state: Any, vs: Sequence[Tensor]) -> list[Tensor]:
        """This chunk's curvature times v (per-parameter tensors)."""
        raise NotImplementedError

    # ----- the loop -------------------------------------------------------------------------------
    def _product(self, v: Tensor) -> Tensor:
        self.check_fresh()
        obj = self.objective
        vs = obj.unflatten(obj.space.check_vector(v, "v"))
        obj.counts[self.count_key] += 1
        mean = WeightedMean()
        try:
            for size, state in self._states_for_product():
                mean.add(obj.flatten(self.chunk_product(state, vs)), size)
            local, n = mean.result(), mean.n
        except RuntimeError as err:
            raise explain_error(err) from err
        except NonFiniteError:
            if not obj.collective:
                raise
            # a loss only this process sees as non-finite: raising here would leave the other ranks waiting in the
            # all-reduce; a NaN share makes the combined product non-finite on every rank, and matvec raises there
            self.release()
            local, n = torch.full((obj.dim,), math.nan, dtype=obj.space.dtype, device=obj.space.device), 1
        combined = obj._combine(0.0, local, n)[1]  # matvec checks it: see _nonfinite
        assert combined is not None  # a vector in, a vector out
        return cast(Tensor, combined)

    def _nonfinite(self, product: Tensor) -> NonFiniteError:
        """The one finiteness check of a product is LinearOperator.matvec's; this names the point, the loss there
        and the likely cause."""
        return nonfinite_error(product, self.quantity, self.objective.loss)

    def _states_for_product(self) -> Iterator[tuple[float, Any]]:
        """(chunk weight, chunk state) for every chunk: kept ones first built and then reused."""
        if self._complete and self._states is not None:
            yield from self._states
            return
        obj, keep = self.objective, self.cache is not False
        kept = self._states or []
        with obj._measuring():
            for index, chunk in enumerate(obj._chunks()):
                if index < len(kept):
                    yield kept[index]
                    continue
                if self._states is None and keep:
                    state, nbytes = _measured(self.chunk_state, index, chunk, obj)
                    if nbytes >= TRIM_FROM:  # what building a large graph freed: gone, not left under the products
                        return_freed_memory()
                    if self.graph_bytes + nbytes <= obj.graph_budget():
                        kept.append((chunk.size, state))
                        self.graph_bytes += nbytes
                    else:
                        keep = False
                    yield chunk.size, state
                else:
                    yield chunk.size, self.chunk_state(index, chunk)
        if self._states is None:
            self._states = kept
            self._complete = keep and bool(kept)

    def release(self) -> None:
        """Drop the kept chunk states (their memory); later products rebuild them."""
        self._states, self._complete, self.graph_bytes = None, False, 0


def _measured(build: Any, index: int, chunk: Any, objective: Any) -> tuple[Any, int]:
    """Build a chunk state and count the bytes of the tensors its graph saved (storages other than
    the model's own parameters and buffers, each counted once)."""
    own = {t.untyped_storage().data_ptr() for t in (*objective.model.parameters(), *objective.model.buffers())}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        if t.device.type != "meta":
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in own:
                seen[ptr] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        state = build(index, chunk)
    return state, sum(seen.values())


LOW_PRECISION = (torch.float16, torch.bfloat16)


def checked_finite(product: Tensor, quantity: str, loss: Callable[[], float] | None = None) -> Tensor:
    """``product`` unchanged when every entry is finite; otherwise a :class:`NonFiniteError` naming the quantity,
    the point (with the loss there, from ``loss``, when that can be computed) and the likely cause — never passed
    on to a solver as a number."""
    if all_finite(product):
        return product
    raise nonfinite_error(product, quantity, loss)


def nonfinite_error(product: Tensor, quantity: str, loss: Callable[[], float] | None = None) -> NonFiniteError:
    """The error for a non-finite ``product``: the quantity, the point (with the loss there) and the likely cause."""
    remedy = _low_precision_remedy(product.dtype) or (
        "the loss or its derivatives are not finite at these parameters: has the run diverged?"
    )
    where = "at the model's current parameters"
    if loss is not None:
        where += f", where the loss is {_loss_or_error(loss)}"
    return NonFiniteError(quantity, where, nonfinite_detail(product), remedy)


def checked_loss(loss: Tensor, quantity: str) -> Tensor:
    """A chunk's loss, built anyway for a curvature state, checked: curvature at a point where the loss is NaN or
    ±inf (a diverged model, a NaN in the data) is a :class:`NonFiniteError`, not a number."""
    if bool(torch.isfinite(loss.detach()).all()):
        return loss
    remedy = f"no {quantity} is measured where the loss is not finite"
    low_precision = _low_precision_remedy(loss.dtype)
    raise NonFiniteError(
        "loss",
        "at the model's current parameters",
        nonfinite_detail(loss.detach()),
        f"{remedy}; {low_precision}" if low_precision else remedy,
    )


def _low_precision_remedy(dtype: torch.dtype) -> str | None:
    """What half precision (autocast, or half-precision parameters) may have to do with a non-finite value, or
    None: float16 overflows (its largest value is 65,504); bfloat16 has float32's range but an 8-bit mantissa."""
    autocast = low_precision_dtype()
    low = autocast if autocast is not None else dtype if dtype in LOW_PRECISION else None
    if low is None:
        return None
    where = f"the products ran under {low} autocast" if autocast is not None else f"the model's parameters are {low}"
    remedy = (
        "measure in float32 (call curvlab outside the autocast context)"
        if autocast is not None
        else "measure on a float32 copy of the model (copy.deepcopy(model).float())"
    )
    if low == torch.float16:
        return (
            f"{where}, whose range (largest value 65,504) second derivatives overflow long before float32's; {remedy}"
        )
    return (
        f"{where}: bfloat16 has float32's range, so this is not an overflow of the format, but its 8-bit mantissa "
        f"loses differences of large terms; {remedy} to tell whether the model itself is at fault"
    )


def _loss_or_error(loss: Callable[[], float]) -> str:
    try:
        return f"{loss():.6g}"
    except (RuntimeError, ArithmeticError) as err:
        return f"not computable ({type(err).__name__})"


def low_precision_dtype() -> torch.dtype | None:
    """The autocast dtype in effect on the CPU or CUDA, or None."""
    for device in ("cuda", "cpu"):
        if torch.is_autocast_enabled(device):
            return torch.get_autocast_dtype(device)
    return None
