"""Optimizers (definitions §6): single steps against hand computation, state_dict round trips, bad hyper-parameters."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curvlab.optim import (
    Adafactor,
    Adam,
    CoordinateClip,
    DeltaSGDM,
    HeavyBall,
    NormalizedGD,
    NormalizedSGD,
    RandomScaling,
    SignDescent,
    coordinate_clip,
    diagonal_preconditioner,
    topk_threshold,
)

DT = torch.float64


def two_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    a = nn.Parameter(torch.randn(4, 3, generator=g, dtype=DT))
    b = nn.Parameter(torch.randn(5, generator=g, dtype=DT))
    return [a, b]


def set_grads(params, seed):
    g = torch.Generator().manual_seed(100 + seed)
    grads = [torch.randn(p.shape, generator=g, dtype=DT) for p in params]
    for p, gr in zip(params, grads):
        p.grad = gr.clone()
    return grads


def flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


@pytest.mark.parametrize("direction", ["gd", "normalized", "sign"])
@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_heavy_ball_family_matches_algorithm_1(direction, beta):
    params = two_params()
    opt = HeavyBall(params, lr=0.1, momentum=beta, direction=direction)
    x = flat([p.detach() for p in params]).clone()
    m = torch.zeros_like(x)
    for t in range(3):
        g = flat(set_grads(params, t))
        d = {"gd": g, "normalized": g / torch.linalg.vector_norm(g), "sign": torch.sign(g)}[direction]
        m = beta * m + d
        x = x - 0.1 * m
        opt.step()
        assert torch.allclose(flat([p.detach() for p in params]), x, atol=1e-14)


def test_normalized_gd_per_tensor_and_aliases():
    params = two_params()
    opt = NormalizedGD(params, lr=0.5, normalization="tensor")
    grads = set_grads(params, 0)
    before = [p.detach().clone() for p in params]
    opt.step()
    for p, x, g in zip(params, before, grads):
        assert torch.allclose(p.detach(), x - 0.5 * g / torch.linalg.vector_norm(g))
    params2 = two_params()
    set_grads(params2, 0)
    SignDescent(params2, lr=0.5).step()
    assert torch.allclose(params2[0].detach(), before[0] - 0.5 * torch.sign(grads[0]))


def test_torch_adam_is_algorithm_2():
    params = two_params()
    opt = Adam(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    x = flat([p.detach() for p in params]).clone()
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    for t in range(1, 4):
        g = flat(set_grads(params, t))
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g**2
        x = x - 1e-2 * (m / (1 - 0.9**t)) / (torch.sqrt(v / (1 - 0.999**t)) + 1e-8)
        opt.step()
        assert torch.allclose(flat([p.detach() for p in params]), x, atol=1e-14)


def test_clip_threshold_is_the_top_k_percent_quantile():
    g = torch.arange(1, 201, dtype=DT) * torch.where(torch.arange(200) % 2 == 0, 1.0, -1.0).to(DT)
    tau = topk_threshold(g, 5.0)
    assert float(tau) == 191.0  # the 10 largest |g| are 191..200
    (clipped,) = coordinate_clip([g], 5.0)
    assert float(clipped.abs().max()) == 191.0
    assert torch.equal(torch.sign(clipped), torch.sign(g))
    assert torch.equal(clipped[:190], g[:190])
    assert int((clipped.abs() == 191).sum()) == 10


def test_clip_global_vs_per_tensor():
    a, b = torch.tensor([1.0, 2.0, 3.0, 100.0], dtype=DT), torch.tensor([0.1, 0.2], dtype=DT)
    glob = coordinate_clip([a, b], percent=20)
    per = coordinate_clip([a, b], percent=50, per_tensor=True)
    assert torch.equal(glob[0], torch.tensor([1.0, 2.0, 3.0, 3.0], dtype=DT))  # ⌈0.2·6⌉ = 2 largest: 100, 3
    assert torch.equal(per[1], torch.tensor([0.1, 0.2], dtype=DT))
    assert torch.equal(per[0], torch.tensor([1.0, 2.0, 3.0, 3.0], dtype=DT))


def test_clipped_sgd_momentum_is_algorithm_1():
    params = two_params()
    opt = CoordinateClip(HeavyBall(params, lr=0.1, momentum=0.9, dampening=True), percent=10)
    x = flat([p.detach() for p in params]).clone()
    m = torch.zeros_like(x)
    for t in range(3):
        g = flat(set_grads(params, t))
        tau = torch.sort(g.abs(), descending=True).values[1]  # ⌈0.1·17⌉ = 2 largest
        m = 0.9 * m + 0.1 * g.clamp(-tau, tau)
        x = x - 0.1 * m
        opt.step()
        assert torch.allclose(flat([p.detach() for p in params]), x, atol=1e-14)


def test_normalized_sgd_is_algorithm_2():
    params = two_params()
    opt = NormalizedSGD(params, lr=0.1, momentum=0.9)
    ms = [torch.zeros_like(p) for p in params]
    xs = [p.detach().clone() for p in params]
    for t in range(3):
        grads = set_grads(params, t)
        opt.step()
        for i, (p, g) in enumerate(zip(params, grads)):
            ms[i] = 0.9 * ms[i] + 0.1 * g
            xs[i] = xs[i] - 0.1 * ms[i] / torch.linalg.vector_norm(ms[i]) * math.sqrt(p.numel())
            assert torch.allclose(p.detach(), xs[i], atol=1e-12)


@pytest.mark.parametrize("clip", [None, 20.0])
@pytest.mark.parametrize("lr", [None, 0.05])
def test_adafactor_is_algorithms_3_and_4(clip, lr):
    params = two_params()
    opt = Adafactor(params, lr=lr, clip_percent=clip)
    w, v = params
    xw, xv = w.detach().clone(), v.detach().clone()
    R, C, V = torch.zeros(4, dtype=DT), torch.zeros(3, dtype=DT), torch.zeros(5, dtype=DT)
    rms = lambda t: torch.linalg.vector_norm(t) / math.sqrt(t.numel())  # noqa: E731
    for t in range(1, 4):
        gw, gv = set_grads(params, t)
        numer_w, numer_v = (gw, gv) if clip is None else coordinate_clip([gw, gv], clip)
        beta = 1 - t**-0.8
        rho = min(1e-2, 1 / math.sqrt(t))
        R = beta * R + (1 - beta) * (gw**2 + 1e-30).sum(dim=1)
        C = beta * C + (1 - beta) * (gw**2 + 1e-30).sum(dim=0)
        V = beta * V + (1 - beta) * (gv**2 + 1e-30)
        uw = numer_w / torch.sqrt(torch.outer(R, C) / R.sum())
        uv = numer_v / torch.sqrt(V)
        aw = lr if lr is not None else max(1e-3, float(rms(xw))) * rho
        av = lr if lr is not None else max(1e-3, float(rms(xv))) * rho
        xw = xw - aw * uw / max(1.0, float(rms(uw)))
        xv = xv - av * uv / max(1.0, float(rms(uv)))
        opt.step()
        assert torch.allclose(w.detach(), xw, atol=1e-12) and torch.allclose(v.detach(), xv, atol=1e-12)


def test_random_scaling_sgdm_formula_and_reproducibility():
    params = two_params()
    opt = RandomScaling(DeltaSGDM(params, lr=0.1, momentum=0.9), seed=3)
    gen = torch.Generator().manual_seed(3)
    x = flat([p.detach() for p in params]).clone()
    delta = torch.zeros_like(x)
    scales = []
    for t in range(4):
        g = flat(set_grads(params, t))
        delta = 0.9 * (delta - 0.1 * g)
        s = float(torch.empty((), dtype=DT).exponential_(1.0, generator=gen))
        x = x + s * delta
        opt.step()
        scales.append(opt.scale)
        assert opt.scale == s
        assert torch.allclose(flat([p.detach() for p in params]), x, atol=1e-13)
    assert len(set(scales)) == 4 and all(s > 0 for s in scales)


def test_random_scaling_off_is_plain_sgdm_bit_for_bit():
    p1, p2 = two_params(), two_params()
    plain = DeltaSGDM(p1, lr=0.1, momentum=0.9)
    off = RandomScaling(DeltaSGDM(p2, lr=0.1, momentum=0.9), enabled=False)
    for t in range(3):
        set_grads(p1, t), set_grads(p2, t)
        plain.step(), off.step()
        assert off.scale == 1.0
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    # and DeltaSGDM is heavy-ball SGD with lr' = βη: x_{t+1} = x_t + β(Δ_{t−1} − η g_t)
    p3 = two_params()
    hb = torch.optim.SGD(p3, lr=0.09, momentum=0.9)
    for t in range(3):
        set_grads(p3, t)
        hb.step()
    assert all(torch.allclose(a, b) for a, b in zip(p1, p3))


def test_random_scaling_adamw_scales_the_whole_update():
    p1, p2 = two_params(), two_params()
    plain = torch.optim.AdamW(p1, lr=1e-2, weight_decay=0.1)
    scaled = RandomScaling(torch.optim.AdamW(p2, lr=1e-2, weight_decay=0.1), seed=1)
    set_grads(p1, 0), set_grads(p2, 0)
    x = [p.detach().clone() for p in p1]
    plain.step(), scaled.step()
    for a, b, x0 in zip(p1, p2, x):
        assert torch.allclose(b.detach() - x0, scaled.scale * (a.detach() - x0), atol=1e-14)


def _train(opt_factory, steps=6, split=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    opt = opt_factory(model.parameters())
    x, y = torch.randn(20, 4, dtype=DT), torch.randint(0, 3, (20,))
    for t in range(steps):
        if split is not None and t == split:
            saved = copy.deepcopy(opt.state_dict())
            model_state = copy.deepcopy(model.state_dict())
            model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
            model.load_state_dict(model_state)
            opt = opt_factory(model.parameters())
            opt.load_state_dict(saved)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach() for p in model.parameters()]


@pytest.mark.parametrize(
    "factory",
    [
        lambda ps: HeavyBall(ps, lr=0.1, momentum=0.9, direction="sign"),
        lambda ps: NormalizedGD(ps, lr=0.1, momentum=0.9),
        lambda ps: NormalizedSGD(ps, lr=0.1),
        lambda ps: Adafactor(ps, clip_percent=5),
        lambda ps: CoordinateClip(HeavyBall(ps, lr=0.1, momentum=0.9, dampening=True)),
        lambda ps: RandomScaling(DeltaSGDM(ps, lr=0.1), seed=5),
        lambda ps: RandomScaling(torch.optim.AdamW(ps, lr=1e-2), seed=5),
    ],
)
def test_state_dict_round_trip_continues_bit_identically(factory):
    straight = _train(factory)
    resumed = _train(factory, split=3)
    assert all(torch.equal(a, b) for a, b in zip(straight, resumed))


def test_diagonal_preconditioners():
    params = two_params()
    adam = torch.optim.Adam(params, lr=1e-3, eps=1e-8)
    with pytest.raises(ValueError, match="no step"):
        diagonal_preconditioner(adam)
    grads = set_grads(params, 0)
    adam.step()
    p_diag = diagonal_preconditioner(adam)
    assert torch.allclose(p_diag[0], (1 - 0.9) * ((grads[0] ** 2 * 0.001 / (1 - 0.999)).sqrt() + 1e-8))
    rms = torch.optim.RMSprop(params, lr=1e-3, alpha=0.9, eps=1e-6)
    set_grads(params, 1)
    rms.step()
    assert torch.allclose(diagonal_preconditioner(rms)[1], (0.1 * params[1].grad ** 2).sqrt() + 1e-6)
    with pytest.raises(TypeError, match="optimizer"):
        diagonal_preconditioner(torch.optim.SGD(params, lr=0.1))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda ps: HeavyBall(ps, lr=-0.1), "lr"),
        (lambda ps: HeavyBall(ps, lr=0.1, momentum=1.0), "momentum"),
        (lambda ps: HeavyBall(ps, lr=0.1, momentum=-0.1), "momentum"),
        (lambda ps: HeavyBall(ps, lr=0.1, direction="adam"), "direction"),
        (lambda ps: NormalizedGD(ps, lr=0.1, normalization="row"), "normalization"),
        (lambda ps: NormalizedSGD(ps, lr=float("nan")), "lr"),
        (lambda ps: CoordinateClip(torch.optim.SGD(ps, lr=0.1), percent=0), "percent"),
        (lambda ps: CoordinateClip(torch.optim.SGD(ps, lr=0.1), percent=101), "percent"),
        (lambda ps: Adafactor(ps, clip_percent=150), "clip_percent"),
        (lambda ps: Adafactor(ps, lr=-1.0), "lr"),
        (lambda ps: DeltaSGDM(ps, lr=0.1, momentum=1.5), "momentum"),
        (lambda ps: RandomScaling(DeltaSGDM(ps, lr=0.1), seed="a"), "seed"),
        (lambda ps: RandomScaling("sgd"), "optimizer"),
        (lambda ps: coordinate_clip([torch.ones(3)], percent=-5), "percent"),
    ],
)
def test_bad_hyperparameters_name_themselves(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(two_params())


def test_adafactor_survives_all_zero_rows_and_columns_in_float32():
    """An always-zero input pixel (a zero gradient column) meeting a dead unit (a zero row): the
    factored second moment is ~ε₁² there, which underflows in float32 if formed as a product."""
    w = nn.Parameter(torch.randn(4, 5))
    opt = Adafactor([w], lr=0.1)
    for _ in range(3):
        g = torch.randn(4, 5)
        g[1, :] = 0.0
        g[:, 2] = 0.0
        w.grad = g
        opt.step()
    assert torch.isfinite(w).all()
    p_diag = diagonal_preconditioner(opt)[0]
    assert torch.isfinite(p_diag).all() and (p_diag > 0).all()
