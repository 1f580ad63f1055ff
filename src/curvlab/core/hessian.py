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
from curvlab.core.hvp import fresh_leaves, gradient, hvp_from_grads


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
