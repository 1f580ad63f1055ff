"""The main job: full-batch GD and full-batch Adam train the same MLP on an MNIST subset, each with the sharpness
its stability threshold is about (λ1 against 2/η for GD, the preconditioned λ1 against 38/η for Adam), and one
report that opens with the verdict computed from the run (see :mod:`curvlab.experiments.edge`)."""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path

from curvlab.experiments.config import load_config
from curvlab.experiments.edge import EdgeSummary, edge_summary
from curvlab.experiments.report import write_report
from curvlab.experiments.run import resume_run, start_run
from curvlab.monitor.records import load_records

ARMS = ("gd", "adam")


def quickstart_config(arm: str) -> dict:
    """The shipped config of one arm ("gd" or "adam")."""
    return load_config(Path(str(files("curvlab.experiments").joinpath(f"configs/quickstart_{arm}.toml"))))


def run_quickstart(out: str | Path, quiet: bool = False) -> dict[str, EdgeSummary | None]:
    """Run (or resume) both arms under ``out``, write ``out/report.html``; the edge-of-stability summary per arm."""
    out = Path(out)
    say = (lambda *a: None) if quiet else print
    t0 = time.perf_counter()
    summaries = {}
    for arm in ARMS:
        run_dir = out / arm
        resumable = (run_dir / "config.toml").exists()
        result = resume_run(run_dir, quiet=quiet) if resumable else start_run(quickstart_config(arm), run_dir, quiet)
        say(f"{arm}: {result.status} after {result.steps} steps, final loss {result.final_loss:.4g}")
        summaries[arm] = edge_summary(arm, load_records(run_dir))
    report = write_report([out / arm for arm in ARMS], out, title="Quickstart: GD and Adam at the edge of stability")
    for summary in summaries.values():
        if summary is not None:
            say(summary.sentence())
    say(f"report: {report} ({time.perf_counter() - t0:.0f} s)")
    return summaries
