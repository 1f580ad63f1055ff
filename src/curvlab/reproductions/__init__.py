"""Reproductions of the five papers' findings: ``curvlab reproduce --list``."""

from curvlab.reproductions import (  # noqa: F401  (each registers itself)
    assumptions,
    batch_size,
    cdat,
    directional,
    dynamics,
    edge,
    noise,
    tuners,
    warmup,
)
from curvlab.reproductions.base import REGISTRY, Check, Reproduction, reproduce

__all__ = ["Check", "REGISTRY", "Reproduction", "reproduce"]
