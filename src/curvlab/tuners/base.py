"""Learning-rate tuners that wrap any base optimizer (definitions §7), composed like optax transformations.

Each step:
1. ``closure()`` returns the loss on the step's batch (do *not* call backward): the tuner takes the
   gradient itself, keeping the graph when its rule needs uᵀHu.
2. u_t is the base optimizer's update at unit learning rate: the group learning rates are set to 1,
   the base optimizer steps once (its state advances exactly once), u = x_new − x, and x is restored.
3. The rule picks η_t from the quantities it needs; x_{t+1} = x_t + η_t u_t.

Extra evaluations (the loss at trial points, gradients, HVPs) replay the RNG state of the step's own
evaluation, so dropout masks match the step's batch, and afterwards the training RNG stream and the
model's buffers (BatchNorm statistics; pass ``model=``) are exactly as the step's evaluation left them.
``stats`` holds what the last step used: η, the rule's quantities, and its extra evaluations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from curvlab.core.state import preserved_rng, untracked_batchnorm
from curvlab.errors import InputError, InputTypeError
from curvlab.optim.wrapper import OptimizerWrapper

Closure = Callable[[], Tensor]


class Tuner(OptimizerWrapper):
    """Base class: subclasses implement ``choose_lr()`` using the helpers below."""

    def __init__(self, optimizer: Any, model: nn.Module | None = None):
        super().__init__(optimizer)
        if model is not None and not isinstance(model, nn.Module):
            raise InputTypeError(f"model: expected an nn.Module or None, got {type(model).__name__}")
        self.model = model
        self.lr = float("nan")
        self.stats: dict[str, float] = {}

    # ----- the step ---------------------------------------------------------------------------------
    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        if closure is None or not callable(closure):
            raise InputTypeError("closure: a tuner needs closure() returning the batch loss (without backward)")
        self._closure = closure
        self._params = self.params()
        self._rng_before = torch.get_rng_state()
        self._graph_grads = None
        loss, self._grads = self._evaluate(create_graph=False)
        self._buffers = [b.detach().clone() for b in self.model.buffers()] if self.model is not None else []
        self.loss = float(loss.detach())
        self.stats = {"loss": self.loss, "extra_loss_evals": 0, "extra_grad_evals": 0, "extra_hvps": 0}
        self._x = [p.detach().clone() for p in self._params]
        self._u = self._unit_update()
        try:
            eta = self.lr = float(self.choose_lr())
        finally:
            self._graph_grads = None  # free the retained graph
        self.stats["lr"] = eta
        self.after_step()  # may evaluate at w + ηu (restoring w) and set the next step's η
        self._move_to(eta)
        return loss.detach()

    def choose_lr(self) -> float:
        raise NotImplementedError

    def after_step(self) -> None:
        """Hook for rules that look at the new point w + ηu (hypergradient), run before x moves there."""

    # ----- helpers for the rules ---------------------------------------------------------------------
    def grad_dot_u(self) -> float:
        """∇f(w)ᵀu on the step's batch (negative for a descent direction)."""
        return float(sum((g.detach() * u).sum() for g, u in zip(self._grads, self._u)))

    def grad_norm_sq(self) -> float:
        return float(sum((g.detach() ** 2).sum() for g in self._grads))

    def u_norm(self) -> float:
        return float(torch.sqrt(sum((u**2).sum() for u in self._u)))

    def hvp(self, vs: list[Tensor]) -> list[Tensor]:
        """∇²f(w) v on the step's batch, by double backward through a gradient graph built once per
        step (after the base optimizer's trial step, which writes the parameters in place)."""
        if self._graph_grads is None:
            self._build_graph()
        self.stats["extra_hvps"] += 1
        pairs = [(g, v) for g, v in zip(self._graph_grads, vs) if g.requires_grad]
        if not pairs:
            return [torch.zeros_like(p) for p in self._params]
        outs, dirs = zip(*pairs)
        hv = torch.autograd.grad(outs, self._params, grad_outputs=dirs, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if h is None else h for h, p in zip(hv, self._params)]

    def quad_u(self) -> float:
        """uᵀ∇²f(w)u as ⟨u, Hu⟩ (definitions §7: never a formula wrong through normalisation layers)."""
        return float(sum((u * h).sum() for u, h in zip(self._u, self.hvp(self._u))))

    def loss_at(self, eta: float) -> float:
        """f(w + ηu) on the step's batch; x and the training state are restored afterwards."""
        self.stats["extra_loss_evals"] += 1
        with self._at(eta), torch.no_grad():
            return float(self._closure())

    def grad_at(self, eta: float) -> list[Tensor]:
        """∇f(w + ηu) on the step's batch."""
        self.stats["extra_grad_evals"] += 1
        with self._at(eta):
            return [g.detach() for g in self._evaluate(create_graph=False)[1]]

    # ----- internals ----------------------------------------------------------------------------------
    def _build_graph(self) -> None:
        """Re-evaluate at w with create_graph, replaying the step's RNG; train-mode BatchNorm (of
        ``model``) uses batch statistics without touching its running buffers."""
        self.stats["extra_grad_evals"] += 1
        untracked = untracked_batchnorm(self.model) if self.model is not None else contextlib.nullcontext()
        with preserved_rng(), untracked:
            torch.set_rng_state(self._rng_before)
            self._evaluate(create_graph=True)

    def _restore_buffers(self) -> None:
        if self.model is not None:
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), self._buffers):
                    b.copy_(saved)

    def _evaluate(self, create_graph: bool) -> tuple[Tensor, list[Tensor]]:
        with torch.enable_grad():
            loss = self._closure()
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise InputError("closure: must return the scalar batch loss")
            if not loss.requires_grad:
                raise InputError("closure: the loss does not depend on the parameters (was it detached?)")
            grads = torch.autograd.grad(loss, self._params, create_graph=create_graph, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self._params)]
        if create_graph:
            self._graph_grads = grads
        return loss, grads

    def _unit_update(self) -> list[Tensor]:
        lrs = [group["lr"] for group in self.param_groups]
        try:
            for group in self.param_groups:
                group["lr"] = 1.0
            for p, g in zip(self._params, self._grads):
                p.grad = g.detach().clone()
            self.optimizer.step()
            with torch.no_grad():
                u = [p.detach() - x for p, x in zip(self._params, self._x)]
                for p, x in zip(self._params, self._x):
                    p.copy_(x)
        finally:
            for group, lr in zip(self.param_groups, lrs):
                group["lr"] = lr
        return u

    def _move_to(self, eta: float) -> None:
        with torch.no_grad():
            for p, x, u in zip(self._params, self._x, self._u):
                p.copy_(x).add_(u, alpha=eta)

    @contextlib.contextmanager
    def _at(self, eta: float) -> Iterator[None]:
        """Evaluate at w + ηu replaying the step's RNG; restore x, buffers and the RNG stream."""
        self._move_to(eta)
        try:
            with preserved_rng():  # back to the training stream on exit
                torch.set_rng_state(self._rng_before)
                yield
        finally:
            with torch.no_grad():
                for p, x in zip(self._params, self._x):
                    p.copy_(x)
            self._restore_buffers()

    def _extra_state(self) -> dict:
        return {"lr": self.lr}

    def _load_extra_state(self, state_dict: dict) -> None:
        self.lr = state_dict["lr"]
