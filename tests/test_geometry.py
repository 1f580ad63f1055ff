"""Geometry measurements (definitions §2–§5) against independent computations."""

import math

import pytest
import torch
from conftest import cached_hessian
from torch import nn
from zoo import make_case

from curvlab import Objective
from curvlab.geometry import (
    AssumptionTracker,
    L0L1Fit,
    PseudoUpdates,
    TailIndex,
    alignment,
    coordinate_histogram,
    cosine,
    directional_sharpness,
    directional_sharpnesses,
    gradient_correlation,
    gradient_noise,
    landscape_1d,
    pl_ratio,
    preconditioned_sharpness,
    qq_gaussian,
    sharpness,
    stability_threshold,
    symmetric_stable,
)
from curvlab.losses import half_mse
from curvlab.optim import Adafactor, DeltaSGDM, HeavyBall, RandomScaling, SignDescent

DT = torch.float64


def least_squares(n=40, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=DT)
    y = torch.randn(n, 1, generator=g, dtype=DT)
    torch.manual_seed(seed)
    model = nn.Linear(d, 1, bias=False).to(DT)
    return model, x, y, x.T @ x / n  # H of ½ mean squared error


def test_convex_quadratic_gap_is_minus_half_delta_h_delta_and_smoothness_below_lambda_max():
    model, x, y, H = least_squares()
    lam_max = float(torch.linalg.eigvalsh(H)[-1])
    obj = Objective(model, half_mse, (x, y))
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    tracker = AssumptionTracker()
    for _ in range(6):
        x_old = obj.parameters_vector()
        f_old, g_old = obj.loss_and_grad()
        opt.zero_grad()
        half_mse(model(x), y).backward()
        opt.step()
        f_new, g_new = obj.loss_and_grad()
        delta = obj.parameters_vector() - x_old
        out = tracker.update(f_old, f_new, g_old, g_new, delta)
        assert out["inst_gap"] == pytest.approx(-0.5 * float(delta @ H @ delta), rel=1e-9, abs=1e-15)
        assert out["inst_gap"] <= 0
        assert out["inst_smooth"] <= lam_max * (1 + 1e-12)
        assert out["smoothness_ratio"] <= lam_max * (1 + 1e-9)


def test_tracker_running_quantities_by_hand():
    tracker = AssumptionTracker(betas=(0.9,))
    steps = [
        (1.0, 0.5, [1.0, 0.0], [0.2, 0.1], [-0.5, 0.0], 2.0),
        (0.5, 0.45, [0.2, 0.1], [0.1, 0.3], [-0.1, 0.2], 0.5),
    ]
    gaps, inners, diffs, sqs, ema = [], [], [], [], 0.0
    for f_old, f_new, g_old, g_new, delta, s in steps:
        g_old, g_new, delta = (torch.tensor(v, dtype=DT) for v in (g_old, g_new, delta))
        out = tracker.update(f_old, f_new, g_old, g_new, delta)
        corr = tracker.correlate(f_new, f_old, g_new, delta, scale=s)
        inner = float(g_new @ delta)
        gaps.append(f_new - f_old - inner)
        inners.append(inner)
        diffs.append(f_new - f_old)
        sqs.append(float(delta @ delta))
        ema = 0.9 * ema + 0.1 * gaps[-1]
        assert out["avg_gap"] == pytest.approx(sum(gaps) / len(gaps))
        assert out["convexity_ratio"] == pytest.approx(sum(inners) / sum(diffs))
        assert out["smoothness_ratio"] == pytest.approx(-sum(gaps) / (0.5 * sum(sqs)))
        assert out["exp_gap_0.9"] == pytest.approx(ema)
        assert corr["update_corr_rs"] == pytest.approx(inner / s)
        assert corr["update_corr_sum"] == pytest.approx(sum(inners)) and corr["loss_diff_sum"] == pytest.approx(
            sum(diffs)
        )
    tracker.reset_window()
    first = [steps[0][0], steps[0][1], *(torch.tensor(v, dtype=DT) for v in steps[0][2:5])]
    out = tracker.update(*first)
    corr = tracker.correlate(first[1], first[0], first[3], first[4], scale=1.0)
    assert out["avg_gap"] == pytest.approx(gaps[0]) and corr["update_corr_sum"] == pytest.approx(inners[0])
    assert out["exp_gap_0.9"] == pytest.approx(0.1 * gaps[0])  # EMAs restart with the window, from 0


def test_random_scaling_identity_by_monte_carlo():
    """E[F(x+sΔ) − F(x)] = E[⟨∇F(x+sΔ), Δ⟩] for s ~ Exp(1): loss_diff and update_corr_rs agree."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=DT))
    A = (q * torch.tensor([3.0, 1.0, -0.5, 0.2], dtype=DT)) @ q.T  # indefinite: not just convex
    b = torch.randn(4, generator=g, dtype=DT)
    F_ = lambda w: float(0.5 * w @ A @ w - b @ w + 0.1 * (w**4).sum())  # noqa: E731
    grad = lambda w: A @ w - b + 0.4 * w**3  # noqa: E731
    x0 = torch.randn(4, generator=g, dtype=DT)
    diffs, corrs = [], []
    for seed in range(4000):
        w = nn.Parameter(x0.clone())
        opt = RandomScaling(DeltaSGDM([w], lr=0.1, momentum=0.9), seed=seed)
        w.grad = grad(x0)
        opt.step()
        tracker = AssumptionTracker()
        x1 = w.detach()
        out = tracker.correlate(F_(x1), F_(x0), grad(x1), x1 - x0, scale=opt.scale)
        diffs.append(out["loss_diff"])
        corrs.append(out["update_corr_rs"])
    d, c = torch.tensor(diffs), torch.tensor(corrs)
    stderr = float((d - c).std() / math.sqrt(len(d)))
    assert abs(float(d.mean() - c.mean())) < 4 * stderr
    assert abs(float(d.mean())) > 10 * stderr  # the identity is not trivially 0 = 0


def test_preconditioned_sharpness_matches_explicit_matrix_after_adam_steps():
    case = make_case("layernorm_mlp")
    model = case.model
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(4):
        opt.zero_grad()
        case.loss_fn(model(case.inputs), case.targets).backward()
        opt.step()
    from zoo import explicit_hessian

    H = explicit_hessian(case)
    v_hat = torch.cat([(opt.state[p]["exp_avg_sq"] / (1 - 0.999**4)).reshape(-1) for p in model.parameters()])
    d = ((1 - 0.9**4) * (v_hat.sqrt() + 1e-8)).rsqrt()  # P carries Adam's first-moment bias factor (Cohen et al.)
    expected = torch.linalg.eigvalsh(d[:, None] * H * d[None, :])[-1]
    obj = Objective(model, case.loss_fn, (case.inputs, case.targets))
    res = preconditioned_sharpness(obj, opt, tol=1e-10)
    assert float(res.eigenvalues[0]) == pytest.approx(float(expected), rel=1e-6)
    assert float(sharpness(obj, tol=1e-10).eigenvalues[0]) == pytest.approx(
        float(torch.linalg.eigvalsh(H)[-1]), rel=1e-6
    )
    with pytest.raises(TypeError, match="optimizer"):
        preconditioned_sharpness(obj, torch.optim.SGD(model.parameters(), lr=0.1))


def test_directional_sharpness_and_gradient_correlation_match_explicit():
    case = make_case("bn_cnn_train")
    obj = Objective(case.model, case.loss_fn, (case.inputs, case.targets), bn_mode="train")
    H = cached_hessian("bn_cnn_train")
    d = torch.randn(obj.dim, generator=torch.Generator().manual_seed(2), dtype=DT)
    assert directional_sharpness(obj, 3 * d) == pytest.approx(float(d @ H @ d / (d @ d)), rel=1e-9)
    g = obj.grad()
    assert gradient_correlation(obj, d) == pytest.approx(float(-(g @ d) / torch.linalg.vector_norm(d)), rel=1e-12)


@pytest.mark.parametrize("name", ["layernorm_mlp", "bn_cnn_train", "attention"])
@pytest.mark.parametrize("chunk", [None, 3])
def test_gradient_and_curvature_along_many_directions_from_one_graph(name, chunk):
    """grad_and_quads against the explicit float64 Hessian and gradient, chunked or not (train-mode BatchNorm:
    per-chunk statistics), and at another point against the per-direction path."""
    from zoo import explicit_hessian, explicit_loss_and_grad

    case = make_case(name)
    obj = Objective(case.model, case.loss_fn, (case.inputs, case.targets), bn_mode=case.bn_mode, batch_size=chunk)
    H = explicit_hessian(case, chunk=chunk)
    g_ref = explicit_loss_and_grad(case, chunk=chunk)[1]
    gen = torch.Generator().manual_seed(3)
    ds = [torch.randn(obj.dim, generator=gen, dtype=DT) for _ in range(4)]
    grad, quads = obj.grad_and_quads(ds)
    assert torch.allclose(grad, g_ref, rtol=1e-10, atol=1e-12)
    assert quads == pytest.approx([float(d @ H @ d) for d in ds], rel=1e-9)
    x = obj.parameters_vector()
    elsewhere = x + 0.1 * ds[0]
    grad_at, quads_at = obj.grad_and_quads(ds[1:], at=elsewhere)
    assert torch.allclose(grad_at, obj.grad(at=elsewhere), rtol=1e-10, atol=1e-12)
    assert quads_at == pytest.approx([obj.quad(d, at=elsewhere) for d in ds[1:]], rel=1e-9)
    assert quads_at != pytest.approx(quads[1:], rel=1e-3)  # the point mattered
    assert torch.equal(obj.parameters_vector(), x)
    _, sharp = directional_sharpnesses(obj, {"a": 2 * ds[0], "zero": torch.zeros_like(x)})
    assert sharp == {"a": pytest.approx(float(ds[0] @ H @ ds[0] / (ds[0] @ ds[0])), rel=1e-9)}
    with pytest.raises(ValueError, match="direction"):
        directional_sharpness(obj, torch.zeros_like(x))


def test_pseudo_updates_equal_running_each_shadow_by_hand():
    shapes = [torch.Size([3, 2]), torch.Size([2])]
    factories = {
        "adam": lambda ps: torch.optim.Adam(ps, lr=1.0),
        "sign": lambda ps: SignDescent(ps, lr=1.0, momentum=0.9),
        "adafactor_clip": lambda ps: Adafactor(ps, lr=1.0, clip_percent=20),
    }
    pseudo = PseudoUpdates(shapes, factories, dtype=DT)
    by_hand = {}
    for name, make in factories.items():
        params = [torch.zeros(s, dtype=DT, requires_grad=True) for s in shapes]
        by_hand[name] = (params, make(params))
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        x = torch.randn(8, generator=g, dtype=DT)
        grad = torch.randn(8, generator=g, dtype=DT)
        updates = pseudo.update(x, grad)
        for name, (params, opt) in by_hand.items():
            with torch.no_grad():
                params[0].copy_(x[:6].view(3, 2))
                params[1].copy_(x[6:])
            params[0].grad, params[1].grad = grad[:6].view(3, 2).clone(), grad[6:].clone()
            opt.step()
            expected = torch.cat([params[0].detach().reshape(-1), params[1].detach()]) - x
            assert torch.allclose(updates[name], expected, atol=1e-14)


def test_default_shadows_sharpness_ratio_relative_to_sgd():
    from curvlab.geometry import compare_directions

    case = make_case("tanh_mlp_ce")
    obj = Objective(case.model, case.loss_fn, (case.inputs, case.targets))
    space = obj.space
    pseudo = PseudoUpdates(space.shapes, dtype=DT)
    updates = pseudo.update(obj.parameters_vector(), obj.grad())
    assert set(updates) == {
        "sgd",
        "sgd_clip",
        "normalized_sgd",
        "normalized_sgd_clip",
        "adam",
        "adafactor",
        "adafactor_clip",
        "sign",
    }
    out = compare_directions(obj, updates)
    assert out["sgd"]["ratio_to_sgd"] == pytest.approx(1.0)
    H = cached_hessian("tanh_mlp_ce")
    u = updates["adam"]
    assert out["adam"]["directional_sharpness"] == pytest.approx(float(u @ H @ u / (u @ u)), rel=1e-8)


def test_landscape_restores_parameters_bit_for_bit_and_matches_direct_evaluation():
    case = make_case("layernorm_mlp")
    obj = Objective(case.model, case.loss_fn, (case.inputs, case.targets))
    before = [p.detach().clone() for p in case.model.parameters()]
    d = torch.randn(obj.dim, generator=torch.Generator().manual_seed(4), dtype=DT)
    out = landscape_1d(obj, {"random": d}, [-0.5, 0.0, 0.5])
    assert all(torch.equal(a, b) for a, b in zip(before, case.model.parameters()))
    assert out["random"][1] == pytest.approx(obj.loss(), rel=1e-14)
    x = obj.parameters_vector() + 0.5 * d / torch.linalg.vector_norm(d)
    with torch.no_grad():
        for p, part in zip(case.model.parameters(), obj.unflatten(x)):
            p.copy_(part)
    assert out["random"][2] == pytest.approx(obj.loss(), rel=1e-12)


def test_coordinate_histogram_counts_every_coordinate():
    values = torch.tensor([0.0, 1e-3, -1e-3, 0.5, 2.0, -1e-20, 1e5], dtype=DT)
    h = coordinate_histogram(values)
    assert int(h["counts"].sum()) == 6 and int(h["zeros"]) == 1
    assert int(h["below"]) == 1 and int(h["above"]) == 1
    edges = h["edges"]
    idx = int(torch.searchsorted(edges, torch.tensor(0.5, dtype=DT))) - 1
    assert h["counts"][idx] >= 1


def test_alignment_and_cosine():
    v = torch.tensor([1.0, 0.0, 0.0], dtype=DT)
    assert alignment(torch.tensor([-3.0, 4.0, 0.0], dtype=DT), v) == pytest.approx(0.6)
    assert cosine(torch.tensor([1.0, 1.0], dtype=DT), torch.tensor([-1.0, -1.0], dtype=DT)) == pytest.approx(-1.0)


def _diverges(make_opt, lam, steps=4000):
    w = nn.Parameter(torch.tensor([1.0], dtype=DT))
    opt = make_opt([w])
    for _ in range(steps):
        opt.zero_grad()
        w.grad = lam * w.detach().clone()
        opt.step()
    return float(w.detach().abs()) > 1.0


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.1),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.5, dampening=0.5),
        lambda ps: HeavyBall(ps, lr=0.1, momentum=0.9, dampening=True),
        lambda ps: DeltaSGDM(ps, lr=0.1, momentum=0.9),
    ],
)
def test_stability_threshold_is_where_a_quadratic_starts_to_diverge(make_opt):
    threshold = stability_threshold(make_opt([nn.Parameter(torch.zeros(1))])).threshold
    assert not _diverges(make_opt, threshold * 0.99)
    assert _diverges(make_opt, threshold * 1.01)


def test_threshold_report_and_adam():
    adam = stability_threshold(torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=0.01))
    assert adam.kind == "adam_preconditioned" and adam.preconditioned and adam.threshold == pytest.approx(3800.0)
    gd = stability_threshold(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5))
    assert gd.report(5.0) == {
        "threshold": 4.0,
        "ratio_to_threshold": 1.25,
        "lr_times_sharpness": 2.5,
        "lr_times_sharpness_minus_2": 0.5,
    }
    assert stability_threshold(SignDescent([nn.Parameter(torch.zeros(1))], lr=0.1)).kind == "none"
    assert stability_threshold(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5), lr=0.25).threshold == 8.0


@pytest.mark.parametrize("alpha", [1.3, 1.7, 2.0])
def test_tail_index_recovers_known_alpha(alpha):
    samples = symmetric_stable(alpha, 200_000, torch.Generator().manual_seed(1)).view(2000, 100)
    est = TailIndex(block=40)
    for row in samples:  # streamed as 2,000 "noise vectors" of 100 coordinates
        est.add(row)
    assert est.alpha == pytest.approx(alpha, abs=0.1)


def test_gradient_noise_norms_qq_and_reproducibility():
    case = make_case("tanh_mlp_ce")
    data = (case.inputs, case.targets)
    objective = Objective(case.model, case.loss_fn, data)
    res = gradient_noise(objective, data, batch_size=6, n_batches=12, seed=3)
    again = gradient_noise(objective, data, batch_size=6, n_batches=12, seed=3)
    assert torch.equal(res.norms, again.norms) and res.norms.numel() == 12 and (res.norms > 0).all()
    full = gradient_noise(objective, data, batch_size=len(case.targets), n_batches=3)
    assert float(full.norms.max()) < 1e-12  # a "minibatch" of everything has no noise
    theo, samp = qq_gaussian(res.norms)
    assert torch.equal(samp, res.norms.sort().values) and theo.shape == samp.shape
    with pytest.raises(ValueError, match="batch_size"):
        gradient_noise(objective, data, batch_size=0)
    with pytest.raises(TypeError, match="objective"):
        gradient_noise(case.model, data, batch_size=6)


def test_l0_l1_fit_and_pl_ratio():
    fit = L0L1Fit()
    for gn in [0.5, 1.0, 2.0, 4.0]:
        fit.add(gn, 0.3 + 2.0 * gn)
    r = fit.result()
    assert r["l0"] == pytest.approx(0.3) and r["l1"] == pytest.approx(2.0) and r["l0l1_r2"] == pytest.approx(1.0)
    assert pl_ratio(2.0, torch.tensor([3.0, 4.0]), f_star=1.0) == pytest.approx(12.5)


def test_a_zero_learning_rate_has_an_infinite_threshold():
    """The first step of a warmup from 0: nothing can diverge; no division by zero."""
    adam = stability_threshold(torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=0.0))
    assert adam.kind == "adam_preconditioned" and adam.threshold == math.inf
    assert adam.report(5.0)["ratio_to_threshold"] == 0
    assert stability_threshold(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.0)).threshold == math.inf
