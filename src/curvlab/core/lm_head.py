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
from torch import nn

from curvlab.errors import InputError

FUSED_FROM = 0.5  # a chunk's logits (tokens × vocabulary) per parameter of the model, from which "auto" fuses
ARCHITECTURES = ("GPT2LMHeadModel", "LlamaForCausalLM")  # whose own loss the fused head is known to reproduce
INPUTS = frozenset({"input_ids", "labels", "attention_mask"})  # the arguments the fused head takes
AGREEMENT = 100  # × the dtype's machine epsilon (relative): how closely the two losses must agree at the check
CHOICES = (True, False, "auto")


def check_choice(fused_head: Any, has_loss_fn: bool, engine: str) -> None:
    """Refuse a ``fused_head`` that is not a choice, or ``True`` where it can never apply."""
    if fused_head not in CHOICES or not isinstance(fused_head, (bool, str)):
        raise InputError(f"fused_head: expected True, False or 'auto', got {fused_head!r}")
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


def fused_module(model: nn.Module) -> nn.Module:
    """The fused head around ``model`` (its parameters are the model's, under the prefix ``model.``)."""
    from curvlab.models.huggingface import FusedHeadLoss  # the model layer's class; imported when first needed

    return FusedHeadLoss(model)


def agree(own: torch.Tensor, fused: torch.Tensor) -> bool:
    """Whether the model's own loss and the fused one are the same number to rounding."""
    eps = torch.finfo(own.dtype).eps
    return abs(float(fused) - float(own)) <= AGREEMENT * eps * max(abs(float(own)), 1.0)
