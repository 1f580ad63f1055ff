"""Hessian-vector products of one chunk's loss (definitions §2).

The engines, selectable per Objective:

- ``"reverse"``: double backward (reverse-over-reverse), ``∇(⟨∇f, v⟩)``.
- ``"forward"``: forward-over-reverse, ``jvp(grad f)(x; v)`` with ``torch.func``.
- ``"compile"``: the same, compiled by ``torch.compile`` (a one-off compilation, then reused).
- ``"finite_difference"``: the central difference of two ordinary gradients,
  (∇f(x + εv) − ∇f(x − εv)) / 2ε: no second derivative at all, so it works through flash / memory-efficient
  attention, fused kernels and custom autograd functions that cannot be differentiated twice (docs/core.md
  states the step rule and its error).

Forward-over-forward (jvp of jvp) is deliberately absent: in torch 2.13 it returns wrong values
through layer_norm and training-mode batch_norm (definitions §10).

On the 2-core CPUs this project targets, double backward was measured faster (see
``docs/benchmarks.md``), so it is what ``"auto"`` uses wherever it is right (:mod:`curvlab.core.engine_choice`);
it also avoids two forward-mode traps of torch 2.13 (``F.mse_loss`` inside jvp-of-grad, fused attention kernels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from curvlab.linalg.vectors import norms64

LossOf = Callable[[Sequence[Tensor]], Tensor]

ENGINES = ("reverse", "forward", "compile", "finite_difference")


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


def add_hvp_into(
    grads: Sequence[Tensor], leaves: Sequence[Tensor], vs: Sequence[Tensor], out: Sequence[Tensor]
) -> None:
    """out += H v in place (per-parameter tensors), by backpropagating v through the gradients' graph with ``out``
    as the leaves' ``.grad``: autograd adds each parameter's product into it once that one is complete, so the
    products are never gathered apart from ``out``. The graph is kept; the leaves' ``.grad`` is cleared after."""
    pairs = [(g, v) for g, v in zip(grads, vs) if g.requires_grad]
    if not pairs:  # the loss is linear in every selected parameter: H v = 0
        return
    outputs, directions = zip(*pairs)
    for leaf, target in zip(leaves, out):
        leaf.grad = target
    try:
        torch.autograd.backward(outputs, grad_tensors=directions, inputs=list(leaves), retain_graph=True)
    finally:
        for leaf in leaves:
            leaf.grad = None


def gradient_graph(loss_of: LossOf, params: Sequence[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """(loss, leaves, ∇ loss with its graph kept): what a double backward backpropagates through."""
    leaves = fresh_leaves(params)
    with torch.enable_grad():
        loss = loss_of(leaves)
        return loss, leaves, gradient(loss, leaves, create_graph=True)


def hvp_reverse(loss_of: LossOf, params: Sequence[Tensor], vs: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Double backward: returns (loss, H v)."""
    loss, leaves, grads = gradient_graph(loss_of, params)
    return loss.detach(), hvp_from_grads(grads, leaves, vs)


def hvp_forward(loss_of: LossOf, params: Sequence[Tensor], vs: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Forward-over-reverse with ``torch.func``: returns (loss, H v)."""
    from torch.func import grad, jvp

    def loss_with_aux(ps: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        loss = loss_of(ps)
        return loss, loss.detach()

    primals = tuple(p.detach() for p in params)
    tangents = tuple(v.to(p.dtype) for v, p in zip(vs, params))
    _, hv, loss = jvp(grad(loss_with_aux, has_aux=True), (primals,), (tangents,), has_aux=True)  # type: ignore[misc]
    return loss, [h.detach() for h in hv]


_compiled_forward: Callable[..., tuple[Tensor, list[Tensor]]] | None = None


def hvp_compiled(loss_of: LossOf, params: Sequence[Tensor], vs: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Forward-over-reverse compiled by ``torch.compile`` (inductor): one compilation per model and
    chunk shape, reused across points and directions. Double backward cannot be compiled
    (AOTAutograd refuses it), so this is the compiled engine; it pays where eager forward-mode is
    slow (transformers: see docs/benchmarks.md), not on plain MLPs."""
    global _compiled_forward
    if _compiled_forward is None:
        _compiled_forward = torch.compile(hvp_forward)
    return _compiled_forward(loss_of, params, vs)


STEP_FACTOR = 0.1  # c in ε = c·u^(1/3)·max(1, rms(x))/‖v‖: bench/bench_finite_difference.py measures the choice


def finite_difference_step(params: Sequence[Tensor], vs: Sequence[Tensor], roundoff: float | None = None) -> float:
    """ε = c · u^(1/3) · max(1, ‖x‖/√n) / ‖v‖ with c = 0.1: the step εv has length c·u^(1/3) times the parameters'
    root-mean-square size (at least 1), u the machine epsilon of the loss as computed (``finfo.eps``: twice the
    unit roundoff), n the number of parameters (docs/core.md). u^(1/3) balances the central difference's truncation
    error (ε²/6 times the loss's fourth derivative along v) against the gradients' rounding error (∝ u/ε); the
    constant c = 0.1 because along the sharpest directions, which λ1 is about, the loss's higher derivatives are
    large and truncation dominates at c = 1. The length is per parameter, not ‖x‖:
    the loss's curvature scale does not grow with the number of parameters. ``roundoff``: u when the loss is
    computed in a coarser dtype than the parameters' (a Hugging Face model's loss is float32 whatever its
    parameters); default the parameters' dtype's. Norms in float64."""
    v_norm = norms64(vs)
    if v_norm == 0:
        return 0.0
    n = sum(p.numel() for p in params)
    rms = norms64(params) / max(n, 1) ** 0.5
    u = torch.finfo(params[0].dtype).eps if roundoff is None else roundoff
    return float(STEP_FACTOR * u ** (1 / 3) * max(rms, 1.0) / v_norm)


def hvp_finite_difference(
    loss_of: LossOf, params: Sequence[Tensor], vs: Sequence[Tensor], scale: float = 1.0, roundoff: float | None = None
) -> tuple[Tensor, list[Tensor]]:
    """(∇f(x + εv) − ∇f(x − εv)) / 2ε from two first-order gradients at shifted copies of the parameters (the
    parameters themselves are never written); returns ((f(x + εv) + f(x − εv))/2 ≈ f(x), the product).
    ``scale`` multiplies the step ε of :func:`finite_difference_step`, ``roundoff`` is passed to it."""
    eps = scale * finite_difference_step(params, vs, roundoff)
    if eps == 0:  # v = 0
        with torch.enable_grad():
            loss = loss_of(fresh_leaves(params))
        return loss.detach(), [torch.zeros_like(p) for p in params]
    total, halves = torch.zeros(()), []
    for sign in (1.0, -1.0):
        shifted = [(p.detach() + (sign * eps) * v.to(p.dtype)).requires_grad_(True) for p, v in zip(params, vs)]
        with torch.enable_grad():
            loss = loss_of(shifted)
            grads = gradient(loss, shifted)
        del shifted
        total = loss.detach() if sign > 0 else total + loss.detach()
        halves.append(grads)
    product = [(gp - gm).div_(2 * eps) for gp, gm in zip(*halves)]
    return total / 2, product


HVP_ENGINES = {
    "reverse": hvp_reverse,
    "forward": hvp_forward,
    "compile": hvp_compiled,
    "finite_difference": hvp_finite_difference,
}
