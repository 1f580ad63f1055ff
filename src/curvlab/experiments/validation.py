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

    On ``world`` processes each evaluates its equal part and the sums are all-reduced; the last ``len(y) % world``
    examples are left out so that every rank runs as many forwards (under FSDP2 each forward is a collective).
    The model runs in eval mode (BatchNorm on its running statistics, no dropout); its modes, buffers and the RNG
    streams are as they were afterwards, so a run with validation follows the same trajectory as one without."""
    used = len(y) - len(y) % world
    part = shard(used, world, rank)
    count = max(1, math.ceil((part.stop - part.start) / max_chunk))
    total = 0.0
    with torch.no_grad(), measurement_mode(model, bn_mode="eval", dropout=False):
        for piece in (shard(part.stop - part.start, count, i) for i in range(count)):
            rows = slice(part.start + piece.start, part.start + piece.stop)
            total += float(loss_fn(model(x[rows]), y[rows])) * (piece.stop - piece.start)
    if world > 1:
        total = all_reduce_sum(total)
    return total / used
