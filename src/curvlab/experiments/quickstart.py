"""The main job: full-batch GD and full-batch Adam train the same MLP on an MNIST subset, each with the sharpness
its stability threshold is about (λ1 against 2/η for GD, the preconditioned λ1 against 38/η for Adam), and one
report that opens with the verdict computed from the run (see :mod:`curvlab.experiments.edge`)."""

from __future__ import annotations

import json
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

from curvlab.experiments.config import load_config
from curvlab.experiments.edge import EdgeSummary, edge_summary
from curvlab.experiments.report import write_report
from curvlab.experiments.run import resume_run, start_run
from curvlab.monitor.records import load_records

ARMS = ("gd", "adam")


def quickstart_config(arm: str) -> dict[str, Any]:
    """The shipped config of one arm ("gd" or "adam")."""
    return load_config(Path(str(files("curvlab.experiments").joinpath(f"configs/quickstart_{arm}.toml"))))


def run_quickstart(out: str | Path, quiet: bool = False) -> dict[str, EdgeSummary | None]:
    """Run (or resume) both arms under ``out``, write ``out/report.html`` and ``out/summary.json`` (the numbers of
    :func:`summary_paragraph`); the edge-of-stability summary per arm."""
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
    numbers = summary_numbers(summaries, time.perf_counter() - t0)
    (out / "summary.json").write_text(json.dumps(numbers, indent=1))
    say("")
    say(summary_paragraph(numbers))
    say(f"\nreport: {report}")
    return summaries


def summary_numbers(summaries: dict[str, EdgeSummary | None], seconds: float) -> dict[str, Any]:
    """What the summary paragraph says, per arm: where the edge quantity started, where and when it first reached
    the edge, its median after, the loss's start and end, the verdict; and the run's seconds."""
    arms = {}
    for arm, edge in summaries.items():
        if edge is None:
            continue
        i = edge.first_at_edge
        arms[arm] = {
            "label": edge.label,
            "threshold": edge.threshold,
            "first": edge.values[0],
            "reached_step": edge.steps[i] if i is not None else None,
            "reached": edge.values[i] if i is not None else None,
            "median_after": edge.median_after if edge.after else None,
            "loss_first": edge.losses[0] if edge.losses else None,
            "loss_last": edge.losses[-1] if edge.losses else None,
            "loss_increases": edge.loss_increases,
            "at_the_edge": edge.at_the_edge,
        }
    return {"seconds": seconds, "arms": arms}


def summary_paragraph(numbers: dict[str, Any]) -> str:
    """The quickstart's findings in a few sentences, every figure from ``numbers`` (:func:`summary_numbers`):
    the paragraph README shows (``make docs-numbers`` copies it there)."""
    sentences = [
        f"The quickstart ran in {numbers['seconds']:.0f} s: full-batch GD and full-batch Adam train the same tanh MLP "
        "on 1,000 MNIST images with the squared loss, with the sharpness each optimizer's stability threshold is "
        "about measured every 10 steps."
    ]
    for arm, name in (("gd", "GD"), ("adam", "Adam")):
        a = numbers["arms"].get(arm)
        if a is None:
            sentences.append(f"{name} recorded no stability threshold.")
            continue
        start = f"{name}'s {a['label']} (threshold {a['threshold']}) started at {a['first']:.2f}"
        if a["reached_step"] is None:
            sentences.append(f"{start} and never reached the edge.")
            continue
        after = f", then its median was {a['median_after']:.2f}" if a["median_after"] is not None else ""
        loss = f"; the loss went from {a['loss_first']:.3g} to {a['loss_last']:.3g} with {a['loss_increases']} rises"
        verdict = "the edge of stability" if a["at_the_edge"] else "not the edge of stability"
        sentences.append(
            f"{start}, reached {a['reached']:.2f} at step {a['reached_step']}{after}{loss}. Verdict: {verdict}."
        )
    return " ".join(sentences)
