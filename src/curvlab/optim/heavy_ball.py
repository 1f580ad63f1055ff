"""Gradient descent, normalized GD and sign descent with heavy-ball momentum.

Definitions §6; Kunstner et al. 2023, Alg. 1.

    m_t = β m_{t−1} + d_t,   x_{t+1} = x_t − α m_t,
    d_t = g_t  (GD),   g_t / ‖g_t‖₂  (normalized GD),   sign(g_t)  (sign descent).

Momentum is *undamped* (no 1 − β factor), as in the paper; β ∈ {0, 0.9} there. ``dampening=True``
gives m_t = β m_{t−1} + (1 − β) d_t from m_0 = 0: with ``direction="gd"`` that is Pan & Li's SGD
with momentum (Alg. 1; torch's SGD differs on the first step, where it sets m_1 = g_1).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from curvlab.checks import check_beta, check_choice, check_lr
from curvlab.optim.base import ParamwiseOptimizer

DIRECTIONS = ("gd", "normalized", "sign")
NORMS = ("global", "tensor")


class HeavyBall(ParamwiseOptimizer):
    """Heavy-ball momentum on the direction ``d_t`` chosen by ``direction``.

    Args:
        lr: step size α.
        momentum: β ∈ [0, 1).
        direction: ``"gd"``, ``"normalized"`` or ``"sign"``.
        normalization: for ``"normalized"``, ``"global"`` (one ℓ2 norm over every parameter of the
            optimizer, the paper's choice) or ``"tensor"`` (each tensor by its own norm).
        eps: added to the norm so that a zero gradient gives a zero step.
        dampening: use (1 − β) d_t in the momentum (Pan & Li 2022) instead of d_t (Kunstner et al. 2023).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        direction: str = "gd",
        normalization: str = "global",
        eps: float = 0.0,
        dampening: bool = False,
    ):
        defaults = dict(lr=check_lr(lr), momentum=check_beta(momentum), dampening=bool(dampening))
        self.direction = check_choice(direction, DIRECTIONS, "direction")
        self.normalization = check_choice(normalization, NORMS, "normalization")
        self.eps = eps
        super().__init__(params, defaults)

    def _prepare(self) -> None:
        self._directions = self.directions()

    def _update(self, p: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        beta = group["momentum"]
        state["momentum_buffer"].mul_(beta).add_(self._directions[p], alpha=(1 - beta) if group["dampening"] else 1.0)
        p.add_(state["momentum_buffer"], alpha=-group["lr"])

    def directions(self) -> dict[Tensor, Tensor]:
        """d_t for every parameter with a gradient (before momentum)."""
        grads = {p: p.grad for group in self.param_groups for p in group["params"] if p.grad is not None}
        if self.direction == "gd":
            return {p: g.clone() for p, g in grads.items()}
        if self.direction == "sign":
            return {p: torch.sign(g) for p, g in grads.items()}
        if self.normalization == "tensor":
            return {p: g / (torch.linalg.vector_norm(g) + self.eps) for p, g in grads.items()}
        total = torch.sqrt(sum(torch.linalg.vector_norm(g) ** 2 for g in grads.values())) if grads else 0.0
        return {p: g / (total + self.eps) for p, g in grads.items()}


class SignDescent(HeavyBall):
    """Sign descent with heavy-ball momentum: ``HeavyBall(direction="sign")``."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0):
        super().__init__(params, lr, momentum, direction="sign")


class NormalizedGD(HeavyBall):
    """Normalized GD with heavy-ball momentum (global ℓ2 norm by default): ``HeavyBall(direction="normalized")``."""

    def __init__(
        self, params: Iterable[Any], lr: float, momentum: float = 0.0, normalization: str = "global", eps: float = 0.0
    ):
        super().__init__(params, lr, momentum, direction="normalized", normalization=normalization, eps=eps)
