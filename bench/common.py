"""Shared helpers for the benchmark scripts: timing, machine description, Markdown tables."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

THREADS = 2  # torch threads every benchmark runs with unless --threads says otherwise (CI's machine has 2 cores)


def parse_pinned(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line with a ``--threads`` option added, and pin torch's thread count to it here and in
    the processes the benchmark starts (``BENCH_THREADS``): a ratio timed with 16 threads on one machine and 2 on
    another is not the same figure, and docs/benchmarks.md records the count with each section."""
    default = int(os.environ.get("BENCH_THREADS", THREADS))  # a benchmark's own child process inherits its count
    parser.add_argument("--threads", type=int, default=default, help=f"torch threads (default {default})")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["BENCH_THREADS"] = str(args.threads)
    return args


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int = 9, warmup: int = 1) -> dict[str, float]:
    """Median wall time of each function, timed round-robin (one call of each per round) so that
    drift in the machine's speed hits every entry alike and the order of entries does not matter."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}; {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}; "
        f"{datetime.date.today().isoformat()}"
    )


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(x: object) -> str:
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.4g}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_section(name: str, title: str, lines: list[str], command: str | None = None, estimated: bool = False) -> None:
    """Replace (or append) the section between this script's BEGIN/END markers in docs/benchmarks.md; ``command``
    (default ``bench/<name>.py``) is what measured it (``estimated``: what computed an estimate, measuring nothing)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    command = command or f"bench/{name}.py"
    made = "Estimated by" if estimated else "Measured by"
    body = "\n".join([begin, f"{made} `{command}` on: {machine_description()}.", "", *lines, end])
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + body + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n" + body + "\n"
    DOC.write_text(text)
