"""The training loop of a run: batches in a seeded order, one step path for every optimizer and tuner
(gradient accumulation over chunks, this process's shard, torch's DDP or FSDP2: :mod:`curvlab.experiments.parallel`),
the learning-rate schedule, the Monitor, checkpoints, and the divergence rule (the first non-finite training loss
ends the run)."""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from curvlab.core.objective import Objective
from curvlab.distributed import all_reduce_sum, barrier, rank, shard, sharded_objective, world_size
from curvlab.experiments import parallel
from curvlab.experiments import run_dir as files
from curvlab.experiments.build import (
    build_data,
    build_loss,
    build_metrics,
    build_model_from,
    build_optimizer,
    build_tuner,
    every_step_epoch_note,
    lr_factor,
)
from curvlab.experiments.config import ConfigError
from curvlab.linalg.progress import progress_bar
from curvlab.monitor import Monitor
from curvlab.monitor.records import RecordWriter, truncate_records
from curvlab.optim.introspection import innermost, learning_rate

DROP_LIMIT = 0.005  # definitions §9: a full batch drops at most 0.5% of the examples


@dataclass
class RunResult:
    run_dir: Path
    status: str  # "finished" or "diverged"
    steps: int
    final_loss: float


class Diverged(Exception):
    """The step's own loss is not finite: the step is not taken and the run ends, marked diverged."""

    def __init__(self, loss: float):
        super().__init__(f"non-finite training loss {loss}")
        self.loss = loss


class Trainer:
    """Builds everything a config describes and trains it, writing into ``run_dir``."""

    def __init__(self, config: dict[str, Any], run_dir: Path, quiet: bool):
        self.config, self.run_dir, self.quiet = config, run_dir, quiet
        self.data, measure = build_data(config)
        self.loss_fn = build_loss(config, self.data)
        self.model = build_model_from(config, self.data)
        self.world, self.rank = world_size(), rank()
        self.parallel = config["train"]["parallel"]
        if self.parallel == "fsdp":
            parallel.shard_model(self.model)  # before the optimizer: its state is sharded too
        self.module = parallel.training_module(self.model, self.parallel, self.world)  # what the steps run through
        base = build_optimizer(config, self.model)
        tuner = build_tuner(config, base, self.model)
        self.optimizer = tuner or base  # a tuner is stepped like any optimizer
        self.schedule = None if tuner else self._schedule(base)
        train = config["train"]
        n = self.data.n_train
        self.batch_size = n if train["batch_size"] == "full" else min(train["batch_size"], n)
        self.batches_per_epoch = n // self.batch_size
        self.total_steps = train["steps"] or train["epochs"] * self.batches_per_epoch
        self.used = accumulation_chunks(self.batch_size, train["max_chunk"])[-1][1]  # ≤ 0.5% of a batch dropped
        self.shard = shard(self.used, self.world, self.rank)  # this rank's part of each batch
        self.chunks = self._accumulation(train["max_chunk"])
        self.eval_every = train["eval_every"]
        self.validation = self._validation_objective() if self.eval_every else None
        self.writer = RecordWriter(run_dir) if self.rank == 0 else _NoWriter()
        self.monitor = Monitor(
            self._measurement_objective(measure.x_train, measure.y_train),
            self.optimizer,
            metrics=build_metrics(config, measure),
            writer=cast(RecordWriter, self.writer)
            if self.rank == 0
            else None,  # the other ranks keep the same records in memory only
            reset=config["monitor"]["reset"],
            context={"run": config["name"]},
        )
        self.order_gen = torch.Generator().manual_seed(config["seed"])
        self.step = self.epoch = self.position = 0
        self.perm = torch.randperm(n, generator=self.order_gen)

    def _schedule(self, optimizer: Any) -> LambdaLR:
        """The config's schedule as a torch scheduler: it writes lr × factor(step) into the param groups."""
        sched, total = self.config["schedule"], self._total_steps()
        per_epoch = self.data.n_train // self._batch_size()
        return LambdaLR(innermost(optimizer), lambda step: lr_factor(sched, step, step // per_epoch, total))

    def _batch_size(self) -> int:
        size = self.config["train"]["batch_size"]
        return self.data.n_train if size == "full" else min(size, self.data.n_train)

    def _total_steps(self) -> int:
        train = self.config["train"]
        return int(train["steps"] or train["epochs"] * (self.data.n_train // self._batch_size()))

    def _accumulation(self, max_chunk: int) -> list[tuple[int, int]]:
        """This process's chunks of its part of a batch (gradient accumulation). On several processes every rank
        makes as many chunks as the largest part needs (its forwards and the gradient reduction are collectives)."""
        if self.world == 1:
            return accumulation_chunks(self.batch_size, max_chunk)
        largest = shard(self.used, self.world, 0)
        count = math.ceil((largest.stop - largest.start) / max_chunk)
        return [
            (part.start, part.stop)
            for part in (shard(self.shard.stop - self.shard.start, count, i) for i in range(count))
        ]

    def _validation_objective(self) -> Objective:
        """``train.eval_every``'s Objective: the training loss on the held-out split (a language model's last 10% of
        text), in eval mode (BatchNorm on running statistics, no dropout), sharded across the ranks as the
        measurement set is; a data set without one, or with fewer rows than processes, is a config error."""
        x, y = self.data.x_test, self.data.y_test
        if x is None or y is None or len(y) < self.world:
            raise ConfigError(
                f"config: train.eval_every: data {self.data.name!r} has no held-out split to score "
                f"(at least {self.world} examples needed)"
            )
        options = {"batch_size": self.config["train"]["max_chunk"], "bn_mode": "eval"}
        return sharded_objective(self.model, self.loss_fn, (x, y), self.world, self.rank, options)

    def _validate(self) -> None:
        """The ``validation_loss`` record: the held-out loss at the current parameters."""
        assert self.validation is not None  # made when eval_every is set
        self._write("validation_loss", self.validation.loss(), group="validation")

    def _measurement_objective(self, x: torch.Tensor, y: torch.Tensor) -> Objective:
        """The Monitor's Objective: the measurement set, sharded across the ranks under torchrun."""
        options = {"batch_size": self.config["train"]["max_chunk"], "bn_mode": self.config["monitor"]["bn_mode"]}
        return sharded_objective(self.model, self.loss_fn, (x, y), self.world, self.rank, options)

    # ----- the loop -----------------------------------------------------------------------------
    def train(self, resume: bool = False) -> RunResult:
        if resume:
            self._load_checkpoint()
            self.writer.reopen()  # the records file was replaced by its truncated copy
        else:
            _seed_everything(self.config["seed"])
        if self.rank == 0:
            files.write_status(self.run_dir, "running", self.step)
        note = every_step_epoch_note(self.monitor.metrics, self.batches_per_epoch)
        if note and not self.quiet:
            print(note, file=sys.stderr)
        bar = progress_bar(self.total_steps, self.config["name"], not self.quiet)
        bar.update(self.step)
        loss = math.nan
        try:
            while self.step < self.total_steps:
                x, y = self._next_batch()
                self.step += 1
                try:
                    loss = float(self.optimizer.step(self._closure(x[self.shard], y[self.shard])))
                except Diverged as stop:
                    self._write("loss", stop.loss, lr=learning_rate(self.optimizer))
                    return self._diverged(str(stop), stop.loss)
                self._write("loss", loss, lr=learning_rate(self.optimizer))
                self.monitor.step(loss, (x, y))
                if self.monitor.diverged:  # a measurement met a non-finite value: the records say which
                    return self._diverged(self.monitor.divergence or "diverged", loss)
                if self.eval_every and (self.step % self.eval_every == 0 or self.step == self.total_steps):
                    self._validate()  # before the checkpoint: a resumed run neither repeats nor misses it
                if self.schedule is not None:
                    self.schedule.step()  # the next step's learning rate
                if self.position == 0:  # the epoch just ended
                    self.monitor.end_epoch()
                    self.epoch += 1
                if self.step % self.config["train"]["checkpoint_every"] == 0 or self.step == self.total_steps:
                    self._save_checkpoint()
                bar.update()
                bar.set_postfix_str(f"loss {loss:.4g}", refresh=False)
        finally:
            bar.close()
            self.writer.close()
            self.module = self.model  # drop the DDP wrapper (its reducer) before the process group goes
        if self.rank == 0:
            files.write_status(self.run_dir, "finished", self.step, loss)
        return RunResult(self.run_dir, "finished", self.step, loss)

    def _closure(self, x: torch.Tensor, y: torch.Tensor) -> Callable[..., torch.Tensor]:
        """The step's torch closure: zero the gradients, accumulate this process's chunks of the batch (each
        loss weighted by its share of the whole batch; DDP or FSDP2 reduce the gradients at the last chunk, their
        mean over ranks made a sum by the factor ``world``), return the batch loss (all-reduced).
        Its first call raises :class:`Diverged` on a non-finite loss, before any optimizer moves."""
        first = [True]

        def closure(create_graph: bool = False) -> torch.Tensor:
            if create_graph and self.world > 1:
                raise ConfigError("config: train.processes: tuners that need uᵀHu run in one process")
            self.optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for i, (start, stop) in enumerate(self.chunks):
                with parallel.gradient_sync(self.module, sync=i == len(self.chunks) - 1):
                    share = (stop - start) / self.used
                    chunk_loss = self.loss_fn(self.module(x[start:stop]), y[start:stop]) * share
                    (chunk_loss * self.world if self.world > 1 else chunk_loss).backward(create_graph=create_graph)
                total += float(chunk_loss.detach())
            if self.world > 1:
                total = all_reduce_sum(total)
            if first[0] and not math.isfinite(total):
                raise Diverged(total)
            first[0] = False
            return torch.tensor(total, dtype=torch.float64)

        return closure

    def _diverged(self, reason: str, loss: float) -> RunResult:
        """End the run as diverged: the Monitor's ``diverged`` record (once), the records on disk, then the status."""
        self.monitor.mark_diverged(reason, self.step)
        self.writer.flush()  # the records are on disk before the status says diverged; train() closes the writer
        if self.rank == 0:
            files.write_status(self.run_dir, "diverged", self.step, loss)
        return RunResult(self.run_dir, "diverged", self.step, loss)

    def _write(self, metric: str, value: float, group: str = "train", **context: Any) -> None:
        self.writer.write(self.step, self.epoch, metric, value, group=group, run=self.config["name"], **context)

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.perm[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        if self.position + self.batch_size > self.data.n_train:  # drop the incomplete last batch
            self.position = 0
            self.perm = torch.randperm(self.data.n_train, generator=self.order_gen)
        return self.data.x_train[idx], self.data.y_train[idx]

    # ----- checkpoints --------------------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        if self.parallel == "fsdp":
            parallel.save_sharded(self.run_dir, self.step, self.model, self.optimizer, self._loop_state())
            return
        if self.rank != 0:
            return
        state = {
            **self._loop_state(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }
        files.save_checkpoint(self.run_dir, state)

    def _loop_state(self) -> dict[str, Any]:
        """Everything of the loop but the model and optimizer: position, order, schedule, Monitor, RNG streams."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "perm": self.perm,
            "order_gen": self.order_gen.get_state(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "monitor": self.monitor.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": _numpy_rng_state()},
        }

    def _load_checkpoint(self) -> None:
        barrier()
        if self.parallel == "fsdp":
            state = parallel.load_sharded(self.run_dir, self.model, self.optimizer)
        else:
            state = files.load_checkpoint(self.run_dir)
        if state is None:  # killed before the first checkpoint: start over cleanly
            truncate_records(self.run_dir, 0)
            _seed_everything(self.config["seed"])
            return
        self.step, self.epoch, self.position, self.perm = (
            state["step"],
            state["epoch"],
            state["position"],
            state["perm"],
        )
        self.order_gen.set_state(state["order_gen"])
        if self.parallel != "fsdp":  # a sharded checkpoint's model and optimizer are loaded already
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None:
            self.schedule.load_state_dict(state["schedule"])
        self.monitor.load_state_dict(state["monitor"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        name, keys, *rest = state["rng"]["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
        if self.rank == 0:
            truncate_records(self.run_dir, self.step)


class _NoWriter:
    """Ranks other than 0 write nothing (the same records exist on rank 0)."""

    def write(self, *args: Any, **kwargs: Any) -> None:
        return None

    def reopen(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def accumulation_chunks(batch: int, max_chunk: int) -> list[tuple[int, int]]:
    """Split a batch into equal chunks of at most ``max_chunk`` (gradient accumulation); at most 0.5%
    of the batch is dropped so that the chunks divide evenly (definitions §9)."""
    k = math.ceil(batch / max_chunk)
    size = batch // k
    if (batch - k * size) / batch > DROP_LIMIT:
        raise ConfigError(
            f"config: train.max_chunk: {max_chunk} would drop more than 0.5% of a batch of {batch}; raise it"
        )
    return [(i * size, (i + 1) * size) for i in range(k)]


def _numpy_rng_state() -> tuple[Any, ...]:
    """NumPy's global RNG state with its key array as a tensor: a checkpoint holds tensors and plain data only."""
    name, keys, *rest = cast(tuple[Any, ...], np.random.get_state())
    return (name, torch.from_numpy(keys.astype(np.int64)), *rest)
