"""Reproductions: every one runs end to end at --quick scale (smoke test: one seed, small scale), with a verdict
from its fixed criterion and a report; the seeds machinery (every seed checked, all seeds in the figures, an
interrupted reproduction resumes) on the cheap dynamical models; the full variants are run by hand
(docs/reproductions.md)."""

import json
import subprocess
import sys

import pytest
from conftest import skip_without_debian_data

from curvlab.data.base import MissingSource
from curvlab.reproductions import REGISTRY, reproduce
from curvlab.reproductions.base import SEEDS

pytestmark = pytest.mark.usefixtures("shared_training_runs")  # each training run once (conftest)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_quick_reproduction_runs_and_states_a_verdict(name, tmp_path):
    try:
        summary = reproduce(name, tmp_path, quick=True)
    except MissingSource as err:  # the text reproductions read the optional Debian data
        skip_without_debian_data(str(err))
        raise
    verdict = (tmp_path / "verdict.txt").read_text()
    assert verdict.startswith("REPRODUCED" if summary["reproduced"] else "DID NOT REPRODUCE")
    assert summary["seeds"] == [SEEDS[0]] and len(summary["per_seed"]) == 1
    checks = summary["per_seed"][0]["checks"]
    assert len(checks) >= 2 and all(isinstance(c["passed"], bool) for c in checks)
    saved = json.loads((tmp_path / "numbers.json").read_text())
    assert saved["per_seed"][0]["numbers"] and saved["quick"] is True
    figures = list(tmp_path.glob("*.png"))
    assert figures and all(f.name in (tmp_path / "report.html").read_text() for f in figures)


def test_every_seed_gets_its_own_verdict_and_an_interrupted_reproduction_resumes(tmp_path):
    summary = reproduce("dynamical-models", tmp_path, seeds=SEEDS)
    assert summary["seeds"] == list(SEEDS) and [r["seed"] for r in summary["per_seed"]] == list(SEEDS)
    starts = {r["numbers"]["lam0"] for r in summary["per_seed"]}
    assert len(starts) == len(SEEDS)  # each seed is a different start point
    assert summary["reproduced_seeds"] == sum(r["reproduced"] for r in summary["per_seed"])
    page = (tmp_path / "report.html").read_text()
    assert all(f"seed {seed}" in page for seed in SEEDS)
    # A seed already on disk is not run again: its saved numbers are what the summary uses.
    saved = tmp_path / "seed1" / "numbers.json"
    run = json.loads(saved.read_text())
    run["numbers"]["lam0"] = 123.0
    saved.write_text(json.dumps(run))
    again = reproduce("dynamical-models", tmp_path, seeds=SEEDS)
    assert again["per_seed"][1]["numbers"]["lam0"] == 123.0
    # ...unless it ran under another claims file: then it runs again.
    run["claims_sha256"] = "0" * 64
    saved.write_text(json.dumps(run))
    third = reproduce("dynamical-models", tmp_path, seeds=SEEDS)
    assert third["per_seed"][1]["numbers"]["lam0"] != 123.0


def test_the_constant_eta_model_is_checked_at_the_papers_horizon_and_says_where_it_blows_up():
    """Fig. 4 shows 100 steps, and the checks read those; eq. (4) is linearly unstable about its equilibrium, so the
    numbers also say where the model blows up when run far longer (never a check)."""
    from curvlab.reproductions.base import setting_for
    from curvlab.reproductions.dynamics import run

    setting = setting_for("dynamical-models")
    assert setting["horizon"] == 100
    n = run(None, setting, 1)
    assert len(n["constant_eta_lambda"]) == 100
    assert 100 < n["constant_steps_to_divergence_if_run_2000_steps"] < 2000


def test_cli_reproduce_list_and_errors():
    out = subprocess.run([sys.executable, "-m", "curvlab.cli", "reproduce", "--list"], capture_output=True, text=True)
    assert out.returncode == 0 and all(name in out.stdout for name in REGISTRY)
    bad = subprocess.run(
        [sys.executable, "-m", "curvlab.cli", "reproduce", "no-such-thing"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "reproduce --list" in bad.stderr


def test_a_tuned_baseline_grid_is_widened_until_its_best_is_interior():
    from curvlab.reproductions.training import widened_grid

    calls = []

    def run(lr):
        calls.append(lr)
        return abs(lr - 5)

    assert list(widened_grid(run, lambda s: s, (1.0, 2.0, 3.0), 2.0, 3)) == [1.0, 2.0, 3.0, 6.0, 12.0]
    assert calls == [1.0, 2.0, 3.0, 6.0, 12.0]  # each η run once
    assert list(widened_grid(lambda lr: lr, lambda s: s, (1.0, 2.0), 3.0, 2)) == [1 / 9, 1 / 3, 1.0, 2.0]  # capped
    assert list(widened_grid(run, lambda s: s, (4.0, 5.0, 6.0), 2.0, 3)) == [4.0, 5.0, 6.0]  # interior already


def test_a_shared_training_run_is_reused_only_for_the_same_config(tmp_path):
    """shared_training_runs (conftest) copies a run only for a config already trained: one that differs in a single
    setting (here the model's width) is trained, and its records differ."""
    from curvlab.reproductions.training import run_config, series

    config = {
        "name": "shared",
        "seed": 0,
        "data": {"name": "digits", "subset": 64},
        "model": {"name": "mlp", "width": 4, "depth": 1},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"batch_size": "full", "steps": 3},
        "monitor": {"metrics": []},
    }
    first = series(run_config(config, tmp_path / "a"), "loss")
    assert series(run_config(config, tmp_path / "b"), "loss") == first  # the same config: the same records
    wider = {**config, "model": {**config["model"], "width": 5}}
    assert series(run_config(wider, tmp_path / "c"), "loss") != first
