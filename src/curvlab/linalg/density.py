"""Spectral density by stochastic Lanczos quadrature (definitions §2; Ghorbani, Krishnan & Xiao 2019).

For each probe v (Gaussian, normalised), m Lanczos steps give T = QᵀAQ with eigenpairs (θ_j, s_j);
the spectral measure of A seen from v is approximated by Σ_j τ_j δ(t − θ_j), τ_j = s_{1j}² (the
Gauss quadrature nodes and weights). Averaging over probes and broadening each node by a Gaussian
of width σ gives a smooth density on a grid.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from curvlab.checks import check_int
from curvlab.errors import InputError
from curvlab.linalg.lanczos import LanczosProcess, choose_basis
from curvlab.linalg.operator import as_operator
from curvlab.linalg.progress import progress_bar
from curvlab.linalg.random import make_generator
from curvlab.linalg.vectors import F64


@dataclass
class SpectralDensity:
    """A density on ``grid`` (integrates to 1) and the raw quadrature it was made from."""

    grid: Tensor
    density: Tensor
    ritz_values: Tensor  # (n_probes, n_steps), padded with NaN where a probe's Krylov space was exhausted
    weights: Tensor  # (n_probes, n_steps), each row sums to 1
    bandwidth: float  # the Gaussian kernel's standard deviation
    n_matvecs: int

    @property
    def sigma(self) -> float:
        """Deprecated name of ``bandwidth`` (kept for one release)."""
        warnings.warn("SpectralDensity.sigma is now SpectralDensity.bandwidth", DeprecationWarning, stacklevel=2)
        return self.bandwidth

    def mass(self) -> float:
        """∫ density over the grid (trapezoid rule); 1 up to discretisation."""
        return float(torch.trapezoid(self.density, self.grid))

    def plot(self, ax: Any = None, log: bool = True, **kwargs: Any) -> Any:
        """Draw the density with matplotlib (log-scale y by default, as in Ghorbani et al.)."""
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(6, 3.5))[1]
        ax.plot(self.grid.numpy(), self.density.numpy(), **kwargs)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(bottom=max(float(self.density.max()) * 1e-8, 1e-12))
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density")
        return ax


def spectral_density(
    op: Any,
    n_probes: int = 5,
    n_steps: int = 80,
    *,
    n_grid: int = 1000,
    bandwidth: float | None = None,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    basis: str = "auto",
    sigma: float | None = None,
) -> SpectralDensity:
    """Estimate the eigenvalue density of a symmetric operator by SLQ.

    ``bandwidth`` is the standard deviation of the Gaussian kernel that broadens each Ritz value (default: 1% of
    the spectral range seen by Lanczos; ``sigma`` is its deprecated name, kept for one release).
    The grid covers the Ritz values ± 5 bandwidths, so the broadened mass lies inside it; the density is
    normalised to integrate to 1 on the grid. ``basis``: how each probe's Krylov basis is kept, as in
    :func:`curvlab.eigs` ("auto": float64, else float32, else the three-term recurrence alone, whose spurious
    copies of converged eigenvalues only split their quadrature weight; docs/scale.md).
    """
    op = as_operator(op)
    for name, value in (("n_probes", n_probes), ("n_steps", n_steps), ("n_grid", n_grid)):
        check_int(value, name, 2 if name == "n_grid" else 1)
    if sigma is not None:
        warnings.warn("spectral_density(sigma=...) is now bandwidth=...", DeprecationWarning, stacklevel=2)
        bandwidth = sigma if bandwidth is None else bandwidth
    if bandwidth is not None and not bandwidth > 0:
        raise InputError(f"bandwidth: expected a positive number or None, got {bandwidth!r}")
    gen = make_generator(seed, generator)
    used_before = op.n_matvecs
    steps = min(n_steps, op.size)
    mode = choose_basis(basis, op, steps)
    nodes = torch.full((n_probes, steps), float("nan"), dtype=F64)
    weights = torch.zeros((n_probes, steps), dtype=F64)
    bar = progress_bar(n_probes * steps, "spectral density", progress)
    try:
        for p in range(n_probes):
            # only T is needed: no start vector kept for Ritz vectors, and each probe's vectors freed before the next
            process = LanczosProcess(op, op.random("gaussian", gen), gen, mode, keep_start=False)
            while process.steps < steps and not process.exhausted:
                process.step()
                bar.update()
            theta, s, _ = process.ritz()
            del process
            nodes[p, : theta.numel()] = theta.cpu()
            weights[p, : theta.numel()] = s[0].cpu() ** 2
    finally:
        bar.close()
    grid, density, bandwidth = _broaden(nodes, weights, n_grid, bandwidth)
    return SpectralDensity(grid, density, nodes, weights, bandwidth, op.n_matvecs - used_before)


def _broaden(nodes: Tensor, weights: Tensor, n_grid: int, bandwidth: float | None) -> tuple[Tensor, Tensor, float]:
    finite = nodes[torch.isfinite(nodes)]
    lo, hi = float(finite.min()), float(finite.max())
    if bandwidth is None:
        bandwidth = max(0.01 * (hi - lo), 1e-8 * max(abs(lo), abs(hi), 1.0))
    grid = torch.linspace(lo - 5 * bandwidth, hi + 5 * bandwidth, n_grid, dtype=F64)
    mask = torch.isfinite(nodes)
    t, w = nodes[mask], weights[mask] / nodes.shape[0]
    kernels = torch.exp(-0.5 * ((grid[:, None] - t[None, :]) / bandwidth) ** 2) / (bandwidth * math.sqrt(2 * math.pi))
    density = kernels @ w
    density = density / torch.trapezoid(density, grid)
    return grid, density, bandwidth
