"""Opening a run directory runs none of its code: a checkpoint that would run code when unpickled is refused with a
named error by resume, spectrum and the sharded loader, before any of it runs; a genuine checkpoint (every metric's
state, every RNG) loads as tensors and plain data."""

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from curvlab.experiments import resume_run, start_run
from curvlab.experiments.run_dir import UnsafeCheckpoint, load_untrusted, write_status
from curvlab.experiments.spectrum import spectrum_of_run

CONFIG = {
    "name": "safe",
    "seed": 1,
    "data": {"name": "digits", "subset": 128},
    "model": {"name": "mlp", "width": 8, "depth": 1},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "train": {"batch_size": 32, "steps": 4, "checkpoint_every": 2},
    "monitor": {
        "metrics": ["assumptions", "sharpness", "directional", "noise", "full_batch"],
        "schedules": {"sharpness": 2, "directional": 2, "noise": [4], "full_batch": 2},
    },
}


class Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


@pytest.fixture
def planted(tmp_path):
    """An interrupted run whose checkpoint was replaced by one that runs code when unpickled, and the marker it
    would write."""
    run = tmp_path / "run"
    start_run(CONFIG, run, quiet=True)
    write_status(run, "running", 2)  # as if killed: resume loads the checkpoint
    marker = tmp_path / "marker"
    state = torch.load(run / "checkpoint.pt", weights_only=False)  # the test's own file
    torch.save({**state, "extra": Payload(marker)}, run / "checkpoint.pt")
    return run, marker


def test_a_genuine_checkpoint_loads_as_tensors_and_plain_data(tmp_path):
    start_run(CONFIG, tmp_path / "run", quiet=True)
    state = load_untrusted(tmp_path / "run" / "checkpoint.pt")
    assert state["step"] == 4 and isinstance(state["rng"]["numpy"][1], torch.Tensor)
    allowed = {"curvlab.geometry.assumptions.L0L1Fit", "curvlab.geometry.assumptions.AssumptionTracker"}
    assert set(torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "run" / "checkpoint.pt")) == allowed


def test_resume_and_spectrum_refuse_a_checkpoint_that_runs_code(planted):
    run, marker = planted
    with pytest.raises(UnsafeCheckpoint, match="checkpoint.pt holds more than tensors"):
        resume_run(run, quiet=True)
    with pytest.raises(UnsafeCheckpoint, match="could run code"):
        spectrum_of_run(run, k=1)
    assert not marker.exists()


def test_the_command_line_refuses_it_in_one_line(planted):
    run, marker = planted
    for args in (["run", "--resume", str(run)], ["spectrum", str(run)]):
        done = subprocess.run([sys.executable, "-m", "curvlab.cli", *args], capture_output=True, text=True)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "could run code" in done.stderr
    assert not marker.exists()


@pytest.fixture
def one_rank_group():
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore:Detected an existing checkpoint")
def test_a_sharded_checkpoint_that_runs_code_is_refused_wherever_it_hides(tmp_path, one_rank_group):
    """torch's distributed checkpoint unpickles its ``.metadata`` and its non-tensor entries unrestricted: the
    sharded loader checks both, and the rank file, before any of them is read."""
    import shutil

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    from curvlab.experiments.parallel import load_sharded, save_sharded

    def fresh():
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
        model(torch.ones(4, 3)).sum().backward()
        optimizer.step()
        return model, optimizer

    model, optimizer = fresh()
    save_sharded(tmp_path / "run", 1, model, optimizer, {"step": 1})
    folder = tmp_path / "run" / "checkpoints" / "step_1"
    restored = torch.nn.Linear(3, 2)
    restored_optimizer = torch.optim.Adam(restored.parameters(), lr=0.1)
    assert load_sharded(tmp_path / "run", restored, restored_optimizer) == {"step": 1}  # genuine: loads
    assert torch.equal(restored.weight, model.weight)
    marker = tmp_path / "marker"
    original = folder / ".metadata"
    shutil.copy(original, tmp_path / "metadata")
    original.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(UnsafeCheckpoint, match=".metadata holds more than a checkpoint's index"):
        load_sharded(tmp_path / "run", *fresh())
    shutil.copy(tmp_path / "metadata", original)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    optimizer_state["param_groups"][0]["lr"] = Payload(marker)  # a non-tensor entry: saved as pickled bytes
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=folder)
    with pytest.raises(UnsafeCheckpoint, match="param_groups.*holds more than tensors"):
        load_sharded(tmp_path / "run", *fresh())
    torch.save({"step": 1, "extra": Payload(marker)}, folder / "rank0.pt")
    with pytest.raises(UnsafeCheckpoint, match="rank0.pt holds more than tensors"):
        load_sharded(tmp_path / "run", *fresh())
    assert not marker.exists()
