"""Turn the many shapes a user's data can take into a re-iterable stream of chunks.

A *chunk* is one forward pass worth of data: ``(args, kwargs, targets, size)``. The measurement-set
function F (definitions §1) is the size-weighted mean of the chunk losses, so any data set fits in memory.

Two ways to read a batch: with a loss function, the batch is split into inputs and targets (the
last tuple entry, or a dict's target key); for a model that computes its own loss (``loss_fn=None``)
the whole batch is the model's input (``model(*batch)`` or ``model(**batch)``) and ``targets`` is None.
A chunk's weight ``size`` is its example count (the leading dimension), or what ``weight(batch)``
returns (e.g. the number of non-ignored label tokens, which language-model losses average over).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from curvlab.checks import is_int, is_number
from curvlab.errors import InputError, InputTypeError

TARGET_KEYS = ("targets", "target", "labels", "label", "y")
WeightFn = Callable[[Any], int | float | Tensor | None]  # None: count the examples


@dataclass(frozen=True)
class Chunk:
    """One batch, ready for ``loss_fn(model(*args, **kwargs), targets)`` (targets None: the model's own loss)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    targets: Any
    size: float

    def to(self, device: torch.device) -> Chunk:
        def move(t: Any) -> Any:
            return t.to(device) if isinstance(t, Tensor) else t

        return Chunk(
            tuple(move(a) for a in self.args),
            {k: move(v) for k, v in self.kwargs.items()},
            move(self.targets),
            self.size,
        )


def _leading_size(obj: Any) -> int:
    if isinstance(obj, Tensor):
        if obj.dim() == 0:
            raise InputError("data: a batch tensor must have a leading batch dimension, got a 0-d tensor")
        return obj.shape[0]
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        return len(obj)
    raise InputTypeError(f"data: cannot tell the batch size of a {type(obj).__name__}; use tensors")


def to_chunk(batch: Any, own_loss: bool = False, weight: WeightFn | None = None) -> Chunk:
    """Interpret one batch: a tuple/list ``(x, ..., y)`` or a dict with a target key; with ``own_loss``
    the whole batch is the model's input. ``weight(batch)`` overrides the example count."""
    chunk = _own_loss_chunk(batch) if own_loss else _split_chunk(batch)
    value = None if weight is None else weight(batch)
    if value is None:  # no weight, or one that leaves this batch to its example count
        return chunk
    return Chunk(chunk.args, chunk.kwargs, chunk.targets, _weight_value(value))


IGNORE_INDEX = -100  # the label the Hugging Face losses (and torch's cross-entropy) leave out


def label_tokens(shifted: bool) -> WeightFn:
    """The default weight of a batch for a model computing its own loss from ``labels``: its label tokens that
    count in the loss (≠ -100), after the one-token shift of a causal language model (``shifted``), so that F is
    the mean over every counted token of the measurement set, as one batch holding them all would give; a batch
    without a ``labels`` tensor counts its examples."""

    def weight(batch: Any) -> int | None:
        labels = batch.get("labels") if isinstance(batch, Mapping) else None
        if not isinstance(labels, Tensor) or labels.dim() < 2:
            return None
        return int(((labels[..., 1:] if shifted else labels) != IGNORE_INDEX).sum())

    return weight


def _split_chunk(batch: Any) -> Chunk:
    if isinstance(batch, Mapping):
        key = next((k for k in TARGET_KEYS if k in batch), None)
        if key is None:
            raise InputError(
                f"data: a dict batch needs a target entry named one of {TARGET_KEYS}; got keys {sorted(batch)} "
                "(for a model that computes its own loss, pass loss_fn=None)"
            )
        kwargs = {k: v for k, v in batch.items() if k != key}
        if not kwargs:
            raise InputError("data: a dict batch needs at least one input entry besides the target")
        return Chunk((), kwargs, batch[key], _leading_size(batch[key]))
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        *inputs, targets = batch
        return Chunk(tuple(inputs), {}, targets, _leading_size(targets))
    raise InputTypeError(
        "data: each batch must be a tuple/list (inputs..., targets) or a dict with a 'targets' key, "
        f"got {type(batch).__name__}"
    )


def _own_loss_chunk(batch: Any) -> Chunk:
    """The whole batch goes to the model: ``model(**batch)`` for a dict, ``model(*batch)`` for a tuple."""
    if isinstance(batch, Mapping):
        if not batch:
            raise InputError("data: an empty dict batch")
        return Chunk((), dict(batch), None, _first_tensor_size(batch.values()))
    if isinstance(batch, (tuple, list)) and batch:
        return Chunk(tuple(batch), {}, None, _first_tensor_size(batch))
    if isinstance(batch, Tensor):
        return Chunk((batch,), {}, None, _leading_size(batch))
    raise InputTypeError(
        f"data: each batch must be a tensor, a tuple/list or a dict of model inputs, got {type(batch).__name__}"
    )


def _first_tensor_size(values: Iterable[Any]) -> int:
    first = next((v for v in values if isinstance(v, Tensor)), None)
    if first is None:
        raise InputTypeError(
            "data: a batch holds no tensor to count its examples; pass weight= to say how much each batch counts"
        )
    return _leading_size(first)


def _weight_value(value: Any) -> float:
    if isinstance(value, Tensor):
        value = value.item() if value.numel() == 1 else value
    if not is_number(value) or not value >= 0 or value == float("inf"):
        raise InputError(f"weight: expected weight(batch) to return a finite number ≥ 0, got {value!r}")
    return float(value)


class ChunkStream:
    """A re-iterable stream of :class:`Chunk` built from any supported data source.

    Accepted ``data``: an ``(inputs, targets)`` pair of tensors (re-chunked by ``batch_size``), a
    ``Dataset`` (wrapped in an unshuffled ``DataLoader``), a ``DataLoader``, or any re-iterable of
    batches (a list of tuples or dicts). One-shot iterators are refused: F is evaluated many times.
    Chunk sizes are read while iterating, so nothing is loaded up front.
    """

    def __init__(
        self, data: Any, batch_size: int | None = None, *, own_loss: bool = False, weight: WeightFn | None = None
    ):
        if batch_size is not None and (not is_int(batch_size) or batch_size < 1):
            raise InputError(f"batch_size: expected a positive integer or None, got {batch_size!r}")
        if weight is not None and not callable(weight):
            raise InputTypeError(f"weight: expected a callable weight(batch) -> number, got {type(weight).__name__}")
        self.own_loss, self.weight = own_loss, weight
        if own_loss and isinstance(data, list) and _is_tensor_pair(data):
            raise InputError(
                "data: with loss_fn=None a list of two tensors is ambiguous: write (inputs, targets) as a tuple to "
                "call model(inputs, targets) on chunks of it, or [(batch_1,), (batch_2,)] for two batches the model "
                "takes alone"
            )
        self._source = _make_source(data, batch_size, self.read)

    def read(self, batch: Any) -> Chunk:
        """One raw batch as a :class:`Chunk` (the way this stream reads every batch)."""
        return to_chunk(batch, self.own_loss, self.weight)

    def __iter__(self) -> Iterator[Chunk]:
        for batch in self._source():
            chunk = self.read(batch)
            if chunk.size > 0:
                yield chunk


def _make_source(data: Any, batch_size: int | None, read: Callable[[Any], Chunk]) -> Callable[[], Iterable[Any]]:
    if data is None:
        raise InputError("data: expected tensors, a Dataset, a DataLoader or an iterable of batches, got None")
    if _is_tensor_pair(data):
        inputs, targets = data
        return _tensor_source(inputs, targets, batch_size)
    if isinstance(data, DataLoader):
        if batch_size is not None:
            raise InputError("batch_size: a DataLoader already fixes its batch size; leave batch_size=None")
        _check_not_empty(data.dataset)
        return lambda: data
    if isinstance(data, Dataset):
        _check_not_empty(data)
        loader = DataLoader(data, batch_size=batch_size or 256, shuffle=False)
        return lambda: loader
    if isinstance(data, Iterator):
        raise InputTypeError(
            "data: a one-shot iterator/generator cannot be re-read; pass a list of batches or a DataLoader"
        )
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, Tensor, Mapping)):
        if batch_size is not None:
            raise InputError("batch_size: only (inputs, targets) tensors and Datasets are re-chunked")
        if not any(read(b).size > 0 for b in data):
            raise InputError("data: the measurement set is empty (no examples)")
        return lambda: data
    raise InputTypeError(
        "data: expected an (inputs, targets) pair of tensors, a Dataset, a DataLoader or a list of batches, "
        f"got {type(data).__name__}"
    )


def _tensor_source(inputs: Tensor, targets: Tensor, batch_size: int | None) -> Callable[[], Iterable[Any]]:
    n = _leading_size(targets)
    if _leading_size(inputs) != n:
        raise InputError(
            f"data: inputs and targets disagree on the number of examples ({_leading_size(inputs)} vs {n})"
        )
    if n == 0:
        raise InputError("data: the measurement set is empty (no examples)")
    step = batch_size or n
    return lambda: ((inputs[i : i + step], targets[i : i + step]) for i in range(0, n, step))


def _check_not_empty(dataset: Any) -> None:
    try:
        n = len(dataset)
    except TypeError:  # an IterableDataset without __len__: checked on the first pass
        return
    if n == 0:
        raise InputError("data: the measurement set is empty (no examples)")


def _is_tensor_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)
