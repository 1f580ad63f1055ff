"""∇²F v: the Hessian of the Objective as a curvature operator.

A chunk's state is its gradient with the graph kept (``create_graph``): each product is then one
backward pass through that graph (double backward without the forward and first backward).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor

from curvlab.core.curvature import CurvatureOperator, checked_loss
from curvlab.core.errors import explain_error
from curvlab.core.hvp import add_hvp_into, fresh_leaves, gradient, hvp_from_grads


class HessianOperator(CurvatureOperator):
    """∇²F at a fixed point, as a symmetric operator (see :meth:`Objective.hessian`)."""

    def chunk_state(self, index: int, chunk: Any) -> tuple[list[Tensor], list[Tensor]]:
        obj = self.objective
        leaves = fresh_leaves(obj._params())
        with torch.enable_grad():
            grads = gradient(checked_loss(obj._chunk_loss(leaves, chunk), self.quantity), leaves, create_graph=True)
        return leaves, grads

    def chunk_product(self, state: tuple[list[Tensor], list[Tensor]], vs: Sequence[Tensor]) -> list[Tensor]:
        leaves, grads = state
        return hvp_from_grads(grads, leaves, vs, retain_graph=True)

    def _product(self, v: Tensor) -> Tensor:
        if self.cache is False or self.objective.hvp_engine != "reverse":
            if self.stale:
                return super()._product(v)  # raises the staleness error
            return cast(Tensor, self.objective.hvp(v))  # the Objective's engine, nothing kept
        return super()._product(v)

    def adds_in_place(self, dtype: torch.dtype) -> bool:
        """True once the first product has kept the graph of this one-process objective's one chunk (and ``dtype``
        is the parameters'): see :meth:`_add_product_to`."""
        kept = self._states if self._complete else None
        one_chunk = kept is not None and len(kept) == 1
        return one_chunk and not self.objective.collective and dtype == self.objective.space.dtype

    def _add_product_to(self, v: Tensor, out: Tensor) -> bool:
        """H v added into ``out`` by the double backward itself: ``out``'s views are the leaves' ``.grad``, which
        backward accumulates into in place, one parameter's product at a time, so no separate H v is ever held.
        Where ``matvec`` would use the kept graph of the one chunk of a one-process objective, in the parameters'
        dtype; elsewhere (before the first product has kept the graph, several chunks, whose mean weights each
        product, a distributed objective, whose product is all-reduced, a graph over the memory budget, another
        engine or dtype) False, and :meth:`matvec_add` adds the ordinary product."""
        if not self.adds_in_place(out.dtype) or not out.is_contiguous():
            return False
        self.check_fresh()
        obj = self.objective
        assert self._states is not None
        ((_, (leaves, grads)),) = self._states
        obj.counts[self.count_key] += 1
        try:
            add_hvp_into(grads, leaves, obj.unflatten(v), obj.unflatten(out))  # unflatten checks both
        except RuntimeError as err:
            raise explain_error(err) from err
        return True
