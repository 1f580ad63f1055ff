"""The cost-budgeted default Monitor: the scheduler's rule on a fake clock, the default metric set, explicit
schedules winning, bit-identical trajectories, and the Weights & Biases sink."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import curvlab
from curvlab.losses import cross_entropy
from curvlab.monitor import CriticalSharpness, Sharpness, StepStats, budget, every, read_records
from curvlab.monitor.schedules import Budgeted, CostClock, as_schedule


class FakeClock(CostClock):
    """A CostClock whose training time, fixed costs and measurement costs are set by the test."""

    def tick(self, training: float, fixed: float = 0.0) -> None:
        self.training += training
        self.intervals += 1
        self.inside += fixed  # per-step statistics, records: inside the Monitor, not a budgeted measurement

    def charge(self, seconds: float) -> None:
        super().charge(seconds)
        self.inside += seconds  # a measurement runs inside the Monitor


def test_budgeted_schedule_waits_for_its_allowance_and_spreads_measurements():
    clock = FakeClock(0.1)
    schedule = Budgeted()
    schedule.clock, clock.budgeted = clock, [schedule]
    due_steps = []
    for step in range(1, 2001):
        clock.tick(1.0)  # one second of training per step
        if schedule.due(step):
            due_steps.append(step)
            schedule.record_cost(5.0)  # every measurement takes 5 s
            clock.charge(5.0)
    # the first at once, outside the budget (its cost is known only then); then one per 50 s of training (5 s / 0.1)
    assert due_steps[:2] == [1, 51]
    assert all(b - a == 50 for a, b in zip(due_steps[1:], due_steps[2:]))
    assert clock.charged - clock.calibration <= 0.1 * clock.training
    assert not schedule.due(2001, epoch_end=True)


def test_fixed_costs_come_out_of_the_budget_first():
    """Everything the Monitor spends counts: with fixed costs of 5% of the training time, a 10% budget leaves 5% to
    the budgeted measurements (one 5 s measurement per 100 s of training, not per 50 s); with fixed costs of 10%,
    none fits after the first."""
    for fixed, spacing in ((0.05, 100), (0.1, None)):
        clock = FakeClock(0.1)
        schedule = Budgeted()
        schedule.clock = clock
        clock.budgeted = [schedule]
        due_steps = []
        for step in range(1, 3001):
            clock.tick(1.0, fixed=fixed)
            if schedule.due(step):
                due_steps.append(step)
                schedule.record_cost(5.0)
                clock.charge(5.0)
        if spacing is None:
            assert due_steps == [1]  # the calibration only: nothing is left for more
        else:
            assert due_steps[0] == 1 and due_steps[1] in (100, 101, 102)  # 5% of 100 s covers the second 5 s
            assert all(abs(b - a - spacing) <= 1 for a, b in zip(due_steps[1:], due_steps[2:]))  # ±1: rounding
            assert clock.inside <= 0.1 * clock.training + 5.0  # at most one measurement's overshoot


def test_a_cold_first_measurement_does_not_delay_the_warm_ones_it_announces():
    """A metric whose first measurement (a cold solve, 20 s) costs more than its later ones (5 s) says so through
    ``record_cost(seconds, expected)``: the second is due once 5 s is earned (50 s of training at 0.1), not 20 s
    (200 s); told nothing, the schedule waits for the first's cost. Later ones are planned on their own cost."""
    for expected, second in ((5.0, 51), (None, 201)):
        clock = FakeClock(0.1)
        schedule = Budgeted()
        schedule.clock, clock.budgeted = clock, [schedule]
        due_steps = []
        for step in range(1, 400):
            clock.tick(1.0)
            if schedule.due(step):
                cost = 20.0 if not due_steps else 5.0
                due_steps.append(step)
                schedule.record_cost(cost, expected if len(due_steps) == 1 else None)
                clock.charge(cost)
        assert due_steps[:2] == [1, second]
        assert clock.charged - clock.calibration <= 0.1 * clock.training + 5.0


def test_banked_allowance_does_not_make_bursts():
    clock = FakeClock(0.5)
    schedule = Budgeted()
    schedule.clock, clock.budgeted = clock, [schedule]
    assert schedule.due(0)  # never measured: at once
    schedule.record_cost(1.0)
    clock.charge(1.0)
    clock.tick(100.0)  # a long stretch of training banks 50 s of allowance
    assert schedule.due(1)
    schedule.record_cost(1.0)
    clock.charge(1.0)
    clock.tick(1.0)  # 0.5 s earned since: not enough for a 1 s measurement, whatever was banked
    assert not schedule.due(2)
    clock.tick(1.0)
    assert schedule.due(3)


def test_budget_argument_and_schedule_names():
    assert isinstance(as_schedule("budget"), Budgeted)
    with pytest.raises(ValueError, match="budget"):
        CostClock(0)
    with pytest.raises(RuntimeError, match="not attached"):
        budget().due(1)


def _setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
    return model, x, y


def _train(model, x, y, monitor=None, steps=60, opt=None, trajectory=None):
    """SGD on seeded minibatches of 16; the final parameters (and each step's, appended to ``trajectory``)."""
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.2)
    g = torch.Generator().manual_seed(2)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (16,), generator=g)
        opt.zero_grad()
        loss = cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        if monitor is not None:
            monitor.step(loss, (x[idx], y[idx]))
        if trajectory is not None:
            trajectory.append(_flat(model))
    return _flat(model)


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_default_monitor_paces_the_step_statistics_and_leaves_the_run_bit_identical(tmp_path):
    """On steps of a tenth of a millisecond the step statistics alone would exceed the budget: the default set
    paces them too (every step on a real model), and measures the sharpness at the first step."""
    model, x, y = _setup()
    plain = _train(model, x, y, steps=150)
    model, x, y = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    monitor = curvlab.Monitor(
        curvlab.Objective(model, cross_entropy, (x[:32], y[:32])), opt, run_dir=tmp_path, budget=0.5
    )
    assert [type(m) for m in monitor.metrics] == [StepStats, Sharpness]
    watched = _train(model, x, y, monitor, opt=opt, steps=150)
    monitor.close()
    assert torch.equal(plain, watched)
    rows = read_records(tmp_path)
    losses = [r for r in rows if r["metric"] == "loss"]
    steps = [r["step"] for r in losses]
    assert steps[0] == 1 and steps == sorted(set(steps)) and all(r["schedule"] == "budget" for r in losses)
    grad = [r for r in rows if r["metric"] == "grad_norm"]
    assert [r["step"] for r in grad] == steps and all(r["value"] > 0 for r in grad)
    update = {r["step"]: r["value"] for r in rows if r["metric"] == "update_norm"}
    lr = {r["step"]: r["value"] for r in rows if r["metric"] == "lr"}
    assert update[steps[-1]] == pytest.approx(0.2 * grad[-1]["value"], rel=1e-5)  # SGD: ‖x_t − x_{t−1}‖ = η‖g‖
    assert set(lr.values()) == {0.2}
    assert not any(r["metric"].startswith("cost_") and r["group"] == "step" for r in rows)  # free: no cost rows
    sharp = [r for r in rows if r["metric"] == "sharpness"]
    assert sharp[0]["step"] == 1 and all(r["schedule"] == "budget" for r in sharp)  # where the run began
    charged = sum(r["value"] for r in rows if r["metric"] == "cost_seconds")
    assert charged == pytest.approx(monitor.clock.charged)
    assert monitor.overhead > 0


def test_an_explicit_schedule_wins_over_a_tiny_budget():
    model, x, y = _setup()
    monitor = curvlab.Monitor(
        curvlab.Objective(model, cross_entropy, (x, y)),
        torch.optim.SGD(model.parameters(), lr=0.1),
        metrics=[Sharpness(schedule=every(5))],
        budget=1e-9,
    )
    _train(model, x, y, monitor, steps=20, opt=monitor.optimizer)
    steps = [r["step"] for r in monitor.records if r["metric"] == "sharpness"]
    assert steps == [5, 10, 15, 20] and all(
        r["schedule"] == "fixed" for r in monitor.records if r["metric"] == "sharpness"
    )


def test_a_tiny_budget_starves_budgeted_metrics():
    model, x, y = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = curvlab.Monitor(curvlab.Objective(model, cross_entropy, (x, y)), opt, budget=1e-9)
    _train(model, x, y, monitor, steps=60, opt=opt)
    assert [r["step"] for r in monitor.records if r["metric"] == "sharpness"] == [1]  # the calibration only
    assert [r["step"] for r in monitor.records if r["metric"] == "loss"] == [1]
    (said,) = [r for r in monitor.records if r["metric"] == "budget"]  # and it says why, once
    assert "fixed costs alone" in said["skipped"] and said["step"] == 51  # after 50 intervals of training


def test_metrics_as_a_string_is_a_clear_error():
    model, x, y = _setup()
    with pytest.raises(TypeError, match="metrics"):
        curvlab.Monitor(
            curvlab.Objective(model, cross_entropy, (x, y)),
            torch.optim.SGD(model.parameters(), lr=0.1),
            metrics="sharpness",
        )


def test_weights_and_biases_sink_offline(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    model, x, y = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = curvlab.Monitor(
        curvlab.Objective(model, cross_entropy, (x, y)),
        opt,
        metrics=[StepStats(), Sharpness(schedule=every(3))],
        run_dir=tmp_path / "run",
        wandb={"dir": str(tmp_path), "project": "curvlab-test"},
    )
    _train(model, x, y, monitor, steps=6, opt=opt)
    run = monitor.writer.sinks[0].run
    summary = dict(run.summary)
    last = [r for r in monitor.records if r["metric"] == "sharpness"][-1]["value"]
    assert summary["curvlab/sharpness/1"] == pytest.approx(last)
    assert summary["curvlab/step"] == 6 and "curvlab/loss" in summary and "curvlab/grad_norm" in summary
    monitor.close()
    assert wandb.run is None  # the run the sink started is finished
    assert list(tmp_path.glob("wandb/offline-run-*"))


def test_every_step_statistics_on_request():
    model, x, y = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    monitor = curvlab.Monitor(curvlab.Objective(model, cross_entropy, (x, y)), opt, metrics=[StepStats()])
    _train(model, x, y, monitor, opt=opt, steps=20)
    assert [r["step"] for r in monitor.records if r["metric"] == "loss"] == list(range(1, 21))


def test_on_a_real_clock_the_monitor_stays_within_its_budget():
    """Real training (an MLP with steps of a few milliseconds), real clock, budget 0.3, one budgeted metric: right
    after a paced measurement, where the spending peaks, the time inside the Monitor (timed here around its calls)
    stays within budget × the training time timed here, plus the calibration (the first measurement, outside the
    budget by design), the rise of the last measurement's cost over the one before (a measurement is admitted on
    its last cost) and 1% of the training time for noise. A Monitor granted 1.25 times its budget spends 7.5% of
    the training time more and fails (scripts/mutation_check.py, budget-granted-1.25x-real-clock)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 10))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2048, 32, generator=g), torch.randint(0, 10, (2048,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    objective = curvlab.Objective(model, cross_entropy, (x[:256], y[:256]))
    monitor = curvlab.Monitor(objective, opt, metrics=[Sharpness(schedule=budget())], budget=0.3)
    inside = training = 0.0
    for _ in range(6000):  # until the calibration and 8 paced measurements, or 6,000 steps
        if sum(r["metric"] == "sharpness" for r in monitor.records) >= 9:
            break
        t0 = time.perf_counter()
        idx = torch.randint(0, len(y), (256,), generator=g)
        batch = (x[idx], y[idx])
        opt.zero_grad()
        loss = cross_entropy(model(batch[0]), batch[1])
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        monitor.step(loss, batch)
        t2 = time.perf_counter()
        training, inside = training + (t1 - t0), inside + (t2 - t1)
    assert sum(r["metric"] == "sharpness" for r in monitor.records) >= 5  # the calibration and 4 paced at least
    costs = [r["value"] for r in monitor.records if r["metric"] == "cost_seconds"]
    rise = max(costs[-1] - costs[-2], 0.0)  # the last measurement's cost over the one it was admitted on
    bound = 0.3 * training + monitor.clock.calibration + rise + 0.01 * training
    assert inside <= bound, f"Monitor {inside:.3f} s against {bound:.3f} s allowed ({training:.3f} s of training)"
    assert abs(monitor.clock.inside - inside) <= 0.01 * training  # its clock agrees with the time taken here


def test_a_cheap_metric_does_not_starve_an_expensive_one():
    """Two budgeted metrics share what the fixed costs leave. A frequent one (0.2 s a measurement, more than the
    whole budget earns per step) may use what the other leaves unused only beyond the cost of the other's next
    measurement, so the expensive one (5 s) still gets its half: about one measurement per 100 s of training at a
    10% budget. Under the earlier rule the frequent one took everything the other had not spent yet, and the
    expensive one measured only when the frequent one happened to leave room."""
    clock = FakeClock(0.1)
    cheap, costly = Budgeted(), Budgeted()
    for part in (cheap, costly):
        part.clock, part.share = clock, 0.5
    clock.budgeted = [cheap, costly]
    counts = {"cheap": 0, "costly": 0}
    for step in range(1, 2001):
        clock.tick(1.0)
        for name, part, cost in (("cheap", cheap, 0.2), ("costly", costly, 5.0)):
            if part.due(step):
                counts[name] += 1
                part.record_cost(cost)
                clock.charge(cost)
    assert counts["costly"] >= 18  # 1 calibration + ~19 from its 100 s half over 2,000 s (the earlier rule: 12)
    assert counts["cheap"] >= 400  # its own half (100 s) and what the other leaves beyond its reserve
    assert clock.inside - clock.calibration <= 0.1 * clock.training + 5.0


def test_the_monitor_checks_the_hvp_engine_when_made_not_in_its_first_measurement():
    """hvp_engine="auto" checks double backward once (one exact and three finite-difference products): a one-time
    cost that, inside the first measurement, made the budget expect every later measurement to cost as much."""
    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plain = curvlab.Objective(model, cross_entropy, (x, y))
    curvlab.Monitor(plain, optimizer, [StepStats()])
    assert plain._engine == "auto"  # no curvature metric: nothing to check
    curved = curvlab.Objective(model, cross_entropy, (x, y))
    curvlab.Monitor(curved, optimizer, [StepStats(), Sharpness()])
    assert curved._engine == "reverse"  # resolved before any measurement


def test_budget_weights_split_what_the_fixed_costs_leave():
    """Two budgeted metrics with weights 1 and 3 at the same cost: the heavier spends about three times as much, and
    together they stay within the budget. The default set gives the sharpness nine tenths."""
    clock = FakeClock(0.1)
    light, heavy = Budgeted(1.0), Budgeted(3.0)
    for part in (light, heavy):
        part.clock, part.share = clock, part.weight / 4.0
    clock.budgeted = [light, heavy]
    for step in range(1, 4001):
        clock.tick(1.0)
        for part in (light, heavy):
            if part.due(step):
                part.record_cost(2.0)
                clock.charge(2.0)
    assert heavy.spent / light.spent == pytest.approx(3.0, rel=0.1)
    assert clock.inside - clock.calibration <= 0.1 * clock.training + 2.0
    model, x, y = _setup()
    monitor = curvlab.Monitor(curvlab.Objective(model, cross_entropy, (x, y)), torch.optim.SGD(model.parameters()))
    assert [part.share for m in monitor.metrics for part in m.schedule.parts()] == [0.1, 0.9]
    for bad in (0, -1.0, float("inf"), "3"):
        with pytest.raises(ValueError, match="weight"):
            budget(bad)


def test_budget_paced_metrics_copy_the_parameters_only_where_they_measure():
    """With every metric on the budget, x_{t−1} is taken only before a step that measures: a measurement due at a
    step whose x_{t−1} was not taken is made at the next step. Each update norm then equals ‖x_t − x_{t−1}‖ from the
    test's own copies of the parameters after every step, and the trajectory is unchanged."""
    model, x, y = _setup()
    plain = _train(model, x, y, steps=300)
    model, x, y = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    monitor = curvlab.Monitor(curvlab.Objective(model, cross_entropy, (x[:32], y[:32])), opt, budget=0.5)
    copies = []
    read = monitor.snapshots._read
    monitor.snapshots._read = lambda out: copies.append(monitor.step_count) or read(out)
    points = [_flat(model)]  # x_0, then x_t after every step
    _train(model, x, y, monitor, steps=300, opt=opt, trajectory=points)
    assert torch.equal(points[-1], plain)
    updates = {r["step"]: r["value"] for r in monitor.records if r["metric"] == "update_norm"}
    assert 5 <= len(updates) < 150  # paced: some steps, far from all
    for step, value in updates.items():
        assert value == pytest.approx(float(torch.linalg.vector_norm(points[step] - points[step - 1])), rel=1e-5)
    measuring = {r["step"] for r in monitor.records}
    deferred_past_the_end = [300]  # a measurement due at the last step would have been made at the next
    assert all(step in measuring or step + 1 in measuring for step in copies if step not in deferred_past_the_end)
    assert len(copies) <= 2 * len(measuring) < 300


def test_measuring_on_demand_between_paced_measurements_says_the_update_is_unknown():
    """``measure()`` after a step whose x_{t−1} the budget-paced Monitor did not take: the step statistics have no
    update norm, critical sharpness says why it cannot measure, and the next paced measurement is whole again."""
    model, x, y = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    objective = curvlab.Objective(model, cross_entropy, (x[:32], y[:32]))
    metrics = [StepStats(schedule=budget()), CriticalSharpness(schedule=budget())]
    monitor = curvlab.Monitor(objective, opt, metrics, budget=1e-9)  # nothing paced after the first step
    _train(model, x, y, monitor, steps=5, opt=opt)
    assert monitor.snapshots.step == 1  # x_4 was not taken (nor x_2, x_3, x_5)
    monitor.measure()
    assert monitor.x_prev is None and monitor.snapshots.step == 5
    at_5 = {r["metric"]: r for r in monitor.records if r["step"] == 5}
    assert "loss" not in at_5 and "update_norm" not in at_5 and "grad_norm" in at_5  # no loss passed to measure()
    assert "x_{t−1} was not taken" in at_5["critical_sharpness"]["skipped"]
    state = monitor.state_dict()
    assert state["x_prev"] is None and state["snapshot_step"] == 5
    assert torch.equal(state["x_now"], _flat(model))


def test_a_rate_that_jumps_does_not_starve_a_metric(monkeypatch):
    """Early in a run the fixed costs can take nearly all the budget (a metric's rate is then tiny), and later
    almost none: the schedule looks again after at most 2% more training, so measurements resume at once instead
    of waiting for the time the early rate would have needed; here its hints delay no measurement at all (the same
    steps as testing the rule at every step)."""

    def due_steps() -> list[int]:
        clock = FakeClock(0.1)
        schedule = Budgeted()
        schedule.clock, clock.budgeted = clock, [schedule]
        steps = []
        for step in range(1, 3001):
            clock.tick(1.0, fixed=0.0999 if step <= 100 else 0.0)
            if schedule.due(step):
                steps.append(step)
                schedule.record_cost(1.0)
                clock.charge(1.0)
        return steps

    hinted = due_steps()
    monkeypatch.setattr("curvlab.monitor.schedules.LOOK_AHEAD", 0.0)  # test at every step
    assert hinted == due_steps()
    later = [s for s in hinted if s > 100]
    assert later[0] <= 110  # the rate tested at step ~100 would have put it 10,000 steps off
    assert len(later) >= 240  # then about one per 10 s of training


class SlowWriter:
    """A record sink whose writes take ``seconds`` each (a slow disk, a remote logger)."""

    def __init__(self, seconds: float):
        self.seconds, self.written = seconds, 0

    def write_record(self, record: dict) -> None:
        time.sleep(self.seconds)
        self.written += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_records_written_between_the_monitors_calls_count_inside_it_not_as_training():
    """A trainer's own log (``add_record``), a ``diverged`` record and what the callbacks send to their loggers
    (``monitor.charged()``) are written between the Monitor's calls: their time is the Monitor's, charged against
    its budget, and not training time. Counted as training, 0.3 s of slow writes would appear as training here."""
    model = nn.Linear(4, 2)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SlowWriter(0.1)
    monitor = curvlab.Monitor(curvlab.Objective(model, cross_entropy, (x, y)), opt, metrics=[], writer=writer)
    monitor.step()
    inside = monitor.clock.inside
    monitor.add_record("loss", 1.0, "trainer")
    with monitor.charged():
        time.sleep(0.1)
    monitor.mark_diverged("a test")
    monitor.step()
    assert writer.written >= 2
    assert monitor.clock.inside - inside >= 0.3
    assert monitor.clock.training < 0.1 and monitor.clock.intervals == 1
