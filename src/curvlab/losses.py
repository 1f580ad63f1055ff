"""Losses written so that every HVP engine can differentiate them twice (definitions §10), and the fused
cross-entropy of a linear head (:func:`linear_cross_entropy`), which the exact and finite-difference engines
differentiate twice without keeping its logits.

The fused head computes ``mean CE(hidden @ weightᵀ, targets)`` so that no (tokens × vocabulary) logits are kept:
not by the loss, not by its gradient's graph, not by a Hessian product through that graph.

A language model's head turns each token's hidden state into V logits; with autograd, the gradient's graph keeps
them and their softmax, and a Hessian product through a kept graph holds several more copies (docs/benchmarks.md,
bench_lm_head, measures what that costs on GPT-2 small). Here the forward keeps one number per token (its
log-sum-exp); the gradient is a function of its own whose backward — the head's part of every Hessian product —
recomputes the logits a block of tokens at a time and applies the softmax's curvature in closed form:

with z = h Wᵀ, P = softmax(z), δ = P − onehot(y) and s the loss's incoming gradient over the token count, the
gradient is g_h = s δ W, g_W = s δᵀ h. Its derivative along cotangents (a, B) of (g_h, g_W), with U = a Wᵀ + h Bᵀ
and H_z U = P ⊙ U − P ⊙ rowsum(P ⊙ U) (the softmax's Hessian on each token's row), is
d h = s (δ B + (H_z U) W), d W = s (δᵀ a + (H_z U)ᵀ h), d s = ⟨δ, U⟩ / count.

Transient memory is one block of ``BLOCK_ELEMENTS`` logits (a few copies of it) whatever the token count. Third
derivatives are not available (the product's backward is once differentiable). Only the reverse (double backward)
and finite-difference engines go through it; ``hvp_engine="forward"`` and ``"compile"`` need torch.func rules it
does not define.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from curvlab.errors import InputError


def mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error, mean over every entry, written out.

    ``F.mse_loss(reduction="mean")`` raises inside ``torch.func.jvp(torch.func.grad(...))`` in
    torch 2.13 (pytorch #123996); this form does not.
    """
    return ((outputs - targets.to(outputs.dtype).reshape(outputs.shape)) ** 2).mean()


def half_mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """½ · mean squared error (the least-squares convention, whose Hessian is XᵀX/n for a linear model)."""
    return 0.5 * mse(outputs, targets)


def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy; sequence outputs (B, T, V) are flattened to (B·T, V)."""
    if outputs.dim() > 2:
        outputs = outputs.reshape(-1, outputs.shape[-1])
        targets = targets.reshape(-1)
    return F.cross_entropy(outputs, targets)


def onehot_mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """½ · mean over examples of ‖outputs − onehot(targets)‖²: squared loss for classification, as
    Cohen et al. (2021, 2022) use for many edge-of-stability experiments (its curvature does not
    vanish as the loss goes to 0, unlike cross-entropy's)."""
    onehot = F.one_hot(targets.reshape(-1), outputs.shape[-1]).to(outputs.dtype)
    return 0.5 * ((outputs.reshape(-1, outputs.shape[-1]) - onehot) ** 2).sum(dim=-1).mean()


IGNORE_INDEX = -100  # targets equal to this count for nothing (torch's and Hugging Face's convention)
BLOCK_ELEMENTS = 2**24  # logits recomputed at a time (64 MB in float32; tokens per block = this // vocabulary)


def linear_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of the logits ``hidden @ weight.T`` against ``targets``, over the targets that are not
    ``IGNORE_INDEX`` (-100), without keeping the logits (module docstring). ``hidden``: (..., d); ``weight``: (V, d),
    the head's weight (tied or not); ``targets``: hidden's leading shape, integer class indices. Equal to
    ``F.cross_entropy(hidden @ weight.T, targets, ignore_index=-100)`` in value and in its first and second
    derivatives; NaN when every target is ignored, as torch's. The loss is in float32 at least (as Hugging Face
    computes a half-precision model's loss)."""
    _check(hidden, weight, targets)
    flat_targets = targets.reshape(-1)
    loss: Tensor = _LinearCrossEntropy.apply(  # type: ignore[no-untyped-call]
        hidden.reshape(-1, hidden.shape[-1]), weight, flat_targets
    )
    return loss


def _check(hidden: Tensor, weight: Tensor, targets: Tensor) -> None:
    if weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise InputError(
            f"weight: expected (vocabulary, {hidden.shape[-1]}) to match hidden's last dimension, "
            f"got {tuple(weight.shape)}"
        )
    if targets.shape != hidden.shape[:-1] or targets.dtype.is_floating_point:
        raise InputError(
            f"targets: expected integer class indices of shape {tuple(hidden.shape[:-1])} (hidden's leading shape), "
            f"got {targets.dtype} of shape {tuple(targets.shape)}"
        )
    if hidden.dtype != weight.dtype:
        raise InputError(f"weight: expected hidden's dtype {hidden.dtype}, got {weight.dtype}")
    outside = (targets != IGNORE_INDEX) & ((targets < 0) | (targets >= weight.shape[0]))
    if bool(outside.any()):
        raise InputError(
            f"targets: expected class indices in [0, {weight.shape[0]}) (the vocabulary) or {IGNORE_INDEX} (ignored), "
            f"got {targets[outside][0].item()}"
        )


def _blocks(tokens: int, vocabulary: int) -> Iterator[slice]:
    size = max(1, BLOCK_ELEMENTS // max(vocabulary, 1))
    return (slice(start, min(start + size, tokens)) for start in range(0, tokens, size))


def _logits(hidden: Tensor, weight: Tensor) -> Tensor:
    """A block's logits in float32 at least (half precision would round the softmax)."""
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    return hidden.to(dtype) @ weight.to(dtype).T


def _softmax(hidden: Tensor, weight: Tensor, targets: Tensor, lse: Tensor) -> Tensor:
    """A block's softmax P (zero on ignored tokens), in place of its logits. δ = P − onehot(targets) is never formed:
    its products are P's less the target rows (:func:`_kept`)."""
    probs = _logits(hidden, weight).sub_(lse[:, None]).exp_()
    return probs.mul_((targets != IGNORE_INDEX)[:, None])


def _kept(targets: Tensor) -> tuple[Tensor, Tensor]:
    """The rows of a block whose target counts, and those targets."""
    rows = (targets != IGNORE_INDEX).nonzero().squeeze(1)
    return rows, targets[rows]


def _count(targets: Tensor) -> Tensor:
    """How many targets count (the mean's denominator)."""
    return (targets != IGNORE_INDEX).sum()


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
        lse = torch.empty(hidden.shape[0], dtype=torch.promote_types(hidden.dtype, torch.float32), device=hidden.device)
        total = torch.zeros((), dtype=lse.dtype, device=hidden.device)  # Σ over the kept tokens of lse − z_target
        for rows in _blocks(hidden.shape[0], weight.shape[0]):
            logits = _logits(hidden[rows], weight)
            lse[rows] = torch.logsumexp(logits, dim=1)
            kept, picked = _kept(targets[rows])
            total += lse[rows][kept].sum() - logits[kept, picked].sum()
        loss = total / _count(targets)
        ctx.save_for_backward(hidden, weight, targets, lse)
        return loss

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        hidden, weight, targets, lse = ctx.saved_tensors
        grad_hidden, grad_weight = _LinearCrossEntropyGradient.apply(  # type: ignore[no-untyped-call]
            hidden, weight, targets, lse, grad
        )
        return grad_hidden, grad_weight, None


class _LinearCrossEntropyGradient(torch.autograd.Function):
    """(g_h, g_W) of the fused loss, as a function of (hidden, weight, incoming gradient) whose own backward is the
    head's part of a Hessian product (module docstring). Products with δ = P − onehot are P's less the target rows;
    g_W and its derivative accumulate in place, block by block."""

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, targets: Tensor, lse: Tensor, grad: Tensor) -> Any:
        dtype = lse.dtype
        w = weight.to(dtype)
        grad_hidden = torch.empty(hidden.shape, dtype=dtype, device=hidden.device)
        grad_weight = torch.zeros(weight.shape, dtype=dtype, device=weight.device)
        for rows in _blocks(hidden.shape[0], weight.shape[0]):
            h = hidden[rows].to(dtype)
            probs = _softmax(h, w, targets[rows], lse[rows])
            kept, picked = _kept(targets[rows])
            block = torch.mm(probs, w, out=grad_hidden[rows])  # δ W
            block[kept] -= w[picked]
            grad_weight.addmm_(probs.T, h).index_add_(0, picked, h[kept], alpha=-1)  # δᵀ h
        scale = grad.to(dtype) / _count(targets)
        ctx.save_for_backward(hidden, weight, targets, lse, grad)
        return grad_hidden.mul_(scale).to(hidden.dtype), grad_weight.mul_(scale).to(weight.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, along_hidden: Tensor, along_weight: Tensor) -> tuple[Tensor | None, ...]:
        hidden, weight, targets, lse, grad = ctx.saved_tensors
        dtype = lse.dtype
        w, b = weight.to(dtype), along_weight.to(dtype)
        d_hidden = torch.empty(hidden.shape, dtype=dtype, device=hidden.device)
        d_weight = torch.zeros(weight.shape, dtype=dtype, device=weight.device)
        d_grad = torch.zeros((), dtype=dtype, device=hidden.device)
        for rows in _blocks(hidden.shape[0], weight.shape[0]):
            h, a = hidden[rows].to(dtype), along_hidden[rows].to(dtype)
            probs = _softmax(h, w, targets[rows], lse[rows])
            kept, picked = _kept(targets[rows])
            along_logits = torch.addmm(h @ b.T, a, w.T)  # U = a Wᵀ + h Bᵀ
            curvature = probs * along_logits
            along_mean = curvature.sum(dim=1, keepdim=True)  # ⟨P, U⟩ row by row
            d_grad += along_mean.sum() - along_logits[kept, picked].sum()  # ⟨δ, U⟩
            curvature.addcmul_(probs, along_mean, value=-1)  # H_z U = P ⊙ U − P ⊙ rowsum(P ⊙ U)
            block = torch.mm(probs, b, out=d_hidden[rows]).addmm_(curvature, w)  # δ B + (H_z U) W
            block[kept] -= b[picked]
            d_weight.addmm_(probs.T, a).addmm_(curvature.T, h).index_add_(0, picked, a[kept], alpha=-1)
        count = _count(targets)
        scale = grad.to(dtype) / count
        return (
            d_hidden.mul_(scale).to(hidden.dtype),
            d_weight.mul_(scale).to(weight.dtype),
            None,
            None,
            (d_grad / count).to(grad.dtype),
        )
