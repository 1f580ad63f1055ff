"""Multi-layer perceptrons with a choice of activation and optional LayerNorm."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from curvlab.errors import InputError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU, "silu": nn.SiLU}


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    activation: str = "tanh",
    layernorm: bool = False,
) -> nn.Sequential:
    """``in → hidden[0] → … → out`` with ``activation`` (and LayerNorm before it) after each hidden layer."""
    if activation not in ACTIVATIONS:
        raise InputError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if layernorm:
            layers.append(nn.LayerNorm(h))
        layers.append(ACTIVATIONS[activation]())
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)
