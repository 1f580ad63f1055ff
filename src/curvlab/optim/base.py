"""torch.optim conventions in one place: the optional closure, no_grad, the loop over parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer


def evaluate_closure(closure: Callable[[], Tensor] | None) -> Tensor | None:
    """Call an LBFGS-style closure (it re-evaluates the loss and gradients) with grad enabled."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class ParamwiseOptimizer(Optimizer):
    """Subclasses implement ``_update(p, group, state)`` for each parameter with a gradient, and may
    compute whole-model quantities (a global norm, a global clipping threshold) in ``_prepare()``."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One optimizer step on every parameter with a gradient; with a closure, evaluate it first and return
        its loss (as ``torch.optim``)."""
        loss = evaluate_closure(closure)
        self._prepare()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group, self.state[p])
        return loss

    def _prepare(self) -> None:
        pass

    def _update(self, p: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        raise NotImplementedError
