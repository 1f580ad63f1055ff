"""Measure without perturbing: module modes, buffers and RNG streams are restored exactly.

definitions §1: BatchNorm in train mode uses batch statistics but must not update running statistics;
dropout is off unless asked for. Everything is put back as it was found, bit for bit.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

BN_MODES = ("train", "eval")


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the global torch (CPU and CUDA), Python and NumPy RNG states on exit."""
    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    py_state = random.getstate()
    np_state = _numpy_state()
    try:
        yield
    finally:
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        random.setstate(py_state)
        if np_state is not None:
            import numpy as np

            np.random.set_state(np_state)


def seed_rng(seed: int, device: torch.device) -> None:
    """Seed the global generator that ``device`` draws from. Unlike ``torch.manual_seed`` this does
    not queue lazy seeding of every accelerator backend, which captures a stack trace each call."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def _numpy_state() -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return None
    return np.random.get_state()


@contextlib.contextmanager
def measurement_mode(model: nn.Module, bn_mode: str, dropout: bool) -> Iterator[None]:
    """Put ``model`` in the mode a measurement uses, and restore everything afterwards.

    - every module goes to eval mode, except BatchNorm (train iff ``bn_mode == "train"``) and
      dropout layers (train iff ``dropout``);
    - train-mode BatchNorm stops tracking running statistics while inside (so nothing is updated,
      and ``torch.func`` transforms see no in-place buffer update);
    - all buffers are snapshotted, and any a custom layer updated in place is copied back;
    - global RNG states are restored.
    """
    modes = {m: m.training for m in model.modules()}
    buffers = [(b, b._version, b.detach().clone()) for b in model.buffers()]
    try:
        with preserved_rng():
            for m in model.modules():
                m.training = _measurement_training_flag(m, bn_mode, dropout)
            with untracked_batchnorm(model):
                yield
    finally:
        for m, flag in modes.items():
            m.training = flag
        with torch.no_grad():
            for buf, version, saved in buffers:
                if buf._version != version:  # only what a layer actually updated
                    buf.copy_(saved)


@contextlib.contextmanager
def untracked_batchnorm(model: nn.Module) -> Iterator[None]:
    """Train-mode BatchNorm layers stop tracking running statistics while inside: they still use
    batch statistics (the same function), but neither update nor save their running buffers, so
    no in-place buffer update can invalidate a kept graph or trip a ``torch.func`` transform."""
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    try:
        for m in layers:
            m.track_running_stats = False
        yield
    finally:
        for m in layers:
            m.track_running_stats = True


def _measurement_training_flag(module: nn.Module, bn_mode: str, dropout: bool) -> bool:
    if isinstance(module, _BatchNorm):
        return bn_mode == "train"
    if isinstance(module, (_DropoutNd, nn.MultiheadAttention)):
        return dropout
    return False
