"""Helpers for tests with several processes: a spawn that fails instead of hanging, and a clock that disagrees."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import torch.multiprocessing as mp

T = TypeVar("T")


def spawn_or_fail(worker, args: tuple, nprocs: int, deadline: float = 120.0) -> None:
    """``mp.spawn`` that fails the test instead of hanging when the ranks deadlock: the workers are killed once
    ``deadline`` seconds have passed."""
    context = mp.start_processes(worker, args=args, nprocs=nprocs, join=False, start_method="spawn")
    end = time.monotonic() + deadline
    while not context.join(timeout=1.0):
        if time.monotonic() > end:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {nprocs} ranks did not finish within {deadline:.0f} s (a deadlock)")


def install_impatient_clock(monitor) -> None:
    """This rank's Monitor clock says every call came after an hour of training: after the first step's calibration,
    its budget allows a measurement at every step, while real clocks on the other ranks allow the next only after
    many steps."""
    enter = monitor.clock.enter

    def hour_of_training() -> None:
        enter()
        monitor.clock.training += 3600.0

    monitor.clock.enter = hour_of_training


GLOO_TEARDOWN_ABORT = "terminate called without an active exception"


def run_torchrun(args: list[str], world: int, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node world *args``, output captured. A gloo rank
    has aborted in C++ ("terminate called without an active exception", SIGABRT, no Python traceback) at exit, mostly
    while other torchrun jobs ran on the same machine, once (2026-12-04, the two-process Hugging Face test) in a CI
    clone running nothing else, and twice in a row (2026-12-04) for the Lightning FSDP2 script, which then left its
    process group without a barrier: the scripts now end with ``curvlab.distributed.finish()`` (barrier, then
    destroy), the likely cause being a rank exiting with gloo's threads alive. Only that launch is retried, once,
    saying so on stderr; any other failure is returned as it is."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **kwargs.pop("env", {})}
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, **kwargs)
    if gloo_aborted(done):
        print(f"a gloo rank aborted ({GLOO_TEARDOWN_ABORT!r}); launching again once", file=sys.stderr)
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, **kwargs)
    return done


def gloo_aborted(done: subprocess.CompletedProcess) -> bool:
    """A launch that failed by gloo's teardown abort at exit alone (no Python traceback before it): see
    :func:`run_torchrun`."""
    return (
        done.returncode != 0
        and GLOO_TEARDOWN_ABORT in done.stderr
        and "Traceback (most recent call last)" not in done.stderr.split(GLOO_TEARDOWN_ABORT)[0]
    )


def retry_spawn_abort(launch: Callable[[int], T]) -> T:
    """``launch(attempt)`` for a spawned multi-process run (Lightning's ddp_spawn), launched once more if a rank died
    by SIGABRT: gloo's C++ teardown abort (see :func:`run_torchrun`), which has also hit a Lightning ddp_spawn
    worker after ``fit`` had finished, on a machine running nothing else. Any other failure raises at once.
    ``attempt`` (0, then 1) lets the launch use fresh output paths."""
    from torch.multiprocessing.spawn import ProcessExitedException

    try:
        return launch(0)
    except ProcessExitedException as err:
        if err.signal_name != "SIGABRT":
            raise
        print(f"a spawned rank aborted ({err}); launching again once", file=sys.stderr)
        return launch(1)
