"""Sweeps (definitions §9): the lr grid-search protocol, Cartesian grids, batch-size ladders, resuming."""

import json
import math
import subprocess
import sys

import pytest

from curvlab.experiments.config import ConfigError
from curvlab.experiments.sweep import load_sweep, run_sweep

BASE = """
name = "s"
[data]
name = "least_squares"
[model]
name = "linear"
[optimizer]
name = "sgd"
lr = 0.1
[train]
batch_size = 64
steps = 15
[monitor]
metrics = []
"""


def _write(tmp_path, sweep):
    path = tmp_path / "sweep.toml"
    path.write_text(BASE + "\n[sweep]\n" + sweep)
    return path


def test_lr_search_follows_the_protocol_and_keeps_diverged_runs(tmp_path):
    base, sweep = load_sweep(
        _write(tmp_path, 'kind = "lr_search"\nlr_powers = [-2, -1, 3]\nseeds = [0, 1]\nworkers = 2\n')
    )
    summary = run_sweep(base, sweep, tmp_path / "out")
    (result,) = summary["results"]
    statuses = {p.name: json.loads((p / "status.json").read_text()) for p in (tmp_path / "out" / "runs").iterdir()}
    assert len(statuses) == (3 + 2) * 2  # powers of 10, then the two half powers around the best, × seeds
    diverged = [r for r in result["runs"] if not math.isfinite(r["final_loss"])]
    assert diverged and all(statuses[r["name"]]["status"] == "diverged" for r in diverged)  # kept, counted as +inf
    by_lr = {}
    for r in result["runs"]:
        by_lr.setdefault(r["lr"], []).append(r["final_loss"])
    expected = min(by_lr, key=lambda lr: max(by_lr[lr]))
    assert result["best_lr"] == expected
    phase1_best = min((10.0**p for p in (-2, -1, 3)), key=lambda lr: max(by_lr[lr]))
    half = sorted(lr for lr in by_lr if not any(math.isclose(lr, 10.0**p) for p in (-2, -1, 3)))
    assert half == pytest.approx([phase1_best / math.sqrt(10), phase1_best * math.sqrt(10)])


def test_sweeps_resume_without_rerunning_finished_runs(tmp_path):
    path = _write(
        tmp_path, 'kind = "grid"\nseeds = [0, 1]\nworkers = 2\nvalues = { "optimizer.name" = ["sgd", "adam"] }\n'
    )
    base, sweep = load_sweep(path)
    first = run_sweep(base, sweep, tmp_path / "out")
    assert len(first["runs"]) == 4 and all(r["status"] == "finished" for r in first["runs"])
    runs = tmp_path / "out" / "runs"
    stamps = {p.name: (p / "records.jsonl").stat().st_mtime_ns for p in runs.iterdir()}
    victim = sorted(stamps)[0]
    import shutil

    shutil.rmtree(runs / victim)
    again = run_sweep(base, sweep, tmp_path / "out")
    assert [r["final_loss"] for r in again["runs"]] == [r["final_loss"] for r in first["runs"]]  # deterministic
    for name, stamp in stamps.items():
        if name != victim:
            assert (runs / name / "records.jsonl").stat().st_mtime_ns == stamp  # not run again


def test_batch_ladder_table(tmp_path):
    base, sweep = load_sweep(
        _write(
            tmp_path,
            'kind = "batch_ladder"\nbatch_sizes = [32, 128, "full"]\nepochs = [1, 2, 4]\nseeds = [0]\nworkers = 2\n',
        )
    )
    summary = run_sweep(base, sweep, tmp_path / "out")
    table = summary["table"]
    n_train = 410  # least_squares: 512 examples, 20% held out
    assert [row["iterations"] for row in table] == [n_train // 32 * 1, n_train // 128 * 2, 4]


@pytest.mark.parametrize(
    "sweep, fragment",
    [
        ('kind = "random"\n', "sweep.kind"),
        ('kind = "grid"\nseeds = []\n', "sweep.seeds"),
        ('kind = "lr_search"\n', "sweep.lr_powers"),
        ('kind = "batch_ladder"\nbatch_sizes = [8, 16]\nepochs = [1]\n', "sweep.batch_sizes"),
        ('kind = "grid"\nworker = 2\n', "sweep.worker"),
    ],
)
def test_bad_sweep_configs_name_the_key(tmp_path, sweep, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_sweep(_write(tmp_path, sweep))


def test_sweep_cli_writes_a_report_and_errors_in_one_line(tmp_path):
    path = _write(tmp_path, 'kind = "lr_search"\nlr_powers = [-1, 0]\nseeds = [0]\nworkers = 2\n')
    out = subprocess.run(
        [sys.executable, "-m", "curvlab.cli", "sweep", str(path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "best lr" in out.stdout
    html = (tmp_path / "o" / "report.html").read_text()
    assert "figures/grid_search.png" in html and (tmp_path / "o" / "figures" / "grid_search.png").exists()
    (tmp_path / "bad.toml").write_text(BASE)
    bad = subprocess.run(
        [sys.executable, "-m", "curvlab.cli", "sweep", str(tmp_path / "bad.toml")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "[sweep]" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_ray_executor_on_a_local_instance_matches_the_process_pool(tmp_path):
    grid = 'kind = "grid"\nseeds = [0, 1]\nworkers = 2\nvalues = { "optimizer.lr" = [0.01, 0.1] }\n'
    base, sweep = load_sweep(_write(tmp_path, grid + 'executor = "ray"\n'))
    on_ray = run_sweep(base, sweep, tmp_path / "ray")
    base, sweep = load_sweep(_write(tmp_path, grid))
    on_pool = run_sweep(base, sweep, tmp_path / "pool")
    assert len(on_ray["runs"]) == 4 and all(r["status"] == "finished" for r in on_ray["runs"])
    assert [r["final_loss"] for r in on_ray["runs"]] == [r["final_loss"] for r in on_pool["runs"]]
    with pytest.raises(ConfigError, match="sweep.executor"):
        load_sweep(_write(tmp_path, 'kind = "grid"\nexecutor = "slurm"\n'))
