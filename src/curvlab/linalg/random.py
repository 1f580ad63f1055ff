"""Reproducible random probes: drawn on the CPU from an explicit generator, then moved.

The global RNG is never touched, so measuring does not perturb training (see docs/definitions.md §1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from curvlab.checks import check_seed
from curvlab.errors import InputTypeError


def make_generator(seed: int | None = 0, generator: torch.Generator | None = None) -> torch.Generator:
    """The generator to draw probes from: ``generator`` if given, else a fresh one seeded with ``seed``."""
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise InputTypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
        return generator
    if seed is None:  # fresh entropy, without touching the global RNG
        gen = torch.Generator()
        gen.seed()
        return gen
    check_seed(seed)
    return torch.Generator().manual_seed(seed)


DRAW_CHUNK = 1 << 20  # a long vector is drawn this many entries at a time, so that any part of it can be cut out


def gaussian(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(device)


def rademacher(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> Tensor:
    signs = torch.randint(0, 2, shape, generator=gen, dtype=torch.int8).to(torch.float64) * 2 - 1
    return signs.to(device)


DRAWS = {"gaussian": gaussian, "rademacher": rademacher}


def random_vector(
    kind: str,
    size: int,
    gen: torch.Generator,
    device: torch.device,
    ranges: Sequence[tuple[int, int]] | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """A random vector of length ``size`` (``kind``: "gaussian" or "rademacher"), drawn in float64
    :data:`DRAW_CHUNK` entries at a time and stored in ``dtype`` (a float32 vector holds the float64 draws rounded,
    with no float64 copy of the whole); with ``ranges``, only its entries in those [start, stop) ranges,
    concatenated. Every process drawing the same vector with its own ranges gets its own part of one whole vector,
    the same whatever the split (:class:`curvlab.linalg.vectors.Sharding`)."""
    draw = DRAWS[kind]
    ranges = list(ranges) if ranges is not None else [(0, size)]
    out = torch.empty(sum(max(0, min(b, size) - max(a, 0)) for a, b in ranges), dtype=dtype)
    filled = 0  # written in place, chunk by chunk: the vector is held once, never as parts and their concatenation
    for start in range(0, size, DRAW_CHUNK):
        stop = min(start + DRAW_CHUNK, size)
        piece = draw((stop - start,), gen, torch.device("cpu"))
        for a, b in ranges:
            if a < stop and b > start:
                part = piece[max(a, start) - start : min(b, stop) - start]
                out[filled : filled + part.numel()] = part
                filled += part.numel()
    return out.to(device)
