"""Config → objects: data, model, loss, optimizer (with clipping / random scaling), tuner, schedule, metrics."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

from torch import nn

from curvlab import losses, optim
from curvlab.data import DataSet, load_dataset
from curvlab.experiments.config import ConfigError
from curvlab.models import build_model
from curvlab.monitor import METRICS, Metric
from curvlab.monitor.schedules import EpochEnd, as_schedule
from curvlab.optim import OPTIMIZERS
from curvlab.tuners import TUNERS


def _options(section: dict[str, Any], reserved: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k not in reserved and v is not None}


def _call(label: str, make: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a constructor; its ValueError/TypeError becomes a one-line config error naming ``label``."""
    try:
        return make(*args, **kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"config: {label}: {err}") from err


def build_data(config: dict[str, Any]) -> tuple[DataSet, DataSet]:
    """(training data, measurement data); the measurement set is a seeded subset of the training set."""
    section = config["data"]
    data = _call(
        "data",
        load_dataset,
        section["name"],
        section["subset"],
        config["seed"],
        **_options(section, ("name", "subset", "measure_subset")),
    )
    return data, data.subset(
        min(section["measure_subset"], data.n_train) if section["measure_subset"] else None, config["seed"] + 1
    )


def build_loss(config: dict[str, Any], data: DataSet) -> Callable[..., Any]:
    name = config["loss"]["name"]
    if name == "auto":
        name = "half_mse" if data.task == "regression" else "cross_entropy"
    return cast(Callable[..., Any], getattr(losses, name))


def build_model_from(config: dict[str, Any], data: DataSet) -> nn.Module:
    section = config["model"]
    model: nn.Module = _call(
        "model",
        build_model,
        section["name"],
        data,
        init_scale=section["init_scale"],
        seed=config["seed"],
        **_options(section, ("name", "init_scale")),
    )
    return model


def build_optimizer(config: dict[str, Any], model: nn.Module) -> Any:
    section = config["optimizer"]
    name = section["name"]
    options = _options(section, ("name", "lr", "clip_percent", "random_scaling"))
    if name == "adafactor" and section["clip_percent"] is not None:
        options["clip_percent"] = section["clip_percent"]
    opt = _call("optimizer", OPTIMIZERS[name], model.parameters(), lr=section["lr"], **options)
    if section["clip_percent"] is not None and name != "adafactor":
        opt = _call("optimizer.clip_percent", optim.CoordinateClip, opt, percent=section["clip_percent"])
    if section["random_scaling"]:
        opt = optim.RandomScaling(opt, seed=config["seed"])
    return opt


def build_tuner(config: dict[str, Any], optimizer: Any, model: nn.Module) -> Any:
    section = config["tuner"]
    if section.get("name") is None:
        return None
    options = _options(section, ("name",))
    if section["name"] == "linesearch" and config["train"]["batch_size"] == "full":
        options.setdefault("max_backtracks", None)  # Roulet et al. cap the backtracking in mini-batch mode only
    return _call("tuner", TUNERS[section["name"]], optimizer, model=model, **options)


def lr_factor(schedule: dict[str, Any], step: int, epoch: int, total_steps: int) -> float:
    """The multiplier of the base learning rate at ``step`` (0-based) — definitions §9 schedules."""
    kind, warm = schedule["kind"], schedule["warmup_steps"]
    if kind == "step":
        return float(0.1 ** (epoch // schedule["decay_every_epochs"]))
    if warm and step < warm:
        return float((step + 1) / warm)
    if kind in ("constant", "warmup_constant"):
        return 1.0
    progress = float((step - warm) / max(1, total_steps - warm))
    floor = float(schedule["min_lr_fraction"])
    if kind == "warmup_linear":
        return floor + (1 - floor) * (1 - progress)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_metrics(config: dict[str, Any], measure: DataSet) -> list[Metric]:
    """The ``monitor.metrics`` groups with their ``monitor.options`` (constructor arguments: tol, k, n_probes,
    batch_size, …) and ``monitor.schedules``. ``noise`` samples its minibatches from the measurement set
    (batch_size 64 unless set)."""
    monitor = config["monitor"]
    for key in ("schedules", "options"):
        unknown = set(monitor[key]) - set(monitor["metrics"])
        if unknown:
            raise ConfigError(f"config: monitor.{key}: {sorted(unknown)} not in monitor.metrics")
    out = []
    for name in monitor["metrics"]:
        options = dict(monitor["options"].get(name, {}))
        if name == "noise":
            options.setdefault("batch_size", min(64, measure.n_train))
            options["data"] = (measure.x_train, measure.y_train)
        metric = _call(f"monitor.options.{name}", METRICS[name], **options)
        if name in monitor["schedules"]:
            metric.schedule = _call(f"monitor.schedules.{name}", as_schedule, monitor["schedules"][name])
        out.append(metric)
    return out


def every_step_epoch_note(metrics: list[Metric], batches_per_epoch: int) -> str | None:
    """When every step ends an epoch (full batch), the groups scheduled at epoch ends measure at every step: the
    one line that says so and how to change it, or None."""
    if batches_per_epoch > 1:
        return None
    names = [m.name for m in metrics if any(isinstance(part, EpochEnd) for part in m.schedule.parts())]
    if not names:
        return None
    return (
        f"curvlab: every step ends an epoch here (one batch per epoch), so {', '.join(names)} "
        f"{'measures' if len(names) == 1 else 'measure'} at every step (scheduled at epoch ends); to measure less "
        f"often give {'it' if len(names) == 1 else 'them'} a step schedule or 'budget' in [monitor] schedules"
    )
