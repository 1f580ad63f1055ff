"""∇²F v: the Hessian of the Objective as a curvature operator.

A chunk's state is its gradient with the graph kept (``create_graph``): each product is then one
backward pass through that graph (double backward without the forward and first backward). With
``hvp_engine="auto"`` not yet settled, the first product is also the engine check's exact product
(:mod:`curvlab.core.engine_choice`), along the product's own direction: finite differences first, then the
product on the graphs later products reuse, its first chunk's part compared with them. No graph is built for the
check and thrown away, and no exact product is made for it alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor

from curvlab.core.curvature import CurvatureOperator, checked_loss
from curvlab.core.engine_choice import Evidence, clock, evidence_for, failed, judge, remembered, settle
from curvlab.core.errors import explain_error
from curvlab.core.hvp import add_hvp_into, gradient_graph, hvp_from_grads


class HessianOperator(CurvatureOperator):
    """∇²F at a fixed point, as a symmetric operator (see :meth:`Objective.hessian`)."""

    _evidence: Evidence | None = None  # finite differences waiting for the first chunk's exact product
    _verdict: tuple[str | None, str | None] = (None, None)

    def chunk_state(self, index: int, chunk: Any) -> tuple[list[Tensor], list[Tensor]]:
        obj = self.objective
        _, leaves, grads = gradient_graph(
            lambda ps: checked_loss(obj._chunk_loss(ps, chunk), self.quantity), obj._params()
        )
        return leaves, grads

    def chunk_product(self, state: tuple[list[Tensor], list[Tensor]], vs: Sequence[Tensor]) -> list[Tensor]:
        leaves, grads = state
        evidence, self._evidence = self._evidence, None
        if evidence is None:
            return hvp_from_grads(grads, leaves, vs, retain_graph=True)
        start = clock(leaves[0].device)  # the first chunk's part of the checked first product: judged, and timed
        product = hvp_from_grads(grads, leaves, vs, retain_graph=True)
        seconds = clock(leaves[0].device) - start
        if evidence.too_slow(seconds):  # timed again before a switch for time (Evidence.too_slow)
            start = clock(leaves[0].device)
            hvp_from_grads(grads, leaves, vs, retain_graph=True)
            seconds = min(seconds, clock(leaves[0].device) - start)
        self._verdict = judge(evidence, product, seconds)
        return product

    def _product(self, v: Tensor) -> Tensor:
        obj = self.objective
        if obj._engine == "auto" and not obj.collective:
            return self._checked_first_product(v)
        if self.cache is False or obj.hvp_engine != "reverse":
            if self.stale:
                return super()._product(v)  # raises the staleness error
            return cast(Tensor, self.objective.hvp(v))  # the Objective's engine, nothing kept
        return super()._product(v)

    def _checked_first_product(self, v: Tensor) -> Tensor:
        """The first product while ``hvp_engine="auto"`` is unsettled (one process), the check made along ``v``:
        finite differences on the first chunk, then the product, on the graphs kept for later products, its first
        chunk's part judged against them. Disagreement or a failing double backward settles finite differences
        (said once) and returns their product; otherwise the exact one, and the engine is "reverse" from now on."""
        obj = self.objective
        known = remembered(obj)
        if known is not None:  # settled by another Objective on this model and parameters
            obj._engine = known
            return self._product(v)
        self.check_fresh()
        self._evidence = evidence_for(obj, obj.unflatten(obj.space.check_vector(v, "v")))
        self._verdict = (None, None)
        reason = None
        try:
            product = super()._product(v)
        except RuntimeError as err:  # NotImplementedError and explained failures included
            reason = failed(err)[1]
        finally:
            self._evidence = None
        if reason is None:
            engine = settle(obj, *self._verdict)
            if self._verdict[0] is None:  # the loss was not finite: nothing compared, a check next time
                return product
        else:
            engine = settle(obj, "finite_difference", reason)
        obj._engine = engine
        if engine == "reverse":
            return product
        self.release()  # the graph of a double backward that is wrong or fails
        obj.counts[self.count_key] -= 1  # the product returned is the one below, counted there
        return cast(Tensor, obj.hvp(v))

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
