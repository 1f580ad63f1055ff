"""Gradient noise (definitions §5; Kunstner et al. 2023 Fig. 1, Simsekli et al. 2019).

At a point x: the norms ‖g̃ − ∇F‖ of many minibatch gradients g̃ of a chosen size, QQ data against a
Gaussian fitted to those norms, and a tail index α of the noise coordinates by the estimator of
Mohammadi et al. (2015): with the K samples grouped into K₂ blocks of K₁ and Yᵢ the block sums,
1/α̂ = (mean log|Y| − mean log|X|) / log K₁. It streams: one block-sum vector and two running sums,
never every per-batch gradient (α = 2 is Gaussian; smaller is heavier-tailed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from curvlab.checks import check_int
from curvlab.core.objective import Objective
from curvlab.errors import InputTypeError


class TailIndex:
    """Streaming Mohammadi et al. (2015) estimator. Each :meth:`add` takes one noise vector; blocks
    sum ``block`` consecutive vectors coordinate-wise."""

    def __init__(self, block: int):
        check_int(block, "block", 2)
        self.block = block
        self._sum: Tensor | None = None
        self._in_block = 0
        self.log_x = 0.0
        self.n_x = 0
        self.log_y = 0.0
        self.n_y = 0

    def add(self, noise: Tensor) -> None:
        """Add one noise vector to the running sums of the tail-index estimator."""
        x = noise.detach().reshape(-1).to(torch.float64)
        nonzero = x[x != 0]
        self.log_x += float(nonzero.abs().log().sum())
        self.n_x += nonzero.numel()
        total = self._sum = x.clone() if self._sum is None else self._sum.add_(x)
        self._in_block += 1
        if self._in_block == self.block:
            y = total[total != 0]
            self.log_y += float(y.abs().log().sum())
            self.n_y += y.numel()
            self._sum, self._in_block = None, 0

    @property
    def alpha(self) -> float:
        """The estimated tail index α (2 for Gaussian noise, below 2 for heavy tails; NaN before a full block)."""
        if self.n_y == 0:
            return float("nan")
        inverse = (self.log_y / self.n_y - self.log_x / self.n_x) / math.log(self.block)
        return 1.0 / inverse if inverse > 0 else float("inf")


def qq_gaussian(samples: Tensor) -> tuple[Tensor, Tensor]:
    """(theoretical, sample) quantiles of ``samples`` against a Gaussian with their mean and std."""
    s = samples.detach().to(torch.float64).sort().values
    n = s.numel()
    probs = (torch.arange(1, n + 1, dtype=torch.float64) - 0.5) / n
    return s.mean() + s.std() * torch.special.ndtri(probs), s


@dataclass
class NoiseResult:
    norms: Tensor  # ‖g̃ − ∇F‖ per minibatch
    mean: float
    std: float
    tail_index: float
    batch_size: int
    n_batches: int
    full_grad_norm: float

    def qq(self) -> tuple[Tensor, Tensor]:
        """Quantiles of the noise norms against those of a Gaussian fitted to them (theory, sample), for a QQ plot."""
        return qq_gaussian(self.norms)


def gradient_noise(
    objective: Objective,
    data: tuple[Tensor, Tensor],
    batch_size: int,
    n_batches: int = 100,
    *,
    full_grad: Tensor | None = None,
    block: int | None = None,
    seed: int = 0,
) -> NoiseResult:
    """Sample ``n_batches`` minibatches of ``batch_size`` (without replacement inside a batch, from a
    seeded generator) from ``data = (inputs, targets)``, and measure their gradient errors against
    ∇F on all of ``data`` (or the given ``full_grad``). Every gradient is ``objective``'s measurement (its
    model, loss, BatchNorm mode, dropout and parameters) on other data (:meth:`Objective.on`); the model is
    not changed."""
    if not isinstance(objective, Objective):
        raise InputTypeError(f"objective: expected a curvlab.Objective, got {type(objective).__name__}")
    inputs, targets = data
    n = len(targets)
    check_int(batch_size, "batch_size", 1, n)
    check_int(n_batches, "n_batches", 2)
    if full_grad is None:
        full_grad = objective.on(data, batch_size=min(n, 1024)).grad()
    tail = TailIndex(block or max(2, int(math.sqrt(n_batches))))
    gen = torch.Generator().manual_seed(seed)
    norms = []
    for _ in range(n_batches):
        idx = torch.randperm(n, generator=gen)[:batch_size]
        g = objective.on((inputs[idx], targets[idx])).grad()
        noise = g - full_grad
        norms.append(float(torch.linalg.vector_norm(noise)))
        tail.add(noise)
    norms_t = torch.tensor(norms, dtype=torch.float64)
    return NoiseResult(
        norms_t,
        float(norms_t.mean()),
        float(norms_t.std()),
        tail.alpha,
        batch_size,
        n_batches,
        float(torch.linalg.vector_norm(full_grad)),
    )


def symmetric_stable(alpha: float, size: int, generator: torch.Generator) -> Tensor:
    """Samples of a standard symmetric α-stable law (Chambers–Mallows–Stuck), for testing."""
    v = (torch.rand(size, generator=generator, dtype=torch.float64) - 0.5) * math.pi
    w = -torch.log(torch.rand(size, generator=generator, dtype=torch.float64))
    return torch.sin(alpha * v) / torch.cos(v) ** (1 / alpha) * (torch.cos(v - alpha * v) / w) ** ((1 - alpha) / alpha)
