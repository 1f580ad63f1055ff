"""A run's validation loss: the training loss function on the data set's held-out split (for a language model, the
last 10% of its text), without gradients, with the model in eval mode and everything it holds restored after."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from curvlab.core.state import measurement_mode
from curvlab.distributed import all_reduce_sum, shard


def held_out_loss(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    max_chunk: int,
    world: int = 1,
    rank: int = 0,
) -> float:
    """The mean of ``loss_fn`` over the held-out examples ``(x, y)``, in chunks of at most ``max_chunk``.

    On ``world`` processes each evaluates its part (:func:`~curvlab.distributed.shard`) and the sums are
    all-reduced: the same mean as one process computes. Every process runs as many forwards (under FSDP2 each is a
    collective); a process left with an empty chunk runs it on one row weighted zero. The model runs in eval mode
    (BatchNorm on its running statistics, no dropout); its modes, buffers and the RNG streams are as they were
    afterwards, so a run with validation follows the same trajectory as one without."""
    part = shard(len(y), world, rank)
    largest = shard(len(y), world, 0)  # the first ranks hold one row more when the split is uneven
    count = max(1, math.ceil((largest.stop - largest.start) / max_chunk))
    total = 0.0
    with torch.no_grad(), measurement_mode(model, bn_mode="eval", dropout=False):
        for piece in (shard(part.stop - part.start, count, i) for i in range(count)):
            weight = piece.stop - piece.start
            start = part.start + piece.start if weight else min(part.start, len(y) - 1)
            rows = slice(start, start + max(weight, 1))
            total += float(loss_fn(model(x[rows]), y[rows])) * weight
    if world > 1:
        total = all_reduce_sum(total)
    return total / len(y)
