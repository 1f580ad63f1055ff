"""Random scaling (definitions §6; Tran, Zhang & Cutkosky 2024).

The update of an optimizer is multiplied by s_t ~ Exp(1).

    SGDM variant:  Δ_t = β(Δ_{t−1} − η_t g_t),   x_{t+1} = x_t + s_t Δ_t
    AdamW:         x_{t+1} = x_t + s_t · (AdamW's update)

``RandomScaling`` wraps any optimizer whose state does not depend on where x landed (DeltaSGDM,
AdamW, …): it lets the optimizer take its step, then rescales the step by s_t drawn once per step
from its own seeded generator. ``enabled=False`` gives s_t ≡ 1 (the plain optimizer, bit for bit).
``scale`` exposes the last s_t so that update_corr_RS = ⟨g_t, (x_t − x_{t−1})/s_t⟩ can be measured.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from curvlab.checks import check_beta, check_lr, check_seed
from curvlab.optim.base import ParamwiseOptimizer
from curvlab.optim.wrapper import OptimizerWrapper


class DeltaSGDM(ParamwiseOptimizer):
    """SGD with momentum in Tran et al.'s form: Δ_t = β(Δ_{t−1} − η g_t), x_{t+1} = x_t + Δ_t."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9):
        super().__init__(params, dict(lr=check_lr(lr), momentum=check_beta(momentum)))

    def _update(self, p: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        if "delta" not in state:
            state["delta"] = torch.zeros_like(p)
        state["delta"].add_(p.grad, alpha=-group["lr"]).mul_(group["momentum"])
        p.add_(state["delta"])


class RandomScaling(OptimizerWrapper):
    """Multiply every step of ``optimizer`` by s_t ~ Exp(1) (or 1 when ``enabled`` is False)."""

    def __init__(self, optimizer: Optimizer, seed: int = 0, enabled: bool = True):
        super().__init__(optimizer)
        check_seed(seed)
        self.enabled = enabled
        self.generator = torch.Generator().manual_seed(seed)
        self.scale = 1.0

    def draw_scale(self) -> float:
        """Draw the step's scale factor s ~ Exp(1) from the optimizer's own generator (1.0 when disabled)."""
        if not self.enabled:
            return 1.0
        return float(torch.empty((), dtype=torch.float64).exponential_(1.0, generator=self.generator))

    def _step(self) -> None:
        self.scale = self.draw_scale()
        if not self.enabled:
            self.optimizer.step()
            return
        params = self.params()
        before = [p.detach().clone() for p in params]
        self.optimizer.step()
        with torch.no_grad():
            for p, x in zip(params, before):
                p.sub_(x).mul_(self.scale).add_(x)  # x + s·(x_new − x)

    def _extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "scale": self.scale, "enabled": self.enabled}

    def _load_extra_state(self, state_dict: dict[str, Any]) -> None:
        self.generator.set_state(state_dict["generator"])
        self.scale = state_dict["scale"]
        self.enabled = state_dict["enabled"]
