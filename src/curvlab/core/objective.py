"""The Objective: model + loss + measurement set → F(x), ∇F(x), ∇²F(x) v (definitions §1–§2)."""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

import torch
from torch import Tensor, nn
from torch.func import functional_call

from curvlab.checks import check_seed
from curvlab.core.batches import Chunk, ChunkStream, WeightFn, label_tokens
from curvlab.core.curvature import CurvatureOperator, WeightedMean, checked_finite, nonempty
from curvlab.core.engine_choice import choose_engine
from curvlab.core.errors import explain_error
from curvlab.core.fisher import FisherOperator
from curvlab.core.ggn import GGNOperator
from curvlab.core.hessian import HessianOperator
from curvlab.core.hvp import ENGINES, HVP_ENGINES, fresh_leaves, gradient, hvp_from_grads
from curvlab.core.lm_head import FUSED_FROM, FusedHeadLoss, agree, check_choice, logits_per_parameter, why_not
from curvlab.core.memory import resolve_graph_memory
from curvlab.core.params import ParamSelector, ParamSpace, param_space, select_parameters
from curvlab.core.reduction import refuse_declared_sum, refuse_probed_sum, repeat_factor
from curvlab.core.state import BN_MODES, measurement_mode, preserved_rng, seed_rng
from curvlab.errors import InputError, InputTypeError
from curvlab.linalg.operator import all_finite
from curvlab.linalg.vectors import Sharding

LossFn = Callable[[Any, Any], Tensor]
Op = TypeVar("Op")  # an operator kept by _shared
CURVATURES = ("hessian", "ggn", "fisher", "fisher_mc")


class Objective:
    """F(x): the size-weighted mean of ``loss_fn(model(inputs), targets)`` over the chunks of ``data``.

    Args:
        model: any ``nn.Module``; it is left exactly as found (parameters, ``requires_grad``, modes,
            buffers, global RNG state).
        loss_fn: ``loss_fn(outputs, targets)`` returning the *mean* loss of the batch as a scalar (a sum is
            refused: :mod:`curvlab.core.reduction`); or
            None for a model that computes its own loss (a Hugging Face model given ``labels``): each
            batch is then called as ``model(**batch)`` (dict) or ``model(*batch)`` (tuple), and the loss
            is the output itself when it is a scalar tensor, else its ``.loss`` attribute or ``["loss"]``.
        data: an ``(inputs, targets)`` pair of tensors, a ``Dataset``, a ``DataLoader``, or a re-iterable
            of batches (tuples ``(inputs..., targets)`` or dicts with a ``"targets"``/``"labels"``/``"y"`` key).
        weight: ``weight(batch) -> number``, how much a batch counts in the mean (default: its example
            count, the leading dimension of its first tensor; for ``loss_fn=None`` and dict batches with a
            ``labels`` tensor, its label tokens ≠ -100, shifted by one for a causal language model — the
            Hugging Face loss is the mean over those, so padded batches of different lengths weigh right).
        batch_size: re-chunk tensor or Dataset data into batches of this size (memory), None = one chunk.
        bn_mode: ``"train"`` (batch statistics, per-chunk, running stats untouched) or ``"eval"``.
        dropout: keep dropout active while measuring (masks fixed per chunk by ``seed``).
        params: restrict x to a subset: names, a predicate ``(name, p) -> bool`` or tensors.
        hvp_engine: ``"reverse"`` (double backward), ``"forward"`` (jvp of grad), ``"compile"``,
            ``"finite_difference"`` (two gradients, no second derivative: docs/core.md) or ``"auto"`` (double
            backward, checked once per model against finite differences at the first curvature product, which it
            falls back to, with a warning, where double backward fails or is silently wrong:
            :mod:`curvlab.core.engine_choice`).
        seed: seeds the global RNG (saved and restored around every pass) at the start of each pass,
            so a shuffling measurement DataLoader and dropout masks are the same in every call:
            F stays one fixed function even with train-mode BatchNorm or dropout.
        graph_memory: bytes the curvature operators may keep for the chunks' first-order graphs
            (reused by every product at one point), or ``"auto"``: a quarter of the memory available
            when the budget is first asked (free device memory on a GPU). Chunks past the budget
            rebuild their graph for every product.
        fused_head: with ``loss_fn=None`` and a Hugging Face causal LM (GPT-2, Llama), compute its own loss with
            the head and cross-entropy fused (no tokens × vocabulary logits kept by the gradient's graph or a
            product): ``"auto"`` where a chunk's logits are large enough for that to pay and the two losses agree,
            ``True`` wherever it applies (an error where not), ``False`` never (:mod:`curvlab.core.lm_head`;
            ``loss_head`` says which is used).

    Flat vectors are 1-D tensors in parameter order (``objective.names``), in the parameters' dtype.
    ``loss``, ``grad``, ``loss_and_grad``, ``hvp`` and ``quad`` take ``at=x`` to evaluate at another
    flat point without writing to the model (unselected parameters keep their current values).
    """

    collective = False  # every evaluation is a collective over processes (a DistributedObjective)
    sharding: Sharding | None = (
        None  # where this process's part of the flat vectors sits in the whole (a sharded model's Objective)
    )
    measures_shards = False  # takes a model whose parameters are DTensor shards (curvlab.fsdp.ShardedObjective)

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn | None,
        data: Any,
        *,
        weight: WeightFn | None = None,
        batch_size: int | None = None,
        bn_mode: str = "train",
        dropout: bool = False,
        params: ParamSelector = None,
        hvp_engine: str = "auto",
        seed: int = 0,
        graph_memory: int | float | str = "auto",
        fused_head: bool | str = "auto",
    ):
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if loss_fn is not None and not callable(loss_fn):
            raise InputTypeError(
                f"loss_fn: expected a callable loss_fn(outputs, targets) or None, got {type(loss_fn).__name__}"
            )
        if bn_mode not in BN_MODES:
            raise InputError(f"bn_mode: expected one of {BN_MODES}, got {bn_mode!r}")
        if not isinstance(dropout, bool):
            raise InputTypeError(f"dropout: expected a bool, got {type(dropout).__name__}")
        if loss_fn is not None:
            refuse_declared_sum(loss_fn)
        self.model = model
        self.loss_fn = loss_fn
        self._mean_probed = loss_fn is None  # a sum-reduced loss_fn is refused at the first outputs (core.reduction)
        self.weight = weight
        if weight is None and loss_fn is None:
            weight = label_tokens(shifted=is_causal_lm(model))
        self.chunks = ChunkStream(data, batch_size, own_loss=loss_fn is None, weight=weight)
        self.bn_mode = bn_mode
        self.dropout = dropout
        check_seed(seed)
        self.seed = seed
        self._selected = select_parameters(model, params)
        if not self.measures_shards and any(_is_dtensor(p) for _, p in self._selected):
            raise InputError(
                "model: its parameters are DTensor shards (FSDP2's fully_shard); measure it with "
                "curvlab.fsdp.ShardedObjective(model, loss_fn, data) on every rank"
            )
        self.space: ParamSpace = param_space(self._selected)
        if hvp_engine != "auto" and hvp_engine not in ENGINES:
            raise InputError(f"hvp_engine: expected 'auto' or one of {ENGINES}, got {hvp_engine!r}")
        self._engine = hvp_engine  # "auto" is resolved at the first curvature product (engine_choice)
        check_choice(fused_head, loss_fn is not None, hvp_engine, self.measures_shards)
        self.fused_head = fused_head
        # "model" or "fused", decided at the first evaluation (core.lm_head); "model" with a loss_fn (no head of its
        # own to fuse), fused_head=False or sharded parameters
        never = loss_fn is not None or fused_head is False or self.measures_shards
        self._head: str | None = "model" if never else None
        self._fused: nn.Module | None = None
        self._roundoff: float | None = None
        self.graph_memory = graph_memory
        self._graph_budget: float | None = None
        resolve_graph_memory(graph_memory, self.space.device)  # validate now
        self.counts = {"loss": 0, "grad": 0, "hvp": 0, "ggn": 0, "fisher": 0}
        self._operators: dict[tuple[Any, ...], Any] = {}  # shared by the metrics measured at one point
        self._flat_key: tuple[Any, ...] | None = None  # parameters_vector's flat views, valid while the storages are
        self._flat_views: list[Tensor] = []

    def on(self, data: Any, batch_size: int | None = None) -> Objective:
        """The same measurement (model, loss, weights, modes, parameters, seed) on other data, in this
        process only (a plain Objective even when this one is distributed)."""
        return Objective(
            self.model,
            self.loss_fn,
            data,
            weight=self.weight,
            batch_size=batch_size,
            bn_mode=self.bn_mode,
            dropout=self.dropout,
            params=[p for _, p in self._selected],
            hvp_engine=self._engine,
            seed=self.seed,
            graph_memory=self.graph_memory,
            fused_head=self.fused_head,
        )

    @property
    def hvp_engine(self) -> str:
        """The engine of the curvature products ("auto" resolved on first use: :mod:`curvlab.core.engine_choice`)."""
        if self._engine == "auto":
            self._engine = choose_engine(self)
        return self._engine

    @property
    def loss_head(self) -> str | None:
        """How the model's own loss is computed: ``"fused"`` (its head and cross-entropy fused, no logits kept) or
        ``"model"`` (through its logits; always so with a ``loss_fn``); None until the first evaluation decides
        (``fused_head``: :mod:`curvlab.core.lm_head`)."""
        return self._head

    @property
    def parameters(self) -> list[tuple[str, Tensor]]:
        """The selected parameters as (name, tensor) pairs, in flat-vector order."""
        return list(self._selected)

    # ----- description -------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Number of entries of x (the selected parameters)."""
        return self.space.dim

    @property
    def names(self) -> tuple[str, ...]:
        """The qualified names of the measured parameters, in the order of the flat vectors."""
        return self.space.names

    @property
    def settings(self) -> dict[str, Any]:
        """The measurement choices to store beside every record (definitions §1)."""
        chosen = {"bn_mode": self.bn_mode, "dropout": self.dropout, "hvp_engine": self.hvp_engine, "dim": self.dim}
        return chosen if self.loss_fn is not None else {**chosen, "loss_head": self.loss_head}

    def flatten(self, tensors: Sequence[Tensor]) -> Tensor:
        """Per-parameter tensors (in ``names`` order) → flat vector."""
        return self.space.flatten(tensors)

    def unflatten(self, vector: Tensor) -> list[Tensor]:
        """Flat vector → per-parameter tensors (in ``names`` order)."""
        return self.space.unflatten(vector)

    def dot(self, a: Tensor, b: Tensor) -> float:
        """⟨a, b⟩ of two flat vectors (over every rank's shard for a sharded model's Objective)."""
        return float(torch.dot(a, b))

    def norm(self, a: Tensor) -> float:
        """‖a‖ of a flat vector (over every rank's shard for a sharded model's Objective)."""
        return float(torch.linalg.vector_norm(a))

    def all_finite(self, vector: Tensor) -> bool:
        """No NaN or ±inf in a flat vector, checked a chunk at a time (over every rank's shard, so that every rank
        gets the same answer, for a sharded model's Objective)."""
        bad = 0.0 if all_finite(vector) else 1.0
        return float(self.sums(torch.tensor([bad], dtype=torch.float64))[0]) == 0.0

    def sums(self, partial: Tensor) -> Tensor:
        """Float64 sums over the entries of flat vectors: this process's ``partial`` sums, added up over the ranks
        when they hold shards of the vectors (a sharded model's Objective), else as given."""
        return partial.to(torch.float64)

    def parameters_vector(self, out: Tensor | None = None) -> Tensor:
        """The current x as a new flat vector, or copied into ``out`` (a flat vector of the same size and dtype,
        reused: no allocation)."""
        key = tuple(p.data_ptr() for _, p in self._selected)
        if self._flat_key != key:
            self._flat_views, self._flat_key = [p.detach().reshape(-1) for _, p in self._selected], key
        return torch.cat(self._flat_views) if out is None else torch.cat(self._flat_views, out=out)  # cat copies

    # ----- evaluations ---------------------------------------------------------------------------
    def loss(self, at: Tensor | None = None) -> float:
        """F(x) at the model's current parameters, or at the flat point ``at`` (the model is not touched)."""
        self.counts["loss"] += 1
        params = self._params(at)
        with self._measuring():
            total, n = 0.0, 0.0
            for chunk in self._chunks():
                with torch.no_grad():
                    total += chunk.size * float(self._chunk_loss(params, chunk))
                n += chunk.size
        return self._combine(total / nonempty(n), None, n)[0]

    def grad(self, at: Tensor | None = None) -> Tensor:
        """∇F(x) as a flat vector (at the current parameters, or at ``at``)."""
        return self.loss_and_grad(at)[1]

    def loss_and_grad(self, at: Tensor | None = None) -> tuple[float, Tensor]:
        """(F(x), ∇F(x)) in one pass."""
        self.counts["grad"] += 1
        params = self._params(at)

        def chunk_grad(chunk: Chunk) -> tuple[Tensor, list[Tensor]]:
            leaves = fresh_leaves(params)
            with torch.enable_grad():
                loss = self._chunk_loss(leaves, chunk)
                return loss.detach(), [g.detach() for g in gradient(loss, leaves)]

        return self._accumulate(chunk_grad)

    def hvp(self, v: Tensor, at: Tensor | None = None) -> Tensor:
        """∇²F(x) v for a flat vector v (definitions §2), with the Objective's engine."""
        vs = self.unflatten(self.space.check_vector(v, "v"))
        params = self._params(at)
        self.counts["hvp"] += 1
        engine: Callable[..., tuple[Tensor, list[Tensor]]] = HVP_ENGINES[self.hvp_engine]
        if self.hvp_engine == "finite_difference":
            engine = functools.partial(engine, roundoff=self.loss_roundoff())
        product = self._accumulate(lambda chunk: engine(lambda ps: self._chunk_loss(ps, chunk), params, vs))[1]
        return checked_finite(product, "Hessian-vector product", lambda: self.loss(at))

    def quad(self, u: Tensor, at: Tensor | None = None) -> float:
        """uᵀ ∇²F(x) u, computed as ⟨u, Hu⟩ (correct through LayerNorm and BatchNorm)."""
        u = self.space.check_vector(u, "u")
        return float(torch.dot(u, self.hvp(u, at)))

    def grad_and_quads(self, directions: Sequence[Tensor], at: Tensor | None = None) -> tuple[Tensor, list[float]]:
        """(∇F(x), [uᵀ∇²F(x)u for each u in ``directions``]) at the current parameters or at ``at``.

        Per chunk, one forward and one graph-keeping backward serve the gradient and every direction
        (one more backward each), where ``quad`` per direction would redo the forward and both backwards:
        for k directions about (2 + 2k) passes instead of 4k + 2."""
        if self.hvp_engine == "finite_difference":  # no gradient graph to share: one product per direction
            return self.grad(at), [self.quad(u, at) for u in directions]
        us = [self.unflatten(self.space.check_vector(u, f"directions[{i}]")) for i, u in enumerate(directions)]
        params = self._params(at)
        self.counts["grad"] += 1
        self.counts["hvp"] += len(us)

        def chunk_terms(chunk: Chunk) -> tuple[Tensor, list[Tensor]]:
            leaves = fresh_leaves(params)
            with torch.enable_grad():
                loss = self._chunk_loss(leaves, chunk)
                grads = gradient(loss, leaves, create_graph=True)
                quads = [
                    sum(
                        (torch.sum(h * v) for h, v in zip(hvp_from_grads(grads, leaves, u, retain_graph=True), u)),
                        leaves[0].new_zeros(()),  # 0 + x: exact, in the parameters' dtype
                    )
                    for u in us
                ]
            return loss.detach(), [
                *(g.detach() for g in grads),
                torch.stack(quads) if quads else leaves[0].new_empty(0),
            ]

        def flatten(parts: list[Tensor]) -> Tensor:
            return torch.cat([self.flatten(parts[:-1]), parts[-1]])

        stacked = self._accumulate(chunk_terms, flatten)[1]
        stacked = checked_finite(stacked, "gradient and curvature along the directions", lambda: self.loss(at))
        return stacked[: self.dim], stacked[self.dim :].tolist()

    def hessian(self, cache: bool | str = "auto") -> HessianOperator:
        """∇²F at the *current* parameters as a :class:`LinearOperator` for the solvers.

        The operator keeps each chunk's gradient graph (within ``graph_memory``) so that a product
        costs one backward pass instead of a forward and two backwards; ``cache=False`` keeps
        nothing. Asked again at the same point (parameters and buffers unchanged), the same operator
        comes back, graphs and all: every metric measured there shares them (:meth:`release` frees
        them). Changing the parameters makes an operator stale: it raises rather than return a
        wrong product.
        """
        return self._shared(("hessian", cache), lambda: HessianOperator(self, cache))

    def ggn(self, cache: bool | str = "auto") -> GGNOperator:
        """The generalized Gauss–Newton matrix Jᵀ H_L J at the current parameters (J: the Jacobian of
        the model's outputs, H_L: the Hessian of ``loss_fn`` in the outputs), size-weighted over
        chunks like F. Matrix-free (see :mod:`curvlab.core.ggn`); shared like :meth:`hessian`."""
        self._need_loss_fn("ggn")
        return self._shared(("ggn", cache), lambda: GGNOperator(self, cache))

    def fisher(
        self,
        kind: str = "empirical",
        n_samples: int = 1,
        seed: int = 0,
        likelihood: str = "auto",
        cache: bool | str = "auto",
    ) -> FisherOperator:
        """The Fisher at the current parameters.

        ``kind="empirical"``: (1/N) Σᵢ ∇ℓᵢ ∇ℓᵢᵀ over the N examples with the data's targets, ℓᵢ the loss of
        example i alone (``loss_fn`` on a batch of one). ``kind="mc"``: with ``n_samples`` targets per example
        drawn from the model's predictive distribution (``likelihood``: ``"categorical"`` for cross-entropy,
        ``"bernoulli"`` for binary cross-entropy, ``"gaussian"`` for squared error, ``"auto"`` to tell from
        ``loss_fn``: :mod:`curvlab.core.likelihood`), seeded by ``seed`` and the chunk index, each example weighted
        by the likelihood terms its loss averages (tokens, binary outputs) so that its expectation is the
        Fisher: the Gauss–Newton matrix for a loss on logits or a Gaussian's mean (:mod:`curvlab.core.fisher`).
        Shared like :meth:`hessian`."""
        self._need_loss_fn("fisher")
        key = ("fisher", kind, n_samples, seed, likelihood, cache)
        return self._shared(key, lambda: FisherOperator(self, kind, n_samples, seed, likelihood, cache))

    def curvature(self, name: str = "hessian", n_samples: int = 1) -> CurvatureOperator:
        """The curvature operator called ``name``: one of :data:`CURVATURES` (``"fisher"`` is the
        empirical Fisher, ``"fisher_mc"`` the Monte Carlo one with ``n_samples`` draws per example)."""
        if name == "hessian":
            return self.hessian()
        if name == "ggn":
            return self.ggn()
        if name == "fisher":
            return self.fisher("empirical")
        if name == "fisher_mc":
            return self.fisher("mc", n_samples=n_samples)
        raise InputError(f"curvature: expected one of {CURVATURES}, got {name!r}")

    def loss_roundoff(self) -> float:
        """The machine epsilon of the loss as computed (``torch.finfo(dtype).eps``, twice the unit roundoff of
        round-to-nearest): the parameters' dtype's, or the loss's own when coarser (a
        Hugging Face model computes its loss in float32 whatever its parameters). Read once, from a forward pass on
        the first chunk; it sets the finite-difference step (:func:`curvlab.core.hvp.finite_difference_step`)."""
        if self._roundoff is None:
            with self._measuring(), torch.no_grad():
                loss = self._chunk_loss(self._params(), next(iter(self._chunks())))
            self._roundoff = max(torch.finfo(self.space.dtype).eps, torch.finfo(loss.dtype).eps)
        return self._roundoff

    def release(self) -> None:
        """Free the graphs kept by the curvature operators (the Monitor calls this after each step)."""
        for operator in self._operators.values():
            operator.release()
        self._operators = {}

    def point_versions(self) -> list[int]:
        """Version counters of the model's parameters and buffers: they change with any in-place update."""
        return [t._version for t in (*self.model.parameters(), *self.model.buffers())]

    def graph_budget(self) -> float:
        """The bytes curvature operators may keep (``graph_memory`` resolved once)."""
        if self._graph_budget is None:
            self._graph_budget = resolve_graph_memory(self.graph_memory, self.space.device)
        return self._graph_budget

    def _shared(self, key: tuple[Any, ...], make: Callable[[], Op]) -> Op:
        """The operator kept under ``key`` at the current point, made anew (and the stale ones released) after the
        parameters changed."""
        operator = self._operators.get(key)
        if operator is None or operator.stale:
            if operator is not None:
                self.release()  # a new point: drop every stale operator's graphs
            operator = self._operators[key] = make()
        return cast(Op, operator)

    def _need_loss_fn(self, what: str) -> None:
        if self.loss_fn is None:
            raise InputError(
                f"{what}: needs the split of outputs and loss; this Objective was built with loss_fn=None "
                "(the model computes its own loss). Pass loss_fn(outputs, targets) to use the Gauss–Newton or Fisher"
            )

    # ----- internals ------------------------------------------------------------------------------
    def _params(self, at: Tensor | None = None) -> list[Tensor]:
        """The selected parameters' tensors, or views of the flat point ``at`` shaped like them."""
        if at is None:
            return [p for _, p in self._selected]
        return self.unflatten(self.space.check_vector(at, "at"))

    @contextlib.contextmanager
    def _measuring(self) -> Iterator[None]:
        with measurement_mode(self.model, self.bn_mode, self.dropout), _math_attention():
            yield

    def _chunks(self) -> Iterator[Chunk]:
        """The chunks of one pass; the global RNG (restored by ``_measuring``) is seeded first."""
        seed_rng(self.seed, self.space.device)
        for index, chunk in enumerate(self.chunks):
            if self.dropout:
                seed_rng(self.seed + 1 + index, self.space.device)
            yield chunk.to(self.space.device)

    def _overrides(self, leaves: Sequence[Tensor]) -> dict[str, Tensor]:
        """The model's parameters by name, the selected ones replaced by ``leaves``."""
        overrides = {name: p.detach() for name, p in self.model.named_parameters()}
        overrides.update(zip(self.names, leaves))
        return overrides

    def _chunk_outputs(self, leaves: Sequence[Tensor], chunk: Chunk) -> Any:
        """The model's outputs on a chunk with the selected parameters replaced by ``leaves``."""
        try:
            outputs = functional_call(self.model, self._overrides(leaves), chunk.args, chunk.kwargs)
        except RuntimeError as err:
            raise explain_error(err) from err
        if not self._mean_probed and not _in_transform(outputs):  # a transform's or compiled pass: a later one probes
            self._mean_probed = True
            factor = repeat_factor(self.loss_fn, outputs, chunk.targets)
            if factor is not None:
                refuse_probed_sum(self.loss_fn, factor)
        return outputs

    def _chunk_loss(self, leaves: Sequence[Tensor], chunk: Chunk) -> Tensor:
        try:
            if self._head != "model" and self._fuses(leaves, chunk):
                loss = self._fused_loss(leaves, chunk)
            else:
                outputs = self._chunk_outputs(leaves, chunk)
                loss = self.loss_fn(outputs, chunk.targets) if self.loss_fn is not None else model_loss(outputs)
        except RuntimeError as err:
            raise explain_error(err) from err
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise InputError(f"loss_fn: must return a scalar tensor (the batch's mean loss), got {shape}")
        return loss.reshape(())

    def _fuses(self, leaves: Sequence[Tensor], chunk: Chunk) -> bool:
        """Whether the model's own loss is computed by the fused head (decided at the first evaluation outside a
        ``torch.func`` transform, whose values cannot be read; inside one before that, through the logits)."""
        if self._head is None:
            if leaves and _in_transform(leaves[0]):
                return False
            self._head = self._choose_head(leaves, chunk)
        return self._head == "fused"

    def _choose_head(self, leaves: Sequence[Tensor], chunk: Chunk) -> str:
        """ "fused" where the fused head applies (:func:`curvlab.core.lm_head.why_not`), pays ("auto": by the size
        of the chunk's logits) and gives the model's own loss at this chunk; else "model" (``True``: an error)."""
        reason = why_not(self.model, chunk, self.dropout, self._engine, self.measures_shards)
        if reason is None and self.fused_head == "auto":
            per_parameter = logits_per_parameter(self.model, chunk.kwargs["input_ids"].numel())
            if per_parameter < FUSED_FROM:
                return "model"
        if reason is None:
            self._fused = FusedHeadLoss(self.model)
            with torch.no_grad():
                own, fused = model_loss(self._chunk_outputs(leaves, chunk)), self._fused_loss(leaves, chunk)
            if agree(own, fused):
                return "fused"
            reason = f"its own loss is {float(own)!r} here, the fused head's {float(fused)!r}"
            self._fused = None
            if self.fused_head == "auto":
                warnings.warn(
                    f"fused_head='auto': the fused head does not reproduce this {type(self.model).__name__}'s loss "
                    f"({reason}); the loss goes through the logits",
                    stacklevel=2,
                )
        if self.fused_head is True:
            raise InputError(f"fused_head: True, but the fused head cannot replace this model's own loss: {reason}")
        return "model"

    def _fused_loss(self, leaves: Sequence[Tensor], chunk: Chunk) -> Tensor:
        """The model's own loss on a chunk by the fused head, the selected parameters replaced by ``leaves``."""
        assert self._fused is not None
        overrides = {"model." + name: t for name, t in self._overrides(leaves).items()}
        return cast(Tensor, functional_call(self._fused, overrides, chunk.args, chunk.kwargs))

    def _accumulate(
        self,
        per_chunk: Callable[[Chunk], tuple[Tensor, list[Tensor]]],
        flatten: Callable[[list[Tensor]], Tensor] | None = None,
    ) -> tuple[float, Tensor]:
        """Size-weighted mean of (loss, vector) over the chunks (``flatten``: a chunk's parts → its vector)."""
        flatten = flatten or self.flatten
        total_loss, mean = 0.0, WeightedMean()
        with self._measuring():
            for chunk in self._chunks():
                try:
                    loss, parts = per_chunk(chunk)
                except RuntimeError as err:
                    raise explain_error(err) from err
                mean.add(flatten(parts), chunk.size)
                total_loss += chunk.size * float(loss)
        n = nonempty(mean.n)
        mean_loss, vector = self._combine(total_loss / n, mean.result(), n)
        assert vector is not None  # a vector in, a vector out
        return mean_loss, vector

    def count(self) -> float:
        """The measurement set's size (the sum of the chunk weights: examples, or ``weight``), over every process."""
        with preserved_rng():
            seed_rng(self.seed, self.space.device)
            return self._combine_count(sum(chunk.size for chunk in self.chunks))

    def smallest_across(self, value: float) -> float:
        """The smallest of ``value`` over the processes measuring together (here: this one alone); a
        DistributedObjective takes the minimum over its ranks, so that choices made from local facts (free memory,
        the engine check on a rank's own chunk) are the same on every rank."""
        return value

    def _combine_count(self, n: float) -> float:
        """This process's count is the whole set's; a DistributedObjective sums it across ranks."""
        return n

    def _combine(self, loss: float, vector: Tensor | None, n: float) -> tuple[float, Tensor | None]:
        """Combine this process's means over its ``n`` examples into the measurement set's: here they
        are the whole set; :class:`curvlab.distributed.DistributedObjective` all-reduces across ranks."""
        return loss, vector


def _in_transform(outputs: Any) -> bool:
    """Outputs computed inside a ``torch.func`` transform or a compiled graph (their values cannot be read there)."""
    if torch.compiler.is_compiling():
        return True
    return isinstance(outputs, Tensor) and torch._C._functorch.is_functorch_wrapped_tensor(outputs)


def _is_dtensor(t: Tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch built without distributed
        return False
    return isinstance(t, DTensor)


def is_causal_lm(model: nn.Module) -> bool:
    """A Hugging Face causal language model (``…ForCausalLM``, ``…LMHeadModel``): its loss shifts the labels by one."""
    return type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))


def model_loss(outputs: Any) -> Tensor:
    """The loss a model computed itself: the output when it is a scalar tensor, else ``outputs.loss``
    or ``outputs["loss"]`` (Hugging Face models return it there when given ``labels``)."""
    if isinstance(outputs, Tensor) and outputs.numel() == 1:
        return outputs
    loss: Any = getattr(outputs, "loss", None)
    if loss is None and isinstance(outputs, dict):
        loss = outputs.get("loss")
    if loss is None:
        raise InputError(
            f"loss_fn=None: the model's output ({type(outputs).__name__}) is neither a scalar loss nor has a .loss or "
            "['loss'] entry; give the batch its labels (e.g. a 'labels' key) or pass a loss_fn"
        )
    return cast(Tensor, loss)


@contextlib.contextmanager
def _math_attention() -> Iterator[None]:
    """Run scaled_dot_product_attention with the MATH backend: the CPU flash kernel has no
    double backward and no forward-mode derivative in torch 2.13 (definitions §10)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch < 2.3
        yield
        return
    with sdpa_kernel([SDPBackend.MATH]):
        yield
