"""G v = Jᵀ H_L J v: the generalized Gauss–Newton matrix of the Objective (Schraudolph, 2002).

J is the Jacobian of the model's outputs with respect to the parameters and H_L the Hessian of the
loss with respect to the outputs. Matrix-free, reverse mode only (so it runs wherever a gradient
does, attention and fused kernels included): J v by differentiating the vector–Jacobian product
uᵀJ with respect to u ("the double-vjp trick"), H_L (J v) by double backward through the loss alone,
then Jᵀ(·) by one more backward. Never a full Jacobian.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from curvlab.core.curvature import CurvatureOperator, checked_loss
from curvlab.core.hvp import fresh_leaves
from curvlab.errors import InputTypeError


@dataclass
class Linearization:
    """A chunk's model outputs with their graph to the parameter leaves."""

    leaves: list[Tensor]
    outputs: Tensor

    def jvp(self, vs: Sequence[Tensor]) -> Tensor:
        """J v, by differentiating uᵀJ (linear in u) with respect to u."""
        u = torch.zeros_like(self.outputs, requires_grad=True)
        ut_j = torch.autograd.grad(self.outputs, self.leaves, grad_outputs=u, create_graph=True, allow_unused=True)
        pairs = [(g, v) for g, v in zip(ut_j, vs) if g is not None and g.requires_grad]
        if not pairs:
            return torch.zeros_like(self.outputs)
        outs, directions = zip(*pairs)
        (jv,) = torch.autograd.grad(outs, u, grad_outputs=directions, allow_unused=True)
        return torch.zeros_like(self.outputs) if jv is None else jv

    def vjp(self, w: Tensor) -> list[Tensor]:
        """Jᵀ w, keeping the graph for the next product."""
        grads = torch.autograd.grad(self.outputs, self.leaves, grad_outputs=w, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g.detach() for g, p in zip(grads, self.leaves)]


def linearize(objective: Any, chunk: Any) -> Linearization:
    """The chunk's outputs at the objective's current parameters, with their graph."""
    leaves = fresh_leaves(objective._params())
    with torch.enable_grad():
        outputs = objective._chunk_outputs(leaves, chunk)
    if not isinstance(outputs, Tensor):
        raise InputTypeError(
            f"ggn/fisher: the model must return a tensor of outputs for loss_fn, got {type(outputs).__name__}"
        )
    return Linearization(leaves, outputs)


class GGNOperator(CurvatureOperator):
    """Jᵀ H_L J at a fixed point, size-weighted over chunks like F (see :meth:`Objective.ggn`)."""

    count_key = method = "ggn"
    quantity = "Gauss–Newton-vector product"

    def chunk_state(self, index: int, chunk: Any) -> tuple[Linearization, Tensor, Tensor]:
        lin = linearize(self.objective, chunk)
        outputs = lin.outputs.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = checked_loss(self.objective.loss_fn(outputs, chunk.targets), self.quantity)
            (grad_outputs,) = torch.autograd.grad(loss, outputs, create_graph=True)
        return lin, outputs, grad_outputs

    def chunk_product(self, state: tuple[Linearization, Tensor, Tensor], vs: Sequence[Tensor]) -> list[Tensor]:
        lin, outputs, grad_outputs = state
        jv = lin.jvp(vs)
        if not grad_outputs.requires_grad:  # the loss is linear in the outputs: H_L = 0
            return [torch.zeros_like(p) for p in lin.leaves]
        (hjv,) = torch.autograd.grad(grad_outputs, outputs, grad_outputs=jv, retain_graph=True, allow_unused=True)
        return lin.vjp(torch.zeros_like(jv) if hjv is None else hjv)
