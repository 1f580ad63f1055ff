"""curvlab inside PyTorch Lightning 2.x: ``trainer = L.Trainer(callbacks=[CurvlabCallback(data)])``.

Either package name works: ``lightning`` (``lightning.pytorch``) or the standalone ``pytorch_lightning``; the
callback derives from the ``Callback`` of each one installed, so either package's ``Trainer`` takes it.

The callback builds an :class:`~curvlab.Objective` on the LightningModule at the start of ``fit``, steps the
one :class:`~curvlab.Monitor` after every optimizer step (not after batches that only accumulate gradients),
ends its epochs with the trainer's, and sends the latest value of each of its scalars to the trainer's loggers
on rank 0 as ``curvlab/<name>`` every ``log_every_n_steps`` and at epoch ends (every measurement is in
``callback.monitor.records``). It reads the module, the optimizer and the step's outputs and never writes them: the
parameters after N steps are bit-identical to the same run without it.

``loss_fn=None`` means: the loss is what the module's ``training_step(batch, batch_idx)`` returns (a tensor, or
the ``"loss"`` entry of a dict), evaluated on the measurement batches with the module's ``self.log`` calls
silenced. Give a ``loss_fn(outputs, targets)`` instead to measure ``loss_fn(module(inputs), targets)``.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from torch import Tensor, nn

from curvlab.distributed import sharded_objective
from curvlab.errors import InputError
from curvlab.integrations._common import TRAINER_GROUP, ScalarCursor, check_callback_arguments
from curvlab.monitor import Monitor
from curvlab.monitor.metrics import gradients, summed_squares


def _lightning_packages() -> list[Any]:
    """The installed PyTorch Lightning packages, ``lightning.pytorch`` first, then the standalone
    ``pytorch_lightning``: the callback derives from the Callback of each, so either package's Trainer takes it."""
    packages = []
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            packages.append(importlib.import_module(name))
        except ImportError:
            pass
    if not packages:
        raise ImportError(
            "curvlab.integrations.lightning needs PyTorch Lightning 2.x: pip install lightning (or pytorch-lightning)"
        )
    return packages


PACKAGES = _lightning_packages()
if TYPE_CHECKING:  # the annotations name lightning.pytorch's types; at run time, whichever package is installed
    import lightning.pytorch as pl
else:
    pl = PACKAGES[0]


class TrainingStepLoss(nn.Module):
    """A LightningModule seen as a model whose output is its training loss: ``forward(batch)`` returns what
    ``training_step(batch, 0)`` returns (its ``"loss"`` for a dict), with ``self.log`` silenced."""

    def __init__(self, module: pl.LightningModule):
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        batch = kwargs if kwargs else (args[0] if len(args) == 1 else args)
        with _silenced_logging(self.module):
            out = self.module.training_step(batch, 0)
        return cast(Tensor, out["loss"] if isinstance(out, Mapping) else out)


@contextlib.contextmanager
def _silenced_logging(module: pl.LightningModule) -> Iterator[None]:
    """Measuring must not log: ``log`` and ``log_dict`` are no-ops on this instance meanwhile."""
    module.log = module.log_dict = lambda *a, **k: None  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        del module.log, module.log_dict


class CurvlabCallback(*(package.Callback for package in PACKAGES)):  # type: ignore[misc]
    """Measure curvature along a Lightning ``fit``.

    Every argument after ``data`` is keyword-only, as in the Hugging Face callback.

    Args:
        data: the measurement set (any data an Objective takes); under DDP, tensor pairs and lists of batches
            are split across the ranks, and measurements all-reduce over the trainer's process group.
        loss_fn: None (the module's ``training_step`` loss, see the module docs) or ``loss_fn(outputs, targets)``.
        metrics: the Monitor's metrics; None = its default set (step statistics, budget-scheduled sharpness).
        budget: the Monitor's cost budget (fraction of the training time).
        run_dir: where the Monitor appends ``records.jsonl`` (rank 0); None keeps records in memory.
        log: send new scalars to ``trainer.loggers``.
        tensorboard: also send every record to TensorBoard (the Monitor's option).
        wandb: also send every record to Weights & Biases (the Monitor's option).
        autocast: measure under the trainer's mixed precision (``precision="bf16-mixed"``, ``"16-mixed"``), as its
            training step computes. By default measurements are in float32: Lightning's autocast covers only the
            training step, and the callback measures outside it.
        objective_options: passed to the Objective (``batch_size``, ``bn_mode``, ``params``, ``weight``...).

    After ``fit``, ``callback.monitor`` holds the Monitor and its ``records``.
    """

    def __init__(
        self,
        data: Any,
        *,
        loss_fn: Any = None,
        metrics: Any = None,
        budget: float = 0.1,
        run_dir: Any = None,
        log: bool = True,
        tensorboard: bool = False,
        wandb: bool | dict[str, Any] = False,
        autocast: bool = False,
        **objective_options: Any,
    ):
        check_callback_arguments(data, objective_options, loss_fn, metrics)
        self.data, self.loss_fn, self.metrics, self.autocast = data, loss_fn, metrics, autocast
        self.budget, self.run_dir, self.log = budget, run_dir, log
        self.sinks: dict[str, Any] = {"tensorboard": tensorboard, "wandb": wandb}
        self.objective_options = objective_options
        self.monitor: Monitor | None = None
        self._cursor: ScalarCursor | None = None
        self._last_step = 0
        self._norm_before_clipping: float | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.optimizers:
            raise InputError("CurvlabCallback: the LightningModule configured no optimizer")
        model = pl_module if self.loss_fn is not None else TrainingStepLoss(pl_module)
        objective = sharded_objective(
            model, self.loss_fn, self.data, trainer.world_size, trainer.global_rank, self.objective_options
        )
        self.monitor = Monitor(
            objective,
            trainer.optimizers[0],
            self.metrics,
            self.run_dir,
            budget=self.budget,
            start_step=trainer.global_step,
            start_epoch=trainer.current_epoch,
            **self.sinks,
        )
        self._cursor = ScalarCursor(self.monitor)
        self._last_step = trainer.global_step

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        """With gradient clipping (``gradient_clip_val``), the gradient norm before Lightning clips, on the steps
        the trainer logs: Lightning calls this hook after the (accumulated) backward and before it clips. The step
        statistics' ``grad_norm`` is the norm after clipping, the gradient the optimizer used."""
        clipping = trainer.gradient_clip_val is not None and trainer.gradient_clip_val > 0
        if self.monitor is None or not clipping or (trainer.global_step + 1) % _log_every(trainer):
            return
        self._norm_before_clipping = summed_squares(self.monitor.objective, gradients(self.monitor.objective))[0] ** 0.5

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.monitor is None or trainer.global_step == self._last_step:
            return  # no optimizer step on this batch (gradient accumulation)
        self._last_step = trainer.global_step
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        with self._precision(trainer):
            self.monitor.step(loss, batch)
        if self._norm_before_clipping is not None:
            self.monitor.add_record("grad_norm_before_clipping", self._norm_before_clipping, TRAINER_GROUP)
            self._norm_before_clipping = None
        if trainer.global_step % _log_every(trainer) == 0:
            self._send(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is not None:
            with self._precision(trainer):
                self.monitor.end_epoch()
            self._send(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is not None:
            self.monitor.close()

    def _precision(self, trainer: pl.Trainer) -> contextlib.AbstractContextManager[Any]:
        """The trainer's autocast when asked for (``autocast=True``), else nothing: float32."""
        return trainer.precision_plugin.forward_context() if self.autocast else contextlib.nullcontext()

    def _send(self, trainer: pl.Trainer) -> None:
        if self.monitor is None or self._cursor is None:
            return
        with self.monitor.charged():
            scalars = self._cursor.new_scalars()
            if self.log and scalars and trainer.is_global_zero:
                for logger in trainer.loggers:
                    logger.log_metrics(scalars, step=trainer.global_step)


def _log_every(trainer: pl.Trainer) -> int:
    """The trainer's ``log_every_n_steps`` (set by its logger connector; not in its declared attributes)."""
    return int(cast(Any, trainer).log_every_n_steps)
