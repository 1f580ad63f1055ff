"""How much memory the curvature operators may keep for first-order graphs (``graph_memory``)."""

from __future__ import annotations

import torch

from curvlab.checks import is_number
from curvlab.errors import InputError

AUTO_FRACTION = 0.25
FALLBACK_BYTES = 2 * 2**30


def resolve_graph_memory(graph_memory: int | float | str, device: torch.device) -> float:
    """``graph_memory`` in bytes: a non-negative number as given, or ``"auto"`` = a quarter of the
    memory available now (free memory of the GPU, or the system's MemAvailable on the CPU)."""
    if graph_memory == "auto":
        return AUTO_FRACTION * available_memory(device)
    if not is_number(graph_memory) or not graph_memory >= 0:
        raise InputError(f"graph_memory: expected a number of bytes ≥ 0 or 'auto', got {graph_memory!r}")
    return float(graph_memory)


def available_memory(device: torch.device) -> float:
    """Free bytes on ``device`` (CUDA), or the system's available memory; 2 GiB when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(FALLBACK_BYTES)
