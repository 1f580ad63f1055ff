"""Learning-rate tuners (definitions §7) that wrap any base optimizer."""

from collections.abc import Callable
from typing import Any

from curvlab.tuners.base import Tuner
from curvlab.tuners.rules import CDAT, EdgeRule, Hypergradient, Linesearch, Polyak, QuadraticallyGreedy

# The tuners a config can name: name → (constructor, description); `curvlab list` prints them.
TUNERS: dict[str, tuple[Callable[..., Any], str]] = {
    "linesearch": (Linesearch, "Armijo backtracking linesearch"),
    "quadratically_greedy": (QuadraticallyGreedy, "η = −gᵀu / uᵀHu"),
    "cdat": (CDAT, "curvature-dynamics aware tuning, η = σ n/d"),
    "polyak": (Polyak, "Polyak step size"),
    "hypergradient": (Hypergradient, "hypergradient descent"),
    "edge": (EdgeRule, "η = σ / λ_max"),
}

__all__ = ["TUNERS", "CDAT", "EdgeRule", "Hypergradient", "Linesearch", "Polyak", "QuadraticallyGreedy", "Tuner"]
