"""Coordinate-wise top-k% clipping (definitions §6; Pan & Li 2022, Alg. 1–4).

Clip(g): τ is the threshold of the top k% of |g| (the k/100 quantile from the top, over the whole
model by default, per tensor as an option), and every coordinate becomes sign(g_i)·min(|g_i|, τ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim import Optimizer

from curvlab.checks import check_percent
from curvlab.optim.wrapper import OptimizerWrapper


def topk_threshold(values: Tensor, percent: float) -> Tensor:
    """τ: the smallest of the ⌈percent/100 · n⌉ largest entries of |values| (at least one entry)."""
    flat = values.abs().reshape(-1)
    k = max(1, math.ceil(percent / 100.0 * flat.numel()))
    return torch.topk(flat, k, sorted=False).values.min()


def coordinate_clip(grads: Sequence[Tensor], percent: float = 5.0, per_tensor: bool = False) -> list[Tensor]:
    """Clip(g) of Pan & Li 2022: new tensors, each coordinate clipped to the top-``percent``% threshold."""
    check_percent(percent)
    grads = list(grads)
    if not grads:
        return []
    if per_tensor:
        return [_clamp(g, topk_threshold(g, percent)) for g in grads]
    tau = topk_threshold(torch.cat([g.reshape(-1) for g in grads]), percent)
    return [_clamp(g, tau) for g in grads]


def _clamp(g: Tensor, tau: Tensor) -> Tensor:
    """sign(g)·min(|g|, τ)."""
    return g.clamp(-tau, tau)


class CoordinateClip(OptimizerWrapper):
    """Wraps any optimizer: each ``step`` first replaces every ``p.grad`` by Clip(g).

    With ``HeavyBall(direction="gd", momentum=β, dampening=True)`` this is Pan & Li 2022, Alg. 1 (SGD
    with momentum m_t = β m_{t−1} + (1 − β) ĝ_t); with :class:`NormalizedSGD` it is Alg. 2. Adafactor clips only
    its numerator, so it takes ``clip_percent`` itself (:class:`curvlab.optim.Adafactor`).
    """

    def __init__(self, optimizer: Optimizer, percent: float = 5.0, per_tensor: bool = False):
        super().__init__(optimizer)
        self.percent = check_percent(percent)
        self.per_tensor = per_tensor

    def clip_gradients(self) -> None:
        """Clip the gradients in place, coordinate-wise, at the ``percent`` quantile of their magnitudes."""
        pairs = [(p, p.grad) for p in self.params() if p.grad is not None]
        with torch.no_grad():
            clipped = coordinate_clip([g for _, g in pairs], self.percent, self.per_tensor)
            for (_, grad), new in zip(pairs, clipped):
                grad.copy_(new)

    def _step(self) -> None:
        self.clip_gradients()
        self.optimizer.step()
