"""Learning-rate tuners (definitions §7) that wrap any base optimizer."""

from collections.abc import Callable
from typing import Any

from curvlab.registry import Registry
from curvlab.tuners.base import Tuner, make_closure
from curvlab.tuners.rules import CDAT, EdgeRule, Hypergradient, Linesearch, Polyak, QuadraticallyGreedy

TUNERS: Registry[Callable[..., Any]] = Registry("tuner", "tuner")
TUNERS.add("linesearch", Linesearch, "Armijo backtracking linesearch")
TUNERS.add("quadratically_greedy", QuadraticallyGreedy, "η = −gᵀu / uᵀHu")
TUNERS.add("cdat", CDAT, "curvature-dynamics aware tuning, η = σ n/d")
TUNERS.add("polyak", Polyak, "Polyak step size")
TUNERS.add("hypergradient", Hypergradient, "hypergradient descent")
TUNERS.add("edge", EdgeRule, "η = σ / λ_max")

__all__ = [
    "TUNERS",
    "CDAT",
    "EdgeRule",
    "Hypergradient",
    "Linesearch",
    "Polyak",
    "QuadraticallyGreedy",
    "Tuner",
    "make_closure",
]
