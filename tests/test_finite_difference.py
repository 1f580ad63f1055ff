"""Products from gradients alone (hvp_engine="finite_difference") against explicit float64 Hessians, and
hvp_engine="auto": double backward where it is right, finite differences (said once) where it fails loudly (a fused
attention kernel) or silently (a custom backward that is not differentiable)."""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import cached_hessian, rel_err
from torch import nn
from torch.autograd.function import once_differentiable
from zoo import CASES, make_case

import curvlab
from curvlab import Objective
from curvlab.core.hvp import STEP_FACTOR, finite_difference_step


def objective_for(case, **kw):
    return Objective(case.model, case.loss_fn, (case.inputs, case.targets), bn_mode=case.bn_mode, **kw)


@pytest.mark.parametrize("name", CASES)
def test_finite_difference_products_match_the_explicit_hessian(name):
    case = make_case(name)
    obj = objective_for(case, hvp_engine="finite_difference")
    before = [(p.clone(), p._version) for p in case.model.parameters()]
    g = torch.Generator().manual_seed(3)
    for _ in range(2):
        v = torch.randn(obj.dim, generator=g, dtype=torch.float64)
        assert rel_err(obj.hvp(v), cached_hessian(name) @ v) < 1e-8  # float64: the rule's error is ≈ u^(2/3) ≈ 4e-11
    for p, (value, version) in zip(case.model.parameters(), before):
        assert torch.equal(p, value) and p._version == version  # never written, not even and restored


def documented_step_factor() -> float:
    """c as docs/core.md states it ("ε = c · u^(1/3) · … with c = 0.1")."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "core.md").read_text()
    return float(re.search(r"/ ‖v‖ with c = ([0-9.]+)", text).group(1))


def test_the_step_follows_the_dtype_and_the_norms():
    c = documented_step_factor()  # the documented constant, not the code's: a changed c fails here
    assert c == STEP_FACTOR == 0.1
    x = [torch.full((4,), 3.0, dtype=torch.float64)]  # root-mean-square 3
    v = [torch.full((4,), 0.5, dtype=torch.float64)]  # ‖v‖ = 1
    assert finite_difference_step(x, v) == pytest.approx(c * torch.finfo(torch.float64).eps ** (1 / 3) * 3.0)
    x32, v32 = [x[0].float()], [2 * v[0].float()]
    assert finite_difference_step(x32, v32) == pytest.approx(c * torch.finfo(torch.float32).eps ** (1 / 3) * 1.5)
    small = [torch.full((4,), 1e-3)]  # parameters smaller than 1: the step's length is c·u^(1/3)
    assert finite_difference_step(small, v32) == pytest.approx(c * torch.finfo(torch.float32).eps ** (1 / 3) / 2)
    assert finite_difference_step(x, [torch.zeros(4, dtype=torch.float64)]) == 0.0


class Softplus(torch.autograd.Function):
    """softplus through a custom autograd function; the subclasses write its backward so that torch cannot
    differentiate it again, and double backward silently drops its σ' term."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.softplus(x)


class OnceSoftplus(Softplus):
    """The backward marked @once_differentiable."""

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x)


class DetachedSoftplus(Softplus):
    """The backward written with a non-differentiable op (the input detached)."""

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x.detach())


class SoftplusNet(nn.Module):
    def __init__(self, activation):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 12), nn.Linear(12, 12), nn.Linear(12, 3)
        self.activation = activation

    def forward(self, x):
        return self.c(self.activation(self.b(self.activation(self.a(x)))))


def _softplus_case(custom, dtype):
    torch.manual_seed(0)
    net = SoftplusNet(custom.apply).to(dtype)
    twin = SoftplusNet(F.softplus).to(dtype)
    twin.load_state_dict(net.state_dict())
    x, y = torch.randn(32, 6, dtype=dtype, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 3
    return net, twin, (x, y)


@pytest.mark.parametrize("custom", [OnceSoftplus, DetachedSoftplus])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_auto_falls_back_where_double_backward_is_silently_wrong(custom, dtype):
    net, twin, data = _softplus_case(custom, dtype)
    v = torch.randn(sum(p.numel() for p in net.parameters()), generator=torch.Generator().manual_seed(2)).to(dtype)
    truth = Objective(twin, F.cross_entropy, data, hvp_engine="reverse").hvp(v)
    silent = Objective(net, F.cross_entropy, data, hvp_engine="reverse").hvp(v)
    assert rel_err(silent, truth) > 0.1  # torch's double backward is wrong here, and says nothing
    with pytest.warns(UserWarning, match="disagrees with finite differences") as caught:
        auto = Objective(net, F.cross_entropy, data)
        product = auto.hvp(v)
    assert len(caught) == 1 and auto.hvp_engine == "finite_difference"
    assert rel_err(product, truth) < (1e-8 if dtype == torch.float64 else 1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per model: a second Objective on it does not warn again
        assert Objective(net, F.cross_entropy, data).hvp_engine == "finite_difference"


class PartlyDetachedSoftplus(Softplus):
    """A backward with 30% of its σ written on the detached input: double backward keeps 70% of the σ' term, a
    silent error of a few per cent of the product."""

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (0.3 * torch.sigmoid(x.detach()) + 0.7 * torch.sigmoid(x))


def test_auto_in_float32_cannot_see_a_silent_error_of_a_few_per_cent_which_float64_catches():
    """The blind spot docs/core.md states: the check compares the exact product with finite differences, whose own
    error in float32 (rounding at the small step, truncation at the large one) is of the order of a tenth of the
    product here, so a silent error of a few per cent passes it; in float64 it is caught."""
    for dtype, engine in ((torch.float32, "reverse"), (torch.float64, "finite_difference")):
        net, twin, data = _softplus_case(PartlyDetachedSoftplus, dtype)
        v = torch.randn(sum(p.numel() for p in net.parameters()), generator=torch.Generator().manual_seed(2)).to(dtype)
        truth = Objective(twin, F.cross_entropy, data, hvp_engine="reverse").hvp(v)
        silent = Objective(net, F.cross_entropy, data, hvp_engine="reverse").hvp(v)
        assert 0.01 < rel_err(silent, truth) < 0.05  # a few per cent, in both dtypes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert Objective(net, F.cross_entropy, data).hvp_engine == engine, dtype


@pytest.mark.parametrize("name", CASES)
def test_auto_keeps_double_backward_where_it_is_right(name):
    case = make_case(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert objective_for(case).hvp_engine == "reverse"


def test_auto_keeps_double_backward_on_a_relu_network_in_float32():
    """ReLU kinks crossed by the finite-difference step make its estimates disagree with each other: that spread, not
    a wrong exact product, is what the check sees."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    data = (torch.randn(64, 10), torch.randint(0, 3, (64,)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Objective(net, F.cross_entropy, data).hvp_engine == "reverse"


SLOW = 0.05  # seconds each second-order pass through SlowSoftplus waits


def _sigmoid_times_backward(ctx, g):
    """The exact backward of grad · σ(x) (double backward's part of softplus)."""
    x, grad = ctx.saved_tensors
    s = torch.sigmoid(x)
    return g * grad * s * (1 - s), g * s


class SlowSigmoidTimes(torch.autograd.Function):
    """grad · σ(x), softplus's first backward, whose own backward (double backward's part) is right but waits."""

    @staticmethod
    def forward(ctx, x, grad):
        ctx.save_for_backward(x, grad)
        return grad * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, g):
        time.sleep(SLOW)
        return _sigmoid_times_backward(ctx, g)


def softplus_through(sigmoid_times):
    """softplus whose first backward is ``sigmoid_times`` (so its second derivative is that function's backward)."""

    class ThroughSigmoidTimes(Softplus):
        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return sigmoid_times.apply(x, grad)

    return ThroughSigmoidTimes


SlowSoftplus = softplus_through(
    SlowSigmoidTimes
)  # exact and slow: an exact product waits SLOW per layer, a gradient not


def test_auto_takes_finite_differences_where_double_backward_is_right_but_much_slower():
    """An exact product ≥ TIMED_FROM seconds and more than TIME_MARGIN × a finite-difference one settles finite
    differences, said once with both times, by the check alone and by the one inside a Hessian operator's first
    product; λ1 is then the true one (the twin's, exact) to the finite differences' accuracy in float64."""
    net, twin, data = _softplus_case(SlowSoftplus, torch.float64)
    v = torch.randn(sum(p.numel() for p in net.parameters()), generator=torch.Generator().manual_seed(2)).double()
    truth = Objective(twin, F.cross_entropy, data, hvp_engine="reverse").hvp(v)
    assert rel_err(Objective(net, F.cross_entropy, data, hvp_engine="reverse").hvp(v), truth) < 1e-12  # right
    with pytest.warns(UserWarning, match=r"an exact product \(double backward\) took .* s against .* s") as caught:
        assert Objective(net, F.cross_entropy, data).hvp_engine == "finite_difference"
    assert len(caught) == 1
    net, twin, data = _softplus_case(SlowSoftplus, torch.float64)  # a new model: nothing remembered
    truth = curvlab.eigs(Objective(twin, F.cross_entropy, data, hvp_engine="reverse").hessian(), tol=1e-10)
    auto = Objective(net, F.cross_entropy, data)
    with pytest.warns(UserWarning, match="auto takes finite differences above 2×"):
        found = curvlab.eigs(auto.hessian(), tol=1e-10)
    assert auto._engine == "finite_difference"
    assert float(found.eigenvalues[0]) == pytest.approx(float(truth.eigenvalues[0]), rel=1e-7)


SLOW_CALLS_LEFT = [0]  # second-order passes through FirstSlowSoftplus still to wait SLOW


class FirstSlowSigmoidTimes(SlowSigmoidTimes):
    """SlowSigmoidTimes that waits only while SLOW_CALLS_LEFT lasts: a first exact product slowed by a one-off cost."""

    @staticmethod
    def backward(ctx, g):
        if SLOW_CALLS_LEFT[0] > 0:
            SLOW_CALLS_LEFT[0] -= 1
            time.sleep(SLOW)
        return _sigmoid_times_backward(ctx, g)


FirstSlowSoftplus = softplus_through(FirstSlowSigmoidTimes)


def test_auto_does_not_switch_for_time_on_one_slow_exact_product():
    """One slow exact product (a first call's setup, a load spike) is timed again before a switch for time: an exact
    product slow only the first time (both activations of the net wait SLOW once) keeps double backward, by the
    check alone and by the one inside a Hessian operator's first product."""
    net, _, data = _softplus_case(FirstSlowSoftplus, torch.float64)
    SLOW_CALLS_LEFT[0] = 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Objective(net, F.cross_entropy, data).hvp_engine == "reverse"
    assert SLOW_CALLS_LEFT[0] == 0  # the first product did wait
    net, _, data = _softplus_case(FirstSlowSoftplus, torch.float64)  # a new model: nothing remembered
    SLOW_CALLS_LEFT[0] = 2
    auto = Objective(net, F.cross_entropy, data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curvlab.eigs(auto.hessian(), tol=1e-6)
    assert auto._engine == "reverse" and SLOW_CALLS_LEFT[0] == 0


def test_the_time_rule_judges_only_long_products_by_a_wide_margin():
    """Evidence.by_time on set timings: finite differences only for an exact product of TIMED_FROM seconds or more
    that took more than TIME_MARGIN × the cheapest finite-difference one, and only where the finite differences
    agree among themselves within UNRELIABLE (1%); untimed, short or near-tie ones keep double backward."""
    from curvlab.core.engine_choice import TIME_MARGIN, TIMED_FROM, Evidence

    assert (TIME_MARGIN, TIMED_FROM) == (2.0, 0.05)  # docs/core.md states both
    x = [torch.ones(3, dtype=torch.float64)]
    evidence = Evidence(lambda ps: (ps[0] ** 3).sum(), x, [torch.ones(3, dtype=torch.float64)], 1e-16)
    evidence.seconds = 0.1
    for exact_seconds, engine in ((None, "reverse"), (0.15, "reverse"), (0.2, "reverse"), (0.21, "finite_difference")):
        assert evidence.by_time(exact_seconds)[0] == engine, exact_seconds
    evidence.seconds = 0.001
    for exact_seconds, engine in ((0.049, "reverse"), (0.05, "finite_difference"), (0.0015, "reverse")):
        assert evidence.by_time(exact_seconds)[0] == engine, exact_seconds
    evidence.spread = 0.011 * evidence.size  # the steps disagree (kinks crossed): finite differences are not trusted
    assert evidence.by_time(1.0)[0] == "reverse"
    evidence.spread = 0.009 * evidence.size
    assert evidence.by_time(1.0)[0] == "finite_difference"


class FusedAttention(nn.Module):
    """Attention through the CPU flash kernel called directly (no double backward), or, as a twin, the same
    function written out."""

    def __init__(self, fused: bool):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.fused = fused

    def forward(self, x):
        q = self.lin(x).view(x.shape[0], 1, x.shape[1], 4)
        if self.fused:
            out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, q, q)[0]
        else:
            out = torch.softmax(q @ q.transpose(-1, -2) / 2.0, dim=-1) @ q
        return out.mean(dim=(1, 2))


def _fused_attention_case():
    """The fused-kernel model, its written-out twin with the same weights, data and a loss."""
    torch.manual_seed(0)
    fused, written = FusedAttention(True), FusedAttention(False)
    written.load_state_dict(fused.state_dict())
    data = (torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(1)), torch.zeros(3))
    return fused, written, data, lambda o, y: (o**2).mean()


def test_auto_falls_back_where_double_backward_fails():
    fused, written, data, loss = _fused_attention_case()
    with pytest.raises(RuntimeError, match="scaled_dot_product_attention"):
        Objective(fused, loss, data, hvp_engine="reverse").hvp(torch.ones(20))
    with pytest.warns(UserWarning, match="double backward fails"):
        product = Objective(fused, loss, data).hvp(torch.ones(20))
    assert rel_err(product, Objective(written, loss, data, hvp_engine="reverse").hvp(torch.ones(20))) < 1e-3


def test_every_curvature_measurement_runs_on_finite_differences():
    """λ1 and top-k, the trace, the density, per-module blocks, directional and preconditioned sharpness, with the
    finite-difference engine, against the same measurements with exact products (float64, LayerNorm MLP)."""
    case = make_case("layernorm_mlp")
    exact, fd = objective_for(case, hvp_engine="reverse"), objective_for(case, hvp_engine="finite_difference")
    hessian = cached_hessian("layernorm_mlp")
    top = torch.linalg.eigvalsh(hessian).flip(0)
    assert curvlab.eigs(fd, k=3, tol=1e-9).eigenvalues.tolist() == pytest.approx(top[:3].tolist(), rel=1e-6)
    assert curvlab.eigs(fd, tol=1e-9, basis="none").eigenvalues[0] == pytest.approx(float(top[0]), rel=1e-6)
    assert curvlab.trace(fd, n_probes=10).estimate == pytest.approx(
        curvlab.trace(exact, n_probes=10).estimate, rel=1e-6
    )
    density_fd, density_exact = curvlab.spectral_density(fd, n_steps=10), curvlab.spectral_density(exact, n_steps=10)
    assert torch.allclose(density_fd.ritz_values, density_exact.ritz_values, rtol=1e-5, atol=1e-7)
    blocks_fd, blocks_exact = curvlab.block_eigs(fd, tol=1e-9), curvlab.block_eigs(exact, tol=1e-9)
    for name, result in blocks_exact.items():
        assert float(blocks_fd[name].eigenvalues[0]) == pytest.approx(float(result.eigenvalues[0]), rel=1e-6, abs=1e-9)
    d = torch.randn(fd.dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert curvlab.geometry.directional_sharpness(fd, d) == pytest.approx(float(d @ hessian @ d / (d @ d)), rel=1e-6)
    optimizer = torch.optim.Adam(case.model.parameters(), lr=1e-2)
    optimizer.zero_grad()
    case.loss_fn(case.model(case.inputs), case.targets).backward()
    optimizer.step()
    values = [
        float(curvlab.eigs(curvlab.geometry.preconditioned_hessian(o, optimizer), tol=1e-9).eigenvalues[0])
        for o in (objective_for(case, hvp_engine=e) for e in ("reverse", "finite_difference"))
    ]
    assert values[1] == pytest.approx(values[0], rel=1e-6)


def test_the_step_follows_the_loss_precision_when_it_is_coarser_than_the_parameters():
    """A float64 model whose loss is computed in float32 (as a Hugging Face model's is): the step is float32's, so
    the product keeps float32's finite-difference accuracy instead of float64's step drowning in float32 rounding."""
    case = make_case("tanh_mlp_ce")
    data = (case.inputs, case.targets)
    coarse = Objective(case.model, lambda o, y: F.cross_entropy(o.float(), y), data, hvp_engine="finite_difference")
    assert coarse.loss_roundoff() == torch.finfo(torch.float32).eps
    assert objective_for(case, hvp_engine="finite_difference").loss_roundoff() == torch.finfo(torch.float64).eps
    v = torch.randn(coarse.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert rel_err(coarse.hvp(v), cached_hessian("tanh_mlp_ce") @ v) < 1e-4


def test_the_truncation_error_is_the_fourth_derivative_term_of_the_documented_bound():
    """docs/core.md: the central difference of gradients differs from Hv by (ε²/6) ∇⁴F[v, v, v, ·] + O(ε⁴). On
    F(x) = Σ cᵢ xᵢ⁴ that term is 4 c v³ ε² exactly (no higher term), and on a cubic F the difference is exact: the
    third derivative does not enter. Computed here in closed form, at a step large enough for truncation to dominate
    rounding."""
    from curvlab.core.hvp import hvp_finite_difference

    g = torch.Generator().manual_seed(0)
    c, x, v = (torch.randn(6, generator=g, dtype=torch.float64) for _ in range(3))
    quartic = lambda ps: (c * ps[0] ** 4).sum()  # noqa: E731
    cubic = lambda ps: (c * ps[0] ** 3).sum()  # noqa: E731
    scale = 1e5  # ε = 1e5 × the default step (~0.03): truncation ~1e-3 of the product, rounding ~1e-13
    eps = scale * finite_difference_step([x], [v])
    product = hvp_finite_difference(quartic, [x], [v], scale=scale)[1][0]
    exact = 12 * c * x**2 * v
    assert torch.allclose(product - exact, 4 * c * v**3 * eps**2, rtol=1e-8, atol=1e-13)
    assert (product - exact).abs().max() > 1e-4  # the term is there to be seen
    cubic_product = hvp_finite_difference(cubic, [x], [v], scale=scale)[1][0]
    assert torch.allclose(cubic_product, 6 * c * x * v, rtol=1e-12, atol=1e-13)


def test_the_checks_fingerprints_keep_the_distances_of_long_products():
    """Past SKETCH entries the check compares count sketches of its products, not the products: distances within 2%
    of the true ones for a dense random difference, a constant one (which a sketch without random signs would
    inflate) and one confined to a small tensor; linear; and the products themselves below SKETCH entries."""
    from curvlab.core.engine_choice import SKETCH, fingerprint

    gen = torch.Generator().manual_seed(0)
    shapes = [(300, 1000), (200, 700), (90,)]
    a = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    assert sum(t.numel() for t in a) > 3 * SKETCH
    differences = {
        "dense": [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes],
        "constant": [torch.ones(s, dtype=torch.float64) for s in shapes],
        "one small tensor": [torch.zeros(shapes[0]), torch.zeros(shapes[1]), torch.randn(90, generator=gen)],
    }
    for name, delta in differences.items():
        b = [x + d.to(x.dtype) for x, d in zip(a, delta)]
        true = float(torch.cat([d.reshape(-1) for d in delta]).double().norm())
        sketched = float((fingerprint(a) - fingerprint(b)).norm())
        assert sketched == pytest.approx(true, rel=2e-2), name
        assert torch.allclose(fingerprint(a) - fingerprint(b), -fingerprint(delta), atol=1e-9)
    small = [torch.randn(10, 10, generator=gen), torch.randn(5, generator=gen)]
    assert torch.equal(fingerprint(small), torch.cat([t.reshape(-1) for t in small]).double())


class WideSoftplusNet(SoftplusNet):
    def __init__(self, activation):
        super().__init__(activation)
        self.a, self.b, self.c = nn.Linear(6, 420), nn.Linear(420, 420), nn.Linear(420, 3)


def test_auto_still_catches_a_silently_wrong_layer_when_the_check_compares_sketches():
    """A network of more parameters than the sketch has buckets: the check compares fingerprints, and still falls
    back on the @once_differentiable softplus and keeps double backward on torch's own."""
    from curvlab.core.engine_choice import SKETCH

    torch.manual_seed(0)
    net, twin = WideSoftplusNet(OnceSoftplus.apply).double(), WideSoftplusNet(F.softplus).double()
    twin.load_state_dict(net.state_dict())
    assert sum(p.numel() for p in net.parameters()) > SKETCH
    data = (torch.randn(32, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 3)
    with pytest.warns(UserWarning, match="disagrees with finite differences"):
        assert Objective(net, F.cross_entropy, data).hvp_engine == "finite_difference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Objective(twin, F.cross_entropy, data).hvp_engine == "reverse"


@pytest.mark.parametrize("custom", [OnceSoftplus, DetachedSoftplus])
def test_a_hessian_operators_first_product_checks_and_falls_back_where_double_backward_is_silently_wrong(custom):
    """``eigs(objective.hessian())`` with "auto" unsettled: the check runs inside the operator's first product (on
    the graph it keeps), settles finite differences with one warning, and λ1 is the true one (the twin's, exact)."""
    net, twin, data = _softplus_case(custom, torch.float64)
    truth = curvlab.eigs(Objective(twin, F.cross_entropy, data, hvp_engine="reverse").hessian(), tol=1e-10)
    wrong = curvlab.eigs(Objective(net, F.cross_entropy, data, hvp_engine="reverse").hessian(), tol=1e-10)
    assert rel_err(wrong.eigenvalues, truth.eigenvalues) > 1e-3  # torch's double backward is silently wrong here
    auto = Objective(net, F.cross_entropy, data)
    with pytest.warns(UserWarning, match="disagrees with finite differences") as caught:
        found = curvlab.eigs(auto.hessian(), tol=1e-10)
    assert len(caught) == 1 and auto._engine == "finite_difference"
    assert float(found.eigenvalues[0]) == pytest.approx(float(truth.eigenvalues[0]), rel=1e-7)
    assert auto.counts["hvp"] == found.n_matvecs  # the discarded exact product is not counted


def test_a_hessian_operators_first_product_falls_back_where_double_backward_fails():
    fused, written, data, loss = _fused_attention_case()
    auto = Objective(fused, loss, data)
    with pytest.warns(UserWarning, match="double backward fails"):
        product = auto.hessian().matvec(torch.ones(20))
    assert auto._engine == "finite_difference"
    assert rel_err(product, Objective(written, loss, data, hvp_engine="reverse").hvp(torch.ones(20))) < 1e-3


def _forwards(model: nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("name", ["layernorm_mlp", "attention"])
def test_the_check_inside_a_hessian_operators_first_product_builds_no_graph_of_its_own(name):
    """The check made inside the first product of ``objective.hessian()`` judges an exact product on the graph the
    solve keeps: the same λ1 as with "reverse" to the last bit, with exactly the check's finite-difference passes
    more (three steps × two gradients) and not the separate forward and double backward the check makes alone."""
    case = make_case(name)
    runs = {}
    for engine in ("reverse", "auto", "check alone"):
        torch.manual_seed(0)
        model = make_case(name).model
        calls = _forwards(model)
        objective = Objective(
            model,
            case.loss_fn,
            (case.inputs, case.targets),
            bn_mode=case.bn_mode,
            hvp_engine="auto" if engine == "check alone" else engine,
        )
        if engine == "check alone":
            objective.loss_roundoff()  # read by both checks: counted apart
            before = calls[0]
            assert objective.hvp_engine == "reverse"
            runs[engine] = calls[0] - before
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = curvlab.eigs(objective.hessian(), tol=1e-8)
        assert objective._engine == "reverse"
        runs[engine] = (float(result.eigenvalues[0]), calls[0] - (engine == "auto"))  # less the roundoff's forward
    assert runs["auto"][0] == runs["reverse"][0]
    assert runs["check alone"] == 7  # one exact product's forward, three finite differences' two each
    assert runs["auto"][1] - runs["reverse"][1] == 6
