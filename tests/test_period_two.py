"""Period-two dynamics (issue 31, item 3): a schedule that reads both parities, the two-step stability factor
recorded beside η·λ1, and windowed statistics — each against an independent computation."""

import math

import pytest
import torch
from torch import nn

from curvlab import Objective
from curvlab.errors import InputError
from curvlab.losses import half_mse
from curvlab.monitor import Monitor, Sharpness, every, every_pair, windowed
from curvlab.monitor.schedules import as_schedule
from curvlab.optim.introspection import two_step_factor

DT = torch.float64


def test_every_pair_reads_both_parities_where_an_even_interval_reads_one():
    pairs = [s for s in range(1, 25) if every_pair(6).due(s)]
    assert pairs == [1, 6, 7, 12, 13, 18, 19, 24]
    assert {s % 2 for s in pairs} == {0, 1}
    assert {s % 2 for s in range(1, 25) if every(6).due(s)} == {0}
    assert [s for s in range(1, 14) if as_schedule("pairs:6").due(s)] == [1, 6, 7, 12, 13]
    assert not every_pair(6).due(6, epoch_end=True)
    with pytest.raises(InputError, match="at least 2"):
        every_pair(1)
    with pytest.raises(InputError, match="pairs:K"):
        as_schedule("pairs:x")


def test_the_two_step_factor_is_the_product_of_the_two_steps_amplifications():
    assert two_step_factor(0.1, 0.1, 20.0) == pytest.approx(1.0)  # constant η at η·λ = 2: the edge
    assert two_step_factor(0.05, 0.3, 10.0) == pytest.approx(abs((1 - 0.5) * (1 - 3.0)))
    assert two_step_factor(0.1, 0.1, 10.0) == pytest.approx(0.0)


def test_the_monitor_records_the_two_step_factor_of_an_alternating_eta_on_a_quadratic():
    """GD whose η alternates every step on least squares (H = XᵀX/n, constant): at every measured step the record
    is |(1 − η_{t−1}λ1)(1 − η_t λ1)| with the explicit λ1 and the two η the steps used, on both parities."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 4, generator=g, dtype=DT), torch.randn(30, 1, generator=g, dtype=DT)
    model = nn.Linear(4, 1, bias=False).to(DT)
    lam1 = float(torch.linalg.eigvalsh(x.T @ x / 30)[-1])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(Objective(model, half_mse, (x, y)), opt, metrics=[Sharpness(schedule=every_pair(4), tol=1e-10)])
    etas = [0.4 / lam1 if t % 2 else 2.6 / lam1 for t in range(1, 13)]  # η·λ1 alternating 2.6, 0.4
    for eta in etas:
        for group in opt.param_groups:
            group["lr"] = eta
        opt.zero_grad()
        half_mse(model(x), y).backward()
        opt.step()
        mon.step()
    rows = {r["step"]: r["value"] for r in mon.records if r["metric"] == "two_step_factor"}
    assert sorted(rows) == [4, 5, 8, 9, 12]  # from the second step on: step 1 has no η before it
    for step, value in rows.items():
        expected = abs((1 - etas[step - 2] * lam1) * (1 - etas[step - 1] * lam1))
        assert value == pytest.approx(expected, rel=1e-8)
    eta_lam = {r["step"]: r["value"] for r in mon.records if r["metric"] == "lr_times_sharpness"}
    assert {round(v, 6) for v in eta_lam.values()} == {0.4, 2.6}  # one sample per parity: each reads one half
    assert len({round(v, 6) for v in rows.values()}) == 1  # the two-step factor reads the cycle: 0.96 on both


def test_a_resumed_monitor_knows_the_last_steps_eta():
    model = nn.Linear(2, 1)
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    first = Monitor(Objective(model, half_mse, (x, y)), opt, metrics=[])
    first.step()
    second = Monitor(Objective(model, half_mse, (x, y)), opt, metrics=[Sharpness(schedule=every(1))], start_step=1)
    second.load_state_dict(first.state_dict())
    second.step()
    assert [r["metric"] for r in second.records].count("two_step_factor") == 1


def test_windowed_medians_and_geometric_means_against_a_hand_computation():
    steps = list(range(1, 11))
    values = [1.0, 4.0, 1.0, 4.0, 2.0, 8.0, 2.0, 8.0, 5.0, 5.0]
    medians = windowed(steps, values, 4)
    assert [(w.start, w.stop, w.count) for w in medians] == [(1, 5, 4), (5, 9, 4)]  # the partial last window left out
    assert [w.value for w in medians] == [2.5, 5.0]
    geo = windowed(steps, values, 4, "geometric_mean")
    assert [w.value for w in geo] == pytest.approx([2.0, 4.0])
    assert windowed(steps, values, 5, "mean")[1].value == pytest.approx((8 + 2 + 8 + 5 + 5) / 5)
    assert math.isnan(windowed([1, 2], [1.0, math.inf], 2)[0].value)
    assert windowed([], [], 3) == []
    with pytest.raises(InputError, match="statistic"):
        windowed(steps, values, 4, "mode")
    with pytest.raises(InputError, match="positive values"):
        windowed([1, 2], [1.0, -1.0], 2, "geometric_mean")
