"""Data-parallel measurement on the CPU with gloo and 2 processes: the distributed gradient, HVP, λ1
and trace equal the single-process values on the same data (float64), with an uneven shard split."""

import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ranks import GLOO_TEARDOWN_ABORT, install_impatient_clock, spawn_or_fail
from zoo import make_case

from curvlab import Objective, eigs, trace
from curvlab.distributed import DistributedObjective, finish, shard

SPLIT = 15  # rank 0 holds 15 of the 24 examples, rank 1 holds 9


def _measure(obj, v):
    return {
        "loss": obj.loss(),
        "grad": obj.grad(),
        "hvp": obj.hvp(v),
        "hessian_op": obj.hessian()(v),
        "lambda": eigs(obj, k=2, tol=1e-10).eigenvalues,
        "trace": trace(obj, n_probes=20, seed=3).estimate,
    }


def _worker(rank, world, init_file, out_dir, wrap_ddp):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        case = make_case("layernorm_mlp")
        part = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
        model = torch.nn.parallel.DistributedDataParallel(case.model) if wrap_ddp else case.model
        obj = DistributedObjective(model, case.loss_fn, (case.inputs[part], case.targets[part]))
        v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        torch.save(_measure(obj, v), Path(out_dir) / f"rank{rank}.pt")
        del model, obj  # a DDP wrapper's reducer must not outlive the process group
    finally:
        finish()


@pytest.mark.parametrize("wrap_ddp", [False, True])
def test_distributed_measurements_equal_single_process(wrap_ddp):
    case = make_case("layernorm_mlp")
    obj = Objective(case.model, case.loss_fn, (case.inputs, case.targets))
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    single = _measure(obj, v)
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(2, str(Path(tmp) / "init"), tmp, wrap_ddp), nprocs=2, join=True)
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for key in single:
        a, b = ranks[0][key], ranks[1][key]
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b)), key  # every rank gets the same numbers
        ref = torch.as_tensor(single[key], dtype=torch.float64)
        err = torch.linalg.vector_norm(torch.as_tensor(a, dtype=torch.float64) - ref) / torch.linalg.vector_norm(ref)
        assert float(err) <= 1e-6, (key, float(err))


def test_shards_cover_the_data_unevenly_and_without_overlap():
    parts = [shard(10, 3, r) for r in range(3)]
    assert [(p.start, p.stop) for p in parts] == [(0, 4), (4, 7), (7, 10)]


def test_a_list_with_fewer_batches_than_processes_is_a_named_error():
    from curvlab.distributed import rank_shard
    from curvlab.errors import InputError

    batches = [{"input_ids": torch.zeros(4, 3, dtype=torch.long)}]
    with pytest.raises(InputError, match="1 batch.*2 processes"):
        rank_shard(batches, 2, 1)
    assert rank_shard(batches * 3, 2, 1) == batches


def test_distributed_objective_needs_an_initialised_group():
    case = make_case("tanh_mlp_ce")
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedObjective(case.model, case.loss_fn, (case.inputs, case.targets))


def _monitor_worker(rank, world, init_file, out_dir):
    from curvlab.monitor import Monitor, Sharpness, every

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        case = make_case("tanh_mlp_ce")
        part = shard(len(case.targets), world, rank)
        obj = DistributedObjective(case.model, case.loss_fn, (case.inputs[part], case.targets[part]))
        opt = torch.optim.SGD(case.model.parameters(), lr=0.1)
        mon = Monitor(obj, opt, metrics=[Sharpness(schedule=every(2))], run_dir=Path(out_dir) / "run")
        for _ in range(4):
            opt.zero_grad()
            g = obj.grad()  # full-batch GD on the distributed objective: identical steps on every rank
            for p, gi in zip(case.model.parameters(), obj.unflatten(g)):
                p.grad = gi.clone()
            opt.step()
            mon.step()
        mon.close()
        values = [(r["step"], r["metric"], r["value"]) for r in mon.records if not r["metric"].startswith("cost_")]
        torch.save(values, Path(out_dir) / f"records{rank}.pt")
    finally:
        finish()


def test_monitor_under_distributed_writes_on_rank_0_and_all_ranks_agree():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_monitor_worker, args=(2, str(Path(tmp) / "init"), tmp), nprocs=2, join=True)
        r0, r1 = (torch.load(Path(tmp) / f"records{r}.pt", weights_only=False) for r in range(2))
        lines = (Path(tmp) / "run" / "records.jsonl").read_text().splitlines()
    assert r0 == r1 and any(m == "sharpness" for _, m, _ in r0)
    assert len([line for line in lines if '"cost_' not in line]) == len(r0)  # written once, by rank 0


def _records_of_run(tmp_path, config: dict, processes: int) -> dict:
    """Run ``config`` with ``processes`` processes through the CLI: its non-cost records' values by (step, metric,
    index), and the learning rate of each loss record under (step, "lr", None)."""
    import json
    import subprocess
    import sys

    from curvlab.experiments.config import to_toml, validate
    from curvlab.monitor import read_records

    config = validate({**config, "train": {**config["train"], "processes": processes}})
    path, out_dir = tmp_path / f"c{processes}.toml", tmp_path / f"r{processes}"
    path.write_text(to_toml(config))
    command = [sys.executable, "-m", "curvlab.cli", "run", str(path), "--out", str(out_dir), "--quiet", "--no-report"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if out.returncode != 0 and (GLOO_TEARDOWN_ABORT in out.stderr or "(SIGABRT)" in out.stderr):
        print("a gloo rank aborted in C++ (SIGABRT); launching again once", file=sys.stderr)  # see ranks.run_torchrun
        shutil.rmtree(out_dir, ignore_errors=True)
        out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    ranks = [line for line in out.stderr.splitlines() if line.startswith("[rank")]  # each rank's own error
    assert out.returncode == 0, "\n".join(ranks[-30:]) or out.stderr[-2000:]
    assert json.loads((out_dir / "status.json").read_text())["status"] == "finished"
    records = [r for r in read_records(out_dir) if not r["metric"].startswith("cost_")]
    values = {(r["step"], r["metric"], r.get("index")): r["value"] for r in records}
    return values | {(r["step"], "lr", None): r["lr"] for r in records if r["metric"] == "loss"}


def test_a_run_on_two_processes_matches_one_process(tmp_path):
    base = {
        "name": "dp",
        "seed": 0,
        "data": {"name": "digits", "subset": 200},
        "model": {"name": "mlp", "width": 16, "depth": 1},
        "optimizer": {"name": "sgd", "lr": 0.2, "momentum": 0.9},
        "train": {"batch_size": 50, "steps": 8, "checkpoint_every": 4},
        "monitor": {
            "metrics": ["assumptions", "sharpness", "full_batch"],
            "schedules": {"sharpness": 4, "full_batch": 4},
        },
    }
    runs = {processes: _records_of_run(tmp_path, base, processes) for processes in (1, 2)}
    # The convexity-gap family is f_new − f_old − ⟨g, Δ⟩: O(1) float32 losses cancelling to O(1e-3), so
    # the all-reduce's different summation order (≈1e-7 relative) shows up ≈1e3 times larger there.
    cancelling = {"inst_gap", "avg_gap", "exp_gap_0.99", "exp_gap_0.9999", "smoothness_ratio", "inst_gap_full"}
    _assert_same(runs, lambda metric: 1e-3 if metric in cancelling else 1e-4)


def test_a_linesearch_tuner_on_two_processes_matches_one_process(tmp_path):
    """The tuner's trial losses come from the same all-reduced closure as every step, so both processes take
    the same backtracking decisions and the run matches the one-process run."""
    base = {
        "name": "dp-tuner",
        "seed": 0,
        "data": {"name": "least_squares"},
        "model": {"name": "linear"},
        "optimizer": {"name": "sgd", "lr": 1.0},
        "tuner": {"name": "linesearch", "c": 0.5},
        "train": {"batch_size": 50, "steps": 6},
        "monitor": {"metrics": ["full_batch"], "schedules": {"full_batch": 3}},
    }
    runs = {processes: _records_of_run(tmp_path, base, processes) for processes in (1, 2)}
    lrs = [value for (_, metric, _), value in runs[1].items() if metric == "lr"]
    assert len(set(lrs)) > 1  # the linesearch chose different step sizes: the comparison covers its decisions
    _assert_same(runs, lambda metric: 1e-4)


def _assert_same(runs: dict, rel_of) -> None:
    """The 2-process records equal the 1-process ones, to ``rel_of(metric)`` relative (1e-6 absolute)."""
    assert runs[1].keys() == runs[2].keys()  # the same records, written once
    for key, value in runs[1].items():
        if value is None:  # NaN (e.g. a ratio over an empty window) is written as null: both sides
            assert runs[2][key] is None, key
            continue
        assert runs[2][key] == pytest.approx(value, rel=rel_of(key[1]), abs=1e-6), key


def _agreement_worker(rank, world, init_file, out_dir, nan_rank, impatient_rank):
    from datetime import timedelta

    from curvlab.monitor import Monitor

    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        case = make_case("tanh_mlp_ce")
        part = shard(len(case.targets), world, rank)
        obj = DistributedObjective(case.model, case.loss_fn, (case.inputs[part], case.targets[part]))
        opt = torch.optim.SGD(case.model.parameters(), lr=0.1)
        mon = Monitor(obj, opt, run_dir=Path(out_dir) / "run")  # the default set: budget-scheduled sharpness
        if rank == impatient_rank:
            install_impatient_clock(mon)
        for step in range(1, 7):
            opt.zero_grad()
            g = obj.grad()
            for p, gi in zip(case.model.parameters(), obj.unflatten(g)):
                p.grad = gi.clone()
            opt.step()
            local_loss = float("nan") if (rank == nan_rank and step == 4) else 1.0
            mon.step(local_loss)  # a loss only this rank saw as non-finite
            if step == 3:
                mon.end_epoch()
        mon.close()
        values = [
            (r["step"], r["metric"], r.get("schedule")) for r in mon.records if not r["metric"].startswith("cost")
        ]
        torch.save({"rows": values, "diverged": mon.diverged}, Path(out_dir) / f"agreed{rank}.pt")
    finally:
        finish()


@pytest.mark.parametrize("world, impatient", [(2, 1), (3, 2), (3, 0)])
def test_ranks_whose_clocks_disagree_run_the_same_measurements(world, impatient):
    """After the first step's calibration, one rank's clock allows a budgeted measurement at every step, the others'
    real clocks none yet: the schedule is decided once (rank 0) and shared, so every rank measures the same things at
    the same steps and the run finishes. A non-finite training loss seen by one rank marks the run diverged on every
    rank."""
    with tempfile.TemporaryDirectory() as tmp:
        spawn_or_fail(_agreement_worker, (world, str(Path(tmp) / "init"), tmp, 1, impatient), world)
        results = [torch.load(Path(tmp) / f"agreed{r}.pt", weights_only=False) for r in range(world)]
    assert all(r == results[0] for r in results[1:])
    assert results[0]["diverged"]
    assert [step for step, metric, _ in results[0]["rows"] if metric == "diverged"] == [4]
    measured = [(step, schedule) for step, metric, schedule in results[0]["rows"] if metric == "sharpness"]
    # every rank measures at the first step (the calibration); later, rank 0's clock decides
    assert measured == [(s, "budget") for s in range(1, 7 if impatient == 0 else 2)]


def _nan_shard_worker(rank, world, init_file, out_dir):
    from datetime import timedelta

    from curvlab.monitor import Monitor, Sharpness

    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        case = make_case("tanh_mlp_ce")
        part = shard(len(case.targets), world, rank)
        inputs = case.inputs[part].clone()
        if rank == 1:
            inputs[0, 0] = float("nan")  # a NaN in this rank's shard only: its local loss is NaN
        obj = DistributedObjective(case.model, case.loss_fn, (inputs, case.targets[part]))
        opt = torch.optim.SGD(case.model.parameters(), lr=0.1)
        mon = Monitor(obj, opt, metrics=[Sharpness(schedule=[1])])
        mon.step()
        rows = [(r["step"], r["metric"], r.get("reason", "")[:40]) for r in mon.records]
        torch.save(
            {"rows": [r for r in rows if not r[1].startswith("cost")], "diverged": mon.diverged},
            Path(out_dir) / f"nan{rank}.pt",
        )
    finally:
        finish()


def test_a_non_finite_loss_on_one_rank_fails_the_measurement_on_every_rank():
    """The curvature state of a chunk checks its loss; a check failing on one rank alone must not leave the others
    waiting in the all-reduce: every rank records the failure and marks the run diverged."""
    with tempfile.TemporaryDirectory() as tmp:
        spawn_or_fail(_nan_shard_worker, (2, str(Path(tmp) / "init"), tmp), 2)
        results = [torch.load(Path(tmp) / f"nan{r}.pt", weights_only=False) for r in range(2)]
    assert results[0] == results[1] and results[0]["diverged"]
    assert [metric for _, metric, _ in results[0]["rows"]] == ["sharpness", "diverged"]


FSDP_BASE = {
    "name": "fsdp",
    "seed": 0,
    "data": {"name": "digits", "subset": 200},
    "model": {"name": "mlp", "width": 16, "depth": 1},
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"batch_size": 50, "steps": 8, "checkpoint_every": 4, "eval_every": 2},
    "monitor": {
        "metrics": ["sharpness"],
        "schedules": {"sharpness": 4},
        "options": {"sharpness": {"tol": 1e-5, "warm": True}},
    },
}
FSDP_SHARDED = {**FSDP_BASE, "train": {**FSDP_BASE["train"], "parallel": "fsdp"}}


@pytest.fixture(scope="module")
def fsdp_two_processes(tmp_path_factory) -> dict:
    """The records of FSDP_SHARDED run in one go on 2 processes: what both FSDP run tests compare with."""
    return _records_of_run(tmp_path_factory.mktemp("fsdp"), FSDP_SHARDED, 2)


def test_an_fsdp_run_on_two_processes_matches_one_process(tmp_path, fsdp_two_processes):
    """train.parallel = "fsdp": the model, its gradients and Adam's state sharded by FSDP2, the Monitor on a
    ShardedObjective (products from two gradients). The losses and learning rates match the one-process run to
    1e-4, and so does the validation loss on the held-out split; the Sharpness group's records (the preconditioned
    λ1, its ratio to the threshold, the update's alignment with its eigenvector) to 1e-3: finite-difference
    products in float32 against exact ones, each solve to 1e-5, warm-started in both (``warm=True``): this run's
    preconditioned Hessian has a top pair 0.13% apart at step 8, where cold starts in the two runs landed on
    different members of the pair."""
    one = _records_of_run(tmp_path, FSDP_BASE, 1)
    assert any(metric == "preconditioned_sharpness" for _, metric, _ in one)
    assert [step for step, metric, _ in one if metric == "validation_loss"] == [2, 4, 6, 8]  # 359 held-out rows: uneven
    _assert_same({1: one, 2: fsdp_two_processes}, lambda m: 1e-4 if m in ("loss", "lr", "validation_loss") else 1e-3)


def test_an_interrupted_fsdp_run_resumes_from_its_sharded_checkpoint(tmp_path, fsdp_two_processes):
    """A 2-process FSDP2 run stopped after its step-4 checkpoint (torch's distributed checkpoint of the sharded
    model and Adam state, each rank's Monitor shards beside it) and resumed to step 8 writes the records of the
    same run made in one go."""
    import json
    import subprocess
    import sys

    from curvlab.experiments.config import to_toml, validate

    # validation every 2 steps: the 4-step run standing for the killed one scores step 4 as the whole run does
    sharded = {**FSDP_SHARDED, "train": {**FSDP_SHARDED["train"], "processes": 2}}
    stopped = validate({**sharded, "train": {**sharded["train"], "steps": 4}})
    (tmp_path / "stopped.toml").write_text(to_toml(stopped))
    run_dir = tmp_path / "resumed"
    cli = [sys.executable, "-m", "curvlab.cli", "run"]
    done = subprocess.run([*cli, str(tmp_path / "stopped.toml"), "--out", str(run_dir), "--quiet", "--no-report"])
    assert done.returncode == 0
    assert (run_dir / "checkpoints" / "LATEST").read_text() == "step_4"
    (run_dir / "config.toml").write_text(to_toml(validate(sharded)))  # as if it had been killed after step 4
    status = json.loads((run_dir / "status.json").read_text())
    (run_dir / "status.json").write_text(json.dumps({**status, "status": "running"}))
    done = subprocess.run([*cli, "--resume", str(run_dir), "--quiet", "--no-report"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    from curvlab.monitor import read_records

    records = [r for r in read_records(run_dir) if not r["metric"].startswith("cost_")]
    resumed = {(r["step"], r["metric"], r.get("index")): r["value"] for r in records}
    resumed |= {(r["step"], "lr", None): r["lr"] for r in records if r["metric"] == "loss"}
    assert resumed == fsdp_two_processes
