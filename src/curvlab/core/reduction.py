"""A loss given to the Objective must be the mean over the batch's examples.

The Objective averages the chunks' losses weighted by their sizes (definitions §1): with a sum-reduced loss,
F, its gradient and every curvature would grow with ``batch_size`` (the top Hessian eigenvalue 4× larger at
batch_size 16 than at 4), while the per-example Fisher stayed on the mean scale. So a loss is refused when it
says it sums (a loss module's or a ``functools.partial``'s ``reduction``), and otherwise once probed on the first
outputs it sees: two examples given twice must give the same loss as the two examples once (a sum gives twice).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import Tensor

from curvlab.errors import InputError

MEAN_REDUCTIONS = ("mean", "batchmean")  # batchmean: KLDivLoss's mean over examples
PROBE_RTOL = 1e-3  # a mean over examples repeats to rounding; a sum doubles


def declared_reduction(loss_fn: Any) -> str | None:
    """The reduction a loss module or a ``functools.partial`` of a loss function says it applies, or None."""
    if isinstance(loss_fn, functools.partial):
        return loss_fn.keywords.get("reduction")
    reduction = getattr(loss_fn, "reduction", None)
    return reduction if isinstance(reduction, str) else None


def refuse_declared_sum(loss_fn: Any) -> None:
    """An :class:`InputError` for a loss that says its reduction is not a mean over examples."""
    reduction = declared_reduction(loss_fn)
    if reduction is not None and reduction not in MEAN_REDUCTIONS:
        raise InputError(
            f"loss_fn: reduction={reduction!r}; curvlab measures the mean loss over the examples (the chunks are "
            "averaged by their sizes, so a sum would make every value depend on batch_size): use reduction='mean'"
        )


def repeat_factor(loss_fn: Any, outputs: Any, targets: Any) -> float | None:
    """loss(two examples, each given twice) / loss(the two examples once): 1 for a mean over examples, 2 for a
    sum; None when it cannot be told here (outputs or targets not tensors, a loss of zero or not finite, a loss
    that does not take the examples split along the first axis)."""
    if not (isinstance(outputs, Tensor) and isinstance(targets, Tensor)) or outputs.dim() == 0:
        return None
    k = min(2, len(outputs), len(targets) if targets.dim() else 0)
    if k == 0:
        return None
    once_out, once_targets = outputs.detach()[:k], targets[:k]
    try:
        with torch.no_grad():
            once = float(loss_fn(once_out, once_targets))
            twice = float(loss_fn(torch.cat([once_out, once_out]), torch.cat([once_targets, once_targets])))
    except (RuntimeError, ValueError, IndexError, TypeError):
        return None
    if not (math.isfinite(once) and math.isfinite(twice)) or once == 0:
        return None
    return twice / once


def refuse_probed_sum(loss_fn: Any, factor: float) -> None:
    """An :class:`InputError` when the probe's ``factor`` shows a loss that is not a mean over examples."""
    if abs(factor - 1) > PROBE_RTOL:
        raise InputError(
            f"loss_fn: given two examples twice it returns {factor:.4g} times its value on them once, where a mean "
            "over the examples returns the same value (a sum returns twice it); curvlab measures the mean loss over "
            "the examples (the chunks are averaged by their sizes, so a sum would make every value depend on "
            "batch_size): divide by the batch size or use reduction='mean'"
        )
