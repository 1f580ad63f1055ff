"""Reproductions: every one runs end to end at --quick scale (smoke test), with a verdict from its
fixed criterion and a report; the full variants are run by hand (docs/reproductions.md)."""

import json
import subprocess
import sys

import pytest

from curvlab.reproductions import REGISTRY, reproduce


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_quick_reproduction_runs_and_states_a_verdict(name, tmp_path):
    summary = reproduce(name, tmp_path, quick=True)
    verdict = (tmp_path / "verdict.txt").read_text()
    assert verdict.startswith("REPRODUCED" if summary["reproduced"] else "DID NOT REPRODUCE")
    assert len(summary["checks"]) >= 2 and all(isinstance(c["passed"], bool) for c in summary["checks"])
    saved = json.loads((tmp_path / "numbers.json").read_text())
    assert saved["numbers"] and saved["quick"] is True
    figures = list(tmp_path.glob("*.png"))
    assert figures and all(f.name in (tmp_path / "report.html").read_text() for f in figures)


def test_dynamical_models_reproduce_exactly():
    """The models are cheap and deterministic: the quick variant is the full one, and it reproduces."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        assert reproduce("dynamical-models", tmp, quick=True)["reproduced"]


def test_cli_reproduce_list_and_errors():
    out = subprocess.run([sys.executable, "-m", "curvlab.cli", "reproduce", "--list"], capture_output=True, text=True)
    assert out.returncode == 0 and all(name in out.stdout for name in REGISTRY)
    bad = subprocess.run(
        [sys.executable, "-m", "curvlab.cli", "reproduce", "no-such-thing"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "reproduce --list" in bad.stderr
