"""The examples run as documentation: each script, at a small scale, ends with its report, where there is no
Debian data (``CURVLAB_DATA`` pointed at an empty folder, as on a machine without apt)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_no_placeholders

from curvlab import load_records

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    "script, args, needs, expect",
    [
        ("monitor_loop.py", ["--steps", "800"], None, "λ1 ="),
        ("lightning_train.py", ["--epochs", "8"], "lightning", "preconditioned λ1"),
        ("hf_trainer.py", ["--steps", "200"], "transformers", "preconditioned λ1"),
    ],
)
def test_example_runs_and_writes_its_report(script, args, needs, expect, tmp_path):
    if needs:
        pytest.importorskip(needs)
    out = tmp_path / "run"
    no_debian_data = {**os.environ, "CURVLAB_DATA": str(tmp_path / "no-data")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=no_debian_data,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert expect in done.stdout
    assert (out / "report.html").exists() and (out / "records.jsonl").exists()
    assert any((out / "figures").glob("*.png"))
    page = (out / "report.html").read_text()
    assert_no_placeholders(page)  # the report says what is known and leaves out what is not
    records = load_records(out)
    assert (records.metric == "loss").any()  # a training loss to draw
    curvature = records[records.metric.isin(["sharpness", "preconditioned_sharpness"])]
    assert len(curvature) and curvature.step.min() <= 1  # the run shows where its sharpness began
