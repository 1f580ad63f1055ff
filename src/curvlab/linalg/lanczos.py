"""The Lanczos process, shared by eigs() and spectral_density(), with the memory a solve needs and no more.

Three ways to keep the Krylov basis (``basis``):

- ``"float64"``: every basis vector stored in float64, full reorthogonalisation (definitions §2): the most
  accurate, 8 bytes per parameter per step.
- ``"float32"``: the same with the vectors stored in float32 (4 bytes per parameter per step); coefficients,
  sums and the tridiagonal stay float64.
- ``"none"``: only the last two vectors (the three-term recurrence, no reorthogonalisation), in the
  operator's dtype: a fixed few vectors whatever the number of steps. Without reorthogonalisation a
  converged eigenvalue can reappear as a spurious copy ("ghost") in later steps, so this mode serves the top
  eigenvalue (k = 1) and quadrature (spectral density), where copies do no harm. Ritz vectors are then
  rebuilt by a second pass of the recurrence (one more product per step) when asked for.
- ``"auto"``: float64 when ``max_steps`` float64 vectors fit in a quarter of the available memory, else
  float32 when those fit, else ``"none"`` (docs/scale.md gives the formulas).

The tridiagonal T is kept in float64 whatever the mode; products run in the operator's dtype. After m steps,
the Ritz pairs (θ_i, Q s_i) of T = QᵀAQ have residual norms ‖A y_i − θ_i y_i‖ = |β_m · s_{m,i}|.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from curvlab.errors import InputError, NonFiniteError, nonfinite_detail
from curvlab.linalg.operator import LinearOperator
from curvlab.linalg.vectors import F64, dot64, norm64, norms64  # noqa: F401 (re-exported)
from curvlab.machine import available_memory

BASES = ("auto", "float64", "float32", "none")
BASIS_DTYPES = {"float64": torch.float64, "float32": torch.float32}
AUTO_FRACTION = 0.25  # of the available memory, for a stored basis chosen by basis="auto"


def recurrence_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the recurrence's vectors without a stored basis: the operator's, at least float32."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def choose_basis(basis: str, op: LinearOperator, max_steps: int, k: int = 1) -> str:
    """The basis mode ``basis`` resolves to for a solve of up to ``max_steps`` steps with ``op`` (see the module
    docs); the free memory is the smallest over the processes computing ``op`` together, so they all choose alike."""
    if basis not in BASES:
        raise InputError(f"basis: expected one of {BASES}, got {basis!r}")
    if basis != "auto":
        return basis
    # bytes per entry of this process's vectors, the smallest over the processes (their parts may differ in size)
    room = op.smallest_across(AUTO_FRACTION * available_memory(op.device) / max(op.dim, 1))
    for mode, dtype in BASIS_DTYPES.items():
        if (max_steps + 1) * dtype.itemsize <= room:
            return mode
    return "none" if k == 1 else "float32"


def peak_bytes(basis: str, dim: int, steps: int, op_itemsize: int, k: int = 1, given_start: bool = False) -> int:
    """The most memory a Lanczos solve of ``steps`` steps holds besides the operator's own products, in bytes:
    ``dim`` × (bytes per parameter), the formulas of docs/scale.md; s is the operator's bytes per entry, b the
    kept vectors' (the basis dtype's; without a stored basis the operator's, at least 4).

    Stored basis: the larger of the last step's and the end's. In the last step, steps·b for the basis so far,
    8 for the new float64 vector w (with b = 8 it becomes the next basis vector itself), and, where b < 8, 8 for the
    float64 copy of the current vector and 8 more for the float64 copy of the previous one (or, where s < 8, s for
    the product before its float64 copy, whichever is larger). At the end, (steps + 1)·b for the basis and b·k for
    the Ritz vectors. No stored basis: 3·b (the last two vectors and the product, added into the older one) + s for
    the product where its dtype differs from b, and with k Ritz vectors asked for, b·k for them (made by a second pass
    of the recurrence, which draws a random start again) and b more for a start vector given (``given_start``: v0,
    kept for that pass). An operator that adds its product into the older vector in place
    (:meth:`~curvlab.linalg.operator.LinearOperator.matvec_add`: the kept-graph Hessian of one chunk) holds one b
    fewer; this formula counts it as any operator."""
    s = op_itemsize
    if basis == "none":
        b = max(s, 4)
        per_parameter = 3 * b + (s if s != b else 0) + (b * k + (b if given_start else 0) if k else 0)
    else:
        b = BASIS_DTYPES[basis].itemsize
        widened = 8 if b < 8 else 0  # a float64 copy of a kept vector
        in_step = steps * b + 8 + widened + max(s if s < 8 else 0, widened)
        per_parameter = max(in_step, (steps + 1) * b + b * k)
    return dim * per_parameter


class LanczosProcess:
    """Grows a Krylov basis one product at a time (``basis``: see the module docs; "auto" is resolved by the caller).

    With a stored basis, on breakdown (an invariant subspace found before the whole space is spanned) it restarts
    with a random vector orthogonal to the basis, so repeated eigenvalues are found too; without one, a breakdown
    ends the process (``exhausted``): the Krylov space holds exact eigenpairs.
    """

    def __init__(
        self,
        op: LinearOperator,
        v0: Tensor | None,
        generator: torch.Generator,
        basis: str = "float64",
        keep_start: bool = True,
    ):
        if basis not in BASIS_DTYPES and basis != "none":
            raise InputError(f"basis: expected 'float64', 'float32' or 'none', got {basis!r}")
        self.op = op
        self.gen = generator
        self.mode = basis
        self.dtype = BASIS_DTYPES.get(basis, recurrence_dtype(op.dtype))  # how the kept vectors are stored
        # v0=None: a Gaussian start drawn from ``generator``, which can be drawn again from the state it had
        self._start_state = generator.get_state() if v0 is None else None
        start = self._normalised(self._draw(generator) if v0 is None else v0)
        del v0
        # Without a stored basis the start vector is needed again only to rebuild Ritz vectors (keep_start=False:
        # none asked for): a random start is then drawn again, so none is held; a given one is copied (the
        # recurrence writes over its vectors).
        keep = basis == "none" and keep_start and self._start_state is None
        self.start = start.clone() if keep else None
        self._vectors: list[Tensor] = [start]  # the basis, or the last two vectors
        self.alpha: list[float] = []
        self.beta: list[float] = []
        self.exhausted = False
        self.block_start = 0  # first step of the Krylov block grown since the last restart

    def _draw(self, generator: torch.Generator) -> Tensor:
        """The random start before normalisation, stored in the process' dtype as drawn (no float64 copy of it)."""
        return self.op.random("gaussian", generator, self.dtype)

    def _normalised(self, v: Tensor) -> Tensor:
        """v / ‖v‖ in the process' dtype; a random start is divided in place in that dtype, a given one in float64."""
        q = v.reshape(-1).to(device=self.op.device)
        norm = self.op.norm(q)
        if not norm > 0 or norm == float("inf"):
            raise InputError("v0: the start vector must be finite and non-zero")
        if self._start_state is not None:  # our own draw: divided in place
            return q.div_(norm)
        return (q.to(F64) / norm).to(self.dtype)

    @property
    def steps(self) -> int:
        return len(self.alpha)

    @property
    def stores_basis(self) -> bool:
        return self.mode != "none"

    def step(self) -> None:
        """One product with A: extends T by one row and column."""
        if self.stores_basis:
            self._step_stored()
        else:
            self._step_recurrence()

    def _step_stored(self) -> None:
        j = self.steps
        q = self._vectors[j].to(F64)
        w = self.op.matvec(q.to(self.op.dtype)).to(F64)
        if j > 0:
            w.sub_(self._vectors[j - 1].to(F64), alpha=self.beta[-1])
        a = self.op.dot(q, w)
        w.sub_(q, alpha=a)  # the three-term recurrence, then full reorthogonalisation for the rest
        del q
        w, b = _orthogonalise(w, self._vectors, self.op)
        self.alpha.append(a)
        if j + 1 >= self.op.size:
            self.beta.append(0.0)
            self.exhausted = True
            return
        if b <= 1e-10 * self._scale(a):  # invariant subspace: restart orthogonally
            w = self._orthogonal_random()
            self.beta.append(0.0)
            self.block_start = j + 1
        else:
            self.beta.append(b)
            w.div_(b)
        self._vectors.append(w.to(self.dtype))

    def _step_recurrence(self) -> None:
        """w = A q_j − β_{j−1} q_{j−1} − α_j q_j, in place in q_{j−1}'s storage (:func:`_product_less_previous`);
        only q_{j−1} and q_j are kept."""
        q = self._vectors[-1]
        w = _product_less_previous(self.op, q, self._vectors[0] if len(self._vectors) > 1 else None, self.beta[-1:])
        a = self.op.dot(q, w)
        w.sub_(q, alpha=a)
        b = self.op.norm(w)
        self.alpha.append(a)
        if self.steps >= self.op.size or b <= 1e-10 * self._scale(a):
            self.beta.append(0.0)  # the Krylov space is invariant: its Ritz pairs are exact
            self.exhausted = True
            return
        self.beta.append(b)
        self._vectors = [q, w.div_(b)]

    def _scale(self, a: float) -> float:
        return max(abs(a), *(abs(x) for x in self.beta[-1:]), 1e-300)

    def _orthogonal_random(self) -> Tensor:
        w, norm = _orthogonalise(self.op.random("gaussian", self.gen), self._vectors, self.op)
        return w.div_(norm)

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

    def forget(self) -> None:
        """Drop the kept vectors (a given start vector stays, a random one can be drawn again, for
        :meth:`ritz_vectors`); no more steps can be taken."""
        self._vectors = []
        self.exhausted = True

    def ritz_vectors(self, s: Tensor) -> Tensor:
        """Q S: Ritz vectors (columns, on the operator's device, in the basis' dtype: float64, float32, or without a
        stored basis the recurrence's, at least float32). Without a stored basis, the basis is
        regenerated by running the recurrence again from the start vector (a random one drawn again from its
        generator's state) with the α, β already known: one product per step, O(few) vectors, the same vectors as
        the first pass (both take :func:`_product_less_previous`)."""
        s = s.to(device=self.op.device, dtype=F64)
        out = torch.zeros((self.op.dim, s.shape[1]), dtype=self.dtype, device=self.op.device)
        for j, q in enumerate(self._basis_again()):
            for i, coefficient in enumerate(s[j].tolist()):
                out[:, i].add_(q, alpha=coefficient)  # float32 entries added into float64 with no copy
        return out

    def _basis_again(self) -> Iterator[Tensor]:
        if self.stores_basis:
            yield from self._vectors[: self.steps]
            return
        prev = None
        if self._start_state is not None:  # the random start, drawn again from the generator's state at the start
            q = self._normalised(self._draw(torch.Generator().set_state(self._start_state)))
        else:
            assert self.start is not None  # kept whenever no basis is stored and no redraw was given
            q = self.start.clone()
        for j in range(self.steps):
            yield q
            if j + 1 == self.steps:
                return
            w = _product_less_previous(self.op, q, prev, self.beta[j - 1 : j] if j else [])
            w.sub_(q, alpha=self.alpha[j])
            prev, q = q, w.div_(self.beta[j])


def _product_less_previous(op: LinearOperator, q: Tensor, previous: Tensor | None, beta: list[float]) -> Tensor:
    """A q − β q_{j−1} (``beta`` = [β], or A q at the first step), written over ``previous``'s storage: the product
    is added into −β q_{j−1} (:meth:`LinearOperator.matvec_add`), so the recurrence holds q_j and this one vector
    while the product runs, and no third for the product; that vector is one more than a lone product holds at its
    peak, which comes before its output forms. Both passes of the recurrence (the solve and the
    rebuild of Ritz vectors) take this path, so they make the same vectors."""
    if previous is None:  # the first step: into zeros where that holds no product apart, else a plain product
        if op.adds_in_place(q.dtype):
            return op.matvec_add(q, torch.zeros_like(q), 0.0)
        return op.matvec(q.to(op.dtype)).to(q.dtype)
    return op.matvec_add(q.to(op.dtype), previous, -beta[0])


def _orthogonalise(w: Tensor, basis: list[Tensor], op: LinearOperator) -> tuple[Tensor, float]:
    """Full reorthogonalisation of the float64 vector w against the stored basis vectors (classical Gram–Schmidt,
    coefficients in float64), repeated once when the first pass cancelled most of w (the DGKS criterion,
    ‖w‖ < ‖w₀‖/√2): twice is enough for orthogonality to working precision. Returns (w, ‖w‖), w updated in
    place; no matrix of the basis is formed."""
    before = op.norm(w)
    after = before
    for _ in range(2):
        coefficients = op.sums(torch.tensor([dot64(q, w) for q in basis], dtype=F64)).tolist()  # one reduction
        for q, c in zip(basis, coefficients):
            w.sub_(q.to(F64), alpha=c)
        before, after = after, op.norm(w)
        if after >= before / 2**0.5:
            break
    return w, after
