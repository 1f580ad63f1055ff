"""Losses written so that every HVP engine can differentiate them twice (definitions §10)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error, mean over every entry, written out.

    ``F.mse_loss(reduction="mean")`` raises inside ``torch.func.jvp(torch.func.grad(...))`` in
    torch 2.13 (pytorch #123996); this form does not.
    """
    return ((outputs - targets.to(outputs.dtype).reshape(outputs.shape)) ** 2).mean()


def half_mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """½ · mean squared error (the least-squares convention, whose Hessian is XᵀX/n for a linear model)."""
    return 0.5 * mse(outputs, targets)


def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy; sequence outputs (B, T, V) are flattened to (B·T, V)."""
    if outputs.dim() > 2:
        outputs = outputs.reshape(-1, outputs.shape[-1])
        targets = targets.reshape(-1)
    return F.cross_entropy(outputs, targets)


def onehot_mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """½ · mean over examples of ‖outputs − onehot(targets)‖²: squared loss for classification, as
    Cohen et al. (2021, 2022) use for many edge-of-stability experiments (its curvature does not
    vanish as the loss goes to 0, unlike cross-entropy's)."""
    onehot = F.one_hot(targets.reshape(-1), outputs.shape[-1]).to(outputs.dtype)
    return 0.5 * ((outputs.reshape(-1, outputs.shape[-1]) - onehot) ** 2).sum(dim=-1).mean()
