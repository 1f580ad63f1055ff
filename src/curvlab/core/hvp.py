"""Hessian-vector products of one chunk's loss (definitions §2).

Two engines, selectable per Objective:

- ``"reverse"``: double backward (reverse-over-reverse), ``∇(⟨∇f, v⟩)``.
- ``"forward"``: forward-over-reverse, ``jvp(grad f)(x; v)`` with ``torch.func``.
- ``"compile"``: the same, compiled by ``torch.compile`` (a one-off compilation, then reused).

Forward-over-forward (jvp of jvp) is deliberately absent: in torch 2.13 it returns wrong values
through layer_norm and training-mode batch_norm (definitions §10).

On the 2-core CPUs this project targets, double backward was measured faster (see
``docs/benchmarks.md``), so it is the default everywhere; it also avoids two forward-mode traps of
torch 2.13 (``F.mse_loss`` inside jvp-of-grad, fused attention kernels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

LossOf = Callable[[Sequence[Tensor]], Tensor]

ENGINES = ("reverse", "forward", "compile")


def default_engine(device: torch.device) -> str:
    """The engine measured fastest on ``device`` (double backward on the CPU; see docs/benchmarks.md)."""
    return "reverse"


def fresh_leaves(params: Sequence[Tensor]) -> list[Tensor]:
    """Detached views of ``params`` that require grad; they share storage and version counter."""
    return [p.detach().requires_grad_(True) for p in params]


def gradient(loss: Tensor, leaves: Sequence[Tensor], create_graph: bool = False) -> list[Tensor]:
    """∇ loss w.r.t. ``leaves``; a leaf the loss does not depend on gets zeros."""
    if not loss.requires_grad:
        return [torch.zeros_like(p) for p in leaves]
    grads = torch.autograd.grad(loss, leaves, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, leaves)]


def hvp_from_grads(
    grads: Sequence[Tensor], leaves: Sequence[Tensor], vs: Sequence[Tensor], retain_graph: bool = False
) -> list[Tensor]:
    """H v = ∇⟨∇f, v⟩, by backpropagating v through the gradients' graph (``grad_outputs``)."""
    pairs = [(g, v) for g, v in zip(grads, vs) if g.requires_grad]
    if not pairs:  # the loss is linear in every selected parameter
        return [torch.zeros_like(p) for p in leaves]
    outputs, directions = zip(*pairs)
    hv = torch.autograd.grad(outputs, leaves, grad_outputs=directions, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if h is None else h.detach() for h, p in zip(hv, leaves)]


def hvp_reverse(loss_of: LossOf, params: Sequence[Tensor], vs: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Double backward: returns (loss, H v)."""
    leaves = fresh_leaves(params)
    with torch.enable_grad():
        loss = loss_of(leaves)
        grads = gradient(loss, leaves, create_graph=True)
        return loss.detach(), hvp_from_grads(grads, leaves, vs)


def hvp_forward(loss_of: LossOf, params: Sequence[Tensor], vs: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Forward-over-reverse with ``torch.func``: returns (loss, H v)."""
    from torch.func import grad, jvp

    def loss_with_aux(ps):
        loss = loss_of(ps)
        return loss, loss.detach()

    primals = tuple(p.detach() for p in params)
    tangents = tuple(v.to(p.dtype) for v, p in zip(vs, params))
    _, hv, loss = jvp(grad(loss_with_aux, has_aux=True), (primals,), (tangents,), has_aux=True)
    return loss, [h.detach() for h in hv]


_compiled_forward: Callable | None = None


def hvp_compiled(loss_of: LossOf, params: Sequence[Tensor], vs: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Forward-over-reverse compiled by ``torch.compile`` (inductor): one compilation per model and
    chunk shape, reused across points and directions. Double backward cannot be compiled
    (AOTAutograd refuses it), so this is the compiled engine; it pays where eager forward-mode is
    slow (transformers: see docs/benchmarks.md), not on plain MLPs."""
    global _compiled_forward
    if _compiled_forward is None:
        _compiled_forward = torch.compile(hvp_forward)
    return _compiled_forward(loss_of, params, vs)


HVP_ENGINES = {"reverse": hvp_reverse, "forward": hvp_forward, "compile": hvp_compiled}
