"""One run: config → run directory with the resolved config, records, checkpoints and status.

Resumable: a checkpoint (model, optimizer, tuner, Monitor, every RNG and the data order) is written
atomically every ``train.checkpoint_every`` steps and at the end; ``resume`` drops the records of
steps after the checkpoint (they will be measured again) and continues bit for bit. Divergence: the
first non-finite training loss ends the run, marked diverged, with every record kept.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curvlab.core.objective import Objective
from curvlab.distributed import DistributedObjective, finish, rank, shard
from curvlab.errors import MissingInputFile
from curvlab.experiments.build import build_data, build_loss, build_model_from, build_optimizer, build_tuner, lr_factor
from curvlab.experiments.config import ConfigError, load_config, to_toml, validate
from curvlab.linalg.progress import progress_bar
from curvlab.monitor import Monitor, make_metric
from curvlab.monitor.records import RECORDS_FILE, RecordWriter, read_records
from curvlab.monitor.schedules import as_schedule

CHECKPOINT, STATUS, CONFIG = "checkpoint.pt", "status.json", "config.toml"
DROP_LIMIT = 0.005  # definitions §9: a full batch drops at most 0.5% of the examples


@dataclass
class RunResult:
    run_dir: Path
    status: str  # "finished" or "diverged"
    steps: int
    final_loss: float


def start_run(config: dict | str | Path, run_dir: str | Path, quiet: bool = False) -> RunResult:
    """Start a new run in an empty (or new) ``run_dir``."""
    config = load_config(config) if isinstance(config, (str, Path)) else validate(config)
    run_dir = Path(run_dir)
    world = _init_distributed(config)
    if rank() == 0:
        if (run_dir / RECORDS_FILE).exists() or (run_dir / CHECKPOINT).exists():
            raise FileExistsError(
                f"run_dir: {run_dir} already holds a run; resume it with --resume or choose another --out"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG).write_text(to_toml(config))
    _barrier(world)
    try:
        return Trainer(config, run_dir, quiet or rank() != 0).train()
    finally:
        finish()


def resume_run(run_dir: str | Path, quiet: bool = False) -> RunResult:
    """Continue an interrupted run from its last checkpoint, using only what the run directory holds."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        raise MissingInputFile(f"run_dir: {run_dir} holds no {CONFIG}; is it a curvlab run directory?")
    status = read_status(run_dir)
    if status.get("status") in ("finished", "diverged"):
        return RunResult(run_dir, status["status"], status["step"], status.get("final_loss", math.nan))
    config = load_config(run_dir / CONFIG)
    _init_distributed(config)
    try:
        return Trainer(config, run_dir, quiet or rank() != 0).train(resume=True)
    finally:
        finish()


def _init_distributed(config: dict) -> int:
    """Under torchrun (train.processes > 1): join the process group; returns the world size."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return world


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def read_status(run_dir: Path) -> dict:
    path = Path(run_dir) / STATUS
    return json.loads(path.read_text()) if path.exists() else {}


class Trainer:
    def __init__(self, config: dict, run_dir: Path, quiet: bool):
        self.config, self.run_dir, self.quiet = config, run_dir, quiet
        self.data, measure = build_data(config)
        self.loss_fn = build_loss(config, self.data)
        self.model = build_model_from(config, self.data)
        self.optimizer = build_optimizer(config, self.model)
        self.tuner = build_tuner(config, self.optimizer, self.model)
        self.base_lr = config["optimizer"]["lr"]
        train = config["train"]
        n = self.data.n_train
        self.batch_size = n if train["batch_size"] == "full" else min(train["batch_size"], n)
        self.batches_per_epoch = n // self.batch_size
        self.total_steps = train["steps"] or train["epochs"] * self.batches_per_epoch
        self.chunks = _accumulation_chunks(self.batch_size, train["max_chunk"])
        self.world, self.rank = int(os.environ.get("WORLD_SIZE", "1")), rank()
        self.used = self.chunks[-1][1]  # examples of a batch actually used (≤ 0.5% dropped)
        self.shard = shard(self.used, self.world, self.rank)  # this rank's part of each batch
        self.local_chunks = (
            _accumulation_chunks(self.shard.stop - self.shard.start, train["max_chunk"])
            if self.world > 1
            else self.chunks
        )
        mx, my = measure.x_train, measure.y_train
        if self.world > 1:
            part = shard(len(my), self.world, self.rank)
            objective = DistributedObjective(
                self.model,
                self.loss_fn,
                (mx[part], my[part]),
                batch_size=train["max_chunk"],
                bn_mode=config["monitor"]["bn_mode"],
            )
        else:
            objective = Objective(
                self.model, self.loss_fn, (mx, my), batch_size=train["max_chunk"], bn_mode=config["monitor"]["bn_mode"]
            )
        self.writer = RecordWriter(run_dir) if self.rank == 0 else _NoWriter()
        self.monitor = Monitor(
            objective,
            self.tuner or self.optimizer,
            metrics=_metrics(config, measure),
            writer=self.writer,
            reset=config["monitor"]["reset"],
            context={"run": config["name"]},
        )
        self.order_gen = torch.Generator().manual_seed(config["seed"])
        self.step = self.epoch = self.position = 0
        self.perm = torch.randperm(n, generator=self.order_gen)

    # ----- the loop -----------------------------------------------------------------------------
    def train(self, resume: bool = False) -> RunResult:
        if resume:
            self._load_checkpoint()
            self.writer.reopen()  # the records file was replaced by its truncated copy
        else:
            torch.manual_seed(self.config["seed"])
            random.seed(self.config["seed"])
            np.random.seed(self.config["seed"] % 2**32)
        if self.rank == 0:
            _write_status(self.run_dir, "running", self.step)
        bar = progress_bar(self.total_steps, self.config["name"], not self.quiet)
        bar.update(self.step)
        loss = math.nan
        try:
            while self.step < self.total_steps:
                x, y = self._next_batch()
                loss = self._train_step(x, y)
                self.writer.write(
                    self.step,
                    self.epoch,
                    "loss",
                    loss,
                    group="train",
                    run=self.config["name"],
                    lr=self.monitor.current_lr(),
                )
                if not math.isfinite(loss):
                    self.writer.write(self.step, self.epoch, "diverged", 1.0, group="train", run=self.config["name"])
                    if self.rank == 0:
                        _write_status(self.run_dir, "diverged", self.step, loss)
                    return RunResult(self.run_dir, "diverged", self.step, loss)
                self.monitor.step(loss, (x, y))
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
        if self.rank == 0:
            _write_status(self.run_dir, "finished", self.step, loss)
        return RunResult(self.run_dir, "finished", self.step, loss)

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.perm[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        if self.position + self.batch_size > self.data.n_train:  # drop the incomplete last batch
            self.position = 0
            self.perm = torch.randperm(self.data.n_train, generator=self.order_gen)
        return self.data.x_train[idx], self.data.y_train[idx]

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.step += 1
        if self.tuner is not None:
            return float(self.tuner.step(lambda: self.loss_fn(self.model(x), y)))
        factor = lr_factor(self.config["schedule"], self.step - 1, self.epoch, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * factor
        self.optimizer.zero_grad(set_to_none=True)
        x, y = x[self.shard], y[self.shard]  # the whole used batch on one process; its loss is weighted by its share
        total = 0.0
        for start, stop in self.local_chunks:
            chunk_loss = self.loss_fn(self.model(x[start:stop]), y[start:stop]) * ((stop - start) / self.used)
            chunk_loss.backward()
            total += float(chunk_loss.detach())
        if self.world > 1:
            total = _all_reduce_gradients(self.model, total)
        if math.isfinite(total):
            self.optimizer.step()
        return total

    # ----- checkpoints --------------------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "perm": self.perm,
            "order_gen": self.order_gen.get_state(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "tuner": self.tuner.state_dict() if self.tuner else None,
            "monitor": self.monitor.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
        }
        tmp = self.run_dir / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.run_dir / CHECKPOINT)

    def _load_checkpoint(self) -> None:
        path = self.run_dir / CHECKPOINT
        if not path.exists():  # killed before the first checkpoint: start over cleanly
            _truncate_records(self.run_dir, 0)
            torch.manual_seed(self.config["seed"])
            return
        _barrier(self.world)
        state = torch.load(path, weights_only=False)
        self.step, self.epoch, self.position, self.perm = (
            state["step"],
            state["epoch"],
            state["position"],
            state["perm"],
        )
        self.order_gen.set_state(state["order_gen"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.tuner is not None:
            self.tuner.load_state_dict(state["tuner"])
        self.monitor.load_state_dict(state["monitor"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        if self.rank == 0:
            _truncate_records(self.run_dir, self.step)


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


def _all_reduce_gradients(model: torch.nn.Module, loss: float) -> float:
    """Sum the ranks' share-weighted gradients and losses: the exact gradient of the whole batch."""
    import torch.distributed as dist

    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
    total = torch.tensor([loss], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total)


def _accumulation_chunks(batch: int, max_chunk: int) -> list[tuple[int, int]]:
    """Split a batch into equal chunks of at most ``max_chunk`` (gradient accumulation); at most 0.5%
    of the batch is dropped so that the chunks divide evenly (definitions §9)."""
    k = math.ceil(batch / max_chunk)
    size = batch // k
    if (batch - k * size) / batch > DROP_LIMIT:
        raise ConfigError(
            f"config: train.max_chunk: {max_chunk} would drop more than 0.5% of a batch of {batch}; raise it"
        )
    return [(i * size, (i + 1) * size) for i in range(k)]


def _metrics(config: dict, measure: Any) -> list:
    schedules = config["monitor"]["schedules"]
    unknown = set(schedules) - set(config["monitor"]["metrics"])
    if unknown:
        raise ConfigError(f"config: monitor.schedules: {sorted(unknown)} not in monitor.metrics")
    out = []
    for name in config["monitor"]["metrics"]:
        try:
            if name == "noise":
                from curvlab.monitor import Noise

                metric = Noise(data=(measure.x_train, measure.y_train), batch_size=min(64, measure.n_train))
            else:
                metric = make_metric(name)
            if name in schedules:
                metric.schedule = as_schedule(schedules[name])
        except (ValueError, TypeError) as err:
            raise ConfigError(f"config: monitor.metrics: {err}") from err
        out.append(metric)
    return out


def _truncate_records(run_dir: Path, step: int) -> None:
    """Keep the records of steps ≤ ``step`` (written before that checkpoint), atomically."""
    path = run_dir / RECORDS_FILE
    if not path.exists():
        return
    kept = [r for r in read_records(run_dir) if r["step"] <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)


def _write_status(run_dir: Path, status: str, step: int, loss: float = math.nan) -> None:
    payload = {"status": status, "step": step, "final_loss": loss if math.isfinite(loss) else None}
    tmp = run_dir / (STATUS + ".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, run_dir / STATUS)
