"""The learning-rate rules of definitions §7 (Roulet et al. 2024), each a :class:`Tuner` around any base optimizer.

u is the base optimizer's update at unit learning rate; g = ∇f(w) on the step's batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from curvlab.checks import check_beta, check_int, check_lr, check_positive
from curvlab.core.params import split_flat
from curvlab.errors import InputError
from curvlab.linalg import LinearOperator, eigs, symmetric_scaling
from curvlab.optim.introspection import diagonal_preconditioner
from curvlab.tuners.base import Tuner


class Linesearch(Tuner):
    """Armijo backtracking: the largest η = c₋ᵏ η₀ with f(w+ηu) ≤ (1+δ) f(w) + c η gᵀu,
    η₀ = min(c₊ η_{t−1}, 1) (c₊ = ∞ → η₀ = 1). ``max_backtracks`` caps the reductions, as Roulet et al. (2024) do
    in mini-batch mode (a step that still fails the condition is taken, and recorded with ``armijo`` = 0);
    None backtracks until the condition holds, as they do in full batch (``curvlab run`` picks None when
    ``batch_size = "full"``). A direction that is not a descent direction then ends at η = 0: no step."""

    def __init__(
        self,
        optimizer: Any,
        c: float = 1e-4,
        c_plus: float = 4.0,
        c_minus: float = 0.8,
        delta: float = 0.0,
        max_backtracks: int | None = 30,
        model: nn.Module | None = None,
    ):
        super().__init__(optimizer, model)
        self.c = check_lr(c, "c")
        self.c_plus = check_positive(c_plus, "c_plus")
        if not 0 < c_minus < 1:
            raise InputError(f"c_minus: expected a number in (0, 1), got {c_minus!r}")
        self.c_minus = c_minus
        self.delta = check_lr(delta, "delta")
        self.max_backtracks = None if max_backtracks is None else check_int(max_backtracks, "max_backtracks", 0)
        self.lr = 1.0

    def initial_lr(self) -> float:
        """The first trial step: ``c_plus`` × the last accepted η, capped at 1 (1 at the first step)."""
        if math.isinf(self.c_plus) or not math.isfinite(self.lr):
            return 1.0
        return min(self.c_plus * self.lr, 1.0)

    def choose_lr(self) -> float:
        slope = self.grad_dot_u()
        eta, k = self.initial_lr(), 0
        while True:
            trial = self.loss_at(eta)
            if trial <= (1 + self.delta) * self.loss + self.c * eta * slope:
                self.stats.update(slope=slope, backtracks=k, armijo=1.0, trial_loss=trial)
                return eta
            if k == self.max_backtracks or eta == 0.0:
                self.stats.update(slope=slope, backtracks=k, armijo=0.0, trial_loss=trial)
                return eta
            eta *= self.c_minus
            k += 1


class CDAT(Tuner):
    """Curvature-dynamics aware tuning: η = σ n/d, n = max(−gᵀu, 0), d = |uᵀHu| + ε, with
    optional EMAs n̄ = β n̄ + (1−β) n and d̄ likewise (started at 0; the ratio needs no bias correction).
    σ = 1 is the quadratically greedy rule, σ = 2 "on edge"."""

    needs_curvature = True

    def __init__(
        self, optimizer: Any, sigma: float = 2.0, beta: float = 0.0, eps: float = 1e-12, model: nn.Module | None = None
    ):
        super().__init__(optimizer, model)
        self.sigma = check_positive(sigma, "sigma")
        self.beta = check_beta(beta, "beta")
        self.eps = check_lr(eps, "eps")
        self.num_avg = 0.0
        self.den_avg = 0.0

    def choose_lr(self) -> float:
        numerator = max(-self.grad_dot_u(), 0.0)
        curvature = self.quad_u()
        denominator = abs(curvature) + self.eps
        self.num_avg = self.beta * self.num_avg + (1 - self.beta) * numerator
        self.den_avg = self.beta * self.den_avg + (1 - self.beta) * denominator
        self.stats.update(numerator=numerator, denominator=denominator, uHu=curvature)
        return self.sigma * self.num_avg / self.den_avg

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "num_avg": self.num_avg, "den_avg": self.den_avg}

    def _load_extra_state(self, state_dict: dict[str, Any]) -> None:
        super()._load_extra_state(state_dict)
        self.num_avg, self.den_avg = state_dict["num_avg"], state_dict["den_avg"]


class QuadraticallyGreedy(CDAT):
    """η = −gᵀu / uᵀHu: the minimiser of the quadratic model along u (CDAT with σ = 1, no EMA)."""

    def __init__(self, optimizer: Any, eps: float = 1e-12, model: nn.Module | None = None):
        super().__init__(optimizer, sigma=1.0, beta=0.0, eps=eps, model=model)


class Polyak(Tuner):
    """η = min((f − f*) / ‖g‖², η_max)."""

    def __init__(self, optimizer: Any, f_star: float = 0.0, lr_max: float = 1.0, model: nn.Module | None = None):
        super().__init__(optimizer, model)
        self.f_star = float(f_star)
        self.lr_max = check_positive(lr_max, "lr_max")

    def choose_lr(self) -> float:
        gap, norm_sq = self.loss - self.f_star, self.grad_norm_sq()
        self.stats.update(gap=gap, grad_norm_sq=norm_sq)
        return self.lr_max if norm_sq == 0 else min(max(gap, 0.0) / norm_sq, self.lr_max)


class Hypergradient(Tuner):
    """η_{t+1} = η_t (1 − β ∇f(w_t + η_t u_t)ᵀu_t / (‖∇f(w_t + η_t u_t)‖ ‖u_t‖)), the gradient at the
    new point taken on the step's own batch (one extra gradient evaluation per step).
    ``lr`` is the η the last step used, ``next_lr`` the one the next step will use."""

    def __init__(self, optimizer: Any, lr: float, beta: float = 0.01, model: nn.Module | None = None):
        super().__init__(optimizer, model)
        self.next_lr = check_lr(lr)
        self.beta = check_lr(beta, "beta")

    def choose_lr(self) -> float:
        return self.next_lr

    def after_step(self) -> None:
        """Update the next step's η from the cosine between the new gradient and this step's direction."""
        grads = self.grad_at(self.lr)
        dot = float(sum((g * u).sum() for g, u in zip(grads, self._u)))
        norm = math.sqrt(float(sum((g**2).sum() for g in grads))) * self.u_norm()
        cosine = dot / norm if norm > 0 else 0.0
        self.next_lr = self.lr * (1 - self.beta * cosine)
        self.stats.update(cosine=cosine, next_lr=self.next_lr)

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "next_lr": self.next_lr}

    def _load_extra_state(self, state_dict: dict[str, Any]) -> None:
        super()._load_extra_state(state_dict)
        self.next_lr = state_dict["next_lr"]


class EdgeRule(Tuner):
    """η = σ / λ_max(∇²f) — or of P^{-1/2} ∇²f P^{-1/2} with P the base optimizer's diagonal
    preconditioner (``preconditioned=True``), λ_max by Lanczos on the step's batch."""

    needs_curvature = True

    def __init__(
        self,
        optimizer: Any,
        sigma: float = 2.0,
        preconditioned: bool = False,
        tol: float = 1e-3,
        model: nn.Module | None = None,
    ):
        super().__init__(optimizer, model)
        self.sigma = check_positive(sigma, "sigma")
        self.preconditioned = preconditioned
        self.tol = check_positive(tol, "tol")
        self._v0: Tensor | None = None

    def choose_lr(self) -> float:
        shapes = [p.shape for p in self._params]
        first = self._params[0]
        op = LinearOperator(
            lambda v: torch.cat([h.reshape(-1) for h in self.hvp(split_flat(v, shapes))]),
            sum(p.numel() for p in self._params),
            dtype=first.dtype,
            device=first.device,
        )
        if self.preconditioned:
            diag = diagonal_preconditioner(self.optimizer, self._params)
            op = symmetric_scaling(op, torch.cat([d.reshape(-1) for d in diag]).rsqrt())
        result = eigs(op, tol=self.tol, v0=self._v0)
        assert result.eigenvectors is not None  # eigs keeps them unless vectors=False
        self._v0 = result.eigenvectors[:, 0]
        lam = float(result.eigenvalues[0])
        self.stats.update(lambda_max=lam)
        return self.sigma / lam if lam > 0 else float("inf")
