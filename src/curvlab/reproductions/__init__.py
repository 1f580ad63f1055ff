"""Reproductions of the five papers' findings: ``curvlab reproduce --list``."""

from curvlab.reproductions import batch_size, directional, dynamics, edge, noise_and_assumptions, tuners, warmup  # noqa: F401  (each registers itself)
from curvlab.reproductions.base import REGISTRY, Check, Reproduction, reproduce

__all__ = ["Check", "REGISTRY", "Reproduction", "reproduce"]
