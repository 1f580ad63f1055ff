"""The sharpness family (definitions §2): λ1, top-k, λ_min, preconditioned sharpness, alignment of the update
with the top eigenvector, and the cosine between successive updates. Stability thresholds are knowledge of
optimizer types and live in :mod:`curvlab.optim.introspection`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from curvlab.core.objective import Objective
from curvlab.linalg import EigResult, LinearOperator, eigs, symmetric_scaling
from curvlab.optim.introspection import diagonal_preconditioner

Dot = Callable[[Tensor, Tensor], float]


def sharpness(
    objective: Objective, k: int = 1, tol: float = 1e-3, v0: Tensor | None = None, **kwargs: Any
) -> EigResult:
    """The top-k Hessian eigenpairs of F at the current point (λ1 = sharpness), by Lanczos."""
    return eigs(objective.hessian(), k=k, which="LA", tol=tol, v0=v0, **kwargs)


def lambda_min(objective: Objective, tol: float = 1e-3, **kwargs: Any) -> EigResult:
    """The most negative Hessian eigenvalue (``which="SA"``)."""
    return eigs(objective.hessian(), k=1, which="SA", tol=tol, **kwargs)


def preconditioned_hessian(objective: Objective, optimizer: Any) -> LinearOperator:
    """P^{-1/2} H P^{-1/2} with P the optimizer's diagonal preconditioner (Adam/AdamW: (1 − β1^t)(√v̂ + ε),
    RMSprop: √v + ε, curvlab Adafactor: √V̂), in the Objective's parameter order."""
    params = [p for _, p in objective.parameters]
    diag = objective.flatten(diagonal_preconditioner(optimizer, params))
    return symmetric_scaling(objective.hessian(), diag.rsqrt(), name="preconditioned Hessian")


def preconditioned_sharpness(
    objective: Objective, optimizer: Any, tol: float = 1e-3, v0: Tensor | None = None, **kwargs: Any
) -> EigResult:
    """λ_max(P^{-1/2} H P^{-1/2}) (definitions §2; Cohen et al. 2022, Gilmer et al. 2021 App. H)."""
    return eigs(preconditioned_hessian(objective, optimizer), which="LA", tol=tol, v0=v0, **kwargs)


def alignment(update: Tensor, eigenvector: Tensor, dot: Dot | None = None) -> float:
    """|⟨u, v1⟩| / (‖u‖ ‖v1‖): how much of the update lies along the top eigenvector (``dot``: the inner product
    when it is not this process's alone, e.g. ``objective.dot`` for shards of the vectors)."""
    return abs(cosine(update, eigenvector, dot))


def cosine(a: Tensor, b: Tensor, dot: Dot | None = None) -> float:
    """⟨a, b⟩ / (‖a‖ ‖b‖), e.g. between successive updates u_t and u_{t−1} (``dot`` as in :func:`alignment`)."""
    a, b = a.to(torch.float64), b.to(a.device, torch.float64)
    if dot is not None:
        return float(dot(a, b) / max((dot(a, a) * dot(b, b)) ** 0.5, 1e-300))
    return float(torch.dot(a, b) / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)).clamp_min(1e-300))
