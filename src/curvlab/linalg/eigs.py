"""Extreme eigenpairs of a symmetric operator: Lanczos (default) or power iteration (definitions §2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

import torch
from torch import Tensor

from curvlab.checks import check_int
from curvlab.errors import InputError, InputTypeError
from curvlab.linalg.lanczos import LanczosProcess, choose_basis
from curvlab.linalg.operator import LinearOperator, as_operator
from curvlab.linalg.progress import progress_bar
from curvlab.linalg.random import make_generator
from curvlab.linalg.vectors import F64

WHICH = ("LA", "SA", "LM")
METHODS = ("lanczos", "power")
BOUNDS = ("residual", "gap")
DECIDE_TOL = 1e-3  # how well a search for further copies must know its top value to rule them out


class EigResult:
    """Eigenpairs sorted most-extreme first: descending for ``LA``, ascending for ``SA``,
    by descending |λ| for ``LM``. ``eigenvectors[:, i]`` belongs to ``eigenvalues[i]`` (one column per
    eigenvalue, in the basis' dtype: float64 for ``basis="float64"``, else float32 or the operator's; None when the
    solve was asked for ``vectors=False``). After a solve without a stored basis the
    vectors are rebuilt on first access, by a second pass of the recurrence (``n_matvecs`` then grows by
    ``n_iter``; the operator must still be valid: an operator made stale by a parameter change raises)."""

    def __init__(
        self,
        eigenvalues: Tensor,
        eigenvectors: Tensor | None,
        residuals: Tensor,
        n_matvecs: int,
        n_iter: int,
        converged: bool,
        method: str,
        which: str,
        error_bounds: Tensor | None = None,  # the stopping rule's bound on |λ − θ| for each eigenvalue
        *,
        basis: str = "float64",
        rebuild: Callable[[], tuple[Tensor, int]] | None = None,
    ):
        self.eigenvalues, self.residuals, self.error_bounds = eigenvalues, residuals, error_bounds
        self.n_matvecs, self.n_iter, self.converged = n_matvecs, n_iter, converged
        self.method, self.which, self.basis = method, which, basis
        self._eigenvectors, self._rebuild = eigenvectors, rebuild

    @property
    def eigenvectors(self) -> Tensor | None:
        """The eigenvectors as columns, rebuilt from the Krylov basis on first access when it was not kept (the products
        this costs are added to ``n_matvecs``); None with ``vectors=False``."""
        if self._eigenvectors is None and self._rebuild is not None:
            self._eigenvectors, used = self._rebuild()
            self.n_matvecs += used
            self._rebuild = None
        return self._eigenvectors

    @eigenvectors.setter
    def eigenvectors(self, value: Tensor | None) -> None:
        self._eigenvectors, self._rebuild = value, None

    def __repr__(self) -> str:
        vals = ", ".join(f"{x:.6g}" for x in self.eigenvalues.tolist())
        return (
            f"EigResult(eigenvalues=[{vals}], which={self.which!r}, method={self.method!r}, "
            f"converged={self.converged}, n_matvecs={self.n_matvecs})"
        )


def eigs(
    op: Any,
    k: int = 1,
    which: str = "LA",
    method: str = "lanczos",
    tol: float = 1e-3,
    max_iter: int | None = None,
    v0: Tensor | None = None,
    *,
    atol: float = 0.0,
    bound: str = "residual",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    copies: bool = True,
    basis: str = "auto",
    vectors: bool = True,
) -> EigResult:
    """The ``k`` extreme eigenpairs of a symmetric operator.

    ``op`` is a :class:`LinearOperator`, an Objective (its Hessian), or a symmetric matrix.
    ``which``: ``"LA"`` largest algebraic (sharpness λ1), ``"SA"`` smallest algebraic (the most
    negative eigenvalue), ``"LM"`` largest magnitude. Converged when every wanted Ritz value θ has an
    error bound ≤ max(tol·|θ|, atol). ``bound="residual"`` (default): the residual r = ‖Ay − θy‖, since
    an eigenvalue lies within r of θ whatever the rest of the spectrum (Bauer–Fike). ``bound="gap"``:
    min(r, r²/δ), δ the distance from θ to the other Ritz values' intervals θ_j ± r_j — the error
    of an isolated eigenvalue, so it stops as soon as the value is good to ``tol``, but it assumes
    no other eigenvalue within δ, which an unresolved near-degenerate pair at the top violates
    (see docs/core.md). ``v0`` warm-starts the iteration (e.g. with the previous top eigenvector).

    ``method="lanczos"``: ``basis`` says how the Krylov basis is kept (:mod:`curvlab.linalg.lanczos`):
    ``"float64"`` (full reorthogonalisation, definitions §2), ``"float32"`` (the same at half the memory),
    ``"none"`` (the three-term recurrence: a few vectors whatever the step count; k = 1 only), or ``"auto"``
    (default): float64 when ``max_iter`` such vectors fit in a quarter of the available memory, else float32,
    else none — so a large model's λ1 needs no option (docs/scale.md). ``vectors=False`` returns no
    eigenvectors (without a stored basis they otherwise cost a second pass, made on first access of
    ``result.eigenvectors``). ``max_iter`` bounds the number of steps (default ``min(dim, max(100, 20k))``).
    A single Krylov space holds one direction of each eigenspace, so a repeated eigenvalue shows up once; with ``k >
    1`` and ``copies=True`` (default), Lanczos is therefore run again orthogonally to the eigenvectors found
    (top-1), and every value it finds that beats the k-th is merged in — until none does. Such a run stops at
    ``tol``, or as soon as its top Ritz value is good to 1e-3 and below the k-th by more than its residual: a
    fraction of a top-1 solve when nothing beats the k-th, plus a top-1 solve per copy found. ``copies=False`` skips
    it.
    ``method="power"``: power iteration with deflation, kept for comparison. It finds the eigenvalues
    of largest *magnitude* whatever ``which`` says ("LA" is accepted and answered as "LM"): on an
    indefinite Hessian the "top eigenvalue" it reports can be a negative one (Gilmer et al. App. E).
    """
    op = as_operator(op)
    _check_args(op, k, which, method, tol, max_iter, atol)
    if bound not in BOUNDS:
        raise InputError(f"bound: expected one of {BOUNDS}, got {bound!r}")
    gen = make_generator(seed, generator)
    if method == "power":
        if which == "SA":
            raise InputError("which: method='power' finds the largest |λ| only; use method='lanczos' for which='SA'")
        return _power(op, k, tol, atol, max_iter or 1000, _start_vector(op, v0, gen), progress)
    rule = StoppingRule(which, tol, atol, bound)
    max_iter = max_iter or min(op.size, max(100, 20 * k))
    mode = choose_basis(basis, op, max_iter, k)
    if mode == "none" and k > 1:
        raise InputError(
            f"basis: 'none' finds the top eigenvalue only (k = 1): without reorthogonalisation a converged eigenvalue "
            f"reappears as a spurious copy; for k = {k} use basis='float32' (4 bytes per parameter per step)"
        )
    # handed over: the solve keeps it in its own dtype, not this float64 copy; None: the solve draws a Gaussian start
    # from ``gen`` itself, in its own dtype, and can draw it again instead of keeping it
    start = [None if v0 is None else _start_vector(op, v0, gen)]
    result = _lanczos(op, k, rule, max_iter, start, gen, progress, mode, vectors or (k > 1 and copies))
    if k > 1 and copies:
        result = _with_copies(op, result, rule, max_iter, gen, progress, mode)
    if not vectors:
        result.eigenvectors = None
    return result


def _check_args(op: LinearOperator, k: Any, which: Any, method: Any, tol: Any, max_iter: Any, atol: Any) -> None:
    check_int(k, "k")
    if k > op.size:
        raise InputError(f"k: asked for {k} eigenpairs of an operator of dimension {op.size}")
    if which not in WHICH:
        raise InputError(f"which: expected one of {WHICH}, got {which!r}")
    if method not in METHODS:
        raise InputError(f"method: expected one of {METHODS}, got {method!r}")
    if not isinstance(tol, (int, float)) or not tol > 0:
        raise InputError(f"tol: expected a positive number, got {tol!r}")
    if not isinstance(atol, (int, float)) or atol < 0:
        raise InputError(f"atol: expected a non-negative number, got {atol!r}")
    if max_iter is not None:
        check_int(max_iter, "max_iter", k, note="(k)")


def _start_vector(op: LinearOperator, v0: Tensor | None, gen: torch.Generator) -> Tensor:
    if v0 is None:
        return op.random("gaussian", gen)
    if not isinstance(v0, Tensor):
        raise InputTypeError(f"v0: expected a torch.Tensor of length {op.dim}, got {type(v0).__name__}")
    if v0.numel() != op.dim:
        raise InputError(f"v0: expected a vector of length {op.dim}, got shape {tuple(v0.shape)}")
    v0 = v0.reshape(-1).to(device=op.device, dtype=F64)
    if not op.all_finite(v0) or op.norm(v0) == 0:
        raise InputError("v0: the start vector must be finite and non-zero")
    return v0


def _order(theta: Tensor, which: str) -> Tensor:
    """Indices of Ritz values, most wanted first."""
    return torch.argsort(_wanted_key(theta, which), descending=True, stable=True)


def _wanted_key(theta: Tensor, which: str) -> Tensor:
    """Larger = more wanted."""
    return theta if which == "LA" else -theta if which == "SA" else theta.abs()


@dataclass
class StoppingRule:
    """When Lanczos may stop: every wanted Ritz value's error bound ≤ max(tol·|θ|, atol)."""

    which: str
    tol: float
    atol: float
    bound: str = "residual"
    to_beat: float | None = None  # also stop once the top Ritz value's interval is wholly less wanted than this

    def error_bounds(self, theta: Tensor, res: Tensor) -> Tensor:
        """Bounds on |λ − θ_i| for every Ritz value (ascending ``theta``), by the rule's ``bound``."""
        if self.bound == "residual" or theta.numel() < 2:
            return res
        distance = (theta[:, None] - theta[None, :]).abs() - res[None, :]
        distance.fill_diagonal_(float("inf"))
        gap = distance.min(dim=1).values
        refined = torch.where(gap > res, res**2 / gap.clamp_min(1e-300), res)
        return torch.minimum(res, refined)

    def settled(self, theta: Tensor, res: Tensor, k: int) -> bool:
        if self.to_beat is not None:  # the top Ritz value is good to DECIDE_TOL and clearly less wanted
            top = _order(theta, self.which)[0]
            good = float(res[top]) <= max(self.tol, DECIDE_TOL) * abs(float(theta[top]))
            if good and float(_wanted_key(theta[top], self.which)) + float(res[top]) < self.to_beat:
                return True
        idx = _order(theta, self.which)[:k]
        bounds = self.error_bounds(theta, res)[idx]
        return bool((bounds <= torch.clamp(self.tol * theta[idx].abs(), min=self.atol)).all())


def _lanczos(
    op: LinearOperator,
    k: int,
    rule: StoppingRule,
    max_iter: int,
    start: list[Tensor | None],
    gen: torch.Generator,
    progress: bool,
    basis: str,
    vectors: bool,
) -> EigResult:
    """``start``: a one-element list holding the start vector, emptied here so that no float64 copy of it
    outlives the process's own."""
    used_before = op.n_matvecs
    process = LanczosProcess(op, start.pop(), gen, basis, keep_start=vectors)
    bar = progress_bar(max_iter, "lanczos", progress)
    converged = False
    try:
        while process.steps < max_iter and not process.exhausted:
            process.step()
            bar.update()
            if process.steps < k:
                continue
            theta, s, res = process.ritz()
            top = _order(theta, rule.which)[0]
            bar.set_postfix_str(f"λ={theta[top]:.5g} res={res[top]:.2e}", refresh=False)
            if process.exhausted or (rule.settled(theta, res, k) and _block_settled(process, k, rule)):
                converged = True
                break
    finally:
        bar.close()
    theta, s, res = process.ritz()
    idx = _order(theta, rule.which)[:k]
    bounds = rule.error_bounds(theta, res)[idx]
    used = op.n_matvecs - used_before
    found, rebuild = None, None
    if vectors and process.stores_basis:
        found = process.ritz_vectors(s[:, idx])
    elif vectors:
        process.forget()  # keep only a given start vector (a random one is drawn again) until they are asked for

        def rebuild(wanted: Tensor = s[:, idx]) -> tuple[Tensor, int]:
            before = op.n_matvecs
            return process.ritz_vectors(wanted), op.n_matvecs - before

    args = (theta[idx], found, res[idx], used, process.steps, converged, "lanczos", rule.which, bounds)
    return EigResult(*args, basis=basis, rebuild=rebuild)


def _with_copies(
    op: LinearOperator,
    found: EigResult,
    rule: StoppingRule,
    max_iter: int,
    gen: torch.Generator,
    progress: bool,
    basis: str,
) -> EigResult:
    """Search the orthogonal complement of the eigenvectors found for further wanted eigenvalues (another
    copy of a repeated one, which the first Krylov space cannot see) and merge each one that beats the k-th."""
    used_before = op.n_matvecs - found.n_matvecs
    k = found.eigenvalues.numel()
    values, vectors, residuals, bounds = found.eigenvalues, found.eigenvectors, found.residuals, found.error_bounds
    assert vectors is not None and bounds is not None  # a top-k solve with copies keeps its eigenvectors
    basis_mode, span, n_iter, converged = basis, vectors, found.n_iter, found.converged
    while span.shape[1] < op.size:
        q = orthonormal_columns(op, span)
        start = _project(op, op.random("gaussian", gen), q)
        kth = float(_wanted_key(values, rule.which)[-1])
        search = replace(rule, to_beat=kth)  # only whether the complement holds a value beating the k-th
        steps = min(max_iter, op.size - span.shape[1])
        extra = _lanczos(_deflated(op, q), 1, search, steps, [start], gen, progress, basis_mode, True)
        n_iter += extra.n_iter
        assert extra.eigenvectors is not None and extra.error_bounds is not None
        vector = _project(op, extra.eigenvectors, q)  # a restart vector may have brought span(Q) back in: drop it
        norm = op.norm(vector.reshape(-1))
        if norm < 0.5 or not float(_wanted_key(extra.eigenvalues, rule.which)[0]) > kth:
            break
        converged = converged and extra.converged
        vector = vector / norm
        span = torch.cat([span, vector], dim=1)
        values = torch.cat([values, extra.eigenvalues])
        vectors = torch.cat([vectors, vector], dim=1)
        residuals, bounds = torch.cat([residuals, extra.residuals]), torch.cat([bounds, extra.error_bounds])
        keep = _order(values, rule.which)[:k]
        values, residuals, bounds = values[keep], residuals[keep], bounds[keep]
        vectors = vectors[:, keep.to(vectors.device)]
    used = op.n_matvecs - used_before
    return EigResult(
        values, vectors, residuals, used, n_iter, converged, "lanczos", rule.which, bounds, basis=basis_mode
    )


def _project(op: LinearOperator, v: Tensor, q: Tensor) -> Tensor:
    """v (a vector or columns) with its components along the orthonormal columns of q removed (twice, for working
    precision), inner products taken by ``op`` (over every process's part when the vectors are split)."""
    for _ in range(2):
        v = v - q @ op.inner(q, v).to(q.dtype)
    return v


def orthonormal_columns(op: LinearOperator, basis: Tensor) -> Tensor:
    """An orthonormal basis of the span of ``basis``'s columns in ``op``'s inner product: QR on one process; with
    split vectors, Cholesky QR done twice (its Gram matrix is one all-reduce; the columns here are Ritz vectors,
    orthonormal to working precision already, so the Gram matrix is well conditioned)."""
    if op.sharding is None:
        return cast(Tensor, torch.linalg.qr(basis).Q)
    q = basis.to(F64)
    for _ in range(2):
        factor = torch.linalg.cholesky(op.inner(q, q))
        q = torch.linalg.solve_triangular(factor, q.T, upper=False).T
    return q


def _deflated(op: LinearOperator, q: Tensor) -> LinearOperator:
    """(I − QQᵀ) A (I − QQᵀ): A on the orthogonal complement of span(Q), in float64."""
    return op.derive(lambda v: _project(op, op.matvec(_project(op, v, q).to(op.dtype)).to(F64), q), dtype=F64)


def _block_settled(process: LanczosProcess, k: int, rule: StoppingRule) -> bool:
    """After a restart, the newest block must also have converged at its wanted end before the
    result is trusted: otherwise a second copy of a wanted eigenvalue could still be hiding there."""
    if not process.restarted:
        return True
    if process.beta[-1] == 0.0:  # just restarted: the new block has not been explored yet
        return False
    theta, _, res = process.ritz(latest_block=True)
    return rule.settled(theta, res, min(k, theta.numel()))


def _power(
    op: LinearOperator, k: int, tol: float, atol: float, max_iter: int, start: Tensor, progress: bool
) -> EigResult:
    """Power iteration with Hotelling deflation; one eigenpair at a time."""
    used_before = op.n_matvecs
    values: list[float] = []
    vectors: list[Tensor] = []
    residuals: list[float] = []
    total_iter, all_converged = 0, True
    bar = progress_bar(None, "power iteration", progress)
    try:
        for _ in range(k):
            value, vector, residual, n_iter, converged = _power_one(
                op, start, values, vectors, tol, atol, max_iter, bar
            )
            values.append(value)
            vectors.append(vector)
            residuals.append(residual)
            total_iter += n_iter
            all_converged &= converged
    finally:
        bar.close()
    order = torch.argsort(torch.tensor(values, dtype=F64).abs(), descending=True)
    return EigResult(
        torch.tensor(values, dtype=F64)[order],
        torch.stack(vectors, dim=1)[:, order.to(op.device)],
        torch.tensor(residuals, dtype=F64)[order],
        op.n_matvecs - used_before,
        total_iter,
        all_converged,
        "power",
        "LM",
        torch.tensor(residuals, dtype=F64)[order],
    )


def _power_one(
    op: LinearOperator,
    start: Tensor,
    values: list[float],
    vectors: list[Tensor],
    tol: float,
    atol: float,
    max_iter: int,
    bar: Any,
) -> tuple[float, Tensor, float, int, bool]:
    def deflated(v: Tensor) -> Tensor:
        w = op.matvec(v.to(op.dtype)).to(F64)
        for lam, u in zip(values, vectors):
            w = w - lam * op.dot(u, v) * u
        return w

    v = start / op.norm(start)
    for it in range(1, max_iter + 1):
        w = deflated(v)
        theta = op.dot(v, w)
        residual = op.norm(w - theta * v)
        bar.update()
        if residual <= max(tol * abs(theta), atol):
            return theta, v, residual, it, True
        norm = op.norm(w)
        if norm == 0:  # v lies in the null space: λ = 0 exactly
            return 0.0, v, 0.0, it, True
        v = w / norm
    return theta, v, residual, max_iter, False
