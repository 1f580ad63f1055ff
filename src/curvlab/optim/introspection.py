"""Everything curvlab reads from an optimizer, in one module (definitions §2, §6).

The measurements that depend on the optimizer in use ask here, never by their own ``isinstance`` chains:

- :func:`learning_rate`: the η of the last step. The optimizer's ``param_groups`` own it; schedules and
  tuners write it there.
- :func:`update_rule`: the optimizer whose update rule applies — through wrappers that only choose η (the
  tuners), not through wrappers that change the direction (clipping, random scaling).
- :func:`momentum_vector`: the momentum it keeps (``momentum_buffer``, ``exp_avg`` or ``delta``).
- :func:`diagonal_preconditioner`: P of an adaptive optimizer, read from its state (Adam/AdamW:
  (1 − β₁ᵗ)(√v̂_t + ε) with v̂_t = v_t / (1 − β₂ᵗ), so that Adam's step is x −= η P⁻¹ m_t with m_t its
  uncorrected first moment, preconditioned heavy-ball momentum as Cohen et al. 2022 write it; RMSprop: √v_t + ε;
  curvlab's Adafactor: √V̂_t).
- :func:`stability_threshold`: where GD-like dynamics on a quadratic turn unstable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor

from curvlab.errors import InputError, InputTypeError
from curvlab.optim.adafactor import Adafactor, factored_rsqrt
from curvlab.optim.heavy_ball import HeavyBall
from curvlab.optim.random_scaling import DeltaSGDM
from curvlab.optim.wrapper import OptimizerWrapper

MOMENTUM_KEYS = ("momentum_buffer", "exp_avg", "delta")  # torch SGD / curvlab heavy-ball, Adam, DeltaSGDM


def learning_rate(optimizer: Any) -> float:
    """The learning rate of the first param group (a tuner writes its chosen η there)."""
    return float(optimizer.param_groups[0]["lr"])


def set_learning_rate(optimizer: Any, lr: float) -> None:
    """Write ``lr`` into every param group: the one way schedules and tuners change η."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def update_rule(optimizer: Any) -> Any:
    """The optimizer whose update rule applies: a tuner's base optimizer (at the tuner's η), else itself."""
    while isinstance(optimizer, OptimizerWrapper) and optimizer.chooses_lr_only:
        optimizer = optimizer.optimizer
    return optimizer


def innermost(optimizer: Any) -> Any:
    """The torch optimizer under every curvlab wrapper (they share its param groups)."""
    while isinstance(optimizer, OptimizerWrapper):
        optimizer = optimizer.optimizer
    return optimizer


def momentum_vector(optimizer: Any, params: list[Tensor]) -> Tensor | None:
    """The momentum the optimizer keeps for ``params``, flat in their order; None if it keeps none (yet)."""
    state = getattr(optimizer, "state", {})
    parts = []
    for p in params:
        s = state.get(p, {})
        buf = next((s[k] for k in MOMENTUM_KEYS if s.get(k) is not None), None)
        if buf is None:
            return None
        parts.append(buf.reshape(-1))
    return torch.cat(parts) if parts else None


def diagonal_preconditioner(optimizer: Any, params: list[Tensor] | None = None) -> list[Tensor]:
    """P's diagonal for each of ``params`` (default: every parameter of the optimizer), in order."""
    inner = getattr(optimizer, "optimizer", optimizer)  # look through curvlab's wrappers
    groups = {id(p): g for g in inner.param_groups for p in g["params"]}
    params = params if params is not None else [p for g in inner.param_groups for p in g["params"]]
    out = []
    for p in params:
        if id(p) not in groups:
            raise InputError("params: a parameter is not handled by this optimizer")
        state, group = inner.state.get(p, {}), groups[id(p)]
        if isinstance(inner, (torch.optim.Adam, torch.optim.AdamW)):
            out.append(_adam(state, group, inner))
        elif isinstance(inner, torch.optim.RMSprop):
            out.append(_state_or_fail(state, "square_avg", inner).sqrt() + group["eps"])
        elif isinstance(inner, Adafactor):
            out.append(_adafactor(p, state, inner))
        else:
            raise InputTypeError(
                f"optimizer: {type(inner).__name__} keeps no diagonal second-moment preconditioner; "
                "supported: Adam, AdamW, RMSprop, curvlab.optim.Adafactor"
            )
    return out


def _state_or_fail(state: dict[str, Any], key: str, optimizer: Any) -> Tensor:
    if key not in state:
        raise InputError(f"optimizer: {type(optimizer).__name__} has taken no step yet, so it has no preconditioner")
    return cast(Tensor, state[key])


def _adam(state: dict[str, Any], group: dict[str, Any], optimizer: Any) -> Tensor:
    v = _state_or_fail(state, "exp_avg_sq", optimizer)
    if group.get("amsgrad"):
        v = state["max_exp_avg_sq"]
    step = float(state["step"])
    beta1, beta2 = group["betas"]
    return cast(Tensor, ((v / (1 - beta2**step)).sqrt() + group["eps"]) * (1 - beta1**step))


def _adafactor(p: Tensor, state: dict[str, Any], optimizer: Any) -> Tensor:
    if "row" in state:
        return factored_rsqrt(state["row"], state["col"]).reciprocal().reshape(p.shape)
    return _state_or_fail(state, "v", optimizer).sqrt()


@dataclass
class StabilityThreshold:
    """Where GD-like dynamics on a quadratic of curvature λ (or preconditioned curvature) turn unstable."""

    kind: str  # "gd", "heavy_ball", "nesterov", "adam_preconditioned", or "none"
    lr: float
    threshold: float  # the λ above which the method diverges on a quadratic (nan when none)
    preconditioned: bool

    def report(self, lam: float) -> dict[str, float]:
        """The threshold and λ / threshold (the edge is at 1 for every optimizer); for plain GD, whose edge is
        η·λ = 2, also η·λ and η·λ − 2 (Roulet et al.'s normalised y, definitions §2). With momentum or Adam
        the edge is not at η·λ = 2, so those two are not written."""
        out = {"threshold": self.threshold, "ratio_to_threshold": lam / self.threshold}
        if self.kind == "gd":
            out |= {"lr_times_sharpness": self.lr * lam, "lr_times_sharpness_minus_2": self.lr * lam - 2.0}
        return out


def two_step_factor(lr_prev: float, lr: float, lam: float) -> float:
    """|(1 − η_{t−1}λ)(1 − η_t λ)|: how much two consecutive GD steps at η_{t−1} then η_t amplify the component along
    an eigenvector of eigenvalue λ of a quadratic. Above 1 the pair diverges; at constant η it is (1 − ηλ)², whose
    edge (1) is η·λ = 2. The edge for a rule whose η alternates every step, where η·λ alone reads whichever half of
    the cycle it is sampled on (definitions §2)."""
    return abs((1.0 - lr_prev * lam) * (1.0 - lr * lam))


def stability_threshold(optimizer: Any, lr: float | None = None) -> StabilityThreshold:
    """The stability threshold of the optimizer in use (definitions §2), from its first param group.

    - GD: 2/η.  Heavy-ball momentum β, PyTorch form (b = βb + g, x −= ηb): (2 + 2β)/η; with
      dampening d (b = βb + (1−d)g) the effective step is η(1−d).
    - Nesterov, PyTorch form (x −= η(g + βb)): (2 + 2β)/(η(1 + 2β)) (where an eigenvalue of the 2×2
      iteration matrix on a quadratic crosses −1).
    - curvlab HeavyBall("gd") likewise (dampening=True: effective step η(1−β)); DeltaSGDM is PyTorch
      SGD with step βη: (2 + 2β)/(βη).
    - Adam/AdamW: on the *preconditioned* sharpness, (2 + 2β₁)/((1 − β₁)η) (= 38/η at β₁ = 0.9).
    Sign descent, normalized methods, clipping and random-scaling wrappers have no such linear
    threshold: kind "none". A tuner is looked through to its base optimizer at the tuner's η;
    ``lr`` overrides the learning rate.
    """
    lr = learning_rate(optimizer) if lr is None else float(lr)
    optimizer = update_rule(optimizer)
    group = optimizer.param_groups[0]
    if lr > 0:
        return _linear_threshold(optimizer, group, lr)
    at_one = _linear_threshold(optimizer, group, 1.0)  # η = 0 (the first step of a warmup): nothing can diverge
    return StabilityThreshold(at_one.kind, lr, math.inf if at_one.kind != "none" else math.nan, at_one.preconditioned)


def _linear_threshold(optimizer: Any, group: dict[str, Any], lr: float) -> StabilityThreshold:
    """The threshold of the update rule ``optimizer`` at learning rate ``lr`` > 0."""
    none = StabilityThreshold("none", lr, float("nan"), False)
    if isinstance(optimizer, OptimizerWrapper):
        return none
    if isinstance(optimizer, torch.optim.SGD):
        beta = float(group.get("momentum", 0.0))
        if group.get("nesterov"):
            return StabilityThreshold("nesterov", lr, (2 + 2 * beta) / (lr * (1 + 2 * beta)), False)
        effective = lr * (1 - float(group.get("dampening", 0.0))) if beta else lr
        return StabilityThreshold("heavy_ball" if beta else "gd", lr, (2 + 2 * beta) / effective, False)
    if isinstance(optimizer, HeavyBall) and optimizer.direction == "gd":
        beta = float(group["momentum"])
        effective = lr * (1 - beta) if group["dampening"] else lr
        return StabilityThreshold("heavy_ball" if beta else "gd", lr, (2 + 2 * beta) / effective, False)
    if isinstance(optimizer, DeltaSGDM):
        beta = float(group["momentum"])
        return StabilityThreshold("heavy_ball", lr, (2 + 2 * beta) / (beta * lr), False)
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        beta1 = float(group["betas"][0])
        return StabilityThreshold("adam_preconditioned", lr, (2 + 2 * beta1) / ((1 - beta1) * lr), True)
    return none
