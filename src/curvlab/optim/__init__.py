"""Optimizers from the papers (definitions §6), all following torch.optim conventions.

Adam: Kunstner et al. 2023, Alg. 2 is exactly ``torch.optim.Adam`` (m̂/(√v̂ + ε) with both bias corrections), so
``curvlab.optim.Adam`` *is* torch's; the test suite checks a step against the algorithm by hand.
"""

from collections.abc import Callable
from typing import Any

from torch.optim import SGD, Adam, AdamW, RMSprop

from curvlab.optim.adafactor import Adafactor
from curvlab.optim.clipping import CoordinateClip, coordinate_clip, topk_threshold
from curvlab.optim.heavy_ball import HeavyBall, NormalizedGD, SignDescent
from curvlab.optim.normalized_sgd import NormalizedSGD
from curvlab.optim.preconditioner import diagonal_preconditioner
from curvlab.optim.random_scaling import DeltaSGDM, RandomScaling
from curvlab.optim.wrapper import OptimizerWrapper

# The optimizers a config can name: name → (constructor, description); `curvlab list` prints them.
OPTIMIZERS: dict[str, tuple[Callable[..., Any], str]] = {
    "sgd": (SGD, "torch SGD (momentum, nesterov, dampening)"),
    "adam": (Adam, "torch Adam (= Kunstner et al. 2023, Alg. 2)"),
    "adamw": (AdamW, "torch AdamW"),
    "rmsprop": (RMSprop, "torch RMSprop"),
    "heavy_ball": (HeavyBall, "GD with heavy-ball momentum (Kunstner et al. 2023, Alg. 1)"),
    "sign": (SignDescent, "sign descent with heavy-ball momentum"),
    "normalized_gd": (NormalizedGD, "normalized GD with heavy-ball momentum"),
    "normalized_sgd": (NormalizedSGD, "per-tensor normalized SGD (Pan & Li 2022, Alg. 2)"),
    "adafactor": (Adafactor, "Adafactor (Pan & Li 2022, Alg. 3-4)"),
    "delta_sgdm": (DeltaSGDM, "SGDM in Tran et al.'s Δ form"),
}

__all__ = [
    "OPTIMIZERS",
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
