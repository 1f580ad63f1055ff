"""Metric groups for the Monitor. Each has a schedule; ``observe`` runs every step (for state that
must follow the whole trajectory), ``measure`` yields (metric, value, context) rows when due."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any, TypeVar

import torch
from torch import Tensor

from curvlab.checks import check_bool
from curvlab.core.objective import CURVATURES
from curvlab.core.params import local_part
from curvlab.errors import InputError, InputTypeError
from curvlab.geometry import (
    AssumptionTracker,
    L0L1Fit,
    PseudoUpdates,
    alignment,
    block_eigs,
    compare_directions,
    coordinate_histogram,
    cosine,
    critical_sharpness,
    gradient_noise,
    landscape_1d,
    norms,
    pl_ratio,
    preconditioned_hessian,
)
from curvlab.linalg import eigs, spectral_density, trace
from curvlab.monitor.schedules import Schedule, as_schedule, epoch_end, every
from curvlab.monitor.step import NO_BATCH, CannotMeasure, MonitorView, StepInfo
from curvlab.optim.introspection import (
    StabilityThreshold,
    learning_rate,
    momentum_vector,
    stability_threshold,
    two_step_factor,
)
from curvlab.registry import Registry

Rows = Iterator[tuple[str, float, dict[str, Any]]]

METRICS: Registry[type[Metric]] = Registry("metric", "metrics")
MetricClass = TypeVar("MetricClass", bound="type[Metric]")


def register_metric(cls: MetricClass) -> MetricClass:
    """Class decorator: make a Metric subclass known by its ``name`` (to configs, ``curvlab list``, reports)."""
    METRICS.add(cls.name, cls, cls.description)
    return cls


class Metric:
    """A group of measurements on a schedule. A subclass names itself (``name``, as configs and ``curvlab
    list`` know it), says what it measures in one line (``description``) and registers with ``@register_metric``."""

    name = "metric"
    description = ""
    records_cost = True  # write cost_seconds / cost_hvps / cost_passes rows for each measurement
    shards = False  # measures an FSDP2-sharded model (curvlab.fsdp.ShardedObjective) from this rank's shards
    uses_previous_update = False  # reads monitor.prev_update (the Monitor then keeps x_{t−2} as well)
    needs_batch = False  # measures on the step's own batch: nothing without one (raises CannotMeasure)
    needs_loss_fn = False  # needs the split of outputs and loss (Gauss–Newton, Fisher): no model's own loss
    uses_curvature = False  # takes curvature products (the Monitor resolves hvp_engine="auto" when it is made)

    def __init__(self, schedule: Schedule | int | list[Any] | str | None = None):
        self.schedule = as_schedule(schedule) if schedule is not None else self.default_schedule()

    def default_schedule(self) -> Schedule:
        """The schedule used when none is given: every 100 steps and at epoch ends."""
        return every(100) | epoch_end()

    def observe(self, monitor: MonitorView, info: StepInfo) -> None:
        """Called after every optimizer step, due or not: a metric keeping running state updates it here."""
        pass

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        """Measure at a due step; yields the rows to record as ``(metric, value, context)`` triples."""
        raise NotImplementedError

    def reset_window(self) -> None:
        """Called at each epoch end: a metric that keeps per-window sums restarts them."""
        pass

    def next_cost(self, seconds: float) -> float | None:
        """What the next measurement is expected to cost, given that this one cost ``seconds``; None: the same
        (a budget-paced schedule plans the next one on it)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a checkpoint (the attributes named in ``_state``)."""
        return {k: copy.deepcopy(getattr(self, k)) for k in self._state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the attributes :meth:`state_dict` saved."""
        for k in self._state:
            if k in state:
                setattr(self, k, copy.deepcopy(state[k]))

    _state: tuple[str, ...] = ()


@register_metric
class StepStats(Metric):
    """What the training step already computed, at no extra pass: its loss, the norm of the gradient
    it used (the parameters' ``.grad``), the norm of the update x_t − x_{t−1} and the learning rate."""

    name = "step"
    description = "the training step's own loss, gradient norm, update norm and learning rate (no extra pass)"
    records_cost = False
    shards = True

    def default_schedule(self) -> Schedule:
        return every(1)

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        obj = monitor.objective
        grads, update = gradients(obj), info.update
        update_squared, grad_squared = summed_squares(obj, [] if update is None else [update], grads)
        if info.loss is not None:
            yield "loss", info.loss, {}
        if grads:
            yield "grad_norm", math.sqrt(grad_squared), {}
        if update is not None:
            yield "update_norm", math.sqrt(update_squared), {}
        yield "lr", learning_rate(monitor.optimizer), {}


def gradients(objective: Any) -> list[Tensor]:
    """The ``.grad`` of the Objective's parameters that have one (this rank's shards under FSDP2)."""
    return [local_part(p.grad) for _, p in objective.parameters if p.grad is not None]


def _as_floats(values: list[Tensor]) -> list[float]:
    """Scalar tensors as floats with one transfer (one sync on a GPU) when they share a dtype and device."""
    if len({(v.dtype, v.device) for v in values}) == 1:
        return torch.stack(values).double().tolist()
    return [float(v) for v in values]


def summed_squares(objective: Any, *groups: list[Tensor]) -> list[float]:
    """Σ‖t‖² over each group of tensors, in float64 (per tensor, then summed), added up over the ranks' shards
    when the Objective is sharded (a collective: every rank calls it)."""
    flat = [t for group in groups for t in group]
    norms = _as_floats(list(torch._foreach_norm(flat))) if flat else []
    squares, start = [], 0
    for group in groups:
        squares.append(math.fsum(n * n for n in norms[start : start + len(group)]))
        start += len(group)
    if objective.sharding is not None:  # this rank's shards: add up over the ranks
        squares = objective.sums(torch.tensor(squares, dtype=torch.float64)).tolist()
    return squares


@register_metric
class Assumptions(Metric):
    """definitions §4 per step: convexity gap, smoothness and their ratios on the step's own minibatch; the
    previous update's correlations (with random scaling) on this step's batch, which that update did not see;
    minibatch gradient norms, ‖x‖, cosine of successive updates."""

    name = "assumptions"
    description = "per-step convexity gap, smoothness, update correlations, gradient norms (definitions §4)"
    uses_previous_update = True
    needs_batch = True
    _state = ("tracker", "last_scale")

    def __init__(self, schedule: Any = None, betas: tuple[float, ...] = (0.99, 0.9999)):
        super().__init__(schedule)
        self.tracker = AssumptionTracker(betas)
        self.last_scale = 1.0  # the random-scaling factor of the previous step

    def default_schedule(self) -> Schedule:
        return every(1)

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        delta = info.known_update()
        ev = monitor.batch_evaluation(info)
        if ev is None:
            raise CannotMeasure(NO_BATCH)
        for key, value in self.tracker.update(ev.f_old, ev.f_new, ev.g_old, ev.g_new, delta).items():
            yield key, value, {}
        previous = monitor.prev_update
        if previous is not None and ev.f_before is not None:  # the update x_{t−1} − x_{t−2}, against batch z_{t−1}
            correlations = self.tracker.correlate(ev.f_old, ev.f_before, ev.g_old, previous, self.last_scale)
            yield from ((key, value, {"of_step": info.step - 1}) for key, value in correlations.items())
        self.last_scale = info.scale
        for key, value in norms(ev.g_old, "grad").items():
            yield key, value, {}
        yield "param_norm", float(torch.linalg.vector_norm(info.x_now)), {}
        yield "train_loss", ev.f_old, {}
        if previous is not None:
            yield "update_cos", cosine(delta, previous), {}

    def reset_window(self) -> None:
        self.tracker.reset_window()


@register_metric
class FullBatch(Metric):
    """Measurement-set quantities (definitions §4): F, ∇F norms, ‖g − ∇F‖ and its running mean σ, the PL
    ratio, the measurement-set convexity gap and smoothness, and the (L0, L1) fit."""

    name = "full_batch"
    description = "measurement-set loss, gradient norms, deviation σ, PL ratio, (L0, L1) fit (definitions §4)"
    _state = ("fit", "deviation_sum", "deviation_n")

    def __init__(self, schedule: Any = None, f_star: float = 0.0, gradients: bool = True):
        """``gradients=False``: only the loss (one forward pass; what a step-size search scores), nothing else."""
        super().__init__(schedule)
        self.f_star, self.gradients = f_star, check_bool(gradients, "gradients")
        self.fit = L0L1Fit()
        self.deviation_sum = 0.0
        self.deviation_n = 0

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        obj = monitor.objective
        if not self.gradients:
            yield "loss_full", obj.loss(), {}
            return
        loss, grad = obj.loss_and_grad()
        yield "loss_full", loss, {}
        yield from ((k, v, {}) for k, v in norms(grad, "full_grad").items())
        yield "pl_ratio", pl_ratio(loss, grad, self.f_star), {}
        delta = info.update
        moved = delta is not None and float(torch.linalg.vector_norm(delta)) > 0
        if moved and delta is not None:
            old_loss, old_grad = obj.loss_and_grad(at=info.x_prev)
            smooth = float(torch.linalg.vector_norm(grad - old_grad) / torch.linalg.vector_norm(delta))
            yield "inst_gap_full", loss - old_loss - float(torch.dot(grad, delta)), {}
            yield "inst_smooth_full", smooth, {}
            self.fit.add(float(torch.linalg.vector_norm(grad)), smooth)
            yield from ((k, v, {}) for k, v in self.fit.result().items())
        ev = monitor.batch_evaluation(info)
        if ev is not None:  # the minibatch gradient the step used, at the point it was taken: ∇f(x_{t−1}, z_{t−1})
            full_at_start = old_grad if moved else grad
            deviation = float(torch.linalg.vector_norm(ev.g_old - full_at_start))
            self.deviation_sum += deviation
            self.deviation_n += 1
            yield "grad_deviation", deviation, {}
            yield "grad_deviation_mean", self.deviation_sum / self.deviation_n, {}  # Tran et al.'s σ


@register_metric
class Sharpness(Metric):
    """definitions §2: top-k eigenvalues (Lanczos, warm-started from the last top eigenvectors), optional
    λ_min, the stability threshold of the optimizer with λ / threshold (and, for plain GD only, η·λ1,
    η·λ1 − 2 and, from the second step on, the two-step factor |(1 − η_{t−1}λ1)(1 − η_t λ1)|), the update's alignment
    with v1, and the preconditioned sharpness when the optimizer keeps a diagonal preconditioner.
    ``plain="auto"`` skips the plain λ1 when the optimizer's threshold is on the preconditioned sharpness
    (Adam): then only the sharpness the threshold is about is measured, at half the cost. ``max_products``: a
    warm-started solve (every one after the first) stops after that many products even short of ``tol`` (a
    tracking solve; the record says ``converged`` and states its bound); None: always to ``tol``. ``warm``: whether a
    solve starts from the last one's Ritz vectors (True), from the same random vector every time (False), or
    (``"auto"``, default) the plain Hessian's warm and the preconditioned one's cold: Adam's preconditioner moves
    between measurements, and a start from its last top vector was measured to settle on another eigenvalue, within
    its bound of that one but further from λ1 (docs/metrics/monitor.md, "Warm and cold starts")."""

    name = "sharpness"
    uses_curvature = True
    shards = True
    description = (
        "top Hessian eigenvalues, stability threshold, η·λ1, alignment, preconditioned sharpness (definitions §2)"
    )
    _state = ("v0", "v0_pre", "top_vector")

    def __init__(
        self,
        schedule: Any = None,
        k: int = 1,
        tol: float = 1e-3,
        lambda_min: bool = False,
        preconditioned: bool | str = "auto",
        plain: bool | str = True,
        max_products: int | None = None,
        warm: bool | str = "auto",
    ):
        super().__init__(schedule)
        if plain not in (True, False, "auto"):
            raise InputError(f"plain: expected True, False or 'auto', got {plain!r}")
        if warm not in (True, False, "auto"):
            raise InputError(f"warm: expected True, False or 'auto', got {warm!r}")
        if max_products is not None and (
            isinstance(max_products, bool) or not isinstance(max_products, int) or max_products < 2
        ):
            raise InputError(
                f"max_products: expected None or an integer ≥ 2 (products of a warm-started solve), "
                f"got {max_products!r}"
            )
        self.k, self.tol, self.with_min, self.preconditioned, self.plain = k, tol, lambda_min, preconditioned, plain
        self.max_products = max_products
        self.warm = warm
        self.v0: Tensor | None = None
        self.v0_pre: Tensor | None = None
        self.top_vector: Tensor | None = None
        self._solves: list[tuple[int, int]] = []  # this measurement's solves: (products, products planned next time)

    def warm_starts(self, preconditioned: bool) -> bool:
        """Whether solves on the plain (or the preconditioned) operator start from the last one's Ritz vectors."""
        return self.warm is True or (self.warm == "auto" and not preconditioned)

    def _solve(self, operator: Any, v0: Tensor | None, k: int = 1, warm_next: bool = True, vectors: bool = True) -> Any:
        """One top-k solve to ``tol``; warm-started ones (``v0`` given) stop after ``max_products`` products when
        set, converged or not (the record says which, with its error bound). ``warm_next``: the next solve on this
        operator starts from this one's Ritz vectors (the budget plans it at the cap); ``vectors``: whether the
        eigenvectors are made (a solve no later one starts from, and whose vector nothing reads, makes none)."""
        max_iter = self.max_products if v0 is not None else None
        res = eigs(operator, k=k, tol=self.tol, v0=v0, max_iter=max_iter, vectors=vectors)
        products = planned = int(res.n_matvecs)
        if warm_next and v0 is None and self.max_products is not None:  # a cold solve, then capped warm ones
            planned = min(products, self.max_products)
        self._solves.append((products, planned))
        return res

    def next_cost(self, seconds: float) -> float | None:
        """After a cold solve whose successor is warm-started, with ``max_products`` set: the same cost per product
        at the warm solves' cap (an upper estimate, so that budget pacing does not wait as for another cold solve);
        otherwise the same."""
        solves, self._solves = self._solves, []
        products, planned = sum(n for n, _ in solves), sum(p for _, p in solves)
        return None if planned == products else seconds * planned / max(products, 1)

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        threshold = stability_threshold(monitor.optimizer)
        if self.plain is True or (self.plain == "auto" and not threshold.preconditioned):
            yield from self._plain(monitor, info, threshold)
        yield from self._preconditioned(monitor, threshold)

    def _plain(self, monitor: MonitorView, info: StepInfo, threshold: StabilityThreshold) -> Rows:
        warm = self.warm_starts(preconditioned=False)
        res = self._solve(monitor.objective.hessian(), self.v0 if warm else None, self.k, warm_next=warm)
        self.top_vector = res.eigenvectors[:, 0]  # the update's alignment reads it
        if warm:
            self.v0 = block_start(res.eigenvectors)
        for i, lam in enumerate(res.eigenvalues.tolist()):
            yield "sharpness", lam, {"index": i + 1, "converged": res.converged, **accuracy(res, i)}
        lam1 = float(res.eigenvalues[0])
        if not threshold.preconditioned and threshold.kind != "none":
            yield from ((k, v, {"kind": threshold.kind}) for k, v in threshold.report(lam1).items())
        if threshold.kind == "gd" and info.lr_prev is not None:
            yield "two_step_factor", two_step_factor(info.lr_prev, threshold.lr, lam1), {"kind": "gd"}
        delta = info.update
        if delta is not None and monitor.objective.dot(delta, delta) > 0:
            yield "update_alignment", alignment(delta, self.top_vector, _shared_dot(monitor.objective)), {}
        if self.with_min:
            yield "lambda_min", float(eigs(monitor.objective.hessian(), which="SA", tol=self.tol).eigenvalues[0]), {}

    def _preconditioned(self, monitor: MonitorView, threshold: StabilityThreshold) -> Rows:
        if self.preconditioned is False:
            return
        try:
            op = preconditioned_hessian(monitor.objective, monitor.optimizer)
        except (TypeError, ValueError) as err:
            if self.preconditioned is True:
                raise
            if threshold.preconditioned:  # the optimizer has a preconditioner, but not yet (Adam before its step)
                raise CannotMeasure(f"preconditioned sharpness: {err}") from err
            return
        warm = self.warm_starts(preconditioned=True)
        res = self._solve(op, self.v0_pre if warm else None, warm_next=warm, vectors=warm)
        if warm:
            self.v0_pre = res.eigenvectors[:, 0]
        lam = float(res.eigenvalues[0])
        yield "preconditioned_sharpness", lam, {"converged": res.converged, **accuracy(res, 0)}
        if threshold.preconditioned:
            yield from ((k, v, {"kind": threshold.kind}) for k, v in threshold.report(lam).items())


@register_metric
class TrackedSharpness(Metric):
    """The sharpness the optimizer's threshold is about (λ1 of the Hessian; for Adam, of the preconditioned Hessian),
    followed along training a few products at a time (the scheme of Ramasinghe et al. 2026): each measurement runs
    ``products`` Lanczos steps from the last Ritz vector and stops there, converged or not. Each record states the
    residual ‖Hv − θv‖ of its value (``error_bound``: an eigenvalue lies within it of θ), the products, and the
    threshold. Cheap enough to draw a curve rather than a few points; read the bound, and check against a full
    ``sharpness`` solve now and then: a value can also sit on another eigenvalue until the vector finds the top."""

    name = "tracked_sharpness"
    uses_curvature = True
    shards = True
    description = "λ1 followed a few products per measurement from the last Ritz vector, with its residual bound"
    _state = ("v0",)

    def __init__(self, schedule: Any = None, products: int = 4):
        super().__init__(schedule)
        if isinstance(products, bool) or not isinstance(products, int) or products < 1:
            raise InputError(f"products: expected a positive integer (Lanczos steps per measurement), got {products!r}")
        self.products = products
        self.v0: Tensor | None = None

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        threshold = stability_threshold(monitor.optimizer)
        operator: Any = monitor.objective.hessian()
        name = "hessian"
        if threshold.preconditioned:
            try:
                operator, name = preconditioned_hessian(monitor.objective, monitor.optimizer), "preconditioned"
            except (TypeError, ValueError) as err:  # Adam before its first step
                raise CannotMeasure(f"tracked sharpness: {err}") from err
        res = eigs(operator, tol=1e-12, max_iter=self.products, v0=self.v0)  # stops at `products`, not on a bound
        assert res.eigenvectors is not None
        self.v0 = res.eigenvectors[:, 0]
        bound = float(res.residuals[0])
        context = {"operator": name, "error_bound": bound, "products": int(res.n_matvecs)}
        yield "tracked_sharpness", float(res.eigenvalues[0]), context | {"threshold": threshold.threshold}


@register_metric
class Curvatures(Metric):
    """The top eigenvalue of the Hessian, the generalized Gauss–Newton and the Fisher at one point, side
    by side (rows "top_eigenvalue", context "curvature"), each warm-started from its last eigenvector.
    The Hessian is indefinite, the other two are positive semi-definite; the GGN equals the Hessian
    where the model is linear in its parameters, and E[Monte Carlo Fisher] is the GGN (its top
    eigenvalue is biased upward by the sampling: ``mc_samples`` draws per example reduce that)."""

    name = "curvatures"
    uses_curvature = True
    description = "top eigenvalues of the Hessian, Gauss–Newton and Fisher side by side"
    _state = ("v0",)

    def __init__(
        self,
        schedule: Any = None,
        curvatures: tuple[str, ...] = ("hessian", "ggn", "fisher"),
        tol: float = 1e-3,
        mc_samples: int = 1,
    ):
        super().__init__(schedule)
        unknown = [c for c in curvatures if c not in CURVATURES]
        if unknown or not curvatures:
            raise InputError(f"curvatures: expected a non-empty list from {CURVATURES}, got {list(curvatures)}")
        self.curvatures, self.tol, self.mc_samples = tuple(curvatures), tol, mc_samples
        self.needs_loss_fn = any(c != "hessian" for c in self.curvatures)
        self.v0: dict[str, Tensor] = {}

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        for name in self.curvatures:
            res = eigs(monitor.objective.curvature(name, n_samples=self.mc_samples), tol=self.tol, v0=self.v0.get(name))
            assert res.eigenvectors is not None
            self.v0[name] = res.eigenvectors[:, 0]
            yield "top_eigenvalue", float(res.eigenvalues[0]), {"curvature": name, "converged": res.converged}


@register_metric
class BlockSharpness(Metric):
    """The top eigenvalue of each diagonal block of the curvature — per layer by default (rows
    "block_sharpness", context "block" = the module's qualified name), or ``blocks="transformer"`` for the
    embeddings / attention QK / attention VO / MLP / norms split; see :func:`curvlab.block_eigs`."""

    name = "block_sharpness"
    uses_curvature = True
    shards = True
    description = "top eigenvalue of each layer's diagonal block of the Hessian (or GGN, Fisher)"

    def __init__(
        self,
        schedule: Any = None,
        blocks: str | dict[str, Any] = "module",
        curvature: str = "hessian",
        tol: float = 1e-2,
    ):
        super().__init__(schedule)
        if curvature not in CURVATURES:
            raise InputError(f"curvature: expected one of {CURVATURES}, got {curvature!r}")
        self.blocks, self.curvature, self.tol = blocks, curvature, tol
        self.needs_loss_fn = curvature != "hessian"

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        blocks = block_eigs(monitor.objective, self.blocks, curvature=self.curvature, tol=self.tol, vectors=False)
        for block, res in blocks.items():
            ctx = {"block": block or "(root)", "curvature": self.curvature, "converged": res.converged}
            yield "block_sharpness", float(res.eigenvalues[0]), ctx


@register_metric
class CriticalSharpness(Metric):
    """Critical sharpness λ_c = 2/η_c (Kalra et al., 2026) along the step's update, by forward passes only:
    η_c is the smallest learning rate along the update u = x_t − x_{t−1} (made at η_t) from x_{t−1} that raises the
    measurement-set loss,
    so η_t·λ_c > 2 exactly when the step taken raised it. ``relative`` maps names to the Objectives of other
    losses, whose relative critical sharpness along the same update is recorded too."""

    name = "critical_sharpness"
    shards = True
    description = "critical sharpness 2/η_c along the update, forward passes only (Kalra et al., 2026)"

    def __init__(
        self, schedule: Any = None, relative: dict[str, Any] | None = None, max_evals: int = 10, rtol: float = 1e-2
    ):
        super().__init__(schedule)
        self.relative, self.max_evals, self.rtol = dict(relative or {}), max_evals, rtol
        self.eta_guess: dict[str, float] = {}

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        lr = learning_rate(monitor.optimizer)
        update = info.known_update()
        if lr <= 0 or monitor.objective.dot(update, update) == 0:
            return
        for name, objective in {"": monitor.objective, **self.relative}.items():
            warm = name in self.eta_guess  # the last η_c: usually close, so a tighter bracket
            res = critical_sharpness(
                objective,
                update,
                lr,
                at=info.x_prev,
                eta0=self.eta_guess.get(name, lr),
                max_evals=self.max_evals,
                rtol=self.rtol,
                growth=1.5 if warm else 4.0,
            )
            if res.bracketed:
                self.eta_guess[name] = res.eta
            ctx = {"n_evals": res.n_evals, "outcome": res.outcome, **({"loss": name} if name else {})}
            metric = "relative_critical_sharpness" if name else "critical_sharpness"
            yield metric, res.value, ctx
            yield f"lr_times_{metric}", lr * res.value, ctx


@register_metric
class Directional(Metric):
    """definitions §3: shadow optimizers fed the run's gradients (pseudo-update steps); at measurement
    steps each would-be update's directional sharpness, gradient correlation and ratio to SGD's,
    all at x_{t−1}, where the gradient that made them was taken; the real update is "actual"."""

    name = "directional"
    uses_curvature = True
    description = "pseudo-update directional sharpness and gradient correlation per optimizer (definitions §3)"
    needs_batch = True

    def __init__(self, schedule: Any = None, shadows: dict[str, Any] | None = None, reference: str = "sgd"):
        super().__init__(schedule)
        self.shadow_factories, self.reference = shadows, reference
        self.pseudo: PseudoUpdates | None = None
        self.updates: dict[str, Tensor] = {}

    def observe(self, monitor: MonitorView, info: StepInfo) -> None:
        ev = monitor.batch_evaluation(info)
        if ev is None:
            return
        if self.pseudo is None:
            space = monitor.objective.space
            self.pseudo = PseudoUpdates(space.shapes, self.shadow_factories, dtype=space.dtype, device=space.device)
            self._restore(monitor, self.pseudo)
        assert info.x_prev is not None  # a batch evaluation needs it
        self.updates = self.pseudo.update(info.x_prev, ev.g_old)

    def state_dict(self) -> dict[str, Any]:
        if self.pseudo is None:
            return {}
        return {
            "shadows": {n: copy.deepcopy(o.state_dict()) for n, o in self.pseudo.optimizers.items()},
            "updates": copy.deepcopy(self.updates),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending: dict[str, Any] | None = state

    def _restore(self, monitor: MonitorView, pseudo: PseudoUpdates) -> None:
        state = getattr(self, "_pending", None)
        if state:
            for name, opt in pseudo.optimizers.items():
                opt.load_state_dict(copy.deepcopy(state["shadows"][name]))
            self.updates = state["updates"]
        self._pending = None

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        if not self.updates:
            if info.batch is None:
                raise CannotMeasure(NO_BATCH)
            return  # at the first step: the shadows have not been fed yet
        directions = {**self.updates, "actual": info.known_update()}
        table = compare_directions(monitor.objective, directions, self.reference, at=info.x_prev)
        for name, values in table.items():
            yield "directional_sharpness", values["directional_sharpness"], {"optimizer": name}
            yield "gradient_correlation", values["gradient_correlation"], {"optimizer": name}
            ratio = values.get(f"ratio_to_{self.reference}", math.nan)
            if math.isfinite(ratio):
                yield f"sharpness_ratio_to_{self.reference}", ratio, {"optimizer": name}


@register_metric
class Trace(Metric):
    name = "trace"
    uses_curvature = True
    shards = True
    description = "Hutch++ trace of the Hessian (definitions §2)"

    def __init__(self, schedule: Any = None, n_probes: int = 60, method: str = "hutch++"):
        super().__init__(schedule)
        self.n_probes, self.method = n_probes, method

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        res = trace(monitor.objective.hessian(), method=self.method, n_probes=self.n_probes, seed=info.step)
        yield "trace", res.estimate, {"method": self.method}
        yield "trace_stderr", res.stderr, {"method": self.method}


@register_metric
class Density(Metric):
    """SLQ spectral density as tidy rows: metric "spectral_density", context "eigenvalue"."""

    name = "density"
    uses_curvature = True
    shards = True
    description = "SLQ spectral density (definitions §2)"

    def __init__(self, schedule: Any = None, n_probes: int = 3, n_steps: int = 40, n_grid: int = 200):
        super().__init__(schedule)
        self.n_probes, self.n_steps, self.n_grid = n_probes, n_steps, n_grid

    def default_schedule(self) -> Schedule:
        return epoch_end()

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        d = spectral_density(
            monitor.objective.hessian(),
            n_probes=self.n_probes,
            n_steps=self.n_steps,
            n_grid=self.n_grid,
            seed=info.step,
        )
        for x, y in zip(d.grid.tolist(), d.density.tolist()):
            yield "spectral_density", y, {"eigenvalue": x}


@register_metric
class Noise(Metric):
    """definitions §5 at the current point: ‖g̃ − ∇F‖ over ``n_batches`` minibatches of ``batch_size`` from
    ``data`` (rows "noise_norm" with their index), their mean/std and the tail index."""

    name = "noise"
    description = "gradient-noise norms, Gaussian QQ data and tail index (definitions §5; needs data=)"

    def __init__(self, data: tuple[Tensor, Tensor], batch_size: int, n_batches: int = 50, schedule: Any = None):
        super().__init__(schedule)
        self.data, self.batch_size, self.n_batches = data, batch_size, n_batches

    def default_schedule(self) -> Schedule:
        return epoch_end()

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        res = gradient_noise(monitor.objective, self.data, self.batch_size, self.n_batches, seed=info.step)
        ctx = {"batch_size": self.batch_size}
        for i, value in enumerate(res.norms.tolist()):
            yield "noise_norm", value, {**ctx, "index": i}
        yield "noise_norm_mean", res.mean, ctx
        yield "noise_norm_std", res.std, ctx
        yield "noise_tail_index", res.tail_index, ctx


@register_metric
class Landscape(Metric):
    """F(x + α d/‖d‖) along the last update, −∇F, and the top eigenvector when Sharpness has one."""

    name = "landscape"
    shards = True
    description = "1-D loss landscapes along the update, −∇F and the top eigenvector (definitions §3)"

    def __init__(self, schedule: Any = None, alphas: Any = None):
        super().__init__(schedule)
        self.alphas = list(alphas) if alphas is not None else torch.linspace(-1.0, 1.0, 21).tolist()

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        obj = monitor.objective
        directions = {"update": info.update, "negative_gradient": -obj.grad()}  # no update: between paced steps
        top = next(
            (m.top_vector for m in monitor.metrics if isinstance(m, Sharpness) and m.top_vector is not None), None
        )
        if top is not None:
            directions["top_eigenvector"] = top.to(obj.space.dtype)
        given = {k: d for k, d in directions.items() if d is not None and obj.dot(d, d) > 0}
        for name, losses in landscape_1d(obj, given, self.alphas).items():
            for alpha, value in zip(self.alphas, losses):
                yield "landscape_loss", value, {"direction": name, "alpha": alpha}


@register_metric
class Histogram(Metric):
    """Coordinate histograms (log-spaced bins) of |g| (the step's minibatch gradient) and of the
    optimizer's momentum when it keeps one: rows "coordinate_count" with the bin edges."""

    name = "histogram"
    description = "coordinate histograms of |g| and |momentum| (definitions §3)"

    def measure(self, monitor: MonitorView, info: StepInfo) -> Rows:
        ev = monitor.batch_evaluation(info)
        sources = {"grad": ev.g_old} if ev is not None else {}
        momentum = momentum_vector(monitor.optimizer, [p for _, p in monitor.objective.parameters])
        if momentum is not None:
            sources["momentum"] = momentum
        for name, values in sources.items():
            h = coordinate_histogram(values)
            edges = h["edges"].tolist()
            for i, count in enumerate(h["counts"].tolist()):
                yield "coordinate_count", count, {"of": name, "bin_low": edges[i], "bin_high": edges[i + 1]}
            yield "coordinate_zeros", float(h["zeros"]), {"of": name}


def _shared_dot(objective: Any) -> Any:
    """The Objective's inner product where the vectors are split across ranks (None: this process's own)."""
    return objective.dot if objective.sharding is not None else None


def block_start(eigenvectors: Tensor) -> Tensor:
    """The next solve's start: the sum of the last solve's k eigenvectors (the first alone for k = 1), so that its
    Krylov space holds the whole top-k block from the first product on, not only the top vector."""
    return eigenvectors[:, 0] if eigenvectors.shape[1] == 1 else eigenvectors.sum(dim=1)


def accuracy(result: Any, index: int) -> dict[str, Any]:
    """What a record says of one eigenvalue's accuracy: the stopping rule's bound on |λ − θ| (``error_bound``, an
    eigenvalue lies within it) and the products the solve took (``products``)."""
    bounds = getattr(result, "error_bounds", None)
    bound = float(bounds[index]) if bounds is not None and index < len(bounds) else math.nan
    return {"error_bound": bound, "products": int(result.n_matvecs)}


def refuse_without_loss_fn(metrics: list[Metric]) -> None:
    """An :class:`InputError` naming the metrics that need ``loss_fn`` (the Gauss–Newton or Fisher), for a
    measurement of the model's own loss (``loss_fn=None``), before any training step rather than at the first
    measurement."""
    needing = [m.name for m in metrics if m.needs_loss_fn]
    if needing:
        raise InputError(
            f"metrics: {needing} measure the Gauss–Newton or Fisher, which need the split of outputs and loss; "
            "with loss_fn=None (the model's own loss) pass loss_fn(outputs, targets), or measure only the Hessian "
            "(e.g. Curvatures(curvatures=('hessian',)))"
        )


def make_metric(spec: Any) -> Metric:
    """A Metric from its registered name (``'sharpness'``, ``'assumptions'``... see ``METRICS``) or a Metric object
    itself; a clear error otherwise."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str):
        if spec == "noise":
            raise InputError("metrics: 'noise' needs its data; pass curvlab.monitor.Noise(data=(x, y), batch_size=...)")
        return METRICS[spec]()
    raise InputTypeError(f"metrics: expected names or Metric objects, got {type(spec).__name__}")
