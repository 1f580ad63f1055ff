"""Geometry of training (definitions §2–§5): each measurement is a function usable on its own; the
:class:`curvlab.Monitor` schedules them along a training run."""

from typing import Any

from curvlab.geometry.assumptions import AssumptionTracker, L0L1Fit, norms, pl_ratio
from curvlab.geometry.blocks import block_eigs, block_indices, diagonal_block, module_blocks
from curvlab.geometry.critical_sharpness import CriticalSharpnessResult, critical_sharpness
from curvlab.geometry.directional import (
    coordinate_histogram,
    directional_sharpness,
    directional_sharpnesses,
    gradient_correlation,
    landscape_1d,
    log_bins,
)
from curvlab.geometry.noise import NoiseResult, TailIndex, gradient_noise, qq_gaussian, symmetric_stable
from curvlab.geometry.pseudo_updates import PseudoUpdates, compare_directions, default_shadows
from curvlab.geometry.sharpness import (
    alignment,
    cosine,
    lambda_min,
    preconditioned_hessian,
    preconditioned_sharpness,
    sharpness,
)
from curvlab.optim.introspection import StabilityThreshold, stability_threshold  # measured beside sharpness

_RENAMED = {"CriticalSharpness": "CriticalSharpnessResult"}  # old name → new, kept for one release


def __getattr__(name: str) -> Any:
    """Deprecated aliases: ``curvlab.geometry.CriticalSharpness`` (the result of :func:`critical_sharpness`) is now
    ``CriticalSharpnessResult``, so that it cannot be mistaken for the Monitor's metric
    ``curvlab.monitor.CriticalSharpness``."""
    if name in _RENAMED:
        import warnings

        new = _RENAMED[name]
        warnings.warn(
            f"curvlab.geometry.{name} is now curvlab.geometry.{new} (curvlab.monitor.{name} is the Monitor's metric); "
            "the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module 'curvlab.geometry' has no attribute {name!r}")


__all__ = [
    "AssumptionTracker",
    "CriticalSharpnessResult",
    "L0L1Fit",
    "NoiseResult",
    "PseudoUpdates",
    "StabilityThreshold",
    "TailIndex",
    "alignment",
    "block_eigs",
    "block_indices",
    "compare_directions",
    "coordinate_histogram",
    "cosine",
    "critical_sharpness",
    "default_shadows",
    "diagonal_block",
    "directional_sharpness",
    "directional_sharpnesses",
    "gradient_correlation",
    "gradient_noise",
    "lambda_min",
    "landscape_1d",
    "log_bins",
    "module_blocks",
    "norms",
    "pl_ratio",
    "preconditioned_hessian",
    "preconditioned_sharpness",
    "qq_gaussian",
    "sharpness",
    "stability_threshold",
    "symmetric_stable",
]
