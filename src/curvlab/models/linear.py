"""Linear and logistic regression."""

from __future__ import annotations

from torch import nn


def linear(in_features: int, out_features: int, bias: bool = True) -> nn.Sequential:
    """x ↦ Wx + b on flattened inputs: linear regression with squared loss, logistic (softmax)
    regression with cross-entropy."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, out_features, bias=bias))
