"""Run configurations: TOML in, a validated nested dict out (configs are data).

Every section has a schema of known keys with their types and defaults; sections whose options go to
a constructor (``data``, ``model``, ``optimizer``, ``tuner``) accept extra keys, which that
constructor validates. Any error is one line naming the key: ``config: optimizer.lr: expected …``.
"""

from __future__ import annotations

import copy
import inspect
import tomllib
from pathlib import Path
from typing import Any

from curvlab.data import DATASETS
from curvlab.errors import InputError
from curvlab.experiments.parallel import PARALLEL
from curvlab.models import BUILDERS
from curvlab.monitor import METRICS
from curvlab.optim import OPTIMIZERS
from curvlab.tuners import TUNERS


class ConfigError(InputError):
    """A bad configuration; the message names the key."""


NUM = (int, float)
SCHEMA: dict[str, dict[str, tuple[Any, Any]]] = {
    "": {"name": (str, "run"), "seed": (int, 0)},
    "data": {"name": (str, None), "subset": (int, None), "measure_subset": (int, None)},
    "model": {"name": (str, None), "init_scale": (NUM, 1.0)},
    "loss": {"name": (str, "auto")},
    "optimizer": {"name": (str, None), "lr": (NUM, None), "clip_percent": (NUM, None), "random_scaling": (bool, False)},
    "tuner": {"name": (str, None)},
    "schedule": {
        "kind": (str, "constant"),
        "warmup_steps": (int, 0),
        "decay_every_epochs": (int, None),
        "min_lr_fraction": (NUM, 0.0),
    },
    "train": {
        "batch_size": ((int, str), None),
        "epochs": (int, None),
        "steps": (int, None),
        "max_chunk": (int, 4096),
        "checkpoint_every": (int, 100),
        "processes": (int, 1),
        "parallel": (str, "ddp"),
        "eval_every": (int, None),
    },
    "monitor": {
        "metrics": (list, ["assumptions", "sharpness"]),
        "schedules": (dict, {}),
        "options": (dict, {}),
        "bn_mode": (str, "train"),
        "reset": ((str, int), "epoch"),
    },
}
OPEN_SECTIONS = {"data", "model", "optimizer", "tuner"}
REQUIRED = ("data.name", "model.name", "optimizer.name", "optimizer.lr")
SCHEDULE_KINDS = ("constant", "warmup_constant", "warmup_linear", "warmup_cosine", "step")
LOSSES = ("auto", "cross_entropy", "mse", "half_mse", "onehot_mse")


def read_toml(path: str | Path) -> dict[str, Any]:
    """The raw TOML table of ``path``; a missing file or bad TOML is a one-line ConfigError."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config: no such file {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config: {path} is not valid TOML: {err}") from err


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML run config and validate it (a ConfigError naming the key otherwise); returns the config with defaults
    filled in."""
    return validate(read_toml(path))


def validate(raw: dict[str, Any]) -> dict[str, Any]:
    """Check every key and fill defaults; returns a new, complete config."""
    raw = copy.deepcopy(raw)
    config: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in SCHEMA or key == "":
                raise ConfigError(f"config: unknown section [{key}]; expected one of {sorted(k for k in SCHEMA if k)}")
        elif key not in SCHEMA[""]:
            raise ConfigError(f"config: unknown key {key!r} at the top level")
    for section, fields in SCHEMA.items():
        given = raw if section == "" else raw.get(section, {})
        target = config if section == "" else config.setdefault(section, {})
        for key, value in given.items():
            if section == "" and isinstance(value, dict):
                continue
            label = f"{section}.{key}" if section else key
            if key in fields:
                if not (value is None and fields[key][1] is None):  # None = unset, as a validated config holds
                    _check_type(label, value, fields[key][0])
            elif section not in OPEN_SECTIONS:
                raise ConfigError(f"config: {label}: unknown key; expected one of {sorted(fields)}")
            target[key] = value
        for key, (_, default) in fields.items():
            target.setdefault(key, copy.deepcopy(default))
    if "tuner" not in raw:
        config["tuner"] = {"name": None}
    _check_semantics(config)
    _check_open_sections(config)
    _check_monitor(config["monitor"])
    return config


def _check_monitor(monitor: dict[str, Any]) -> None:
    """Metric names are registered ones; ``monitor.options.<metric>`` are arguments its constructor takes."""
    for name in monitor["metrics"]:
        if not isinstance(name, str) or name not in METRICS:
            raise ConfigError(f"config: monitor.metrics: unknown metric {name!r}; expected one of {sorted(METRICS)}")
    for name, options in monitor["options"].items():
        if not isinstance(options, dict):
            raise ConfigError(f"config: monitor.options.{name}: expected a table of the metric's arguments")
        if name not in METRICS:
            continue  # reported against monitor.metrics when the metrics are built
        params = inspect.signature(METRICS[name]).parameters
        for key in options:
            if key not in params or key in ("data", "schedule"):
                allowed = sorted(k for k in params if k not in ("data", "schedule"))
                raise ConfigError(f"config: monitor.options.{name}.{key}: unknown key; {name!r} takes {allowed}")


def _check_open_sections(c: dict[str, Any]) -> None:
    """Extra keys of data/model/optimizer/tuner must be parameters of what they configure."""
    for section, registry in (("data", DATASETS), ("model", BUILDERS), ("optimizer", OPTIMIZERS), ("tuner", TUNERS)):
        name = c[section].get("name")
        if name is None:
            continue
        if name not in registry:
            raise ConfigError(
                f"config: {section}.name: unknown {registry.kind} {name!r}; expected one of {sorted(registry)}"
            )
        params = inspect.signature(registry[name]).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        for key in c[section]:
            if key not in SCHEMA[section] and key not in params:
                allowed = sorted(k for k in params if k not in ("ds", "params", "optimizer", "seed", "model"))
                raise ConfigError(f"config: {section}.{key}: unknown key; {name!r} takes {allowed}")


def _check_type(label: str, value: Any, expected: Any) -> None:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"config: {label}: expected {_names(kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise ConfigError(f"config: {label}: expected {_names(kinds)}, got {value!r}")


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kinds)


def _check_semantics(c: dict[str, Any]) -> None:
    for dotted in REQUIRED:
        section, key = dotted.split(".")
        if c[section].get(key) is None:
            raise ConfigError(f"config: {dotted}: required")
    if not c["optimizer"]["lr"] >= 0:
        raise ConfigError(f"config: optimizer.lr: expected a number ≥ 0, got {c['optimizer']['lr']!r}")
    train = c["train"]
    if (train["epochs"] is None) == (train["steps"] is None):  # a sweep sets one and clears the other
        raise ConfigError("config: train: give exactly one of epochs or steps")
    tuner = c["tuner"].get("name")
    if c["train"]["processes"] > 1 and tuner in TUNERS and getattr(TUNERS[tuner], "needs_curvature", False):
        raise ConfigError(
            f"config: train.processes: tuner {tuner!r} needs uᵀHu through a double backward, which is not "
            "all-reduced; use processes = 1 with it"
        )
    _check_parallel(c)
    for key in ("epochs", "steps", "max_chunk", "checkpoint_every", "processes", "eval_every"):
        if train[key] is not None and train[key] < 1:
            raise ConfigError(f"config: train.{key}: expected a positive integer, got {train[key]!r}")
    bs = train["batch_size"]
    if bs is None or (isinstance(bs, str) and bs != "full") or (isinstance(bs, int) and bs < 1):
        raise ConfigError(f'config: train.batch_size: expected a positive integer or "full", got {bs!r}')
    if c["schedule"]["kind"] not in SCHEDULE_KINDS:
        raise ConfigError(f"config: schedule.kind: expected one of {SCHEDULE_KINDS}, got {c['schedule']['kind']!r}")
    if c["schedule"]["kind"] == "step" and not c["schedule"]["decay_every_epochs"]:
        raise ConfigError('config: schedule.decay_every_epochs: required for kind = "step"')
    if tuner and c["schedule"]["kind"] != "constant":
        raise ConfigError(
            f"config: schedule: the tuner {tuner!r} sets the learning rate at every step, so a schedule would be "
            'overwritten; remove [schedule] (or set kind = "constant"), or the [tuner]'
        )
    if c["loss"]["name"] not in LOSSES:
        raise ConfigError(f"config: loss.name: expected one of {LOSSES}, got {c['loss']['name']!r}")
    if c["monitor"]["bn_mode"] not in ("train", "eval"):
        raise ConfigError(f"config: monitor.bn_mode: expected 'train' or 'eval', got {c['monitor']['bn_mode']!r}")
    for key in ("subset", "measure_subset"):
        if c["data"][key] is not None and c["data"][key] < 1:
            raise ConfigError(f"config: data.{key}: expected a positive integer, got {c['data'][key]!r}")


def _check_parallel(c: dict[str, Any]) -> None:
    """``train.parallel``: torch's DDP, or FSDP2 — which takes no tuner and measures only from shards."""
    parallel = c["train"]["parallel"]
    if parallel not in PARALLEL:
        raise ConfigError(f"config: train.parallel: expected one of {PARALLEL}, got {parallel!r}")
    if parallel != "fsdp":
        return
    if c["train"]["processes"] < 2:
        raise ConfigError('config: train.parallel: "fsdp" shards the model over processes; set train.processes ≥ 2')
    if c["tuner"].get("name"):
        raise ConfigError('config: tuner: a tuner cannot drive an FSDP2-sharded run; use train.parallel = "ddp"')
    unsharded = [name for name in c["monitor"]["metrics"] if name in METRICS and not METRICS[name].shards]
    if unsharded:
        supported = sorted(name for name, cls in METRICS.items() if cls.shards)
        raise ConfigError(
            f'config: monitor.metrics: {unsharded} cannot measure an FSDP2-sharded model (train.parallel = "fsdp"); '
            f"choose among {supported}"
        )


def to_toml(config: dict[str, Any]) -> str:
    """The resolved config as TOML (None values are left out), for the run directory."""
    return "\n".join(_toml_table(config, "")).lstrip("\n") + "\n"


def _toml_table(table: dict[str, Any], name: str) -> list[str]:
    """``[name]`` with its plain keys, then each sub-table as ``[name.sub]`` (at any depth)."""
    lines = ["", f"[{name}]"] if name else []
    lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict) and v is not None]
    for key, inner in table.items():
        if isinstance(inner, dict):
            lines += _toml_table(inner, f"{name}.{key}" if name else key)
    return lines


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"config: cannot write {v!r} as TOML")
