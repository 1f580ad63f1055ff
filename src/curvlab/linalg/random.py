"""Reproducible random probes: drawn on the CPU from an explicit generator, then moved.

The global RNG is never touched, so measuring does not perturb training (see docs/definitions.md §1).
"""

from __future__ import annotations

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


def gaussian(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(device)


def rademacher(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> Tensor:
    signs = torch.randint(0, 2, shape, generator=gen, dtype=torch.int8).to(torch.float64) * 2 - 1
    return signs.to(device)
