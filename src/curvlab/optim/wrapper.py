"""A base for wrappers that change what an optimizer's step does while keeping its interface."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.optim import Optimizer

from curvlab.errors import InputTypeError
from curvlab.optim.base import evaluate_closure


class OptimizerWrapper:
    """Exposes ``param_groups``, ``state``, ``zero_grad`` and ``state_dict`` of the wrapped optimizer;
    subclasses implement :meth:`_step` (called after the optional closure). ``chooses_lr_only`` says the
    wrapper keeps the wrapped optimizer's update direction and only chooses η (a tuner)."""

    chooses_lr_only = False

    def __init__(self, optimizer: Any):
        if not isinstance(optimizer, (Optimizer, OptimizerWrapper)):
            raise InputTypeError(f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The wrapped optimizer's param groups (they own the learning rate)."""
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:
        """The wrapped optimizer's per-parameter state."""
        return self.optimizer.state

    def params(self) -> list[Tensor]:
        """Every parameter of every param group, in order."""
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the wrapped optimizer's gradients (as ``torch.optim.Optimizer.zero_grad``)."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Evaluate the optional closure, then take the wrapped step; returns the closure's loss."""
        loss = evaluate_closure(closure)
        self._step()
        return loss

    def _step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's state dict and the wrapper's own state."""
        return {"optimizer": self.optimizer.state_dict(), **self._extra_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self._load_extra_state(state_dict)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state_dict: dict[str, Any]) -> None:
        pass
