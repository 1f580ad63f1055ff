"""Adafactor as in Pan & Li 2022, Alg. 3 (matrices) and Alg. 4 (vectors), with optional numerator clipping.

    α_t = max(ε₂, RMS(x_{t−1})) ρ_t,  ρ_t = min(10⁻², 1/√t)      (or a fixed ``lr`` in place of α_t)
    β̂₂ₜ = 1 − t^{−0.8}
    matrices: R_t = β̂ R_{t−1} + (1−β̂)(G²+ε₁)·1  (row sums),  C_t = β̂ C_{t−1} + (1−β̂) 1ᵀ(G²+ε₁)  (column sums),
              V̂_t = R_t C_t / (1ᵀR_t)
    vectors:  V̂_t = β̂ V̂_{t−1} + (1−β̂)(G²+ε₁)
    U_t = Ĝ_t / √V̂_t,   Û_t = U_t / max(1, RMS(U_t)/d),   x_t = x_{t−1} − α_t Û_t

Ĝ = Clip(G) (top ``clip_percent``%) when clipping is on — only the numerator is clipped, since
clipping the second moment too could cancel the effect (Pan & Li 2022, App. A.2). Tensors with more than
two dimensions are factored as (shape[0], rest).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, cast

import torch
from torch import Tensor

from curvlab.checks import check_lr, check_percent, check_positive
from curvlab.optim.base import ParamwiseOptimizer
from curvlab.optim.clipping import coordinate_clip


def rms(x: Tensor) -> Tensor:
    return cast(Tensor, torch.linalg.vector_norm(x) / math.sqrt(x.numel()))


def factored_rsqrt(row: Tensor, col: Tensor) -> Tensor:
    """1/√V̂ for V̂ = R Cᵀ / ΣR, as √(ΣR/R) · 1/√C factor by factor: the product R_i C_j of two
    near-ε₁ sums (an all-zero input pixel meeting a dead unit) underflows in float32, this does not."""
    return torch.outer((row / row.sum()).rsqrt(), col.rsqrt())


class Adafactor(ParamwiseOptimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float | None = None,
        eps1: float = 1e-30,
        eps2: float = 1e-3,
        clip_threshold: float = 1.0,
        clip_percent: float | None = None,
        clip_per_tensor: bool = False,
    ):
        if lr is not None:
            check_lr(lr)
        check_positive(clip_threshold, "clip_threshold")
        if clip_percent is not None:
            check_percent(clip_percent, "clip_percent")
        self.clip_percent = clip_percent
        self.clip_per_tensor = clip_per_tensor
        super().__init__(params, dict(lr=lr, eps1=eps1, eps2=eps2, clip_threshold=clip_threshold))

    def _prepare(self) -> None:
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        grads = [p.grad for p in params]
        if self.clip_percent is not None:
            grads = coordinate_clip(grads, self.clip_percent, self.clip_per_tensor)
        self._numerators = dict(zip(params, grads))

    def _update(self, p: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        numerator = self._numerators[p]
        t = state["step"] = state.get("step", 0) + 1
        beta = 1.0 - t**-0.8
        grad = p.grad
        assert grad is not None  # called for the parameters with a gradient only
        g2 = grad**2 + group["eps1"]
        if p.dim() >= 2:
            g2 = g2.reshape(p.shape[0], -1)
            if "row" not in state:
                state["row"] = torch.zeros(g2.shape[0], dtype=p.dtype, device=p.device)
                state["col"] = torch.zeros(g2.shape[1], dtype=p.dtype, device=p.device)
            state["row"].mul_(beta).add_(g2.sum(dim=1), alpha=1 - beta)
            state["col"].mul_(beta).add_(g2.sum(dim=0), alpha=1 - beta)
            inv_sqrt_v = factored_rsqrt(state["row"], state["col"]).reshape(p.shape)
        else:
            if "v" not in state:
                state["v"] = torch.zeros_like(p)
            state["v"].mul_(beta).add_(g2, alpha=1 - beta)
            inv_sqrt_v = state["v"].rsqrt()
        u = numerator * inv_sqrt_v
        u = u / max(1.0, float(rms(u)) / group["clip_threshold"])
        if group["lr"] is None:
            alpha = max(group["eps2"], float(rms(p))) * min(1e-2, 1 / math.sqrt(t))
        else:
            alpha = group["lr"]
        p.add_(u, alpha=-alpha)
