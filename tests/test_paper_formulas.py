"""The optimization-assumption records and the full-batch linesearch against the papers' definitions, computed
independently from parameter snapshots of a hand-run training loop (Tran, Zhang & Cutkosky 2024; Roulet et al.
2024); Adam's preconditioner and stability threshold against Cohen et al. 2022's preconditioned heavy ball. Each
check pairs points and batches as the paper does, so a record that used the step's own batch where the paper uses
the next one, or the wrong point for the gradient noise, fails it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from curvlab import Objective
from curvlab.experiments.build import build_tuner
from curvlab.losses import cross_entropy
from curvlab.monitor import FullBatch, Monitor, every
from curvlab.optim import DeltaSGDM, RandomScaling, diagonal_preconditioner, stability_threshold
from curvlab.tuners import Linesearch, make_closure

DT = torch.float64


def _problem(n_batches: int = 4, batch: int = 8):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(DT)
    x = torch.randn(n_batches * batch, 5, dtype=DT)
    y = torch.randint(0, 3, (n_batches * batch,))
    batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]
    return model, (x, y), batches


def _f_and_grad(model: nn.Module, flat: torch.Tensor, batch) -> tuple[float, torch.Tensor]:
    """f(x, z) and ∇f(x, z) from a flat parameter vector, by plain autograd on a functional call."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    leaf = flat.detach().clone().requires_grad_(True)
    pieces = torch.split(leaf, [math.prod(s) for s in shapes])
    params = {n: piece.view(s) for n, piece, s in zip(names, pieces, shapes)}
    loss = cross_entropy(functional_call(model, params, (batch[0],)), batch[1])
    (grad,) = torch.autograd.grad(loss, leaf)
    return float(loss.detach()), grad


def _train(model, data, batches, optimizer, metrics, epochs: int = 2):
    """Train over ``batches`` for ``epochs``; returns the Monitor, x after every step (x[0] the start) and, per step,
    its batch and its random-scaling factor."""
    monitor = Monitor(Objective(model, cross_entropy, data), optimizer, metrics=metrics)
    xs, used, scales = [monitor.objective.parameters_vector()], [], []
    for _ in range(epochs):
        for batch in batches:
            optimizer.zero_grad()
            loss = cross_entropy(model(batch[0]), batch[1])
            loss.backward()
            optimizer.step()
            monitor.step(loss, batch)
            xs.append(monitor.objective.parameters_vector())
            used.append(batch)
            scales.append(float(getattr(optimizer, "scale", 1.0)))
        monitor.end_epoch()
    return monitor, xs, used, scales


def _rows(monitor: Monitor, metric: str) -> dict[int, dict]:
    return {r["step"]: r for r in monitor.records if r["metric"] == metric and not r.get("epoch_end")}


def test_update_correlation_and_loss_difference_use_the_next_steps_batch():
    """update_corr_t = ⟨∇f(x_t, z_t), x_t − x_{t−1}⟩ and loss_diff_t = f(x_t, z_t) − f(x_{t−1}, z_t), z_t the batch
    of the step after the update, which the update never saw; with random scaling, update_corr_RS divides the
    update by the factor s of the step that made it."""
    model, data, batches = _problem()
    opt = RandomScaling(DeltaSGDM(model.parameters(), lr=0.3, momentum=0.5), seed=3)
    monitor, xs, used, scales = _train(model, data, batches, opt, ["assumptions"])
    corr, corr_rs, diff = (_rows(monitor, m) for m in ("update_corr", "update_corr_rs", "loss_diff"))
    assert min(corr) == 2 and len(corr) == len(used) - 1  # the first update is measured at step 2
    running = 0.0
    for step in range(2, len(used) + 1):
        update = xs[step - 1] - xs[step - 2]  # made by step step−1
        batch = used[step - 1]  # the batch of step `step`, drawn after that update
        f_now, g_now = _f_and_grad(model, xs[step - 1], batch)
        f_before, _ = _f_and_grad(model, xs[step - 2], batch)
        assert corr[step]["of_step"] == step - 1
        assert corr[step]["value"] == pytest.approx(float(g_now @ update), rel=1e-10, abs=1e-14)
        assert corr_rs[step]["value"] == pytest.approx(float(g_now @ update) / scales[step - 2], rel=1e-10, abs=1e-14)
        assert diff[step]["value"] == pytest.approx(f_now - f_before, rel=1e-10, abs=1e-14)
        own_f, own_g = _f_and_grad(model, xs[step - 1], used[step - 2])  # the update's own batch: a different number
        assert abs(float(own_g @ update) - float(g_now @ update)) > 1e-6 * abs(float(g_now @ update))
        running = 0.0 if step == len(batches) + 1 else running  # the window restarts at the epoch end
        running += float(g_now @ update)
    sums = _rows(monitor, "update_corr_sum")
    assert sums[len(used)]["value"] == pytest.approx(running, rel=1e-10)
    assert len({s for s in scales}) > 1  # random scaling really drew different factors


def test_convexity_gap_and_smoothness_keep_the_steps_own_batch_at_both_points():
    model, data, batches = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    monitor, xs, used, _ = _train(model, data, batches, opt, ["assumptions"], epochs=1)
    gaps, smooth = _rows(monitor, "inst_gap"), _rows(monitor, "inst_smooth")
    for step in range(1, len(used) + 1):
        f_old, g_old = _f_and_grad(model, xs[step - 1], used[step - 1])
        f_new, g_new = _f_and_grad(model, xs[step], used[step - 1])
        delta = xs[step] - xs[step - 1]
        assert gaps[step]["value"] == pytest.approx(f_new - f_old - float(g_new @ delta), rel=1e-9, abs=1e-14)
        assert smooth[step]["value"] == pytest.approx(float((g_new - g_old).norm() / delta.norm()), rel=1e-10)


def test_the_emas_restart_with_every_window_as_the_authors_code_does():
    model, data, batches = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    monitor, _, _, _ = _train(model, data, batches, opt, ["assumptions"], epochs=2)
    gaps, smooth = _rows(monitor, "inst_gap"), _rows(monitor, "inst_smooth")
    first_of_epoch_2 = len(batches) + 1
    for beta in (0.99, 0.9999):
        ema = _rows(monitor, f"exp_gap_{beta}")[first_of_epoch_2]["value"]
        assert ema == pytest.approx((1 - beta) * gaps[first_of_epoch_2]["value"], rel=1e-12)
        ema = _rows(monitor, f"exp_smooth_{beta}")[first_of_epoch_2]["value"]
        assert ema == pytest.approx((1 - beta) * smooth[first_of_epoch_2]["value"], rel=1e-12)


def test_gradient_deviation_pairs_the_minibatch_gradient_with_the_full_gradient_at_the_same_point():
    """σ's summand ‖∇f(x_t, z_t) − ∇F(x_t)‖: the gradient the optimizer used, at the point it used it; pairing it
    with the point the step reached instead understates the noise."""
    model, data, batches = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    monitor, xs, used, _ = _train(model, data, batches, opt, [FullBatch(schedule=every(1))], epochs=1)
    deviation = _rows(monitor, "grad_deviation")
    mean = _rows(monitor, "grad_deviation_mean")  # the paper's σ: the running mean of the deviations
    assert mean[len(used)]["value"] == sum(d["value"] for d in deviation.values()) / len(deviation)
    for step in range(1, len(used) + 1):
        _, g = _f_and_grad(model, xs[step - 1], used[step - 1])
        _, full = _f_and_grad(model, xs[step - 1], data)
        assert deviation[step]["value"] == pytest.approx(float((g - full).norm()), rel=1e-10)
        _, full_after = _f_and_grad(model, xs[step], data)
        assert abs(deviation[step]["value"] - float((g - full_after).norm())) > 1e-8


class _Sharp(nn.Module):
    """f(w) = ½ λ w², so steep that Armijo needs more than 30 reductions of η₀ = 1 by 0.8."""

    def __init__(self, lam: float = 1e6):
        super().__init__()
        self.lam = lam
        self.w = nn.Parameter(torch.tensor([1.0], dtype=DT))

    def forward(self):
        return 0.5 * self.lam * (self.w**2).sum()


def test_full_batch_linesearch_backtracks_until_armijo_holds_and_minibatch_mode_keeps_the_cap():
    # Armijo on ½λw² along u = −g: 1 − ηλ/2... holds iff η ≤ (2 − 2c)/λ, so k ≥ log(λ/2)/log(1/0.8) ≈ 59
    for cap, armijo in ((30, 0.0), (None, 1.0)):
        model = _Sharp()
        tuner = Linesearch(torch.optim.SGD(model.parameters(), lr=1.0), max_backtracks=cap)
        tuner.step(make_closure(model, tuner))
        assert tuner.stats["armijo"] == armijo
        if cap is None:
            eta = tuner.lr
            assert eta * model.lam <= 2 - 2 * tuner.c and eta / 0.8 * model.lam > 2 - 2 * tuner.c  # the largest
            assert tuner.stats["backtracks"] > 30
        else:
            assert tuner.stats["backtracks"] == 30 and tuner.lr == pytest.approx(0.8**30)
    config = {"tuner": {"name": "linesearch"}, "train": {"batch_size": "full"}}
    model = _Sharp()
    assert build_tuner(config, torch.optim.SGD(model.parameters(), lr=1.0), model).max_backtracks is None
    config["train"]["batch_size"] = 64
    assert build_tuner(config, torch.optim.SGD(model.parameters(), lr=1.0), model).max_backtracks == 30


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.99)])
def test_adams_step_is_preconditioned_heavy_ball_with_the_bias_factor_in_p(betas):
    """Cohen et al. 2022 write Adam as preconditioned heavy-ball momentum, x_{t+1} = x_t − η P_t⁻¹ m_t with m_t the
    exponential average of the gradients (no bias correction) and P_t = (1 − β1^t)(diag √v̂_t + ε): the first
    moment's bias correction belongs to P. At steps 1, 5 and 100, P equals that formula computed here from the
    gradients (m_t and v_t by their recurrences), and Adam's own step equals −η P⁻¹ m_t. Without the factor P is
    ten times too large at step 1 (β1 = 0.9) and a third too large at step 5."""
    model, _, batches = _problem()
    lr, eps = 0.01, 1e-8
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps)
    beta1, beta2 = betas
    m = v = torch.zeros(sum(p.numel() for p in model.parameters()), dtype=DT)
    for t in range(1, 101):
        before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        batch = batches[t % len(batches)]
        optimizer.zero_grad()
        cross_entropy(model(batch[0]), batch[1]).backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        optimizer.step()
        m, v = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g**2
        if t in (1, 5, 100):
            explicit = (1 - beta1**t) * ((v / (1 - beta2**t)).sqrt() + eps)
            ours = torch.cat([p.reshape(-1) for p in diagonal_preconditioner(optimizer)])
            assert torch.allclose(ours, explicit, rtol=1e-12, atol=0)
            step = torch.cat([p.detach().reshape(-1) for p in model.parameters()]) - before
            assert torch.allclose(step, -lr * m / explicit, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("beta1", [0.0, 0.5, 0.9])
def test_adams_threshold_is_where_preconditioned_heavy_ball_with_a_frozen_p_turns_unstable(beta1):
    """With P frozen, Adam's step along an eigenvector of P⁻¹H of eigenvalue λ is the linear recurrence m ← β1 m +
    (1 − β1) λ x, x ← x − η m: the spectral radius of its 2×2 matrix, computed numerically here, is below 1 at 1%
    under (2 + 2β1)/((1 − β1)η) (38/η at β1 = 0.9) and above 1 at 1% over it."""
    lr = 0.01
    threshold = stability_threshold(torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=lr, betas=(beta1, 0.999)))
    assert threshold.preconditioned

    def spectral_radius(lam: float) -> float:
        iteration = torch.tensor(
            [[beta1, (1 - beta1) * lam], [-lr * beta1, 1 - lr * (1 - beta1) * lam]], dtype=DT
        )  # (m, x) ↦ (m', x') with x' = x − η m'
        return float(torch.linalg.eigvals(iteration).abs().max())

    assert spectral_radius(0.99 * threshold.threshold) < 1.0 < spectral_radius(1.01 * threshold.threshold)
