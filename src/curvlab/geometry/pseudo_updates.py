"""Pseudo-update steps (definitions §3; Pan & Li 2022, App. A.3).

Shadow optimizers see the *same* gradients as the real run: at x_t each one's would-be update u is
computed from its own state and the real g_t, then its state advances as if it had stepped, while
the real trajectory goes on unchanged. Comparing each u's directional sharpness at the same x_t
shows how the optimizers' directions differ on one geometry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from curvlab.core.objective import Objective
from curvlab.core.params import split_flat
from curvlab.errors import InputError
from curvlab.geometry.directional import directional_sharpnesses, gradient_correlation
from curvlab.optim import Adafactor, CoordinateClip, HeavyBall, NormalizedSGD, SignDescent

OptimizerFactory = Callable[[list[Tensor]], Any]


def default_shadows() -> dict[str, OptimizerFactory]:
    """The optimizers of Pan & Li 2022, Tables 3–6 (momentum defaults; lr 1 — sharpness is scale-free)."""

    def sgd(ps: list[Tensor]) -> HeavyBall:
        return HeavyBall(ps, lr=1.0, momentum=0.9, dampening=True)

    return {
        "sgd": sgd,
        "sgd_clip": lambda ps: CoordinateClip(sgd(ps), percent=5),
        "normalized_sgd": lambda ps: NormalizedSGD(ps, lr=1.0, momentum=0.9),
        "normalized_sgd_clip": lambda ps: CoordinateClip(NormalizedSGD(ps, lr=1.0, momentum=0.9), percent=5),
        "adam": lambda ps: torch.optim.Adam(ps, lr=1.0),
        "adafactor": lambda ps: Adafactor(ps, lr=1.0),
        "adafactor_clip": lambda ps: Adafactor(ps, lr=1.0, clip_percent=5),
        "sign": lambda ps: SignDescent(ps, lr=1.0, momentum=0.9),
    }


class PseudoUpdates:
    """Shadow optimizer states fed the real gradients.

    ``shapes`` are the parameter shapes (in the Objective's order). Call :meth:`update` with x_t and
    g_t (flat) at every training step; it returns each shadow's would-be update direction (flat).
    """

    def __init__(
        self,
        shapes: Iterable[torch.Size],
        shadows: dict[str, OptimizerFactory] | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.shapes = [torch.Size(s) for s in shapes]
        self.params = [torch.zeros(s, dtype=dtype, device=device, requires_grad=True) for s in self.shapes]
        factories = default_shadows() if shadows is None else shadows
        if not factories:
            raise InputError("shadows: expected at least one optimizer factory")
        self.optimizers = {name: make(self.params) for name, make in factories.items()}

    def update(self, x: Tensor, g: Tensor) -> dict[str, Tensor]:
        """Each shadow's update u = x' − x at x for gradient g; advances every shadow state once."""
        xs, gs = self._split(x), self._split(g)
        updates = {}
        for name, opt in self.optimizers.items():
            with torch.no_grad():
                for p, xi, gi in zip(self.params, xs, gs):
                    p.copy_(xi)
                    p.grad = gi.clone()
            opt.step()
            with torch.no_grad():
                updates[name] = torch.cat([(p - xi).reshape(-1) for p, xi in zip(self.params, xs)])
        return updates

    def _split(self, flat: Tensor) -> list[Tensor]:
        return split_flat(flat.detach(), self.shapes)


def compare_directions(
    objective: Objective, updates: dict[str, Tensor], reference: str = "sgd", at: Tensor | None = None
) -> dict[str, dict[str, float]]:
    """Directional sharpness, gradient correlation and the sharpness ratio to ``reference`` for each
    nonzero direction, all at the Objective's current point or at ``at`` (one gradient graph per chunk
    serves the gradient and every direction: :func:`directional_sharpnesses`)."""
    grad, sharpness = directional_sharpnesses(objective, updates, at)
    out = {
        name: {
            "directional_sharpness": value,
            "gradient_correlation": gradient_correlation(objective, updates[name], grad),
        }
        for name, value in sharpness.items()
    }
    if reference in out:
        base = out[reference]["directional_sharpness"]
        for values in out.values():
            values["ratio_to_" + reference] = values["directional_sharpness"] / base if base != 0 else float("nan")
    return out
