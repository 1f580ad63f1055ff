"""Normalized SGD with momentum, per tensor (Pan & Li 2022, Alg. 2).

    m_t = β m_{t−1} + (1 − β) g_t,   v_t = m_t / ‖m_t‖₂ · √(mn),   x_t = x_{t−1} − η v_t,

for each weight tensor of m·n entries (n entries for a vector): every tensor moves by η·√(mn) in ℓ2,
i.e. by η in RMS. Clip the gradients with :class:`curvlab.optim.CoordinateClip` for the clipped variant.
Different from Kunstner et al.'s normalized GD (:class:`curvlab.optim.NormalizedGD`): there the gradient is
normalized before an undamped momentum, globally.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from curvlab.checks import check_beta, check_lr
from curvlab.optim.base import ParamwiseOptimizer


class NormalizedSGD(ParamwiseOptimizer):
    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9, eps: float = 1e-12):
        super().__init__(params, dict(lr=check_lr(lr), momentum=check_beta(momentum), eps=eps))

    def _update(self, p: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        m = state["momentum_buffer"]
        m.mul_(group["momentum"]).add_(p.grad, alpha=1 - group["momentum"])
        scale = math.sqrt(p.numel()) / (float(torch.linalg.vector_norm(m)) + group["eps"])
        p.add_(m, alpha=-group["lr"] * scale)
