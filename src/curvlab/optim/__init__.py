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
from curvlab.optim.introspection import (
    StabilityThreshold,
    diagonal_preconditioner,
    learning_rate,
    momentum_vector,
    set_learning_rate,
    stability_threshold,
    update_rule,
)
from curvlab.optim.normalized_sgd import NormalizedSGD
from curvlab.optim.random_scaling import DeltaSGDM, RandomScaling
from curvlab.optim.wrapper import OptimizerWrapper
from curvlab.registry import Registry

OPTIMIZERS: Registry[Callable[..., Any]] = Registry("optimizer", "optimizer")
OPTIMIZERS.add("sgd", SGD, "torch SGD (momentum, nesterov, dampening)")
OPTIMIZERS.add("adam", Adam, "torch Adam (= Kunstner et al. 2023, Alg. 2)")
OPTIMIZERS.add("adamw", AdamW, "torch AdamW")
OPTIMIZERS.add("rmsprop", RMSprop, "torch RMSprop")
OPTIMIZERS.add("heavy_ball", HeavyBall, "GD with heavy-ball momentum (Kunstner et al. 2023, Alg. 1)")
OPTIMIZERS.add("sign", SignDescent, "sign descent with heavy-ball momentum")
OPTIMIZERS.add("normalized_gd", NormalizedGD, "normalized GD with heavy-ball momentum")
OPTIMIZERS.add("normalized_sgd", NormalizedSGD, "per-tensor normalized SGD (Pan & Li 2022, Alg. 2)")
OPTIMIZERS.add("adafactor", Adafactor, "Adafactor (Pan & Li 2022, Alg. 3-4)")
OPTIMIZERS.add("delta_sgdm", DeltaSGDM, "SGDM in Tran et al.'s Δ form")

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
    "StabilityThreshold",
    "coordinate_clip",
    "diagonal_preconditioner",
    "learning_rate",
    "momentum_vector",
    "set_learning_rate",
    "stability_threshold",
    "topk_threshold",
    "update_rule",
]
