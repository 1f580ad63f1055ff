"""F v = (1/N) Σᵢ ∇ℓᵢ (∇ℓᵢᵀ v): the Fisher of the Objective, empirical or Monte Carlo.

ℓᵢ is the loss of example i alone (``loss_fn`` on a batch of one, by ``torch.func.vmap`` over the
chunk's outputs, so the model runs once per chunk). Matrix-free: with L the vector of per-example
losses and J_L its Jacobian, F v = J_Lᵀ (J_L v) / n, both products in reverse mode (never the n × P
matrix of per-example gradients). The empirical Fisher uses the data's targets; the Monte Carlo
Fisher targets drawn from the model's predictive distribution (:mod:`curvlab.core.likelihood`), each example's
gradient weighted by the number of likelihood terms K its loss averages (tokens, binary outputs) and the sum
divided by Σ K, so that E[F] is the Fisher (the Gauss–Newton matrix for a loss on the distribution's natural
parameters: logits, a Gaussian's mean):

    F_MC v = (1 / (S Σᵢ Kᵢ)) Σₛ Σᵢ Kᵢ² ∇ℓᵢ(ŷₛ) (∇ℓᵢ(ŷₛ)ᵀ v).

Examples whose every term is ignored (all targets -100) count for nothing, as in the loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from curvlab.checks import check_int, check_seed
from curvlab.core.curvature import CurvatureOperator, checked_loss
from curvlab.core.ggn import Linearization, linearize
from curvlab.core.likelihood import LIKELIHOODS, Likelihood, likelihood_of
from curvlab.errors import InputError, InputTypeError

FISHER_KINDS = ("empirical", "mc")


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
        self.predictive = likelihood_of(objective.loss_fn, likelihood) if kind == "mc" else None
        self.likelihood = self.predictive.name if self.predictive else None

    def chunk_state(self, index: int, chunk: Any) -> tuple[Linearization, float]:
        """The per-example losses (each sample's, for the MC Fisher) with their graph, and the count they are
        averaged over."""
        lin = linearize(self.objective, chunk)
        loss_fn = self.objective.loss_fn
        with torch.enable_grad():
            if self.predictive is None:
                per_example = per_example_losses(loss_fn, lin.outputs, chunk.targets)
                count = float(per_example.numel())
            else:
                generator = _generator(self.seed, index, lin.outputs.device)
                per_example, count = weighted_sample_losses(
                    self.predictive, lin.outputs, chunk.targets, self.n_samples, generator
                )
        return Linearization(lin.leaves, checked_loss(per_example.reshape(-1), self.quantity)), count

    def chunk_product(self, state: tuple[Linearization, float], vs: Sequence[Tensor]) -> list[Tensor]:
        lin, count = state
        directional = lin.jvp(vs)  # ∇ℓᵢᵀ v for every example (and sample)
        return [g / count for g in lin.vjp(directional)]


def weighted_sample_losses(
    predictive: Likelihood, outputs: Tensor, targets: Tensor, n_samples: int, generator: torch.Generator
) -> tuple[Tensor, float]:
    """Kᵢ ℓᵢ(ŷₛ) for every sample s and every example i with Kᵢ > 0 likelihood terms, and S Σᵢ Kᵢ."""
    samples = predictive.sample(outputs, targets, n_samples, generator)
    terms = predictive.terms(samples[0]).to(outputs.device)
    kept = terms > 0
    if not bool(kept.any()):
        raise InputError("fisher: every target of this chunk is the ignore index: no likelihood term to sample")
    if not bool(kept.all()):  # an example whose every target is ignored: its loss is 0/0, and it counts for nothing
        outputs, samples, terms = outputs[kept], samples[:, kept], terms[kept]
    losses = torch.func.vmap(lambda t: per_example_losses(predictive.loss_fn, outputs, t))(samples)
    return losses * terms.to(losses.dtype), n_samples * float(terms.sum())


def per_example_losses(loss_fn: Callable[..., Tensor], outputs: Tensor, targets: Any) -> Tensor:
    """The vector of ``loss_fn`` on each example alone (a batch of one), from the chunk's outputs."""
    if not isinstance(targets, Tensor):
        raise InputTypeError(
            f"fisher: the targets must be a tensor to split them per example, got {type(targets).__name__}"
        )
    one = lambda o, t: loss_fn(o.unsqueeze(0), t.unsqueeze(0)).reshape(())  # noqa: E731
    return torch.func.vmap(one)(outputs, targets)


def _generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + index)
    return generator
