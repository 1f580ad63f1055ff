"""Tuners (definitions §7): single steps against hand computation on quadratics, around several base optimizers."""

import copy
import math

import pytest
import torch
from torch import nn

from curvlab.optim import Adam, HeavyBall, SignDescent
from curvlab.tuners import CDAT, EdgeRule, Hypergradient, Linesearch, Polyak, QuadraticallyGreedy, make_closure

DT = torch.float64


class Quadratic(nn.Module):
    """f(w) = ½ wᵀAw − bᵀw with A symmetric positive definite."""

    def __init__(self, n=6, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))
        self.register_buffer("A", (q * torch.linspace(0.5, 10.0, n, dtype=DT)) @ q.T)
        self.register_buffer("b", torch.randn(n, generator=g, dtype=DT))
        self.w = nn.Parameter(torch.randn(n, generator=g, dtype=DT))

    def forward(self):
        return 0.5 * self.w @ self.A @ self.w - self.b @ self.w

    def grad(self, w=None):
        w = self.w.detach() if w is None else w
        return self.A @ w - self.b

    def value(self, w):
        return float(0.5 * w @ self.A @ w - self.b @ w)


def gd(model):
    return torch.optim.SGD(model.parameters(), lr=123.0)  # the base lr is ignored by tuners


def test_quadratically_greedy_gives_the_exact_minimiser_along_u():
    q = Quadratic()
    tuner = QuadraticallyGreedy(gd(q), eps=0.0)
    w0, g = q.w.detach().clone(), q.grad()
    tuner.step(make_closure(q, tuner))
    u = -g
    assert tuner.lr == pytest.approx(float(g @ g / (g @ q.A @ g)), rel=1e-12)
    assert abs(float(q.grad() @ u)) < 1e-10 * float(g @ g)  # stationary along u
    assert torch.allclose(q.w.detach(), w0 + tuner.lr * u)
    assert (
        tuner.stats["extra_hvps"] == 1 and tuner.stats["extra_loss_evals"] == 0 and tuner.stats["extra_grad_evals"] == 1
    )


def test_cdat_sigma_two_lands_on_the_edge_where_f_returns_to_its_value():
    q = Quadratic(seed=1)
    tuner = CDAT(gd(q), sigma=2.0, eps=0.0)
    f0 = q.value(q.w.detach())
    tuner.step(make_closure(q, tuner))
    assert q.value(q.w.detach()) == pytest.approx(f0, rel=1e-10)
    greedy = QuadraticallyGreedy(gd(q2 := Quadratic(seed=1)), eps=0.0)
    greedy.step(make_closure(q2, greedy))
    assert tuner.lr == pytest.approx(2 * greedy.lr, rel=1e-12)


def test_cdat_ema_by_hand():
    q = Quadratic(seed=2)
    tuner = CDAT(gd(q), sigma=1.5, beta=0.9, eps=1e-12)
    n_avg = d_avg = 0.0
    for _ in range(3):
        g = q.grad()
        n, d = float(g @ g), float(g @ q.A @ g) + 1e-12
        n_avg, d_avg = 0.9 * n_avg + 0.1 * n, 0.9 * d_avg + 0.1 * d
        tuner.step(make_closure(q, tuner))
        assert tuner.lr == pytest.approx(1.5 * n_avg / d_avg, rel=1e-12)
        assert tuner.stats["numerator"] == pytest.approx(n) and tuner.stats["denominator"] == pytest.approx(d)


def test_linesearch_satisfies_armijo_and_is_maximal_on_the_grid():
    q = Quadratic(seed=3)
    tuner = Linesearch(gd(q), c=0.3, c_plus=4.0, c_minus=0.8)
    for _ in range(4):
        w0, g = q.w.detach().clone(), q.grad()
        f0, slope = q.value(w0), -float(g @ g)
        eta0 = min(4.0 * tuner.lr, 1.0)
        tuner.step(make_closure(q, tuner))
        eta = tuner.lr
        k = round(math.log(eta / eta0) / math.log(0.8))
        assert eta == pytest.approx(eta0 * 0.8**k, rel=1e-12)
        assert q.value(w0 - eta * g) <= f0 + 0.3 * eta * slope
        if k > 0:
            bigger = eta / 0.8
            assert q.value(w0 - bigger * g) > f0 + 0.3 * bigger * slope
        assert tuner.stats["extra_loss_evals"] == k + 1 and tuner.stats["backtracks"] == k


def test_linesearch_gives_up_after_max_backtracks():
    q = Quadratic(seed=4)
    tuner = Linesearch(gd(q), c=0.999999, c_minus=0.5, max_backtracks=3)
    tuner.step(make_closure(q, tuner))
    assert tuner.stats["armijo"] == 0.0 and tuner.stats["extra_loss_evals"] == 4
    assert tuner.lr == pytest.approx(0.5**3)


def test_polyak_by_hand():
    q = Quadratic(seed=5)
    tuner = Polyak(gd(q), f_star=-5.0, lr_max=10.0)
    g, f = q.grad(), q.value(q.w.detach())
    tuner.step(make_closure(q, tuner))
    assert tuner.lr == pytest.approx(min((f + 5.0) / float(g @ g), 10.0), rel=1e-12)
    capped = Polyak(gd(q), f_star=-1e6, lr_max=0.01)
    capped.step(make_closure(q, capped))
    assert capped.lr == 0.01


def test_hypergradient_by_hand():
    q = Quadratic(seed=6)
    tuner = Hypergradient(gd(q), lr=0.05, beta=0.1)
    eta = 0.05
    for _ in range(3):
        w0, g = q.w.detach().clone(), q.grad()
        u = -g
        tuner.step(make_closure(q, tuner))
        g_new = q.grad(w0 + eta * u)
        assert tuner.stats["lr"] == pytest.approx(eta)
        assert torch.allclose(q.w.detach(), w0 + eta * u, atol=1e-14)
        eta = eta * (1 - 0.1 * float(g_new @ u) / float(torch.linalg.vector_norm(g_new) * torch.linalg.vector_norm(u)))
        assert tuner.next_lr == pytest.approx(eta, rel=1e-12)
        assert tuner.stats["extra_grad_evals"] == 1


def test_edge_rule_plain_and_preconditioned():
    q = Quadratic(seed=7)
    tuner = EdgeRule(gd(q), sigma=2.0, tol=1e-10)
    tuner.step(make_closure(q, tuner))
    assert tuner.lr == pytest.approx(2.0 / 10.0, rel=1e-8)
    q2 = Quadratic(seed=7)
    adam = Adam(q2.parameters(), lr=1.0, eps=1e-8)
    pre = EdgeRule(adam, sigma=2.0, preconditioned=True, tol=1e-10)
    g = q2.grad()
    pre.step(make_closure(q2, pre))
    p_diag = (1 - 0.9) * (g.abs() + 1e-8)  # after one step: √v̂ = |g|, and P carries the factor 1 − β1
    scaled = q2.A / torch.sqrt(p_diag)[:, None] / torch.sqrt(p_diag)[None, :]
    assert pre.stats["lambda_max"] == pytest.approx(float(torch.linalg.eigvalsh(scaled)[-1]), rel=1e-8)


@pytest.mark.parametrize(
    "make_tuner",
    [
        lambda opt: Linesearch(opt),
        lambda opt: QuadraticallyGreedy(opt),
        lambda opt: CDAT(opt, sigma=2.0, beta=0.9),
        lambda opt: Polyak(opt, f_star=-100.0, lr_max=0.5),
        lambda opt: Hypergradient(opt, lr=0.01, beta=0.01),
        lambda opt: EdgeRule(opt, sigma=1.0),
    ],
)
@pytest.mark.parametrize("base", ["adam", "sign", "momentum"])
def test_every_tuner_wraps_adam_sign_descent_and_momentum(make_tuner, base):
    q = Quadratic(seed=8)
    opt = {
        "adam": lambda ps: Adam(ps, lr=1.0),
        "sign": lambda ps: SignDescent(ps, lr=1.0),
        "momentum": lambda ps: HeavyBall(ps, lr=1.0, momentum=0.9),
    }[base](q.parameters())
    tuner = make_tuner(opt)
    w0, g = q.w.detach().clone(), q.grad()
    tuner.step(make_closure(q, tuner))
    expected_u = {"adam": -g / (g.abs() + 1e-8), "sign": -torch.sign(g), "momentum": -g}[base]
    assert torch.allclose(q.w.detach() - w0, tuner.lr * expected_u, atol=1e-12)
    assert tuner.lr > 0 and "lr" in tuner.stats
    losses = [q.value(q.w.detach())]
    for _ in range(5):
        tuner.step(make_closure(q, tuner))
        losses.append(q.value(q.w.detach()))
    assert all(math.isfinite(v) for v in losses)
    state = opt.state[q.w]
    assert int(state.get("step", 6)) == 6 or "momentum_buffer" in state  # the base state advanced once a step


def test_extra_evaluations_leave_rng_and_batchnorm_as_the_step_left_them():
    def make():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.3), nn.Tanh(), nn.Linear(8, 3)).double()
        x, y = torch.randn(16, 4, dtype=DT), torch.randint(0, 3, (16,))
        return model, (lambda: nn.functional.cross_entropy(model(x), y))

    model, closure = make()
    closure()  # what one plain training evaluation does to RNG and BN statistics
    rng, buffers = torch.get_rng_state(), [b.clone() for b in model.buffers()]
    model, closure = make()
    tuner = Linesearch(torch.optim.SGD(model.parameters(), lr=1.0), c_minus=0.5, model=model)
    tuner.step(make_closure(closure, tuner))
    assert tuner.stats["extra_loss_evals"] >= 1
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), buffers))


def test_extra_evaluations_see_the_same_dropout_masks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 1)).double()
    x = torch.randn(16, 4, dtype=DT)
    closure = lambda: (model(x) ** 2).mean()  # noqa: E731
    tuner = Linesearch(torch.optim.SGD(model.parameters(), lr=1.0), c_plus=1.0)
    tuner.step(make_closure(closure, tuner))
    tuner._move_to(0.0)  # back at w: the replayed evaluation must give the step's own loss
    assert tuner.loss_at(0.0) == pytest.approx(tuner.loss, rel=1e-14)


def test_tuner_state_dict_round_trip():
    q1, q2 = Quadratic(seed=9), Quadratic(seed=9)
    t1 = CDAT(Adam(q1.parameters(), lr=1.0), beta=0.9)
    for _ in range(3):
        t1.step(make_closure(q1, t1))
    t2 = CDAT(Adam(q2.parameters(), lr=1.0), beta=0.9)
    with torch.no_grad():
        q2.w.copy_(q1.w)
    t2.load_state_dict(copy.deepcopy(t1.state_dict()))
    t1.step(make_closure(q1, t1)), t2.step(make_closure(q2, t2))
    assert torch.equal(q1.w, q2.w) and t1.lr == t2.lr


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda opt: CDAT(opt, sigma=0.0), "sigma"),
        (lambda opt: CDAT(opt, beta=1.0), "beta"),
        (lambda opt: Linesearch(opt, c_minus=1.2), "c_minus"),
        (lambda opt: Linesearch(opt, c=-1.0), "c"),
        (lambda opt: Linesearch(opt, max_backtracks=-1), "max_backtracks"),
        (lambda opt: Polyak(opt, lr_max=0.0), "lr_max"),
        (lambda opt: Hypergradient(opt, lr=-0.1), "lr"),
        (lambda opt: EdgeRule(opt, sigma=-2.0), "sigma"),
        (lambda opt: CDAT("adam"), "optimizer"),
        (lambda opt: CDAT(opt, model="net"), "model"),
    ],
)
def test_bad_tuner_arguments_name_themselves(make, match):
    q = Quadratic()
    with pytest.raises((ValueError, TypeError), match=match):
        make(gd(q))


def test_closure_errors_name_the_closure():
    q = Quadratic()
    tuner = CDAT(gd(q))
    with pytest.raises(TypeError, match="closure"):
        tuner.step()
    with pytest.raises(ValueError, match="closure"):
        tuner.step(make_closure(lambda: q().detach(), tuner))
    with pytest.raises(ValueError, match="closure"):
        tuner.step(make_closure(lambda: q.w * 2, tuner))
    with pytest.raises(TypeError, match="create_graph"):  # uᵀHu needs the closure to keep the graph
        tuner.step(lambda: q())


@pytest.mark.parametrize(
    "make",
    [lambda o, m: CDAT(o, model=m), lambda o, m: EdgeRule(o, model=m), lambda o, m: QuadraticallyGreedy(o, model=m)],
)
def test_curvature_tuners_on_a_network_with_batchnorm_match_an_explicit_hessian(make):
    """uᵀHu needs a graph at w although the base optimizer's trial step writes the parameters."""
    from zoo import explicit_hessian, make_case

    case = make_case("bn_cnn_train")
    model = case.model
    model.train()
    H = explicit_hessian(case)
    obj_params = [p for p in model.parameters()]
    tuner = make(torch.optim.SGD(obj_params, lr=1.0), model)
    g = torch.autograd.grad(case.loss_fn(model(case.inputs), case.targets), obj_params)
    buffers = [b.clone() for b in model.buffers()]
    w0 = torch.cat([p.detach().reshape(-1) for p in obj_params])
    tuner.step(make_closure(lambda: case.loss_fn(model(case.inputs), case.targets), tuner))
    u = -torch.cat([t.reshape(-1) for t in g])
    quad = float(u @ H @ u)
    if isinstance(tuner, EdgeRule):
        assert tuner.stats["lambda_max"] == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-3)
    else:
        assert tuner.stats["uHu"] == pytest.approx(quad, rel=1e-9)
    moved = torch.cat([p.detach().reshape(-1) for p in obj_params]) - w0
    assert torch.allclose(moved, tuner.lr * u, atol=1e-12)
    # the step's own evaluation updated the BN statistics once; the extra evaluation did not
    assert any(not torch.equal(a, b) for a, b in zip(model.buffers(), buffers))


def test_the_param_groups_own_the_learning_rate():
    """The η a tuner chose is the optimizer's lr, as for any torch optimizer (schedulers and loggers read it)."""
    q = Quadratic(seed=10)
    base = gd(q)
    tuner = QuadraticallyGreedy(base, eps=0.0)
    tuner.step(make_closure(q, tuner))
    assert base.param_groups[0]["lr"] == tuner.lr == tuner.stats["lr"] != 123.0


def test_a_plain_torch_closure_works_for_rules_without_curvature():
    """Linesearch, Polyak and hypergradient need only losses and gradients: torch's own closure convention."""
    q = Quadratic(seed=11)
    tuner = Linesearch(gd(q))

    def closure():
        tuner.zero_grad()
        loss = q()
        loss.backward()
        return loss

    f0 = q.value(q.w.detach())
    tuner.step(closure)
    assert q.value(q.w.detach()) < f0 and q.w.grad is not None
