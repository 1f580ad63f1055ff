"""``fused_head``: with the model's own loss (``loss_fn=None``), a Hugging Face causal LM's loss computed with its head
and cross-entropy fused (:class:`curvlab.models.FusedHeadLoss`: the same loss, gradient and Hessian products, with no
tokens × vocabulary logits kept) instead of through its logits.

``"auto"`` (the default) fuses where that was measured to pay. bench/bench_lm_head.py measures both on GPT-2 small
at three batches (docs/benchmarks.md, "The fused language-model head": a product's peak memory and time, and where
the fused head pays); what it saves grows with a chunk's logits (tokens × vocabulary) against the rest of a product,
which grows with the model, so "auto" fuses where a chunk's logits have at least ``FUSED_FROM`` entries per parameter
of the model (the bench prints that figure for each batch beside its verdict, and checks that this rule agrees with
every verdict). It does so only
- for the architectures whose own loss the fused head reproduces (``ARCHITECTURES``: the logits are the output
  embedding applied to the last hidden state, no scaling or capping; the mean cross-entropy of each position against
  the next label, -100 ignored);
- on batches of ``input_ids``, ``labels`` and optionally ``attention_mask`` (what the fused head takes);
- with the exact (double backward) or finite-difference engine, without dropout, on one process's whole parameters;
- after checking, once, that the two losses agree to rounding at the first chunk evaluated (two forward passes).
Everywhere else the loss goes through the logits. ``True`` asks for the fused head wherever the loss is the model's
own (an error where it cannot be used), ``False`` never uses it. ``Objective.loss_head`` says which one is used.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from curvlab.errors import InputError
from curvlab.losses import IGNORE_INDEX, linear_cross_entropy

FUSED_FROM = 0.5  # a chunk's logits (tokens × vocabulary) per parameter of the model, from which "auto" fuses
ARCHITECTURES = ("GPT2LMHeadModel", "LlamaForCausalLM")  # whose own loss the fused head is known to reproduce
INPUTS = frozenset({"input_ids", "labels", "attention_mask"})  # the arguments the fused head takes
AGREEMENT = 100  # × the dtype's machine epsilon (relative): how closely the two losses must agree at the check
CHOICES = (True, False, "auto")


class FusedHeadLoss(nn.Module):
    """A Hugging Face causal LM as ``(input_ids, labels) -> loss``: the loss the model computes itself with
    ``labels=`` (each position predicts the next label; -100 ignored; the mean over the rest), with its head and
    cross-entropy fused (:func:`curvlab.losses.linear_cross_entropy`), so that neither the loss, nor its gradient's
    graph, nor a Hessian product through that graph keeps the (tokens × vocabulary) logits. For
    ``curvlab.Objective(FusedHeadLoss(model), None, [{"input_ids": ids, "labels": ids}, ...])``: the same loss,
    gradient and Hessian products as ``Objective(model, None, ...)`` (tests/test_linear_cross_entropy.py) at less
    memory (docs/benchmarks.md, bench_lm_head, says how much, and when it pays). Hessian products through the
    reverse (default) or finite-difference engine; the Gauss–Newton and Fisher need the logits (use the model itself).
    The model's logits must be its output embedding (``get_output_embeddings()``, a Linear without bias) applied to
    its base model's last hidden state, as in GPT-2 and Llama (not for models that scale or cap their logits)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        get_head = getattr(model, "get_output_embeddings", None)
        head = get_head() if callable(get_head) else None
        if not isinstance(head, nn.Linear) or head.bias is not None or not hasattr(model, "base_model"):
            raise InputError(
                f"model: expected a Hugging Face causal LM whose output embedding is an nn.Linear without bias "
                f"(GPT2LMHeadModel, LlamaForCausalLM), got {type(model).__name__} with head {type(head).__name__}"
            )
        self.model: Any = model

    def forward(self, input_ids: Tensor, labels: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]  # position t predicts label t + 1
        return linear_cross_entropy(hidden, self.model.get_output_embeddings().weight, targets)


def check_choice(fused_head: Any, has_loss_fn: bool, engine: str, sharded: bool) -> None:
    """Refuse a ``fused_head`` that is not a choice, or ``True`` where it can never apply."""
    if fused_head not in CHOICES or not isinstance(fused_head, (bool, str)):
        raise InputError(f"fused_head: expected True, False or 'auto', got {fused_head!r}")
    if fused_head is True and sharded:
        raise InputError(
            "fused_head: True is not available on an FSDP2-sharded model (its loss goes through the logits)"
        )
    if fused_head is True and has_loss_fn:
        raise InputError("fused_head: True fuses the model's own loss head; with a loss_fn given there is none to fuse")
    if fused_head is True and engine in ("forward", "compile"):
        raise InputError(
            f"fused_head: True needs hvp_engine 'auto', 'reverse' or 'finite_difference', got {engine!r} "
            "(the fused head has no forward-mode derivative)"
        )


def logits_per_parameter(model: nn.Module, tokens: int) -> float:
    """A chunk's logits (``tokens`` × the vocabulary) per parameter of ``model``."""
    head = model.get_output_embeddings()  # type: ignore[operator]
    parameters = sum(p.numel() for p in model.parameters())
    return float(tokens * head.out_features / max(parameters, 1))


def why_not(model: nn.Module, chunk: Any, dropout: bool, engine: str, sharded: bool) -> str | None:
    """Why the fused head cannot replace ``model``'s own loss on ``chunk``; None where it can."""
    if type(model).__name__ not in ARCHITECTURES:
        return f"{type(model).__name__} is not one of {ARCHITECTURES}"
    head = model.get_output_embeddings()  # type: ignore[operator]
    if not isinstance(head, nn.Linear) or head.bias is not None:
        return f"its output embedding ({type(head).__name__}) is not a Linear layer without a bias"
    if chunk.args or not set(chunk.kwargs) <= INPUTS or not {"input_ids", "labels"} <= set(chunk.kwargs):
        given = sorted(chunk.kwargs) + (["positional arguments"] if chunk.args else [])
        return f"the batch has {given}; the fused head takes input_ids, labels and attention_mask"
    if dropout:
        return "dropout=True (the agreement check would draw other masks)"
    if engine in ("forward", "compile"):
        return f"hvp_engine={engine!r} (the fused head has no forward-mode derivative)"
    if sharded:
        return "the parameters are sharded"
    return None


def agree(own: torch.Tensor, fused: torch.Tensor) -> bool:
    """Whether the model's own loss and the fused one are the same number to rounding."""
    eps = torch.finfo(own.dtype).eps
    return abs(float(fused) - float(own)) <= AGREEMENT * eps * max(abs(float(own)), 1.0)
