"""Optimizers from the papers (definitions §6), all following torch.optim conventions.

Adam: Kunstner et al. 2023, Alg. 2 is exactly ``torch.optim.Adam`` (m̂/(√v̂ + ε) with both bias corrections), so
``curvlab.optim.Adam`` *is* torch's; the test suite checks a step against the algorithm by hand.
"""

from torch.optim import Adam, AdamW, RMSprop

from curvlab.optim.adafactor import Adafactor
from curvlab.optim.clipping import CoordinateClip, coordinate_clip, topk_threshold
from curvlab.optim.heavy_ball import HeavyBall, NormalizedGD, SignDescent
from curvlab.optim.normalized_sgd import NormalizedSGD
from curvlab.optim.preconditioner import diagonal_preconditioner
from curvlab.optim.random_scaling import DeltaSGDM, RandomScaling
from curvlab.optim.wrapper import OptimizerWrapper

__all__ = [
    "Adafactor",
    "Adam",
    "AdamW",
    "CoordinateClip",
    "DeltaSGDM",
    "HeavyBall",
    "NormalizedGD",
    "NormalizedSGD",
    "OptimizerWrapper",
    "RMSprop",
    "RandomScaling",
    "SignDescent",
    "coordinate_clip",
    "diagonal_preconditioner",
    "topk_threshold",
]
