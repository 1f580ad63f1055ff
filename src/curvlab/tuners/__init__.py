"""Learning-rate tuners (definitions §7) that wrap any base optimizer."""

from curvlab.tuners.base import Tuner
from curvlab.tuners.rules import CDAT, EdgeRule, Hypergradient, Linesearch, Polyak, QuadraticallyGreedy

__all__ = ["CDAT", "EdgeRule", "Hypergradient", "Linesearch", "Polyak", "QuadraticallyGreedy", "Tuner"]
