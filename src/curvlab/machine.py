"""What the machine has free: the one owner of "available memory", read by the solvers (basis="auto") and the
curvature operators (graph_memory="auto"), and of giving back what a one-off computation freed."""

from __future__ import annotations

import ctypes

import torch

FALLBACK_BYTES = 2 * 2**30


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


def return_freed_memory() -> bool:
    """Ask glibc to give the heap memory freed so far back to the system (``malloc_trim(0)``): large tensors freed
    by a one-off computation otherwise stay resident as holes in the heap and add to every later peak. True when
    it ran; False where there is no glibc (macOS, Windows, musl), where nothing is done."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True
