"""The Objective: model + loss + measurement set → F(x), ∇F(x), ∇²F(x) v (SPEC §1–§2)."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from curvlab.core.batches import Chunk, ChunkStream, WeightFn
from curvlab.core.hvp import ENGINES, HVP_ENGINES, default_engine, fresh_leaves, gradient, hvp_from_grads
from curvlab.core.params import ParamSelector, ParamSpace, param_space, select_parameters
from curvlab.core.state import BN_MODES, measurement_mode, preserved_rng, seed_rng
from curvlab.linalg.operator import LinearOperator

LossFn = Callable[[Any, Any], Tensor]


class Objective:
    """F(x): the size-weighted mean of ``loss_fn(model(inputs), targets)`` over the chunks of ``data``.

    Args:
        model: any ``nn.Module``; it is left exactly as found (parameters, ``requires_grad``, modes,
            buffers, global RNG state).
        loss_fn: ``loss_fn(outputs, targets)`` returning the *mean* loss of the batch as a scalar; or
            None for a model that computes its own loss (a Hugging Face model given ``labels``): each
            batch is then called as ``model(**batch)`` (dict) or ``model(*batch)`` (tuple), and the loss
            is the output itself when it is a scalar tensor, else its ``.loss`` attribute or ``["loss"]``.
        data: an ``(inputs, targets)`` pair of tensors, a ``Dataset``, a ``DataLoader``, or a re-iterable
            of batches (tuples ``(inputs..., targets)`` or dicts with a ``"targets"``/``"labels"``/``"y"`` key).
        weight: ``weight(batch) -> number``, how much a batch counts in the mean (default: its example
            count, the leading dimension of its first tensor). A language model whose loss is the mean
            over non-ignored label tokens wants the count of those tokens here.
        batch_size: re-chunk tensor or Dataset data into batches of this size (memory), None = one chunk.
        bn_mode: ``"train"`` (batch statistics, per-chunk, running stats untouched) or ``"eval"``.
        dropout: keep dropout active while measuring (masks fixed per chunk by ``seed``).
        params: restrict x to a subset: names, a predicate ``(name, p) -> bool`` or tensors.
        hvp_engine: ``"reverse"`` (double backward), ``"forward"`` (jvp of grad) or ``"auto"``.
        seed: seeds the global RNG (saved and restored around every pass) at the start of each pass,
            so a shuffling measurement DataLoader and dropout masks are the same in every call:
            F stays one fixed function even with train-mode BatchNorm or dropout.

    Flat vectors are 1-D tensors in parameter order (``objective.names``), in the parameters' dtype.
    ``loss``, ``grad``, ``loss_and_grad``, ``hvp`` and ``quad`` take ``at=x`` to evaluate at another
    flat point without writing to the model (unselected parameters keep their current values).
    """

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
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn: expected a callable loss_fn(outputs, targets) or None, got {type(loss_fn).__name__}")
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode: expected one of {BN_MODES}, got {bn_mode!r}")
        if not isinstance(dropout, bool):
            raise TypeError(f"dropout: expected a bool, got {type(dropout).__name__}")
        self.model = model
        self.loss_fn = loss_fn
        self.weight = weight
        self.chunks = ChunkStream(data, batch_size, own_loss=loss_fn is None, weight=weight)
        self.bn_mode = bn_mode
        self.dropout = dropout
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
        self.seed = seed
        self._selected = select_parameters(model, params)
        self.space: ParamSpace = param_space(self._selected)
        self.hvp_engine = _resolve_engine(hvp_engine, self.space.device)
        self.counts = {"loss": 0, "grad": 0, "hvp": 0}
        self._flat_key: tuple | None = None  # parameters_vector's flat views, valid while the storages are
        self._flat_views: list[Tensor] = []

    def on(self, data: Any, batch_size: int | None = None) -> "Objective":
        """The same measurement (model, loss, weights, modes, parameters, seed) on other data, in this
        process only (a plain Objective even when this one is distributed)."""
        return Objective(
            self.model, self.loss_fn, data, weight=self.weight, batch_size=batch_size, bn_mode=self.bn_mode,
            dropout=self.dropout, params=[p for _, p in self._selected], hvp_engine=self.hvp_engine, seed=self.seed,
        )

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
        return self.space.names

    @property
    def settings(self) -> dict:
        """The measurement choices to store beside every record (SPEC §1)."""
        return {"bn_mode": self.bn_mode, "dropout": self.dropout, "hvp_engine": self.hvp_engine, "dim": self.dim}

    def flatten(self, tensors: Sequence[Tensor]) -> Tensor:
        """Per-parameter tensors (in ``names`` order) → flat vector."""
        return self.space.flatten(tensors)

    def unflatten(self, vector: Tensor) -> list[Tensor]:
        """Flat vector → per-parameter tensors (in ``names`` order)."""
        return self.space.unflatten(vector)

    def parameters_vector(self) -> Tensor:
        """The current x as a new flat vector."""
        key = tuple(p.data_ptr() for _, p in self._selected)
        if self._flat_key != key:
            self._flat_views, self._flat_key = [p.detach().reshape(-1) for _, p in self._selected], key
        return torch.cat(self._flat_views)  # cat copies

    # ----- evaluations ---------------------------------------------------------------------------
    def loss(self, at: Tensor | None = None) -> float:
        """F(x) at the model's current parameters, or at the flat point ``at`` (the model is not touched)."""
        self.counts["loss"] += 1
        params = self._params(at)
        with self._measuring():
            total, n = 0.0, 0
            for chunk in self._chunks():
                with torch.no_grad():
                    total += chunk.size * float(self._chunk_loss(params, chunk))
                n += chunk.size
        return self._combine(total / _nonempty(n), None, n)[0]

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
        """∇²F(x) v for a flat vector v (SPEC §2), with the Objective's engine."""
        vs = self.unflatten(self.space.check_vector(v, "v"))
        params = self._params(at)
        self.counts["hvp"] += 1
        engine = HVP_ENGINES[self.hvp_engine]
        return self._accumulate(lambda chunk: engine(lambda ps: self._chunk_loss(ps, chunk), params, vs))[1]

    def quad(self, u: Tensor, at: Tensor | None = None) -> float:
        """uᵀ ∇²F(x) u, computed as ⟨u, Hu⟩ (correct through LayerNorm and BatchNorm)."""
        u = self.space.check_vector(u, "u")
        return float(torch.dot(u, self.hvp(u, at)))

    def hessian(self, cache: bool | str = "auto") -> "HessianOperator":
        """∇²F at the *current* parameters as a :class:`LinearOperator` for the solvers.

        ``cache=True`` keeps each chunk's gradient graph so that every product costs one extra
        backward pass instead of a forward and two backwards (memory: one graph per chunk);
        ``"auto"`` caches when the measurement set is a single chunk. Changing the parameters
        afterwards makes the operator stale: it raises rather than return a wrong product.
        """
        return HessianOperator(self, cache)

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

    def _chunk_loss(self, leaves: Sequence[Tensor], chunk: Chunk) -> Tensor:
        overrides = {name: p.detach() for name, p in self.model.named_parameters()}
        overrides.update(zip(self.names, leaves))
        try:
            outputs = functional_call(self.model, overrides, chunk.args, chunk.kwargs)
            loss = self.loss_fn(outputs, chunk.targets) if self.loss_fn is not None else model_loss(outputs)
        except RuntimeError as err:
            raise _explain(err) from err
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn: must return a scalar tensor (the batch's mean loss), got {shape}")
        return loss.reshape(())

    def _accumulate(self, per_chunk: Callable[[Chunk], tuple[Tensor, list[Tensor]]]) -> tuple[float, Tensor]:
        """Size-weighted mean of (loss, vector) over the chunks."""
        total_loss, mean = 0.0, WeightedMean()
        with self._measuring():
            for chunk in self._chunks():
                try:
                    loss, parts = per_chunk(chunk)
                except RuntimeError as err:
                    raise _explain(err) from err
                mean.add(self.flatten(parts), chunk.size)
                total_loss += chunk.size * float(loss)
        n = _nonempty(mean.n)
        return self._combine(total_loss / n, mean.result(), n)

    def count(self) -> float:
        """The measurement set's size (the sum of the chunk weights: examples, or ``weight``), over every process."""
        with preserved_rng():
            seed_rng(self.seed, self.space.device)
            return self._combine_count(sum(chunk.size for chunk in self.chunks))

    def _combine_count(self, n: float) -> float:
        """This process's count is the whole set's; a DistributedObjective sums it across ranks."""
        return n

    def _combine(self, loss: float, vector: Tensor | None, n: int) -> tuple[float, Tensor | None]:
        """Combine this process's means over its ``n`` examples into the measurement set's: here they
        are the whole set; :class:`curvlab.distributed.DistributedObjective` all-reduces across ranks."""
        return loss, vector


def model_loss(outputs: Any) -> Tensor:
    """The loss a model computed itself: the output when it is a scalar tensor, else ``outputs.loss``
    or ``outputs["loss"]`` (Hugging Face models return it there when given ``labels``)."""
    if isinstance(outputs, Tensor) and outputs.numel() == 1:
        return outputs
    loss = getattr(outputs, "loss", None)
    if loss is None and isinstance(outputs, dict):
        loss = outputs.get("loss")
    if loss is None:
        raise ValueError(
            f"loss_fn=None: the model's output ({type(outputs).__name__}) is neither a scalar loss nor has a .loss or "
            "['loss'] entry; give the batch its labels (e.g. a 'labels' key) or pass a loss_fn"
        )
    return loss


class WeightedMean:
    """Σ n_i v_i / Σ n_i over chunks, in place; a single chunk's vector is returned untouched."""

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.n = 0
        self.count = 0

    def add(self, vec: Tensor, size: int) -> None:
        if self.total is None:
            self.total = vec
        else:
            if self.count == 1:
                self.total.mul_(self.n)
            self.total.add_(vec, alpha=size)
        self.n += size
        self.count += 1

    def result(self) -> Tensor:
        _nonempty(self.n)
        return self.total if self.count == 1 else self.total.div_(self.n)


class HessianOperator(LinearOperator):
    """∇²F at a fixed point, as a symmetric operator (see :meth:`Objective.hessian`)."""

    def __init__(self, objective: Objective, cache: bool | str = "auto"):
        if cache not in (True, False, "auto"):
            raise ValueError(f"cache: expected True, False or 'auto', got {cache!r}")
        super().__init__(self._product, objective.dim, dtype=objective.space.dtype, device=objective.space.device)
        self.objective = objective
        self.cache = cache
        self._versions = self._current_versions()
        self._graphs: list[tuple[int, list[Tensor], list[Tensor]]] | None = None

    def _current_versions(self) -> list[int]:
        model = self.objective.model
        return [t._version for t in (*model.parameters(), *model.buffers())]

    def _product(self, v: Tensor) -> Tensor:
        if self._current_versions() != self._versions:
            raise RuntimeError(
                "HessianOperator: the model's parameters or buffers changed since this operator was made; "
                "call objective.hessian() again at the new point"
            )
        wants_cache = self.cache is True or self.cache == "auto"
        if not wants_cache or self.objective.hvp_engine != "reverse":
            return self.objective.hvp(v)
        if self._graphs is None:
            self._build_graphs()
        return self._cached_product(v)

    def _build_graphs(self) -> None:
        obj = self.objective
        graphs = []
        with obj._measuring():
            for chunk in obj._chunks():
                leaves = fresh_leaves(obj._params())
                with torch.enable_grad():
                    grads = gradient(obj._chunk_loss(leaves, chunk), leaves, create_graph=True)
                graphs.append((chunk.size, leaves, grads))
                if self.cache == "auto" and len(graphs) > 1:
                    self.cache = False  # several chunks: keeping every graph could exhaust memory
                    graphs = []
                    break
        self._graphs = graphs

    def _cached_product(self, v: Tensor) -> Tensor:
        if not self._graphs:
            return self.objective.hvp(v)
        obj = self.objective
        self.objective.counts["hvp"] += 1
        vs = obj.unflatten(obj.space.check_vector(v, "v"))
        mean = WeightedMean()
        try:
            for size, leaves, grads in self._graphs:
                mean.add(obj.flatten(hvp_from_grads(grads, leaves, vs, retain_graph=True)), size)
        except RuntimeError as err:
            raise _explain(err) from err
        return obj._combine(0.0, mean.result(), mean.n)[1]


def _resolve_engine(engine: str, device: torch.device) -> str:
    if engine == "auto":
        return default_engine(device)
    if engine not in ENGINES:
        raise ValueError(f"hvp_engine: expected 'auto' or one of {ENGINES}, got {engine!r}")
    return engine


def _nonempty(n: int) -> int:
    if n == 0:
        raise ValueError("data: the measurement set is empty (no examples)")
    return n


@contextlib.contextmanager
def _math_attention() -> Iterator[None]:
    """Run scaled_dot_product_attention with the MATH backend: the CPU flash kernel has no
    double backward and no forward-mode derivative in torch 2.13 (SPEC §10)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch < 2.3
        yield
        return
    with sdpa_kernel([SDPBackend.MATH]):
        yield


def _explain(err: RuntimeError) -> Exception:
    """Turn torch's cryptic second-order failures into errors that say what to do."""
    text = str(err)
    if "ZeroTensors are immutable" in text:
        return RuntimeError(
            "hvp_engine='forward': F.mse_loss breaks inside jvp(grad) in torch (pytorch #123996). "
            "Use hvp_engine='reverse' or write the loss as ((outputs - targets) ** 2).mean() "
            "(curvlab.losses.mse does). Original error: " + text
        )
    if "derivative for" in text and "not implemented" in text and "attention" in text:
        return RuntimeError(
            "The model calls a fused attention kernel that has no second derivative. curvlab runs "
            "F.scaled_dot_product_attention under the MATH backend, so call that function (or write "
            "softmax(QK^T/sqrt(d))V out) instead of the fused op. Original error: " + text
        )
    if "modified by an inplace operation" in text:
        return RuntimeError(
            "The parameters changed in place while a Hessian operator still needed them; "
            "call objective.hessian() again at the new point. Original error: " + text
        )
    return err
