"""Learning-rate tuners that wrap any base optimizer (definitions §7), composed like optax transformations.

A tuner is a torch optimizer: ``tuner.step(closure)`` with the closure of ``torch.optim`` (it zeroes the
gradients, evaluates the batch loss, calls ``backward`` and returns the loss), so a tuner takes the same
step path as every other optimizer — gradient accumulation, data-parallel all-reduce, clipping wrappers.
Rules that need uᵀHu call ``closure(create_graph=True)``, which must pass ``create_graph`` on to
``backward``; :func:`make_closure` builds such a closure from a function returning the loss.

Each step:
1. ``closure()`` gives the loss and g = ∇f(w) (in ``p.grad``).
2. u_t is the base optimizer's update at unit learning rate: the group learning rates are set to 1,
   the base optimizer steps once (its state advances exactly once), u = x_new − x, and x is restored.
3. The rule picks η_t and writes it into the param groups (they own the learning rate, as for every
   optimizer); x_{t+1} = x_t + η_t u_t.

Extra evaluations (the loss at trial points, gradients, HVPs) replay the RNG state of the step's own
evaluation, so dropout masks match the step's batch, and afterwards the training RNG stream and the
model's buffers (BatchNorm statistics; pass ``model=``) are exactly as the step's evaluation left them.
``stats`` holds what the last step used: η, the rule's quantities, and its extra evaluations.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from curvlab.core.hvp import hvp_from_grads
from curvlab.core.state import preserved_rng, untracked_batchnorm
from curvlab.errors import InputError, InputTypeError
from curvlab.optim.introspection import learning_rate, set_learning_rate
from curvlab.optim.wrapper import OptimizerWrapper

Closure = Callable[..., Tensor]


def make_closure(compute_loss: Callable[[], Tensor], optimizer: Any) -> Closure:
    """The torch closure for ``compute_loss()``: zero the gradients, evaluate, backward (keeping the graph
    when called with ``create_graph=True``), return the loss."""

    def closure(create_graph: bool = False) -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = compute_loss()
        _check_loss(loss)
        if not loss.requires_grad:
            raise InputError("closure: the loss does not depend on the parameters (was it detached?)")
        loss.backward(create_graph=create_graph)
        return loss

    return closure


class Tuner(OptimizerWrapper):
    """Base class: subclasses implement ``choose_lr()`` using the helpers below."""

    chooses_lr_only = True
    needs_curvature = False  # True when the rule asks for uᵀHu (the closure must accept create_graph)

    def __init__(self, optimizer: Any, model: nn.Module | None = None):
        super().__init__(optimizer)
        if model is not None and not isinstance(model, nn.Module):
            raise InputTypeError(f"model: expected an nn.Module or None, got {type(model).__name__}")
        self.model = model
        self.stats: dict[str, float] = {}

    @property
    def lr(self) -> float:
        """η of the last step (the param groups' learning rate)."""
        return learning_rate(self)

    @lr.setter
    def lr(self, value: float) -> None:
        set_learning_rate(self, float(value))

    # ----- the step ---------------------------------------------------------------------------------
    def step(self, closure: Closure | None = None) -> Tensor:
        """One step: evaluate the closure, choose η by the tuner's rule, set it on the base optimizer and step it.
        Returns the loss."""
        if closure is None or not callable(closure):
            raise InputTypeError(
                "closure: a tuner needs closure() that zeroes the gradients, evaluates the batch loss, calls "
                "backward and returns the loss (curvlab.tuners.make_closure builds one)"
            )
        if self.needs_curvature and "create_graph" not in inspect.signature(closure).parameters:
            raise InputTypeError(
                f"closure: {type(self).__name__} needs uᵀHu, so the closure must accept create_graph and pass it "
                "to backward (curvlab.tuners.make_closure builds one)"
            )
        self._closure = closure
        self._params = self.params()
        self._rng_before = torch.get_rng_state()
        self._graph_grads: list[Tensor] | None = None
        loss, self._grads = self._evaluate()
        self._buffers = [b.detach().clone() for b in self.model.buffers()] if self.model is not None else []
        self.loss = float(loss)
        self.stats = {"loss": self.loss, "extra_loss_evals": 0, "extra_grad_evals": 0, "extra_hvps": 0}
        self._x = [p.detach().clone() for p in self._params]
        self._u = self._unit_update()
        try:
            eta = float(self.choose_lr())
        finally:
            self._graph_grads = None  # free the retained graph
        self.lr = self.stats["lr"] = eta
        self.after_step()  # may evaluate at w + ηu (restoring w) and set the next step's η
        self._move_to(eta)
        self._set_grads(self._grads)  # p.grad holds the step's gradient, as after any optimizer step
        return loss

    def choose_lr(self) -> float:
        """The rule: the learning rate for this step, from the gradient and the base optimizer's direction."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Hook for rules that look at the new point w + ηu (hypergradient), run before x moves there."""

    # ----- helpers for the rules ---------------------------------------------------------------------
    def grad_dot_u(self) -> float:
        """∇f(w)ᵀu on the step's batch (negative for a descent direction)."""
        return float(sum((g.detach() * u).sum() for g, u in zip(self._grads, self._u)))

    def grad_norm_sq(self) -> float:
        """‖g‖² of the current minibatch gradient."""
        return float(sum((g.detach() ** 2).sum() for g in self._grads))

    def u_norm(self) -> float:
        """‖u‖ of the base optimizer's update direction at unit learning rate."""
        return float(torch.sqrt(sum(((u**2).sum() for u in self._u), torch.zeros(()))))  # 0 + x: exact

    def hvp(self, vs: list[Tensor]) -> list[Tensor]:
        """∇²f(w) v on the step's batch, by double backward through a gradient graph built once per
        step (after the base optimizer's trial step, which writes the parameters in place)."""
        grads = self._graph_grads if self._graph_grads is not None else self._build_graph()
        self.stats["extra_hvps"] += 1
        return hvp_from_grads(grads, self._params, vs, retain_graph=True)

    def quad_u(self) -> float:
        """uᵀ∇²f(w)u as ⟨u, Hu⟩ (definitions §7: never a formula wrong through normalisation layers)."""
        return float(sum((u * h).sum() for u, h in zip(self._u, self.hvp(self._u))))

    def loss_at(self, eta: float) -> float:
        """f(w + ηu) on the step's batch (one closure call); x and the training state are restored afterwards."""
        self.stats["extra_loss_evals"] += 1
        with self._at(eta):
            return float(self._evaluate()[0])

    def grad_at(self, eta: float) -> list[Tensor]:
        """∇f(w + ηu) on the step's batch."""
        self.stats["extra_grad_evals"] += 1
        with self._at(eta):
            return self._evaluate()[1]

    # ----- internals ----------------------------------------------------------------------------------
    def _build_graph(self) -> list[Tensor]:
        """Re-evaluate at w with create_graph, replaying the step's RNG; train-mode BatchNorm (of
        ``model``) uses batch statistics without touching its running buffers."""
        self.stats["extra_grad_evals"] += 1
        untracked = untracked_batchnorm(self.model) if self.model is not None else contextlib.nullcontext()
        with preserved_rng(), untracked, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using backward.. with create_graph=True")  # broken below
            torch.set_rng_state(self._rng_before)
            self._closure(create_graph=True)
            grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in self._params]
        for p in self._params:  # p.grad ↔ p reference cycle of create_graph: cut it
            p.grad = None
        self._graph_grads = grads
        return grads

    def _restore_buffers(self) -> None:
        if self.model is not None:
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), self._buffers):
                    b.copy_(saved)

    def _evaluate(self) -> tuple[Tensor, list[Tensor]]:
        """One closure call: the loss (detached) and the gradient it left in ``p.grad``."""
        with torch.enable_grad():
            loss = self._closure()
        _check_loss(loss)
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in self._params]
        return loss.detach(), grads

    def _set_grads(self, grads: list[Tensor]) -> None:
        for p, g in zip(self._params, grads):
            p.grad = g.clone()

    def _unit_update(self) -> list[Tensor]:
        lrs = [group["lr"] for group in self.param_groups]
        try:
            set_learning_rate(self, 1.0)
            self._set_grads(self._grads)
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


def _check_loss(loss: Any) -> None:
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise InputError("closure: must return the scalar batch loss")
