"""Turn the many shapes a user's data can take into a re-iterable stream of chunks.

A *chunk* is one forward pass worth of data: ``(args, kwargs, targets, size)``. The measurement-set
function F (SPEC §1) is the size-weighted mean of the chunk losses, so any data set fits in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

TARGET_KEYS = ("targets", "target", "labels", "label", "y")


@dataclass(frozen=True)
class Chunk:
    """One batch, ready for ``loss_fn(model(*args, **kwargs), targets)``."""

    args: tuple
    kwargs: dict
    targets: Any
    size: int

    def to(self, device: torch.device) -> "Chunk":
        move = lambda t: t.to(device) if isinstance(t, Tensor) else t  # noqa: E731
        return Chunk(
            tuple(move(a) for a in self.args),
            {k: move(v) for k, v in self.kwargs.items()},
            move(self.targets),
            self.size,
        )


def _leading_size(obj: Any) -> int:
    if isinstance(obj, Tensor):
        if obj.dim() == 0:
            raise ValueError("data: a batch tensor must have a leading batch dimension, got a 0-d tensor")
        return obj.shape[0]
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        return len(obj)
    raise TypeError(f"data: cannot tell the batch size of a {type(obj).__name__}; use tensors")


def to_chunk(batch: Any) -> Chunk:
    """Interpret one batch: a tuple/list ``(x, ..., y)`` or a dict with a target key."""
    if isinstance(batch, Mapping):
        key = next((k for k in TARGET_KEYS if k in batch), None)
        if key is None:
            raise ValueError(
                f"data: a dict batch needs a target entry named one of {TARGET_KEYS}; got keys {sorted(batch)}"
            )
        kwargs = {k: v for k, v in batch.items() if k != key}
        if not kwargs:
            raise ValueError("data: a dict batch needs at least one input entry besides the target")
        return Chunk((), kwargs, batch[key], _leading_size(batch[key]))
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        *inputs, targets = batch
        return Chunk(tuple(inputs), {}, targets, _leading_size(targets))
    raise TypeError(
        "data: each batch must be a tuple/list (inputs..., targets) or a dict with a 'targets' key, "
        f"got {type(batch).__name__}"
    )


class ChunkStream:
    """A re-iterable stream of :class:`Chunk` built from any supported data source.

    Accepted ``data``: an ``(inputs, targets)`` pair of tensors (re-chunked by ``batch_size``), a
    ``Dataset`` (wrapped in an unshuffled ``DataLoader``), a ``DataLoader``, or any re-iterable of
    batches (a list of tuples or dicts). One-shot iterators are refused: F is evaluated many times.
    Chunk sizes are read while iterating, so nothing is loaded up front.
    """

    def __init__(self, data: Any, batch_size: int | None = None):
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size!r}")
        self._source = _make_source(data, batch_size)

    def __iter__(self) -> Iterator[Chunk]:
        for batch in self._source():
            chunk = to_chunk(batch)
            if chunk.size > 0:
                yield chunk


def _make_source(data: Any, batch_size: int | None) -> Callable[[], Iterable]:
    if data is None:
        raise ValueError("data: expected tensors, a Dataset, a DataLoader or an iterable of batches, got None")
    if _is_tensor_pair(data):
        return _tensor_source(*data, batch_size)
    if isinstance(data, DataLoader):
        if batch_size is not None:
            raise ValueError("batch_size: a DataLoader already fixes its batch size; leave batch_size=None")
        _check_not_empty(data.dataset)
        return lambda: data
    if isinstance(data, Dataset):
        _check_not_empty(data)
        loader = DataLoader(data, batch_size=batch_size or 256, shuffle=False)
        return lambda: loader
    if isinstance(data, Iterator):
        raise TypeError("data: a one-shot iterator/generator cannot be re-read; pass a list of batches or a DataLoader")
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, Tensor, Mapping)):
        if batch_size is not None:
            raise ValueError("batch_size: only (inputs, targets) tensors and Datasets are re-chunked")
        if not any(to_chunk(b).size > 0 for b in data):
            raise ValueError("data: the measurement set is empty (no examples)")
        return lambda: data
    raise TypeError(
        "data: expected an (inputs, targets) pair of tensors, a Dataset, a DataLoader or a list of batches, "
        f"got {type(data).__name__}"
    )


def _tensor_source(inputs: Tensor, targets: Tensor, batch_size: int | None) -> Callable[[], Iterable]:
    n = _leading_size(targets)
    if _leading_size(inputs) != n:
        raise ValueError(f"data: inputs and targets disagree on the number of examples ({_leading_size(inputs)} vs {n})")
    if n == 0:
        raise ValueError("data: the measurement set is empty (no examples)")
    step = batch_size or n
    return lambda: ((inputs[i : i + step], targets[i : i + step]) for i in range(0, n, step))


def _check_not_empty(dataset: Any) -> None:
    try:
        n = len(dataset)
    except TypeError:  # an IterableDataset without __len__: checked on the first pass
        return
    if n == 0:
        raise ValueError("data: the measurement set is empty (no examples)")


def _is_tensor_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)
