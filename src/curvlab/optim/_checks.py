"""Hyper-parameter validation shared by the optimizers and tuners: errors name the argument."""

from __future__ import annotations

import math

from curvlab.errors import InputError


def check_lr(lr: float, name: str = "lr") -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise InputError(f"{name}: expected a finite number ≥ 0, got {lr!r}")
    return float(lr)


def check_beta(beta: float, name: str = "momentum") -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
        raise InputError(f"{name}: expected a number in [0, 1), got {beta!r}")
    return float(beta)


def check_positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InputError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def check_percent(percent: float, name: str = "percent") -> float:
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 < percent <= 100:
        raise InputError(f"{name}: expected a percentage in (0, 100], got {percent!r}")
    return float(percent)


def check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise InputError(f"{name}: expected one of {choices}, got {value!r}")
    return value
