"""The predictive distribution a loss is the negative log-likelihood of, for the Monte Carlo Fisher.

The MC Fisher draws targets from the model's predictive distribution and averages outer products of the loss's
gradients at them; its expectation is the Fisher, which is the Gauss–Newton matrix of the same loss where the loss
is on the distribution's natural parameters (logits, the Gaussian's mean; definitions §9):

- ``categorical``: cross-entropy on logits. PyTorch's ``F.cross_entropy`` and ``nn.CrossEntropyLoss`` read the
  classes on axis 1 of the outputs ((N, C) or (N, C, d1, ...)); curvlab's ``losses.cross_entropy`` and any other
  loss given ``likelihood="categorical"`` on the last axis. Positions whose target is the ignore index (-100, or the
  module's ``ignore_index``) stay ignored in every draw.
- ``bernoulli``: binary cross-entropy, on logits (``BCEWithLogitsLoss``) or on probabilities (``BCELoss``: not the
  natural parameter, so its Gauss–Newton matrix depends on the targets and differs from the Fisher; the Fisher is
  the Gauss–Newton matrix of the same model on logits).
- ``gaussian``: squared error, with the variance that makes the expectation the Gauss–Newton matrix.

A loss averages several likelihood terms per example (the tokens of a sequence, the outputs of a multi-output
binary classifier): for a mean of K terms, E[∇ℓ ∇ℓᵀ] is the Gauss–Newton matrix divided by K. :meth:`terms` gives
each example's K (the Gaussian's variance already absorbs it: K = 1), by which the MC Fisher weights it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from curvlab import losses
from curvlab.errors import InputError

LIKELIHOODS = ("auto", "categorical", "bernoulli", "gaussian")
IGNORE_INDEX = -100  # PyTorch's cross-entropy default, and the Hugging Face labels' padding
TORCH_CROSS_ENTROPY = (F.cross_entropy,)
CURVLAB_CROSS_ENTROPY = (losses.cross_entropy,)
BERNOULLI_ON_LOGITS = (F.binary_cross_entropy_with_logits,)
BERNOULLI_ON_PROBABILITIES = (F.binary_cross_entropy,)
GAUSSIAN_LOSSES = (losses.mse, losses.half_mse, F.mse_loss)


@dataclass(frozen=True)
class Likelihood:
    """A predictive distribution over targets given the model's outputs."""

    name: str
    loss_fn: Any
    class_axis: int = -1  # categorical: the outputs' class axis
    ignore_index: int = IGNORE_INDEX  # categorical: targets that count for nothing
    on_probabilities: bool = False  # bernoulli: the outputs are probabilities, not logits

    def sample(self, outputs: Tensor, targets: Tensor, n_samples: int, generator: torch.Generator) -> Tensor:
        """``n_samples`` targets per example from the predictive distribution at ``outputs`` (leading dim =
        sample)."""
        outputs = outputs.detach()
        if self.name == "categorical":
            return self._categorical(outputs, targets, n_samples, generator)
        if self.name == "bernoulli":
            p = outputs.double() if self.on_probabilities else torch.sigmoid(outputs.double())
            p = p.clamp(0.0, 1.0).expand(n_samples, *outputs.shape)
            return torch.bernoulli(p, generator=generator).to(outputs.dtype)
        scale = gaussian_scale(self.loss_fn, outputs, targets)
        noise = torch.randn(
            (n_samples, *outputs.shape), generator=generator, dtype=outputs.dtype, device=outputs.device
        )
        return outputs + scale * noise

    def _categorical(self, outputs: Tensor, targets: Tensor, n_samples: int, generator: torch.Generator) -> Tensor:
        axis = self.class_axis if outputs.dim() > 1 else -1
        logits = outputs.movedim(axis, -1)
        probs = torch.softmax(logits.reshape(-1, logits.shape[-1]).double(), dim=-1)
        draws = torch.multinomial(probs, n_samples, replacement=True, generator=generator)
        draws = draws.T.reshape(n_samples, *logits.shape[:-1])
        if not targets.is_floating_point() and targets.numel() == draws[0].numel():
            ignored = targets.reshape(draws.shape[1:]) == self.ignore_index
            draws = torch.where(ignored, torch.full_like(draws, self.ignore_index), draws)
        return draws.to(targets.dtype if not targets.is_floating_point() else torch.long)

    def terms(self, sampled: Tensor) -> Tensor:
        """The number of likelihood terms each example's loss averages (a float per example), from one draw of
        targets: the positions not ignored for the categorical, the outputs per example for the Bernoulli, 1 for the
        Gaussian."""
        per_example = sampled.reshape(sampled.shape[0], -1)
        if self.name == "categorical":
            return (per_example != self.ignore_index).sum(dim=1).to(torch.float64)
        if self.name == "bernoulli":
            return torch.full((sampled.shape[0],), float(per_example.shape[1]), dtype=torch.float64)
        return torch.ones(sampled.shape[0], dtype=torch.float64)


def likelihood_of(loss_fn: Any, likelihood: str) -> Likelihood:
    """The predictive distribution of ``loss_fn``: named by ``likelihood``, or told from the loss (``"auto"``)."""
    if likelihood not in LIKELIHOODS:
        raise InputError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")
    told = _told_from(loss_fn)
    if likelihood == "auto":
        if told is None:
            raise InputError(
                f"likelihood: cannot tell the predictive distribution of loss_fn {_name(loss_fn)!r}; pass "
                "likelihood='categorical' (cross-entropy on logits, classes on the last axis), 'bernoulli' (binary "
                "cross-entropy on logits) or 'gaussian' (squared error)"
            )
        _refuse_weighted(loss_fn)
        return told
    if told is not None and told.name == likelihood:
        return told  # keeps what the loss says: its class axis, ignore index, logits or probabilities
    return Likelihood(likelihood, loss_fn)


def _told_from(loss_fn: Any) -> Likelihood | None:
    if loss_fn in CURVLAB_CROSS_ENTROPY:
        return Likelihood("categorical", loss_fn, class_axis=-1)
    if loss_fn in TORCH_CROSS_ENTROPY:
        return Likelihood("categorical", loss_fn, class_axis=1)
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        return Likelihood("categorical", loss_fn, class_axis=1, ignore_index=loss_fn.ignore_index)
    if loss_fn in BERNOULLI_ON_LOGITS or isinstance(loss_fn, nn.BCEWithLogitsLoss):
        return Likelihood("bernoulli", loss_fn)
    if loss_fn in BERNOULLI_ON_PROBABILITIES or isinstance(loss_fn, nn.BCELoss):
        return Likelihood("bernoulli", loss_fn, on_probabilities=True)
    if loss_fn in GAUSSIAN_LOSSES or isinstance(loss_fn, nn.MSELoss):
        return Likelihood("gaussian", loss_fn)
    return None


def _refuse_weighted(loss_fn: Any) -> None:
    """A loss module with class weights, positive-class weights or label smoothing is not the negative
    log-likelihood of its distribution: the MC Fisher's expectation would not be its Gauss–Newton matrix."""
    settings = [f"{name}=<tensor>" for name in ("weight", "pos_weight") if getattr(loss_fn, name, None) is not None]
    if getattr(loss_fn, "label_smoothing", 0.0):
        settings.append(f"label_smoothing={loss_fn.label_smoothing!r}")
    if settings:
        raise InputError(
            f"likelihood: loss_fn {_name(loss_fn)!r} with {', '.join(settings)} is not the negative log-likelihood of "
            "its distribution, so the Monte Carlo Fisher's expectation would not be its Gauss–Newton matrix; pass "
            "likelihood= explicitly to sample that distribution anyway"
        )


def gaussian_scale(loss_fn: Any, outputs: Tensor, targets: Tensor) -> float:
    """σ with E[∇ℓ ∇ℓᵀ] = ∇²ℓ for ℓ(o) = h/2 ‖o − y‖² per example: σ² = 1/h, h read off the loss."""
    o = outputs[:1].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(loss_fn(o, targets[:1]), o, create_graph=True)
        (h_row,) = torch.autograd.grad(g.reshape(-1)[0], o)
    h = float(h_row.reshape(-1)[0])
    if not h > 0:
        raise InputError(
            "likelihood='gaussian': loss_fn is not a squared error in the outputs (its curvature is not positive)"
        )
    return float(h**-0.5)


def _name(loss_fn: Any) -> str:
    return getattr(loss_fn, "__name__", None) or type(loss_fn).__name__
