"""Direction-wise geometry (definitions §3; Pan & Li 2022): directional sharpness, gradient correlation,
1-D loss landscapes, coordinate histograms."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from curvlab.core.objective import Objective
from curvlab.errors import InputError


def directional_sharpness(objective: Objective, direction: Tensor, at: Tensor | None = None) -> float:
    """dᵀHd / ‖d‖² (scale-free), with dᵀHd = ⟨d, Hd⟩."""
    d = objective.space.check_vector(direction, "direction")
    sharpness = directional_sharpnesses(objective, {"d": d}, at)[1]
    if "d" not in sharpness:
        raise InputError("direction: the zero vector has no directional sharpness")
    return sharpness["d"]


def directional_sharpnesses(
    objective: Objective, directions: dict[str, Tensor], at: Tensor | None = None
) -> tuple[Tensor, dict[str, float]]:
    """(∇F, {name: dᵀHd / ‖d‖²}) at one point for several directions, from one gradient graph per chunk
    (:meth:`Objective.grad_and_quads`); a zero direction has no directional sharpness and is left out."""
    squares = {name: objective.dot(d, d) for name, d in directions.items()}
    nonzero = {name: d for name, d in directions.items() if squares[name] > 0}
    grad, quads = objective.grad_and_quads(list(nonzero.values()), at=at)
    return grad, {name: q / squares[name] for name, q in zip(nonzero, quads)}


def gradient_correlation(objective: Objective, direction: Tensor, grad: Tensor | None = None) -> float:
    """−⟨∇F, d⟩ / ‖d‖: the first-order decrease per unit step along d (``grad`` reuses a known ∇F)."""
    d = objective.space.check_vector(direction, "direction")
    g = objective.grad() if grad is None else objective.space.check_vector(grad, "grad")
    return -objective.dot(g, d) / objective.norm(d)


def landscape_1d(
    objective: Objective, directions: dict[str, Tensor], alphas: Iterable[float]
) -> dict[str, list[float]]:
    """F(x + α d/‖d‖) for each α and each named direction. The model is never written to, so its
    parameters are exactly as before (bit for bit)."""
    x = objective.parameters_vector()
    alphas = [float(a) for a in alphas]
    out = {}
    for name, d in directions.items():
        d = objective.space.check_vector(d, f"directions[{name!r}]")
        unit = d / objective.norm(d)
        out[name] = [objective.loss(at=x + a * unit) for a in alphas]
    return out


def log_bins(low: float = 1e-12, high: float = 1e2, n_bins: int = 57) -> Tensor:
    """Log-spaced bin edges for coordinate magnitudes."""
    if not 0 < low < high:
        raise InputError(f"low, high: expected 0 < low < high, got {low}, {high}")
    return torch.logspace(
        torch.log10(torch.tensor(low)), torch.log10(torch.tensor(high)), n_bins + 1, dtype=torch.float64
    )


def coordinate_histogram(values: Tensor, edges: Tensor | None = None) -> dict[str, Tensor]:
    """Counts of |values| in log-spaced bins (definitions §3), plus the number of exact zeros and the
    counts below/above the bin range."""
    mags = values.detach().reshape(-1).abs().to(torch.float64).cpu()
    edges = log_bins() if edges is None else edges.to(torch.float64)
    nonzero = mags[mags > 0]
    counts = torch.histogram(nonzero.clamp(edges[0], edges[-1]), bins=edges).hist
    return {
        "edges": edges,
        "counts": counts,
        "zeros": torch.tensor(int((mags == 0).sum())),
        "below": torch.tensor(int((nonzero < edges[0]).sum())),
        "above": torch.tensor(int((nonzero > edges[-1]).sum())),
    }
