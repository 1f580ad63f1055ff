"""How a run's model is spread over its processes (``train.parallel``): torch's DistributedDataParallel
(``"ddp"``: a whole model on every rank, gradients all-reduced by DDP) or FSDP2 (``"fsdp"``: ``fully_shard`` on
every block of every ``nn.ModuleList``, then the root; parameters, gradients and optimizer state sharded), and the
checkpoint of a sharded run (torch's distributed checkpoint). The Monitor's Objective follows the model
(:func:`curvlab.distributed.sharded_objective`)."""

from __future__ import annotations

import contextlib
import io
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

from curvlab.experiments.run_dir import UnsafeCheckpoint, load_untrusted
from curvlab.files import atomic_write

PARALLEL = ("ddp", "fsdp")
SHARDED_CHECKPOINTS = "checkpoints"  # run_dir/checkpoints/step_<N>/ (one per save), LATEST names the newest


def shard_model(model: nn.Module) -> nn.Module:
    """FSDP2's usual nested wrapping, in place: each element of every ``nn.ModuleList`` (a transformer's blocks),
    then the root."""
    from torch.distributed.fsdp import fully_shard

    for module in list(model.modules()):
        if isinstance(module, nn.ModuleList):
            for block in module:
                if any(p.requires_grad for p in block.parameters()):
                    fully_shard(block)
    fully_shard(model)
    return model


def training_module(model: nn.Module, parallel: str, world: int) -> nn.Module:
    """The module the training steps run through: the model wrapped by DDP on several processes, the (sharded)
    model itself under FSDP2 or on one process."""
    if parallel == "ddp" and world > 1:
        return nn.parallel.DistributedDataParallel(model)
    return model


@contextlib.contextmanager
def gradient_sync(module: nn.Module, sync: bool) -> Iterator[None]:
    """Reduce gradients across ranks in this backward (``sync``), or only accumulate them locally."""
    if isinstance(module, nn.parallel.DistributedDataParallel) and not sync:
        with module.no_sync():
            yield
        return
    set_sync = getattr(module, "set_requires_gradient_sync", None)  # an FSDP2 module
    if set_sync is not None:
        set_sync(sync)
    yield


def save_sharded(run_dir: Path, step: int, model: nn.Module, optimizer: Any, rank_state: dict[str, Any]) -> None:
    """A checkpoint of a sharded run: model and optimizer with torch's distributed checkpoint, each rank's own state
    (its Monitor shards, RNG) beside it; ``LATEST`` is switched to it only once every rank has written, so a run
    killed mid-save resumes from the previous one."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    folder = run_dir / SHARDED_CHECKPOINTS / f"step_{step}"
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=folder)
    atomic_write(folder / f"rank{dist.get_rank()}.pt", lambda tmp: torch.save(rank_state, tmp))
    dist.barrier()
    if dist.get_rank() == 0:
        previous = latest(run_dir)
        atomic_write(run_dir / SHARDED_CHECKPOINTS / "LATEST", lambda tmp: Path(tmp).write_text(folder.name))
        if previous is not None and previous != folder:
            shutil.rmtree(previous, ignore_errors=True)
    dist.barrier()


def load_sharded(run_dir: Path, model: nn.Module, optimizer: Any) -> dict[str, Any] | None:
    """Load the latest sharded checkpoint into ``model`` and ``optimizer``; returns this rank's own state (None when
    the run was killed before its first checkpoint)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    folder = latest(run_dir)
    if folder is None:
        return None
    rank_state = load_untrusted(folder / f"rank{dist.get_rank()}.pt")
    check_metadata(folder / ".metadata")
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    try:
        dcp.load(state, checkpoint_id=folder, planner=_weights_only_planner())
    except dcp.api.CheckpointException as err:  # torch gathers every rank's failure into one exception
        refused = [exc for exc, _ in err.failures.values() if isinstance(exc, UnsafeCheckpoint)]
        if refused:
            raise refused[0] from None
        raise
    set_state_dict(
        model, optimizer, model_state_dict=cast(Any, state["model"]), optim_state_dict=cast(Any, state["optimizer"])
    )
    return cast(dict[str, Any] | None, rank_state)


class _MetadataUnpickler(pickle.Unpickler):
    """Builds a distributed checkpoint's index and nothing else: torch's checkpoint dataclasses, sizes, dtypes,
    layouts and paths."""

    def find_class(self, module: str, name: str) -> Any:
        found = super().find_class(module, name)
        index = module.startswith("torch.distributed.checkpoint.") and isinstance(found, type)
        tensor_type = module == "torch" and (found is torch.Size or isinstance(found, torch.dtype))
        plain = (module, name) in {("torch.serialization", "_get_layout"), ("collections", "OrderedDict")}
        if index or tensor_type or plain or (module == "pathlib" and name in ("PosixPath", "WindowsPath")):
            return found
        raise pickle.UnpicklingError(f"Unsupported global: {module}.{name}")


def check_metadata(path: Path) -> None:
    """Refuse a distributed checkpoint's ``.metadata`` (which torch unpickles unrestricted) that holds more than
    the checkpoint's index, with :class:`UnsafeCheckpoint`, before torch reads it."""
    try:
        with open(path, "rb") as f:
            _MetadataUnpickler(f).load()
    except (pickle.UnpicklingError, AttributeError, EOFError) as err:
        raise UnsafeCheckpoint(
            f"checkpoint: {path} holds more than a checkpoint's index ({err}); it is not loaded, since loading it "
            "could run code"
        ) from None


def _weights_only_planner() -> Any:
    """torch's default load planner, except that it reads the non-tensor items (an optimizer's step count, its
    param groups) as tensors and plain data only (torch reads them with ``weights_only=False``)."""
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

    class WeightsOnlyLoadPlanner(DefaultLoadPlanner):
        def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
            checked = _plain_bytes(value, read_item.dest_index.fqn)
            super().load_bytes(read_item, checked)

    return WeightsOnlyLoadPlanner()


def _plain_bytes(value: io.BytesIO, fqn: str) -> io.BytesIO:
    """``value`` as torch saved it, after checking that it holds tensors and plain data only."""
    plain = load_untrusted(value, f"the entry {fqn}")
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    buffer.seek(0)
    return buffer


def latest(run_dir: Path) -> Path | None:
    """The folder of the newest complete sharded checkpoint, or None."""
    pointer = run_dir / SHARDED_CHECKPOINTS / "LATEST"
    return run_dir / SHARDED_CHECKPOINTS / pointer.read_text().strip() if pointer.exists() else None
