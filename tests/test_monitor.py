"""The Monitor: never perturbs training, writes tidy flushed records, follows its schedules."""

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from curvlab import Objective
from curvlab.errors import InputError
from curvlab.losses import cross_entropy, half_mse
from curvlab.monitor import (
    BlockSharpness,
    Curvatures,
    Directional,
    FullBatch,
    Monitor,
    Noise,
    Sharpness,
    at_steps,
    epoch_end,
    every,
    load_records,
    log_spaced,
    read_records,
)
from curvlab.optim import CoordinateClip, DeltaSGDM, HeavyBall, RandomScaling
from curvlab.tuners import CDAT, make_closure

DT = torch.float64
ALL = lambda x, y: [  # noqa: E731
    "assumptions",
    "full_batch",
    Sharpness(schedule=every(3), k=2, lambda_min=True),
    "directional",
    "trace",
    "density",
    "landscape",
    "histogram",
    Curvatures(schedule=every(4)),
    BlockSharpness(schedule=every(4)),
    Noise(data=(x, y), batch_size=8, n_batches=4, schedule=every(5)),
]


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 6, generator=g), torch.randint(0, 4, (n,), generator=g)


def _train(make_opt, monitored, run_dir=None, epochs=2, tuner=False):
    x, y = _data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.Tanh(), nn.Dropout(0.2), nn.Linear(12, 4))
    opt = make_opt(model)
    mon = None
    if monitored:
        obj = Objective(model, cross_entropy, (x, y), batch_size=32)
        mon = Monitor(obj, opt, metrics=ALL(x, y), run_dir=run_dir)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    for _ in range(epochs):
        for xb, yb in loader:
            if tuner:
                loss = opt.step(make_closure(lambda xb=xb, yb=yb: cross_entropy(model(xb), yb), opt))
            else:
                opt.zero_grad()
                loss = cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
            if mon:
                mon.step(loss, (xb, yb))
        if mon:
            mon.end_epoch()
    state = [p.detach().clone() for p in model.parameters()] + [b.clone() for b in model.buffers()]
    return state, torch.get_rng_state(), mon


@pytest.mark.parametrize(
    "make_opt, tuner",
    [
        (lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), False),
        (lambda m: torch.optim.Adam(m.parameters(), lr=1e-2), False),
        (lambda m: RandomScaling(DeltaSGDM(m.parameters(), lr=0.1), seed=1), False),
        (lambda m: CoordinateClip(HeavyBall(m.parameters(), lr=0.1, momentum=0.9, dampening=True)), False),
        (lambda m: CDAT(torch.optim.Adam(m.parameters(), lr=1.0), model=m), True),
    ],
)
def test_monitoring_everything_leaves_the_trajectory_bit_identical(make_opt, tuner):
    torch.use_deterministic_algorithms(True)
    try:
        plain, rng_plain, _ = _train(make_opt, False, tuner=tuner)
        watched, rng_watched, mon = _train(make_opt, True, tuner=tuner)
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(a, b) for a, b in zip(plain, watched))
    assert torch.equal(rng_plain, rng_watched)
    metrics = {r["metric"] for r in mon.records}
    for name in (
        "inst_gap",
        "loss_full",
        "sharpness",
        "lambda_min",
        "directional_sharpness",
        "trace",
        "spectral_density",
        "landscape_loss",
        "coordinate_count",
        "noise_tail_index",
        "cost_seconds",
        "update_cos",
    ):
        assert name in metrics


def test_records_are_tidy_flushed_and_load_into_pandas(tmp_path):
    _, _, mon = _train(lambda m: torch.optim.Adam(m.parameters(), lr=1e-2), True, run_dir=tmp_path, epochs=1)
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == len(mon.records)  # every record already on disk before close()
    first = json.loads(lines[0])
    for key in ("step", "epoch", "metric", "value", "n_measure", "bn_mode", "dropout", "lr", "group"):
        assert key in first
    df = load_records(tmp_path)
    assert len(df) == len(lines) and df["n_measure"].eq(64).all() and df["bn_mode"].eq("train").all()
    sharp = df[df.metric == "sharpness"]
    assert set(sharp["index"].dropna().astype(int)) == {1, 2} and (sharp.step % 3 == 0).all()
    costs = df[(df.metric == "cost_hvps") & (df.group == "sharpness")]
    assert (costs.value > 0).all()
    assert df[df.metric == "preconditioned_sharpness"].value.notna().all()  # Adam has a preconditioner
    mon.close()
    with open(tmp_path / "records.jsonl", "a") as f:
        f.write('{"step": 99, "metric": "torn')  # a run killed mid-write
    assert len(read_records(tmp_path)) == len(lines)


def test_monitor_on_a_convex_quadratic_reports_the_exact_gap():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 4, generator=g, dtype=DT), torch.randn(30, 1, generator=g, dtype=DT)
    model = nn.Linear(4, 1, bias=False).to(DT)
    H = x.T @ x / 30
    obj = Objective(model, half_mse, (x, y))
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    mon = Monitor(obj, opt, metrics=["assumptions", Sharpness(schedule=every(1), tol=1e-10)])
    for _ in range(5):
        before = obj.parameters_vector()
        opt.zero_grad()
        half_mse(model(x), y).backward()
        opt.step()
        mon.step(None, (x, y))
        delta = obj.parameters_vector() - before
        rec = {r["metric"]: r["value"] for r in mon.records if r["step"] == mon.step_count}
        assert rec["inst_gap"] == pytest.approx(-0.5 * float(delta @ H @ delta), rel=1e-9)
        assert rec["sharpness"] == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-8)
        assert rec["threshold"] == pytest.approx(2 / 0.2) and rec["lr_times_sharpness_minus_2"] == pytest.approx(
            0.2 * rec["sharpness"] - 2
        )


def test_windows_reset_every_epoch_and_schedules_fire_where_asked():
    x, y = _data(32)
    model = nn.Linear(6, 4)
    obj = Objective(model, cross_entropy, (x, y))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(obj, opt, metrics=["assumptions", Sharpness(schedule=at_steps([2]) | epoch_end())])
    for _epoch in range(2):
        for _ in range(3):
            opt.zero_grad()
            cross_entropy(model(x), y).backward()
            opt.step()
            mon.step(None, (x, y))
        mon.end_epoch()
    gaps = {r["step"]: r["value"] for r in mon.records if r["metric"] == "inst_gap"}
    avg = {r["step"]: r["value"] for r in mon.records if r["metric"] == "avg_gap"}
    assert avg[4] == pytest.approx(gaps[4])  # first step of epoch 2: the window restarted
    assert avg[3] == pytest.approx((gaps[1] + gaps[2] + gaps[3]) / 3)
    sharp_steps = [(r["step"], r.get("epoch_end", False)) for r in mon.records if r["metric"] == "sharpness"]
    assert sharp_steps == [(2, False), (3, True), (6, True)]


def test_schedules():
    assert [s for s in range(1, 11) if every(3).due(s)] == [3, 6, 9]
    assert not every(3).due(3, epoch_end=True) and epoch_end().due(7, epoch_end=True)
    steps = [s for s in range(1, 1001) if log_spaced(4, 1000).due(s)]
    assert steps == [1, 10, 100, 1000]
    with pytest.raises(ValueError, match="k"):
        every(0)


def test_measure_now_before_training():
    x, y = _data(32)
    model = nn.Linear(6, 4)
    mon = Monitor(
        Objective(model, cross_entropy, (x, y)),
        torch.optim.SGD(model.parameters(), lr=0.1),
        metrics=["sharpness", "full_batch"],
    )
    mon.measure()
    assert {r["metric"] for r in mon.records if r["step"] == 0} >= {"sharpness", "loss_full"}


def test_full_batch_loss_only_and_the_batch_evaluated_only_where_asked():
    """FullBatch(gradients=False) records F alone; the shadows of "directional" need the batch at x_{t-1} only (one
    pass), the assumption tests at both points (two)."""
    x, y = _data(32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))
    obj = Objective(model, cross_entropy, (x, y))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    passes = {}
    for metrics in (["directional"], ["directional", "assumptions"]):
        mon = Monitor(obj, opt, metrics=[*metrics, FullBatch(schedule=every(1), gradients=False)])
        for _ in range(3):
            opt.zero_grad()
            loss = cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            mon.step(loss, (x, y))
        rows = [r for r in mon.records if r["group"] == "full_batch" and not r["metric"].startswith("cost_")]
        assert [r["metric"] for r in rows] == ["loss_full"] * 3
        assert rows[-1]["value"] == pytest.approx(obj.loss(), rel=1e-12)
        cost = [r["value"] for r in mon.records if r["metric"] == "cost_passes" and r["group"] == "batch_evaluation"]
        passes[len(metrics)] = cost
    assert passes == {1: [1, 1, 1], 2: [2, 3, 3]}  # assumptions: + f(x_{t−2}) on the batch, from step 2
    with pytest.raises(TypeError, match="gradients"):
        FullBatch(gradients="no")


def test_bad_monitor_arguments_name_themselves(tmp_path):
    x, y = _data(16)
    model = nn.Linear(6, 4)
    obj = Objective(model, cross_entropy, (x, y))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="metrics"):
        Monitor(obj, opt, metrics=["sharpnes"])
    with pytest.raises(ValueError, match="noise"):
        Monitor(obj, opt, metrics=["noise"])
    with pytest.raises(ValueError, match="metrics"):
        Monitor(obj, opt, metrics=["sharpness", "sharpness"])
    with pytest.raises(ValueError, match="reset"):
        Monitor(obj, opt, reset="daily")
    with pytest.raises(TypeError, match="objective"):
        Monitor(model, opt)
    with pytest.raises(TypeError, match="optimizer"):
        Monitor(obj, "sgd")


def test_tensorboard_output_or_a_clear_error(tmp_path):
    x, y = _data(16)
    model = nn.Linear(6, 4)
    obj = Objective(model, cross_entropy, (x, y))
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install tensorboard"):
            Monitor(obj, torch.optim.SGD(model.parameters(), lr=0.1), run_dir=tmp_path, tensorboard=True)
        return
    mon = Monitor(
        obj, torch.optim.SGD(model.parameters(), lr=0.1), metrics=["sharpness"], run_dir=tmp_path, tensorboard=True
    )
    mon.measure()
    mon.close()
    assert any((tmp_path / "tensorboard").iterdir())


def test_under_a_tuner_the_threshold_uses_the_base_optimizer_at_the_tuners_lr():
    x, y = _data(32)
    model = nn.Linear(6, 4)
    base = torch.optim.SGD(model.parameters(), lr=123.0)
    tuner = CDAT(base, sigma=1.0)
    mon = Monitor(Objective(model, cross_entropy, (x, y)), tuner, metrics=[Sharpness(schedule=every(1))])
    tuner.step(make_closure(lambda: cross_entropy(model(x), y), tuner))
    mon.step(None, (x, y))
    rec = {r["metric"]: r for r in mon.records}
    assert rec["threshold"]["kind"] == "gd" and rec["threshold"]["value"] == pytest.approx(2 / tuner.lr)
    assert rec["lr_times_sharpness"]["value"] == pytest.approx(tuner.lr * rec["sharpness"]["value"])


def test_curvatures_and_block_sharpness_record_what_the_operators_give(tmp_path):
    import curvlab
    from curvlab.experiments.report import write_report

    x, y = _data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.LayerNorm(12), nn.Tanh(), nn.Linear(12, 4)).double()
    x = x.double()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    obj = Objective(model, cross_entropy, (x, y), batch_size=32)
    metrics = [Curvatures(schedule=every(3), tol=1e-8), BlockSharpness(schedule=every(3), tol=1e-8)]
    mon = Monitor(obj, opt, metrics=metrics, run_dir=tmp_path / "run")
    for _ in range(6):
        opt.zero_grad()
        loss = cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        mon.step(loss)
    mon.close()
    assert obj._operators == {}  # the graphs shared by the metrics at step 6 were released
    df = load_records(tmp_path / "run")
    last = df[df.step == 6]
    for curvature in ("hessian", "ggn", "fisher"):
        recorded = last[(last.metric == "top_eigenvalue") & (last.curvature == curvature)].value.item()
        direct = float(curvlab.eigs(obj.curvature(curvature), tol=1e-10).eigenvalues[0])
        assert recorded == pytest.approx(direct, rel=1e-6)
    blocks = curvlab.block_eigs(obj, tol=1e-10)
    for block, res in blocks.items():
        recorded = last[(last.metric == "block_sharpness") & (last.block == block)].value.item()
        assert recorded == pytest.approx(float(res.eigenvalues[0]), rel=1e-6)
    report = write_report([tmp_path / "run"])
    figures = {p.name for p in (report.parent / "figures").iterdir()}
    assert {"curvatures.png", "block_sharpness.png"} <= figures


def test_a_metric_that_cannot_measure_here_says_why_once():
    x, y = _data(32)
    model = nn.Linear(6, 4)
    obj = Objective(model, cross_entropy, (x, y))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(obj, opt, metrics=["assumptions", Directional(schedule=every(1))])
    for _ in range(4):
        opt.zero_grad()
        loss = cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        mon.step(loss)  # no batch: what the Hugging Face Trainer's callbacks can give
    skipped = [r for r in mon.records if "skipped" in r]
    assert sorted(r["metric"] for r in skipped) == ["assumptions", "directional"]  # once each, not every step
    assert all("no batch" in r["skipped"] and r["value"] != r["value"] for r in skipped)


def test_adam_before_its_first_step_says_it_has_no_preconditioner_yet():
    x, y = _data(32)
    model = nn.Linear(6, 4)
    mon = Monitor(Objective(model, cross_entropy, (x, y)), torch.optim.Adam(model.parameters(), lr=1e-3))
    mon.measure()
    (row,) = [r for r in mon.records if r["metric"] == "sharpness"]
    assert "no step yet" in row["skipped"] and "preconditioned" in row["skipped"]


@pytest.mark.parametrize("k", [1, 3])
def test_each_sharpness_record_states_its_accuracy_and_the_next_solve_starts_from_the_block(k):
    """Every sharpness row carries the stopping rule's bound on |λ − θ| (``error_bound``) and the products its solve
    took; the bound holds against the explicit Hessian's eigenvalues at the same parameters, at every measurement.
    With k > 1 the next solve starts from the sum of the k eigenvectors, so its Krylov space holds the block."""
    from zoo import explicit_hessian, make_case

    from curvlab.monitor import Sharpness, every

    case = make_case("tanh_mlp_ce")
    model = case.model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    metric = Sharpness(schedule=every(5), k=k, tol=1e-3)
    monitor = Monitor(Objective(model, case.loss_fn, (case.inputs, case.targets)), optimizer, metrics=[metric])
    for step in range(1, 16):
        optimizer.zero_grad()
        loss = case.loss_fn(model(case.inputs), case.targets)
        loss.backward()
        optimizer.step()
        monitor.step(loss, (case.inputs, case.targets))
        if step % 5 == 0:
            eigenvalues = torch.linalg.eigvalsh(explicit_hessian(case)).flip(0)
            rows = [r for r in monitor.records if r["metric"] == "sharpness" and r["step"] == step]
            assert [r["index"] for r in rows] == list(range(1, k + 1))
            for r in rows:
                assert 0 <= r["error_bound"] <= 1e-3 * abs(r["value"]) and r["products"] > 0
                assert abs(r["value"] - float(eigenvalues[r["index"] - 1])) <= r["error_bound"] + 1e-12
            cosine = float(metric.v0 @ metric.top_vector / (metric.v0.norm() * metric.top_vector.norm()))
            assert cosine == pytest.approx(k**-0.5, abs=1e-6)  # the sum of k orthonormal vectors: 1/√k on each


def _sgd_on_tanh_mlp(metrics: list | None, steps: int, after_step=None):
    """tanh_mlp_ce trained by SGD (η = 0.5) for ``steps`` steps, monitored by ``metrics`` (None: not monitored);
    ``after_step(monitor, explicit)`` after each monitored step, ``explicit()`` giving the explicit Hessian there.
    Returns the final parameters (flat) and the Monitor."""
    from zoo import explicit_hessian, make_case

    case = make_case("tanh_mlp_ce")
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.5)
    objective = Objective(case.model, case.loss_fn, (case.inputs, case.targets))
    monitor = Monitor(objective, optimizer, metrics=metrics) if metrics is not None else None
    for _ in range(steps):
        optimizer.zero_grad()
        loss = case.loss_fn(case.model(case.inputs), case.targets)
        loss.backward()
        optimizer.step()
        if monitor is not None:
            monitor.step(loss, (case.inputs, case.targets))
            if after_step is not None:
                after_step(monitor, lambda: explicit_hessian(case))
    return torch.cat([p.detach().reshape(-1) for p in case.model.parameters()]), monitor


def _within_its_bound(row: dict, explicit) -> None:
    """The record's value lies within its stated bound of an eigenvalue of the explicit Hessian."""
    eigenvalues = torch.linalg.eigvalsh(explicit())
    assert float((eigenvalues - row["value"]).abs().min()) <= row["error_bound"] + 1e-12


def test_sharpness_max_products_caps_warm_solves_only_and_each_record_holds_its_bound():
    """``max_products``: the first solve is cold and runs to ``tol``; every later one starts from the last Ritz
    vector and stops after at most that many products, converged or not. Each value lies within its stated bound
    of an eigenvalue of the explicit Hessian, the training is bit for bit the same, and the budget plans the
    second measurement on the cap (the first's cost per product times the cap), not on another cold solve."""
    from curvlab.monitor import budget

    def check(monitor, explicit):
        for row in monitor.records:
            if row["metric"] == "sharpness" and row["step"] == monitor.step_count:
                _within_its_bound(row, explicit)

    plain, _ = _sgd_on_tanh_mlp(None, 12)
    watched, monitor = _sgd_on_tanh_mlp([Sharpness(every(2), tol=1e-6, max_products=3)], 12, check)
    assert torch.equal(plain, watched)
    rows = [r for r in monitor.records if r["metric"] == "sharpness"]
    assert rows[0]["products"] > 3 and rows[0]["converged"]
    assert all(r["products"] <= 3 for r in rows[1:]) and not all(r["converged"] for r in rows[1:])
    metric = Sharpness(budget(), tol=1e-6, max_products=3)
    _, monitor = _sgd_on_tanh_mlp([metric], 1)  # the calibration only: a cold solve
    first = next(r for r in monitor.records if r["metric"] == "sharpness")
    cost = next(r["value"] for r in monitor.records if r["metric"] == "cost_seconds" and r["group"] == "sharpness")
    assert metric.schedule.expected_cost == pytest.approx(cost * 3 / first["products"])
    with pytest.raises(InputError, match="max_products"):
        Sharpness(max_products=1)


def _starts_under_adam(warm, steps: int = 4):
    """Sharpness(plain=True, max_products=3) along ``steps`` Adam steps of tanh_mlp_ce, every step; returns, solve by
    solve in order (plain, then preconditioned, each step), whether it was warm-started, and the metric."""
    from zoo import make_case

    import curvlab.monitor.metrics as metrics

    case = make_case("tanh_mlp_ce")
    optimizer = torch.optim.Adam(case.model.parameters(), lr=1e-2)
    metric = Sharpness(every(1), tol=1e-6, plain=True, max_products=3, warm=warm)
    monitor = Monitor(Objective(case.model, case.loss_fn, (case.inputs, case.targets)), optimizer, metrics=[metric])
    starts = []

    def spy(*args, **kwargs):
        starts.append(kwargs.get("v0") is not None)
        return eigs(*args, **kwargs)

    eigs = metrics.eigs
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics, "eigs", spy)
        for _ in range(steps):
            optimizer.zero_grad()
            loss = case.loss_fn(case.model(case.inputs), case.targets)
            loss.backward()
            optimizer.step()
            monitor.step(loss)
    return starts, metric, monitor


def test_sharpness_warm_starts_the_plain_hessian_and_starts_adams_preconditioned_hessian_cold():
    """``warm="auto"`` (default): after the first step the plain Hessian's solve starts from the last Ritz vector and
    the preconditioned one from the same random start as the first (Adam's preconditioner moves between
    measurements: bench/bench_start.py); True warm-starts both, False neither. Each cold preconditioned solve runs
    to ``tol`` (the cap is for warm starts), and the budget plans the next on its own cost, not on the cap."""
    starts, metric, monitor = _starts_under_adam("auto")
    assert starts[0::2] == [False, True, True, True] and starts[1::2] == [False] * 4
    assert metric.v0_pre is None
    pre = [r for r in monitor.records if r["metric"] == "preconditioned_sharpness"]
    assert all(r["converged"] and r["products"] > 3 for r in pre)
    assert _starts_under_adam(True)[0] == [False, False] + [True, True] * 3
    assert _starts_under_adam(False)[0] == [False] * 8
    with pytest.raises(InputError, match="warm"):
        Sharpness(warm="sometimes")
    metric = Sharpness(tol=1e-6, plain=False, max_products=3)  # the preconditioned solve alone: cold every time
    metric._solve(torch.diag(torch.arange(1.0, 9.0, dtype=torch.float64)), None, warm_next=False, vectors=False)
    assert metric.next_cost(2.0) is None  # the same again, not the cap's share
    from curvlab.monitor import budget

    metric = Sharpness(budget(), tol=1e-6, max_products=3, warm=False)  # SGD's plain solve, cold every time
    _, monitor = _sgd_on_tanh_mlp([metric], 1)
    cost = next(r["value"] for r in monitor.records if r["metric"] == "cost_seconds" and r["group"] == "sharpness")
    assert metric.schedule.expected_cost == pytest.approx(cost)  # the next one is cold too: planned on this cost


def test_tracked_sharpness_follows_lambda1_a_few_products_a_step_within_its_stated_bound():
    """Four products per measurement, every step, from the last Ritz vector: each value lies within its stated
    residual bound of an eigenvalue of the explicit Hessian at the same parameters, the bound shrinks as the vector
    settles, and after the first steps the value is λ1 itself to 1e-6; the training is bit for bit the same."""
    from curvlab.monitor import TrackedSharpness

    gaps = []

    def check(monitor, explicit):
        row = [r for r in monitor.records if r["metric"] == "tracked_sharpness"][-1]
        _within_its_bound(row, explicit)
        assert row["products"] <= 4 and row["operator"] == "hessian" and row["threshold"] == 4.0
        top = float(torch.linalg.eigvalsh(explicit())[-1])
        gaps.append(abs(row["value"] - top) / top)

    plain, _ = _sgd_on_tanh_mlp(None, 30)
    watched, monitor = _sgd_on_tanh_mlp([TrackedSharpness(every(1))], 30, check)
    assert torch.equal(plain, watched)
    bounds = [r["error_bound"] for r in monitor.records if r["metric"] == "tracked_sharpness"]
    assert bounds[-1] < 0.1 * bounds[0]
    assert max(gaps[10:]) < 1e-6
