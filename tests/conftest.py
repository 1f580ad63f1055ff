import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from zoo import CASES, explicit_hessian, make_case  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):  # tests spread over processes (pytest -n): one thread each, and in theirs
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(params=CASES)
def case(request):
    return make_case(request.param)


_HESSIANS: dict = {}


def cached_hessian(name: str) -> torch.Tensor:
    if name not in _HESSIANS:
        _HESSIANS[name] = explicit_hessian(make_case(name))
    return _HESSIANS[name]


def rel_err(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-300))


def skip_without_debian_data(error_text: str) -> None:
    """Where there is no apt-get the optional Debian data cannot be fetched, and a test that needs it skips,
    naming the package. Where apt-get exists, its absence stays a failure: ``make install`` fetches it."""
    if "needs the Debian package" in error_text and shutil.which("apt-get") is None:
        pytest.skip("optional Debian data absent and no apt-get here: " + error_text.strip().splitlines()[-1][:200])


def assert_no_placeholders(page: str) -> None:
    """A report says what is known and leaves out what is not: no "?", "None" or "nan" cell, no "…; ." sentence."""
    for placeholder in ("<td>?</td>", "<td>None</td>", "<td>nan</td>", "; ."):
        assert placeholder not in page, f"the report shows a placeholder: {placeholder!r}"


@pytest.fixture(scope="session")
def _trained_runs(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """Where :func:`shared_training_runs` keeps one copy of each training run of the session, and its index."""
    return tmp_path_factory.mktemp("trained_runs"), {}


@pytest.fixture
def shared_training_runs(_trained_runs, monkeypatch) -> None:
    """The reproductions' training runs (``curvlab.reproductions.training.run_config``), each trained once per test
    session: a run whose validated config was already trained in this session (the same data, model, optimizer,
    seed and steps: a quick reproduction and a contrast that does not change that run) gets a copy of that run's
    directory instead of training it again. Runs are deterministic (``test_a_run_writes_its_directory_and_is_
    deterministic``), so the copy holds the records a second training would write, timings aside; every distinct
    run is still trained, by the code under test."""
    from curvlab.experiments.config import validate
    from curvlab.reproductions import training

    store, trained = _trained_runs
    start_run = training.start_run

    def start_or_copy(config: dict, run_dir: Path, **kwargs) -> None:
        key = json.dumps(validate(config), sort_keys=True, default=str)
        if key in trained:
            shutil.copytree(trained[key], run_dir)
            return
        start_run(config, run_dir, **kwargs)
        trained[key] = store / str(len(trained))
        shutil.copytree(run_dir, trained[key])

    monkeypatch.setattr(training, "start_run", start_or_copy)
