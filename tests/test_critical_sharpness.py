"""Critical sharpness (Kalra et al., 2026): exact on quadratics, forward passes only, honest when unbracketed."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import curvlab
from curvlab.geometry import directional_sharpness
from curvlab.monitor import CriticalSharpness, every

DT = torch.float64


class Quadratic(nn.Module):
    """F(w) = ½ wᵀHw − bᵀw, its own loss (the batch is ignored)."""

    def __init__(self, n: int = 12, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        a = torch.randn(n, n, generator=g, dtype=DT)
        self.register_buffer("H", a @ a.T / n + 0.05 * torch.eye(n, dtype=DT))
        self.register_buffer("b", torch.randn(n, generator=g, dtype=DT))
        self.w = nn.Parameter(torch.randn(n, generator=g, dtype=DT))

    def forward(self, x):
        return 0.5 * self.w @ self.H @ self.w - self.b @ self.w + 0 * x.sum()


def _objective(seed: int = 0):
    return curvlab.Objective(Quadratic(seed=seed), None, [(torch.zeros(1, dtype=DT),)])


@pytest.mark.parametrize("eta0", [1e-3, 0.3, 1.0, 50.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_on_a_quadratic_it_is_dHd_over_gd_exactly(eta0, seed):
    obj = _objective(seed)
    model = obj.model
    g = obj.grad()
    d = g + 0.3 * torch.randn(obj.dim, generator=torch.Generator().manual_seed(seed + 7), dtype=DT)
    res = curvlab.critical_sharpness(obj, -d, 1.0, eta0=eta0, max_evals=12)
    assert res.bracketed and res.n_evals <= 12
    assert res.value == pytest.approx(float(d @ model.H @ d / (g @ d)), rel=1e-9)
    assert res.bracket[0] <= res.eta <= res.bracket[1]


def test_along_the_gradient_it_is_the_directional_sharpness():
    obj = _objective()
    g = obj.grad()
    res = curvlab.critical_sharpness(obj, -g, 1.0)
    assert res.value == pytest.approx(directional_sharpness(obj, g), rel=1e-9)
    assert res.n_evals <= 6  # one at x, two to bracket, two to close in: forward passes only


def test_a_model_with_no_second_derivative_still_has_a_critical_sharpness():
    class FirstOrderOnly(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.square()

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 2 * x * grad

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=DT))

        def forward(self, x):
            return FirstOrderOnly.apply(self.w).sum() + 0 * x.sum()

    obj = curvlab.Objective(Model(), None, [(torch.zeros(1, dtype=DT),)])
    g = obj.grad()
    assert curvlab.critical_sharpness(obj, -g, 1.0).value == pytest.approx(2.0, rel=1e-9)  # H = 2I


@pytest.mark.parametrize("max_evals", [3, 4, 5, 7, 10])
@pytest.mark.parametrize("eta0", [1e-4, 3.0, 1e4])
def test_the_pass_budget_is_never_exceeded(max_evals, eta0):
    obj = _objective()
    model = obj.model
    g = obj.grad()
    res = curvlab.critical_sharpness(obj, -g, 1.0, eta0=eta0, max_evals=max_evals, rtol=1e-12)
    assert res.n_evals <= max_evals and obj.counts["loss"] == res.n_evals
    if res.bracketed:  # whatever the budget, the estimate lies in a bracket that holds the true η_c
        true_eta = float(g @ g / (g @ model.H @ g)) * 2
        assert res.bracket[0] <= true_eta * (1 + 1e-12) and true_eta <= res.bracket[1] * (1 + 1e-12)


def test_not_a_descent_direction_and_no_rise_are_reported_not_guessed():
    obj = _objective()
    g = obj.grad()
    up = curvlab.critical_sharpness(obj, g, 1.0, max_evals=8)
    assert not up.bracketed and up.value == math.inf and up.n_evals == 8 and up.outcome == "no descent"
    flat = curvlab.critical_sharpness(obj, -1e-12 * g, 1.0, max_evals=5)  # never rises within 4 steps of ×4
    assert not flat.bracketed and flat.eta == 64.0 and flat.value == pytest.approx(2 / 64)
    assert flat.outcome == "no rise"


def test_relative_critical_sharpness_uses_the_other_loss():
    main, other = _objective(0), _objective(1)
    other.model.w.data.copy_(main.model.w.data)
    g = main.grad()
    res = curvlab.critical_sharpness(other, -g, 1.0)
    g2 = other.grad()
    assert res.value == pytest.approx(float(g @ other.model.H @ g / (g2 @ g)), rel=1e-9)


def test_bad_arguments_name_themselves():
    obj = _objective()
    g = obj.grad()
    for kwargs, match in (
        ({"eta0": 0.0}, "eta0"),
        ({"eta0": math.nan}, "eta0"),
        ({"max_evals": 2}, "max_evals"),
        ({"rtol": -1.0}, "rtol"),
        ({"growth": 1.0}, "growth"),
    ):
        with pytest.raises(ValueError, match=match):
            curvlab.critical_sharpness(obj, -g, 1.0, **kwargs)
    with pytest.raises(ValueError, match="update"):
        curvlab.critical_sharpness(obj, torch.ones(3, dtype=DT), 1.0)
    with pytest.raises(ValueError, match="lr"):
        curvlab.critical_sharpness(obj, -g, 0.0)


def test_monitor_metric_along_sgd_steps_is_exact_and_says_when_the_step_raised_the_loss():
    obj = _objective()
    model = obj.model
    lr = 0.5
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    relative = _objective(1)
    monitor = curvlab.Monitor(obj, opt, metrics=[CriticalSharpness(schedule=every(1), relative={"other": relative})])
    for _ in range(4):
        x_before = obj.parameters_vector()
        g = obj.grad()
        loss_before = obj.loss()
        opt.zero_grad()
        model(torch.zeros(1, dtype=DT)).backward()
        opt.step()
        monitor.step()
        row = [r for r in monitor.records if r["metric"] == "critical_sharpness"][-1]
        assert row["value"] == pytest.approx(float(g @ model.H @ g / (g @ g)), rel=1e-8)
        product = [r for r in monitor.records if r["metric"] == "lr_times_critical_sharpness"][-1]["value"]
        assert (product > 2) == (obj.loss() > loss_before)
        assert torch.equal(x_before - lr * g, obj.parameters_vector())
    assert any(r["metric"] == "relative_critical_sharpness" and r["loss"] == "other" for r in monitor.records)


def test_the_update_as_the_optimizer_made_it_and_its_learning_rate_give_the_paper_value():
    """u = x_{t+1} − x_t at learning rate η: λ_c is the same as along −g at unit learning rate, and η·λ_c > 2
    exactly when that update raised the loss."""
    obj = _objective()
    model = obj.model
    g = obj.grad()
    for lr in (0.05, 0.5, 3.0):
        res = curvlab.critical_sharpness(obj, -lr * g, lr, rtol=1e-10, max_evals=20)
        assert res.outcome == "bracketed" and res.value == pytest.approx(float(g @ model.H @ g / (g @ g)), rel=1e-9)
        x = obj.parameters_vector()
        raised = obj.loss(at=x - lr * g) > obj.loss()
        assert (lr * res.value > 2) == raised


def test_an_ascent_direction_in_float32_is_never_a_confident_number():
    """The reported case: the update's sign flipped, float32. Tiny steps leave the loss bit-identical; that is
    no evidence of descent, so the search must not bracket a 'critical sharpness' from them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 3))
    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    obj = curvlab.Objective(model, nn.functional.cross_entropy, (x, y))
    g = obj.grad()
    lr = 0.1
    down = curvlab.critical_sharpness(obj, -lr * g, lr, eta0=1e-9, max_evals=30)
    assert down.outcome == "bracketed" and math.isfinite(down.value)
    up = curvlab.critical_sharpness(obj, lr * g, lr, eta0=1e-9, max_evals=30)  # ascent: every step rises or ties
    assert not up.bracketed and up.outcome in ("no descent", "unresolved")
    assert not math.isfinite(up.value)
    assert obj.loss(at=obj.parameters_vector() + 1e-9 * g) == obj.loss()  # the premise: a tie at the smallest step


def test_non_finite_and_zero_updates_are_refused():
    obj = _objective()
    g = obj.grad()
    for bad in (g * math.nan, torch.where(torch.arange(g.numel()) == 3, math.inf, g), torch.zeros_like(g)):
        with pytest.raises(ValueError, match="update"):
            curvlab.critical_sharpness(obj, bad, 1.0)
    assert obj.counts["loss"] == 0  # refused before any pass


def test_the_result_class_has_a_name_apart_from_the_metric_and_the_old_name_warns():
    import curvlab.geometry
    from curvlab.geometry import CriticalSharpnessResult

    assert isinstance(curvlab.critical_sharpness(_objective(), -_objective().grad(), 1.0), CriticalSharpnessResult)
    with pytest.warns(DeprecationWarning, match="CriticalSharpnessResult"):
        assert curvlab.geometry.CriticalSharpness is CriticalSharpnessResult
    assert CriticalSharpness.name == "critical_sharpness"  # curvlab.monitor.CriticalSharpness: the metric
