"""F v = (1/N) Σᵢ ∇ℓᵢ (∇ℓᵢᵀ v): the Fisher of the Objective, empirical or Monte Carlo.

ℓᵢ is the loss of example i alone (``loss_fn`` on a batch of one, by ``torch.func.vmap`` over the
chunk's outputs, so the model runs once per chunk). Matrix-free: with L the vector of per-example
losses and J_L its Jacobian, F v = J_Lᵀ (J_L v) / n, both products in reverse mode (never the n × P
matrix of per-example gradients). The empirical Fisher uses the data's targets; the Monte Carlo
Fisher targets drawn from the model's predictive distribution — categorical for cross-entropy,
Gaussian for squared error with the variance that makes E[F] the Gauss–Newton matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from curvlab import losses
from curvlab.checks import check_int, check_seed
from curvlab.core.curvature import CurvatureOperator, checked_loss
from curvlab.core.ggn import Linearization, linearize
from curvlab.errors import InputError, InputTypeError

FISHER_KINDS = ("empirical", "mc")
LIKELIHOODS = ("auto", "categorical", "gaussian")
CATEGORICAL_LOSSES = (losses.cross_entropy, F.cross_entropy)
GAUSSIAN_LOSSES = (losses.mse, losses.half_mse, F.mse_loss)


class FisherOperator(CurvatureOperator):
    """The empirical or Monte Carlo Fisher at a fixed point (see :meth:`Objective.fisher`)."""

    count_key = method = "fisher"
    quantity = "Fisher-vector product"

    def __init__(self, objective: Any, kind: str, n_samples: int, seed: int, likelihood: str, cache: bool | str):
        if kind not in FISHER_KINDS:
            raise InputError(f"kind: expected one of {FISHER_KINDS}, got {kind!r}")
        check_int(n_samples, "n_samples")
        check_seed(seed)
        if likelihood not in LIKELIHOODS:
            raise InputError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")
        super().__init__(objective, cache)
        self.kind, self.n_samples, self.seed = kind, n_samples, seed
        self.likelihood = _likelihood_of(objective.loss_fn, likelihood) if kind == "mc" else None

    def chunk_state(self, index: int, chunk: Any) -> Linearization:
        lin = linearize(self.objective, chunk)
        loss_fn = self.objective.loss_fn
        with torch.enable_grad():
            if self.kind == "empirical":
                per_example = per_example_losses(loss_fn, lin.outputs, chunk.targets)
            else:
                generator = _generator(self.seed, index, lin.outputs.device)
                targets = sample_targets(
                    loss_fn, self.likelihood, lin.outputs, chunk.targets, self.n_samples, generator
                )
                per_sample = torch.func.vmap(lambda t: per_example_losses(loss_fn, lin.outputs, t))
                per_example = per_sample(targets)
        return Linearization(lin.leaves, checked_loss(per_example.reshape(-1), self.quantity))

    def chunk_product(self, state: Linearization, vs: Sequence[Tensor]) -> list[Tensor]:
        directional = state.jvp(vs)  # ∇ℓᵢᵀ v for every example (and sample)
        return [g / state.outputs.numel() for g in state.vjp(directional)]


def per_example_losses(loss_fn: Callable, outputs: Tensor, targets: Any) -> Tensor:
    """The vector of ``loss_fn`` on each example alone (a batch of one), from the chunk's outputs."""
    if not isinstance(targets, Tensor):
        raise InputTypeError(
            f"fisher: the targets must be a tensor to split them per example, got {type(targets).__name__}"
        )
    one = lambda o, t: loss_fn(o.unsqueeze(0), t.unsqueeze(0)).reshape(())  # noqa: E731
    return torch.func.vmap(one)(outputs, targets)


def sample_targets(
    loss_fn: Callable, likelihood: str, outputs: Tensor, targets: Tensor, n_samples: int, generator: torch.Generator
) -> Tensor:
    """``n_samples`` targets per example from the model's predictive distribution (leading dim = sample)."""
    outputs = outputs.detach()
    if likelihood == "categorical":
        probs = torch.softmax(outputs.reshape(-1, outputs.shape[-1]).double(), dim=-1)
        draws = torch.multinomial(probs, n_samples, replacement=True, generator=generator)
        return draws.T.reshape(n_samples, *outputs.shape[:-1]).to(
            targets.dtype if not targets.is_floating_point() else torch.long
        )
    scale = gaussian_scale(loss_fn, outputs, targets)
    noise = torch.randn((n_samples, *outputs.shape), generator=generator, dtype=outputs.dtype, device=outputs.device)
    return outputs + scale * noise


def gaussian_scale(loss_fn: Callable, outputs: Tensor, targets: Tensor) -> float:
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
    return h**-0.5


def _likelihood_of(loss_fn: Callable, likelihood: str) -> str:
    if likelihood != "auto":
        return likelihood
    if loss_fn in CATEGORICAL_LOSSES or isinstance(loss_fn, nn.CrossEntropyLoss):
        return "categorical"
    if loss_fn in GAUSSIAN_LOSSES or isinstance(loss_fn, nn.MSELoss):
        return "gaussian"
    raise InputError(
        f"likelihood: cannot tell the predictive distribution of loss_fn {getattr(loss_fn, '__name__', loss_fn)!r}; "
        "pass likelihood='categorical' (cross-entropy on logits) or 'gaussian' (squared error)"
    )


def _generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + index)
    return generator
