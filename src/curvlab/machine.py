"""What the machine has free: the one owner of "available memory", read by the solvers (basis="auto") and the
curvature operators (graph_memory="auto")."""

from __future__ import annotations

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
