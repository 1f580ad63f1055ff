"""curvlab inside the Hugging Face ``Trainer``: ``Trainer(..., callbacks=[CurvlabCallback(data)])``.

A ``TrainerCallback`` that builds an :class:`~curvlab.Objective` on the Trainer's model when training begins,
steps the one :class:`~curvlab.Monitor` after every optimizer step (``on_optimizer_step``: the gradients are
still there and the learning rate is the one the step used), and ends its epochs with the Trainer's. By
default it measures the model's own loss (``loss_fn=None``: batches are called as ``model(**batch)`` and the
output's ``.loss`` is used), so the measurement batches carry their ``labels``. It never touches ``control``
or the training state: the parameters after N steps are bit-identical to the same run without it.

Logging: give the callback the Trainer (``CurvlabCallback(data).attach(trainer)``, or ``trainer=`` when both
exist) and, each time the Trainer logs (``logging_steps``, the end of training), the latest value of each scalar
goes through ``Trainer.log`` as ``curvlab/<name>`` right after the Trainer's own log (so to every ``report_to``
integration and ``state.log_history``); the callback API itself does not pass the Trainer to callbacks. The loss
and the gradient norm (before clipping) the Trainer logs are recorded too (group ``"trainer"``). Every measurement
is in ``callback.monitor.records``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from transformers import TrainerCallback

from curvlab.distributed import sharded_objective
from curvlab.errors import InputError
from curvlab.integrations._common import TRAINER_GROUP, ScalarCursor, check_callback_arguments
from curvlab.monitor import METRICS, Monitor
from curvlab.monitor.records import LOGGER_PREFIX


class CurvlabCallback(TrainerCallback):
    """Measure curvature along ``Trainer.train()``.

    Every argument after ``data`` is keyword-only, as in the Lightning callback.

    Args:
        data: the measurement set: a list of dict batches (``input_ids``, ``attention_mask``, ``labels``...),
            a DataLoader or Dataset of them, or anything an Objective takes with ``loss_fn``.
        metrics: the Monitor's metrics; None = its default set (step statistics, budget-scheduled sharpness).
        budget: the Monitor's cost budget (fraction of the training time).
        run_dir: where the Monitor appends ``records.jsonl`` (main process); None keeps records in memory.
        loss_fn: None (the model's own loss) or ``loss_fn(outputs, targets)``.
        tensorboard: also send every record to TensorBoard (the Monitor's option).
        wandb: also send every record to Weights & Biases (the Monitor's option).
        trainer: the Trainer, to log through ``Trainer.log`` (see :meth:`attach`).
        autocast: measure under the Trainer's mixed precision (``bf16=True``, ``fp16=True``), as its training
            forward computes. By default measurements are in float32: accelerate runs a mixed-precision model's
            every forward under autocast, so while measuring the callback calls the model's plain forward.
        objective_options: passed to the Objective (``weight``, ``batch_size``, ``params``...). Batches with
            ``labels`` weigh by their counted label tokens by default (shifted for a causal LM).

    After training, ``callback.monitor`` holds the Monitor and its ``records``.
    """

    def __init__(
        self,
        data: Any,
        *,
        loss_fn: Any = None,
        metrics: Any = None,
        budget: float = 0.1,
        run_dir: Any = None,
        tensorboard: bool = False,
        wandb: bool | dict[str, Any] = False,
        trainer: Any = None,
        autocast: bool = False,
        **objective_options: Any,
    ):
        check_callback_arguments(data, objective_options, loss_fn, metrics)
        _refuse_batch_metrics(metrics)
        self.autocast = autocast
        self._model: Any = None
        self.data, self.metrics, self.budget, self.run_dir, self.loss_fn = data, metrics, budget, run_dir, loss_fn
        self.sinks: dict[str, Any] = {"tensorboard": tensorboard, "wandb": wandb}
        self.trainer = trainer
        self.objective_options = objective_options
        self.monitor: Monitor | None = None
        self._cursor: ScalarCursor | None = None

    def attach(self, trainer: Any) -> CurvlabCallback:
        """Add this callback to ``trainer`` and log through it; returns the callback."""
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None, **kwargs: Any
    ) -> None:
        if model is None or optimizer is None:
            raise InputError("CurvlabCallback: the Trainer passed no model or optimizer to on_train_begin")
        objective = sharded_objective(
            model, self.loss_fn, self.data, args.world_size, args.process_index, self.objective_options
        )
        self._model = model
        run_dir = self.run_dir if state.is_world_process_zero else None
        self.monitor = Monitor(
            objective,
            _unwrapped(optimizer),
            self.metrics,
            run_dir,
            budget=self.budget,
            start_step=state.global_step,
            start_epoch=int(state.epoch or 0),
            **self.sinks,
        )
        self._cursor = ScalarCursor(self.monitor)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None:
            with self._precision():
                self.monitor.step()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """When the Trainer logs (its ``logging_steps``, the end of training): record the training loss it logs and
        its gradient norm, which it takes *before* clipping (the step statistics' ``grad_norm`` is the gradient the
        optimizer used, after clipping), then send the latest scalars through ``Trainer.log`` after its own.
        Sending from here, not from ``on_step_end``, leaves ``control.should_log`` alone: ``Trainer.log`` resets it,
        which on ``on_step_end`` would cancel the Trainer's own log of the step."""
        if self.monitor is None or not logs or any(key.startswith(LOGGER_PREFIX) for key in logs):
            return  # nothing to measure yet, or our own scalars coming back through Trainer.log
        for key, metric in (("loss", "loss"), ("grad_norm", "grad_norm_before_clipping")):
            if isinstance(logs.get(key), (int, float)):
                self.monitor.add_record(metric, logs[key], TRAINER_GROUP)
        self._send(state)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None:
            with self._precision():
                self.monitor.end_epoch()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.close()

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        """Float32 unless ``autocast``: accelerate wraps a mixed-precision model's ``forward`` in autocast and keeps
        the plain one as ``_original_forward``; the plain one is put in place while measuring, then the wrapper
        restored, the very same object, so training goes on as before."""
        wrapped = [] if self.autocast else _autocast_wrapped(self._model)
        saved = [(m, m.forward) for m in wrapped]
        try:
            for m in wrapped:
                m.forward = m._original_forward
            yield
        finally:
            for m, forward in saved:
                m.forward = forward

    def _send(self, state: Any) -> None:
        if self._cursor is None or self.monitor is None:
            return
        with self.monitor.charged():
            scalars = self._cursor.new_scalars()
            if scalars and self.trainer is not None and state.is_world_process_zero:
                self.trainer.log(scalars)


def _autocast_wrapped(model: Any) -> list[Any]:
    """The model, or the module inside its DDP wrapper, whose forward accelerate wrapped in autocast."""
    candidates = (model, getattr(model, "module", None))
    return [m for m in candidates if m is not None and "_original_forward" in vars(m) and "forward" in vars(m)]


def _unwrapped(optimizer: Any) -> Any:
    """The torch optimizer inside accelerate's wrapper (whose type hides Adam's preconditioner)."""
    while type(optimizer).__module__.startswith("accelerate") and hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer


def _refuse_batch_metrics(metrics: Any) -> None:
    """The Trainer's callbacks never see the step's batch, so a metric measured on it could never run here."""
    if metrics is None or isinstance(metrics, str):
        return
    kinds = [METRICS[m] if isinstance(m, str) and m in METRICS else m for m in metrics]
    needing = [k.name for k in kinds if getattr(k, "needs_batch", False)]
    if needing:
        raise InputError(
            f"metrics: {needing} measure on the training step's own batch, which the Hugging Face Trainer does not "
            "pass to callbacks; measure them with curvlab.Monitor in your own loop or with the Lightning callback"
        )
