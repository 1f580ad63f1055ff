"""Numerical failure is a measurement, not a crash: a NaN or ±inf loss, gradient or product inside a solve is a
NonFiniteError naming the quantity and the point; the Monitor records it and marks the run diverged, and never
raises it into the training loop; `curvlab run` ends the run as diverged with its records kept."""

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

import curvlab
from curvlab.errors import NonFiniteError
from curvlab.losses import cross_entropy, mse
from curvlab.monitor import Metric, Monitor, read_records


def _mlp(seed: int = 0, n_out: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, n_out))


def _data(n: int = 32, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def test_a_nan_in_the_inputs_is_named_not_a_linear_algebra_failure():
    x, y = _data()
    x[3, 2] = float("nan")
    objective = curvlab.Objective(_mlp(), cross_entropy, (x, y))
    for solve in (
        lambda: curvlab.eigs(objective, k=2),
        lambda: curvlab.eigs(objective.ggn()),
        lambda: curvlab.trace(objective.hessian(), n_probes=4),
        lambda: curvlab.spectral_density(objective.hessian(), n_probes=1, n_steps=5),
    ):
        with pytest.raises(NonFiniteError, match=r"non-finite loss \(nan\) at the model's current parameters: no"):
            solve()
    with pytest.raises(NonFiniteError, match=r"Hessian-vector product \(\d+ NaN .*, where the loss is nan"):
        objective.hvp(torch.ones(objective.dim))  # no curvature state: the product itself is checked


def test_an_infinite_loss_is_named_with_its_value():
    x, _ = _data()
    model = _mlp(n_out=1)
    with torch.no_grad():
        model[2].bias.fill_(1e30)  # outputs ≈ 1e30: their square overflows float32
    objective = curvlab.Objective(model, mse, (x, torch.zeros(len(x), 1)))
    assert objective.loss() == float("inf")
    for operator in (objective.hessian(), objective.ggn(), objective.fisher()):
        with pytest.raises(
            NonFiniteError, match=r"non-finite loss \(.*inf.*\) at the model's current parameters"
        ) as err:
            curvlab.eigs(operator)
        assert isinstance(err.value, FloatingPointError) and err.value.quantity == "loss"


def test_a_user_operator_with_a_nan_product_is_named():
    op = curvlab.LinearOperator(lambda v: v * float("nan"), dim=4, name="my matrix")
    with pytest.raises(NonFiniteError, match=r"non-finite my matrix-vector product \(4 NaN"):
        curvlab.eigs(op)
    with pytest.raises(ValueError, match="v: expected a finite vector"):
        curvlab.LinearOperator(lambda v: v, dim=2)(torch.tensor([1.0, float("inf")]))


def _diverging_loop(metrics, run_dir=None, steps: int = 40):
    """Full-batch GD far past 2/η on a squared loss: the loss grows geometrically to inf, then NaN."""
    x, _ = _data()
    y = torch.randn(len(x), 1, generator=torch.Generator().manual_seed(2))
    model = _mlp(n_out=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    monitor = Monitor(curvlab.Objective(model, mse, (x, y)), optimizer, metrics, run_dir=run_dir)
    losses = []
    for _ in range(steps):  # the user's own loop: nothing here may raise
        optimizer.zero_grad()
        loss = mse(model(x), y)
        loss.backward()
        optimizer.step()
        monitor.step(loss.detach(), (x, y))
        losses.append(float(loss.detach()))
    monitor.close()
    return monitor, losses


def test_a_run_diverging_under_a_monitor_is_recorded_and_never_raises(tmp_path):
    from curvlab.monitor import Sharpness

    monitor, losses = _diverging_loop([Sharpness(schedule=1), "full_batch"], run_dir=tmp_path)
    assert not all(map(lambda v: v == v and abs(v) < float("inf"), losses))  # the run did diverge
    assert monitor.diverged and "non-finite" in monitor.divergence
    records = read_records(tmp_path)
    diverged = [r for r in records if r["metric"] == "diverged"]
    assert len(diverged) == 1 and diverged[0]["reason"] == monitor.divergence
    failed = [r for r in records if r["metric"] == "sharpness" and r["value"] is None]
    assert failed and all("non-finite" in r["reason"] for r in failed)
    measured = [r for r in records if r["metric"] == "sharpness" and r["value"] is not None]
    assert measured and max(r["step"] for r in measured) < min(r["step"] for r in failed)  # kept what was measured
    assert monitor.state_dict()["divergence"] == monitor.divergence


def test_a_non_finite_training_loss_alone_marks_the_run_diverged():
    monitor, losses = _diverging_loop(["step"])
    first_bad = next(i for i, v in enumerate(losses) if not abs(v) < float("inf")) + 1
    assert monitor.divergence == f"non-finite training loss ({losses[first_bad - 1]}) at step {first_bad}"


class _Broken(Metric):
    name = "broken"
    description = "a metric with a bug"

    def measure(self, monitor, info):
        raise RuntimeError("a bug in a metric")
        yield


def test_a_programming_error_in_a_measurement_still_raises():
    with pytest.raises(RuntimeError, match="a bug in a metric"):
        _diverging_loop([_Broken(schedule=1)], steps=1)


def test_curvlab_run_of_a_diverging_run_keeps_its_records_and_says_diverged(tmp_path):
    from curvlab.experiments.config import to_toml, validate

    config = validate(
        {
            "name": "diverging",
            "seed": 0,
            "data": {"name": "least_squares"},
            "model": {"name": "linear"},
            "optimizer": {"name": "sgd", "lr": 50.0},
            "train": {"batch_size": 32, "steps": 200},
            "monitor": {"metrics": ["sharpness", "full_batch"], "schedules": {"sharpness": 1, "full_batch": 1}},
        }
    )
    (tmp_path / "c.toml").write_text(to_toml(config))
    command = [sys.executable, "-m", "curvlab.cli", "run", str(tmp_path / "c.toml"), "--out", str(tmp_path / "r")]
    out = subprocess.run(command + ["--quiet"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    status = json.loads((tmp_path / "r" / "status.json").read_text())
    assert status["status"] == "diverged"
    records = read_records(tmp_path / "r")
    assert [r["metric"] for r in records].count("diverged") == 1
    sharp = [r for r in records if r["metric"] == "sharpness" and r["value"] is not None]
    assert len(sharp) >= 3 and max(r["step"] for r in records) == status["step"]
    assert (tmp_path / "r" / "report.html").exists()


def test_the_finiteness_check_finds_each_bad_entry_and_passes_finite_sums_that_overflow():
    """The check reads one sum first: a NaN or ±inf anywhere makes it non-finite; a finite vector whose sum
    overflows (entries at the dtype's largest value) is then checked entry by entry and passes."""
    from curvlab.linalg.operator import FINITE_CHUNK, all_finite

    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        for bad in (math.nan, math.inf, -math.inf):
            for where in (0, 7, FINITE_CHUNK + 3):  # in the first chunk and in a later one
                v = torch.ones(FINITE_CHUNK + 10, dtype=dtype)
                v[where] = bad
                assert not all_finite(v), (dtype, bad, where)
        assert all_finite(torch.full((5,), torch.finfo(dtype).max, dtype=dtype))
    both_infinities = torch.tensor([math.inf, -math.inf, 1.0])  # their sum is NaN, not ±inf: still caught
    assert not all_finite(both_infinities)
    assert all_finite(torch.arange(10))  # integers are always finite


def test_the_error_tells_float16_overflow_from_bfloat16_precision():
    """float16 overflows (largest value 65,504); bfloat16 has float32's range, so its error does not say overflow."""
    from curvlab.core.curvature import nonfinite_error

    nan = torch.tensor([math.nan, 1.0])
    half = str(nonfinite_error(nan.half(), "Hessian-vector product"))
    assert "float16" in half and "65,504" in half and "float32 copy" in half
    brain = str(nonfinite_error(nan.bfloat16(), "Hessian-vector product"))
    assert "float32's range" in brain and "not an overflow" in brain
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = str(nonfinite_error(nan, "Hessian-vector product"))
    assert "autocast" in under and "not an overflow" in under and "outside the autocast" in under
    assert "float16" not in str(nonfinite_error(nan, "Hessian-vector product"))  # float32: nothing about precision
