"""The Lanczos process with full reorthogonalisation, shared by eigs() and spectral_density().

The basis and the tridiagonal T are kept in float64 whatever the operator's dtype (definitions §2);
products run in the operator's dtype. After m steps, the Ritz pairs (θ_i, Q s_i) of T = QᵀAQ have
residual norms ‖A y_i − θ_i y_i‖ = |β_m · s_{m,i}|.
"""

from __future__ import annotations

import torch
from torch import Tensor

from curvlab.errors import InputError, NonFiniteError, nonfinite_detail
from curvlab.linalg.operator import LinearOperator
from curvlab.linalg.random import gaussian

F64 = torch.float64


class LanczosProcess:
    """Grows an orthonormal Krylov basis one product at a time.

    On breakdown (an invariant subspace is found before the whole space is spanned) it restarts
    with a random vector orthogonal to the basis, so repeated eigenvalues are found too.
    """

    def __init__(self, op: LinearOperator, v0: Tensor, generator: torch.Generator, capacity: int = 32):
        self.op = op
        self.gen = generator
        q = v0.to(device=op.device, dtype=F64).reshape(-1)
        norm = torch.linalg.vector_norm(q)
        if not torch.isfinite(norm) or norm == 0:
            raise InputError("v0: the start vector must be finite and non-zero")
        self._basis = torch.empty((min(capacity, op.dim + 1), op.dim), dtype=F64, device=op.device)
        self._basis[0] = q / norm
        self.alpha: list[float] = []
        self.beta: list[float] = []
        self.exhausted = False
        self.block_start = 0  # first step of the Krylov block grown since the last restart

    @property
    def steps(self) -> int:
        return len(self.alpha)

    def step(self) -> None:
        """One product with A: extends T by one row and column."""
        j = self.steps
        q = self._basis[j]
        w = self.op.matvec(q.to(self.op.dtype)).to(F64)
        if j > 0:
            w = w - self.beta[-1] * self._basis[j - 1]
        a = float(torch.dot(q, w))
        w = w - a * q  # the three-term recurrence, then full reorthogonalisation for the rest
        w, b = _orthogonalise(w, self._basis[: j + 1])
        self.alpha.append(a)
        if j + 1 >= self.op.dim:
            self.beta.append(0.0)
            self.exhausted = True
            return
        scale = max(abs(a), *(abs(x) for x in self.beta[-1:]), 1e-300)
        if b <= 1e-10 * scale:  # invariant subspace: restart orthogonally
            w = self._orthogonal_random(self._basis[: j + 1])
            self.beta.append(0.0)
            self.block_start = j + 1
        else:
            self.beta.append(b)
            w = w / b
        self._append(w)

    def _orthogonal_random(self, basis: Tensor) -> Tensor:
        w, norm = _orthogonalise(gaussian((self.op.dim,), self.gen, self.op.device), basis)
        return w / norm

    def _append(self, w: Tensor) -> None:
        j = self.steps
        if j >= self._basis.shape[0]:
            grow = torch.empty_like(self._basis[: min(self._basis.shape[0], self.op.dim + 1 - j)])
            self._basis = torch.cat([self._basis, grow])
        self._basis[j] = w

    @property
    def restarted(self) -> bool:
        """True once an invariant subspace was found and the process went on orthogonally to it."""
        return self.block_start > 0

    def tridiagonal(self, start: int = 0) -> Tensor:
        m = self.steps
        t = torch.diag(torch.tensor(self.alpha[start:], dtype=F64))
        if m - start > 1:
            off = torch.tensor(self.beta[start : m - 1], dtype=F64)
            t += torch.diag(off, 1) + torch.diag(off, -1)
        return t

    def ritz(self, latest_block: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Ritz values θ (ascending), eigenvectors S of T, and residual norms |β_m s_{m,i}|.

        ``latest_block`` restricts T to the block grown since the last restart: after a breakdown,
        its Ritz values tell whether the orthogonal complement holds wanted eigenvalues (for
        instance further copies of a repeated one, which a single Krylov space never sees).
        """
        t = self.tridiagonal(self.block_start if latest_block else 0)
        if not torch.isfinite(t).all():  # products are checked; this is an overflow of their float64 sums
            raise NonFiniteError("Lanczos tridiagonal matrix", f"after {self.steps} products", nonfinite_detail(t))
        theta, s = torch.linalg.eigh(t)
        residuals = abs(self.beta[-1]) * s[-1].abs()
        return theta, s, residuals

    def ritz_vectors(self, s: Tensor) -> Tensor:
        """Q S: Ritz vectors (columns) on the operator's device, float64."""
        return self._basis[: self.steps].T @ s.to(self._basis.device)


def _orthogonalise(w: Tensor, basis: Tensor) -> tuple[Tensor, float]:
    """Full reorthogonalisation of w against the basis rows (classical Gram–Schmidt), repeated
    once when the first pass cancelled most of w (the DGKS criterion, ‖w‖ < ‖w₀‖/√2): twice is
    enough for orthogonality to working precision. Returns (w, ‖w‖)."""
    before = float(torch.linalg.vector_norm(w))
    w = w - basis.T @ (basis @ w)
    after = float(torch.linalg.vector_norm(w))
    if after < before / 2**0.5:
        w = w - basis.T @ (basis @ w)
        after = float(torch.linalg.vector_norm(w))
    return w, after
