"""What both trainer callbacks share: building the Objective (sharded under torch.distributed) and reading
the Monitor's new records as named scalars for a trainer's logger."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from curvlab.core.objective import Objective
from curvlab.distributed import shard
from curvlab.monitor.records import logger_name


def build_objective(model: Any, loss_fn: Any, data: Any, world_size: int, rank: int, options: dict) -> Objective:
    """An Objective on ``data``; with several processes, a DistributedObjective on this rank's shard of it
    (tensor pairs and lists of batches are split; any other data is taken as this rank's shard)."""
    if world_size <= 1:
        return Objective(model, loss_fn, data, **options)
    from curvlab.distributed import DistributedObjective

    return DistributedObjective(model, loss_fn, rank_shard(data, world_size, rank), **options)


def rank_shard(data: Any, world_size: int, rank: int) -> Any:
    """This rank's part of the measurement set: a contiguous slice of tensors, every world_size-th batch of a list."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        part = shard(len(data[1]), world_size, rank)
        return data[0][part], data[1][part]
    if isinstance(data, list):
        return data[rank::world_size]
    return data


class ScalarCursor:
    """Reads the records a Monitor added since the last call, as ``{"curvlab/<name>": latest value}``."""

    def __init__(self, monitor: Any):
        self.monitor, self.seen = monitor, len(monitor.records)

    def new_scalars(self) -> dict[str, float]:
        rows = self.monitor.records[self.seen :]
        self.seen = len(self.monitor.records)
        return {logger_name(r["metric"], r): r["value"] for r in rows if not r["metric"].startswith("cost_")}
