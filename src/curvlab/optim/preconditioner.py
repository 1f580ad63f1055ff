"""The diagonal preconditioner P of an adaptive optimizer, read from its state (definitions §2).

Adam/AdamW: P = diag(√v̂_t + ε) with v̂_t = v_t / (1 − β₂ᵗ);  RMSprop: P = diag(√v_t + ε);
curvlab's Adafactor: P = diag(√V̂_t) (its factored second moment). Used for preconditioned
sharpness λ_max(P^{-1/2} H P^{-1/2}) and the preconditioned edge rule.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from curvlab.errors import InputError, InputTypeError


def diagonal_preconditioner(optimizer: Any, params: list[Tensor] | None = None) -> list[Tensor]:
    """P's diagonal for each of ``params`` (default: every parameter of the optimizer), in order."""
    from curvlab.optim.adafactor import Adafactor

    inner = getattr(optimizer, "optimizer", optimizer)  # look through curvlab's wrappers
    groups = {id(p): g for g in inner.param_groups for p in g["params"]}
    params = params if params is not None else [p for g in inner.param_groups for p in g["params"]]
    out = []
    for p in params:
        if id(p) not in groups:
            raise InputError("params: a parameter is not handled by this optimizer")
        state, group = inner.state.get(p, {}), groups[id(p)]
        if isinstance(inner, (torch.optim.Adam, torch.optim.AdamW)):
            out.append(_adam(p, state, group))
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


def _state_or_fail(state: dict, key: str, optimizer: Any) -> Tensor:
    if key not in state:
        raise InputError(f"optimizer: {type(optimizer).__name__} has taken no step yet, so it has no preconditioner")
    return state[key]


def _adam(p: Tensor, state: dict, group: dict) -> Tensor:
    v = _state_or_fail(state, "exp_avg_sq", torch.optim.Adam)
    if group.get("amsgrad"):
        v = state["max_exp_avg_sq"]
    step = float(state["step"])
    beta2 = group["betas"][1]
    return (v / (1 - beta2**step)).sqrt() + group["eps"]


def _adafactor(p: Tensor, state: dict, optimizer: Any) -> Tensor:
    from curvlab.optim.adafactor import factored_rsqrt

    if "row" in state:
        return factored_rsqrt(state["row"], state["col"]).reciprocal().reshape(p.shape)
    return _state_or_fail(state, "v", optimizer).sqrt()
