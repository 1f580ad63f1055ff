"""How much memory the curvature operators may keep for first-order graphs (``graph_memory``)."""

from __future__ import annotations

import torch

from curvlab.checks import is_number
from curvlab.errors import InputError
from curvlab.machine import available_memory

AUTO_FRACTION = 0.25


def resolve_graph_memory(graph_memory: int | float | str, device: torch.device) -> float:
    """``graph_memory`` in bytes: a non-negative number as given, or ``"auto"`` = a quarter of the
    memory available now (free memory of the GPU, or the system's MemAvailable on the CPU)."""
    if graph_memory == "auto":
        return AUTO_FRACTION * available_memory(device)
    if not is_number(graph_memory) or not graph_memory >= 0:
        raise InputError(f"graph_memory: expected a number of bytes ≥ 0 or 'auto', got {graph_memory!r}")
    return float(graph_memory)
