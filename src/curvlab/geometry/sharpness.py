"""The sharpness family (definitions §2): λ1, top-k, λ_min, preconditioned sharpness, stability thresholds,
alignment of the update with the top eigenvector, and the cosine between successive updates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from curvlab.core.objective import Objective
from curvlab.linalg import EigResult, LinearOperator, eigs


def sharpness(
    objective: Objective, k: int = 1, tol: float = 1e-3, v0: Tensor | None = None, **kwargs: Any
) -> EigResult:
    """The top-k Hessian eigenpairs of F at the current point (λ1 = sharpness), by Lanczos."""
    return eigs(objective.hessian(), k=k, which="LA", tol=tol, v0=v0, **kwargs)


def lambda_min(objective: Objective, tol: float = 1e-3, **kwargs: Any) -> EigResult:
    """The most negative Hessian eigenvalue (``which="SA"``)."""
    return eigs(objective.hessian(), k=1, which="SA", tol=tol, **kwargs)


def preconditioned_hessian(objective: Objective, optimizer: Any) -> LinearOperator:
    """P^{-1/2} H P^{-1/2} with P the optimizer's diagonal preconditioner (Adam/AdamW: √v̂ + ε,
    RMSprop: √v + ε, curvlab Adafactor: √V̂), in the Objective's parameter order."""
    from curvlab.optim.preconditioner import diagonal_preconditioner

    params = [p for _, p in objective._selected]
    diag = torch.cat([d.reshape(-1) for d in diagonal_preconditioner(optimizer, params)])
    scale = diag.rsqrt().to(objective.space.dtype)
    hessian = objective.hessian()
    return LinearOperator(
        lambda v: scale * hessian(scale * v), objective.dim, dtype=hessian.dtype, device=hessian.device
    )


def preconditioned_sharpness(
    objective: Objective, optimizer: Any, tol: float = 1e-3, v0: Tensor | None = None, **kwargs: Any
) -> EigResult:
    """λ_max(P^{-1/2} H P^{-1/2}) (definitions §2; Cohen et al. 2022, Gilmer et al. 2021 App. H)."""
    return eigs(preconditioned_hessian(objective, optimizer), which="LA", tol=tol, v0=v0, **kwargs)


@dataclass
class StabilityThreshold:
    """Where GD-like dynamics on a quadratic of curvature λ (or preconditioned curvature) turn unstable."""

    kind: str  # "gd", "heavy_ball", "nesterov", "adam_preconditioned", or "none"
    lr: float
    threshold: float  # the λ above which the method diverges on a quadratic (nan when none)
    preconditioned: bool

    def report(self, lam: float) -> dict[str, float]:
        """η·λ, the normalised y = ηλ − 2 (definitions §2), and λ / threshold."""
        return {
            "threshold": self.threshold,
            "lr_times_sharpness": self.lr * lam,
            "y": self.lr * lam - 2.0,
            "ratio_to_threshold": lam / self.threshold,
        }


def stability_threshold(optimizer: Any, lr: float | None = None) -> StabilityThreshold:
    """The stability threshold of the optimizer in use (definitions §2), from its first param group.

    - GD: 2/η.  Heavy-ball momentum β, PyTorch form (b = βb + g, x −= ηb): (2 + 2β)/η; with
      dampening d (b = βb + (1−d)g) the effective step is η(1−d).
    - Nesterov, PyTorch form (x −= η(g + βb)): (2 + 2β)/(η(1 + 2β)) (where an eigenvalue of the 2×2
      iteration matrix on a quadratic crosses −1).
    - curvlab HeavyBall("gd") likewise (dampening=True: effective step η(1−β)); DeltaSGDM is PyTorch
      SGD with step βη: (2 + 2β)/(βη).
    - Adam/AdamW: on the *preconditioned* sharpness, (2 + 2β₁)/((1 − β₁)η) (= 38/η at β₁ = 0.9).
    Sign descent, normalized methods, clipping and random-scaling wrappers have no such linear
    threshold: kind "none". ``lr`` overrides the group's learning rate (pass a tuner's η).
    """
    from curvlab.optim import DeltaSGDM, HeavyBall, OptimizerWrapper

    group = optimizer.param_groups[0]
    lr = float(group["lr"] if lr is None else lr)
    none = StabilityThreshold("none", lr, float("nan"), False)
    if isinstance(optimizer, OptimizerWrapper):
        return none
    if isinstance(optimizer, torch.optim.SGD):
        beta = float(group.get("momentum", 0.0))
        if group.get("nesterov"):
            return StabilityThreshold("nesterov", lr, (2 + 2 * beta) / (lr * (1 + 2 * beta)), False)
        effective = lr * (1 - float(group.get("dampening", 0.0))) if beta else lr
        return StabilityThreshold("heavy_ball" if beta else "gd", lr, (2 + 2 * beta) / effective, False)
    if isinstance(optimizer, HeavyBall) and optimizer.direction == "gd":
        beta = float(group["momentum"])
        effective = lr * (1 - beta) if group["dampening"] else lr
        return StabilityThreshold("heavy_ball" if beta else "gd", lr, (2 + 2 * beta) / effective, False)
    if isinstance(optimizer, DeltaSGDM):
        beta = float(group["momentum"])
        return StabilityThreshold("heavy_ball", lr, (2 + 2 * beta) / (beta * lr), False)
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        beta1 = float(group["betas"][0])
        return StabilityThreshold("adam_preconditioned", lr, (2 + 2 * beta1) / ((1 - beta1) * lr), True)
    return none


def alignment(update: Tensor, eigenvector: Tensor) -> float:
    """|⟨u, v1⟩| / (‖u‖ ‖v1‖): how much of the update lies along the top eigenvector."""
    u, v = update.to(torch.float64), eigenvector.to(update.device, torch.float64)
    return float(torch.dot(u, v).abs() / (torch.linalg.vector_norm(u) * torch.linalg.vector_norm(v)).clamp_min(1e-300))


def cosine(a: Tensor, b: Tensor) -> float:
    """⟨a, b⟩ / (‖a‖ ‖b‖), e.g. between successive updates u_t and u_{t−1}."""
    a, b = a.to(torch.float64), b.to(a.device, torch.float64)
    return float(torch.dot(a, b) / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)).clamp_min(1e-300))
