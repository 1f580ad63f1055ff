"""Small twice-differentiable models."""

from curvlab.models.mlp import mlp

__all__ = ["mlp"]
