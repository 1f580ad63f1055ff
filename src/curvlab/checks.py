"""Argument validation shared by every package: each check returns the value or raises a
:class:`curvlab.errors.InputError` whose message names the argument and what was expected."""

from __future__ import annotations

import math
from typing import Any, TypeGuard

from curvlab.errors import InputError, InputTypeError


def is_int(value: Any) -> TypeGuard[int]:
    """An int that is not a bool (True is an int to Python, never a count to us)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> TypeGuard[float]:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(value: Any, name: str, minimum: int = 1, maximum: int | None = None, note: str = "") -> int:
    """An integer in [minimum, maximum] (no upper bound when ``maximum`` is None)."""
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        expected = f"an integer in [{minimum}, {maximum}]" if maximum is not None else f"an integer ≥ {minimum}"
        raise InputError(f"{name}: expected {expected}{' ' + note if note else ''}, got {value!r}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """True or False, nothing that merely converts to one."""
    if not isinstance(value, bool):
        raise InputTypeError(f"{name}: expected true or false, got {value!r}")
    return value


def check_seed(seed: Any, name: str = "seed") -> int:
    if not is_int(seed):
        raise InputTypeError(f"{name}: expected an int, got {type(seed).__name__}")
    return seed


def check_lr(lr: float, name: str = "lr") -> float:
    if not is_number(lr) or not math.isfinite(lr) or lr < 0:
        raise InputError(f"{name}: expected a finite number ≥ 0, got {lr!r}")
    return float(lr)


def check_beta(beta: float, name: str = "momentum") -> float:
    if not is_number(beta) or not 0 <= beta < 1:
        raise InputError(f"{name}: expected a number in [0, 1), got {beta!r}")
    return float(beta)


def check_positive(value: float, name: str, finite: bool = False) -> float:
    if not is_number(value) or not value > 0 or (finite and not math.isfinite(value)):
        raise InputError(f"{name}: expected a positive{' finite' if finite else ''} number, got {value!r}")
    return float(value)


def check_percent(percent: float, name: str = "percent") -> float:
    if not is_number(percent) or not 0 < percent <= 100:
        raise InputError(f"{name}: expected a percentage in (0, 100], got {percent!r}")
    return float(percent)


def check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise InputError(f"{name}: expected one of {choices}, got {value!r}")
    return value
