"""Which parameters x is made of (definitions §1), and flat-vector <-> per-parameter conversions."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from curvlab.errors import InputError, InputTypeError

ParamSelector = None | Sequence[str] | Callable[[str, Tensor], bool] | Iterable[Tensor]


@dataclass(frozen=True)
class ParamSpace:
    """An ordered set of named parameters; flat vectors concatenate them in this order."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    dtype: torch.dtype
    device: torch.device

    @property
    def dim(self) -> int:
        return sum(s.numel() for s in self.shapes)

    def flatten(self, tensors: Sequence[Tensor]) -> Tensor:
        """Concatenate per-parameter tensors (in ``names`` order) into one flat vector."""
        if len(tensors) != len(self.shapes):
            raise InputError(f"tensors: expected {len(self.shapes)} tensors (one per parameter), got {len(tensors)}")
        for name, t, shape in zip(self.names, tensors, self.shapes):
            if t.shape != shape:
                raise InputError(f"tensors: parameter {name!r} has shape {tuple(shape)}, got {tuple(t.shape)}")
        return torch.cat([t.reshape(-1) for t in tensors])

    def unflatten(self, vector: Tensor) -> list[Tensor]:
        """Split a flat vector into views shaped like the parameters (in ``names`` order)."""
        return split_flat(self.check_vector(vector), self.shapes)

    def check_vector(self, vector: Tensor, name: str = "v") -> Tensor:
        """Validate a flat vector's length and bring it to the parameters' dtype and device."""
        if not isinstance(vector, Tensor):
            raise InputTypeError(
                f"{name}: expected a flat torch.Tensor of length {self.dim}, got {type(vector).__name__}"
            )
        if vector.dim() != 1 or vector.numel() != self.dim:
            raise InputError(f"{name}: expected a flat vector of length {self.dim}, got shape {tuple(vector.shape)}")
        return vector.to(device=self.device, dtype=self.dtype)


def local_part(t: Tensor) -> Tensor:
    """This process's block of a DTensor (an FSDP2 shard), sharing its storage; any other tensor itself."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


def split_flat(vector: Tensor, shapes: Sequence[torch.Size]) -> list[Tensor]:
    """Views of a flat vector shaped like ``shapes``, in order (the inverse of concatenating them flat)."""
    sizes = [torch.Size(s).numel() for s in shapes]
    return [v.view(shape) for v, shape in zip(torch.split(vector, sizes), shapes)]


def select_parameters(model: nn.Module, params: ParamSelector) -> list[tuple[str, Tensor]]:
    """Resolve ``params`` (None, names, a predicate ``(name, p) -> bool``, or tensors) to named parameters.

    ``None`` selects every parameter with ``requires_grad`` (the trainable ones).
    """
    named: list[tuple[str, Tensor]] = list(model.named_parameters())
    if params is None:
        chosen = [(n, p) for n, p in named if p.requires_grad]
    elif callable(params):
        chosen = [(n, p) for n, p in named if params(n, p)]
    else:
        chosen = _select_listed(named, list(params))
    if not chosen:
        raise InputError("params: the selection contains no parameter")
    dtypes = {p.dtype for _, p in chosen}
    devices = {p.device for _, p in chosen}
    if len(dtypes) > 1 or len(devices) > 1:
        raise InputError(f"params: all selected parameters must share one dtype and device, got {dtypes} / {devices}")
    if not all(p.is_floating_point() for _, p in chosen):
        raise InputTypeError("params: selected parameters must be floating point")
    return chosen


def _select_listed(named: list[tuple[str, Tensor]], items: list[Any]) -> list[tuple[str, Tensor]]:
    if all(isinstance(i, str) for i in items):
        known = dict(named)
        unknown = [i for i in items if i not in known]
        if unknown:
            raise InputError(f"params: unknown parameter name(s) {unknown}; the model has {list(known)}")
        wanted = set(items)
        return [(n, p) for n, p in named if n in wanted]
    if all(isinstance(i, Tensor) for i in items):
        ids = {id(i) for i in items}
        chosen = [(n, p) for n, p in named if id(p) in ids]
        if len(chosen) != len(ids):
            raise InputError("params: some tensors are not parameters of the model")
        return chosen
    raise InputTypeError("params: expected None, a list of names, a list of parameter tensors, or a predicate")


def param_space(chosen: list[tuple[str, Tensor]]) -> ParamSpace:
    first = chosen[0][1]
    return ParamSpace(
        names=tuple(n for n, _ in chosen),
        shapes=tuple(p.shape for _, p in chosen),
        dtype=first.dtype,
        device=first.device,
    )
