"""HVPs, quad and gradients against explicit float64 Hessians on every model of the zoo (definitions §2)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import cached_hessian, rel_err
from torch import nn
from torch.func import jvp
from zoo import CASES, explicit_loss_and_grad, make_case, reference_function

import curvlab
from curvlab import Objective
from curvlab.losses import mse


def objective_for(case, **kw):
    return Objective(case.model, case.loss_fn, (case.inputs, case.targets), bn_mode=case.bn_mode, **kw)


def test_loss_and_grad_match_reference(case):
    obj = objective_for(case)
    loss, grad = obj.loss_and_grad()
    ref_loss, ref_grad = explicit_loss_and_grad(case)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert obj.loss() == pytest.approx(ref_loss, rel=1e-12)
    assert rel_err(grad, ref_grad) < 1e-10


@pytest.mark.parametrize("engine", ["reverse", "forward"])
def test_hvp_matches_explicit_hessian(case, engine):
    hessian = cached_hessian(case.name)
    obj = objective_for(case, hvp_engine=engine)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(obj.dim, generator=g, dtype=torch.float64)
        assert rel_err(obj.hvp(v), hessian @ v) < 1e-6


def test_engines_agree(case):
    v = torch.randn(objective_for(case).dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = objective_for(case, hvp_engine="reverse").hvp(v)
    b = objective_for(case, hvp_engine="forward").hvp(v)
    assert rel_err(a, b) < 1e-6


@pytest.mark.parametrize("engine", ["reverse", "forward"])
def test_quad_matches_explicit(case, engine):
    hessian = cached_hessian(case.name)
    obj = objective_for(case, hvp_engine=engine)
    u = torch.randn(obj.dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert obj.quad(u) == pytest.approx(float(u @ hessian @ u), rel=1e-6)


@pytest.mark.parametrize("name", ["layernorm_mlp", "bn_cnn_train"])
def test_naive_jvp_of_jvp_would_fail_the_quad_test(name):
    """The trap of definitions §2/§10: forward-over-forward is wrong through LayerNorm and train-mode BN in
    this torch, by more than the 1e-6 tolerance of test_quad_matches_explicit, so that test catches a
    switch to it. curvlab's quad is right on the same point and direction."""
    case = make_case(name)
    f, x0 = reference_function(case)
    u = torch.randn(x0.numel(), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    naive = float(jvp(lambda z: jvp(f, (z,), (u,))[1], (x0,), (u,))[1])
    exact = float(u @ cached_hessian(name) @ u)
    assert abs(naive - exact) > 1e-3 * abs(exact)
    assert objective_for(case).quad(u) == pytest.approx(exact, rel=1e-9)


def test_chunked_objective_is_the_size_weighted_mean():
    case = make_case("tanh_mlp_ce")
    whole = objective_for(case)
    chunked = objective_for(case, batch_size=7)  # 24 = 7 + 7 + 7 + 3: uneven last chunk
    v = torch.randn(whole.dim, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    assert chunked.loss() == pytest.approx(whole.loss(), rel=1e-12)
    assert rel_err(chunked.grad(), whole.grad()) < 1e-12
    assert rel_err(chunked.hvp(v), whole.hvp(v)) < 1e-12


def test_train_mode_batchnorm_uses_per_chunk_statistics():
    """With BN in train mode F is the mean of per-chunk losses (definitions §1), not the full-batch loss."""
    from zoo import explicit_hessian

    case = make_case("bn_cnn_train")
    obj = objective_for(case, batch_size=5)
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert rel_err(obj.hvp(v), explicit_hessian(case, chunk=5) @ v) < 1e-6
    assert rel_err(obj.hvp(v), cached_hessian("bn_cnn_train") @ v) > 1e-3


@pytest.mark.parametrize("engine", ["reverse", "forward"])
def test_restricted_params_give_the_sub_hessian(engine):
    case = make_case("layernorm_mlp")
    names = ["0.weight", "1.bias"]
    full = cached_hessian("layernorm_mlp")
    all_names = [n for n, _ in case.model.named_parameters()]
    sizes = [p.numel() for _, p in case.model.named_parameters()]
    offsets = torch.tensor([0] + sizes).cumsum(0)
    index = torch.cat([torch.arange(offsets[i], offsets[i + 1]) for i, n in enumerate(all_names) if n in names])
    sub = full[index][:, index]
    by_name = objective_for(case, params=names, hvp_engine=engine)
    by_pred = objective_for(case, params=lambda n, p: n in names, hvp_engine=engine)
    by_tensor = objective_for(case, params=[case.model[0].weight, case.model[1].bias], hvp_engine=engine)
    v = torch.randn(sub.shape[0], generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    for obj in (by_name, by_pred, by_tensor):
        assert obj.names == tuple(names)
        assert obj.dim == sub.shape[0]
        assert rel_err(obj.hvp(v), sub @ v) < 1e-6


@pytest.mark.parametrize("engine", ["reverse", "forward"])
def test_unused_parameter_contributes_zeros(engine):
    from zoo import UnusedParam

    torch.manual_seed(0)
    model = UnusedParam().double()
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 3, (10,))
    obj = Objective(model, F.cross_entropy, (x, y), hvp_engine=engine)
    grad = obj.grad()
    hv = obj.hvp(torch.ones(obj.dim, dtype=torch.float64))
    parts = dict(zip(obj.names, obj.unflatten(hv)))
    gparts = dict(zip(obj.names, obj.unflatten(grad)))
    for name in ("unused.weight", "unused.bias"):
        assert torch.count_nonzero(parts[name]) == 0 and torch.count_nonzero(gparts[name]) == 0
    assert torch.count_nonzero(parts["used.weight"]) > 0
    only_unused = Objective(model, F.cross_entropy, (x, y), params=["unused.weight"], hvp_engine=engine)
    assert torch.count_nonzero(only_unused.hvp(torch.ones(only_unused.dim, dtype=torch.float64))) == 0


def test_linear_in_params_loss_has_zero_hessian():
    model = nn.Linear(3, 1, bias=False).double()
    obj = Objective(model, lambda out, y: out.mean(), (torch.randn(5, 3, dtype=torch.float64), torch.zeros(5)))
    assert torch.count_nonzero(obj.hvp(torch.ones(3, dtype=torch.float64))) == 0
    assert torch.count_nonzero(obj.hessian()(torch.ones(3, dtype=torch.float64))) == 0


def test_flash_attention_kernel_gets_a_clear_error_from_double_backward():
    class FusedAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            q = self.lin(x).view(x.shape[0], 1, x.shape[1], 4)
            out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, q, q)[0]
            return out.mean(dim=(1, 2))

    model = FusedAttention()
    obj = Objective(model, lambda o, y: (o**2).mean(), (torch.randn(3, 5, 4), torch.zeros(3)), hvp_engine="reverse")
    with pytest.raises(RuntimeError, match="scaled_dot_product_attention"):  # "auto" falls back instead
        obj.hvp(torch.ones(obj.dim))


def test_mse_loss_in_forward_engine_gets_a_clear_error():
    case = make_case("tanh_mlp_mse")
    obj = Objective(case.model, F.mse_loss, (case.inputs, case.targets), hvp_engine="forward")
    with pytest.raises(RuntimeError, match="curvlab.losses.mse"):
        obj.hvp(torch.ones(obj.dim, dtype=torch.float64))
    reverse = Objective(case.model, F.mse_loss, (case.inputs, case.targets), hvp_engine="reverse")
    v = torch.ones(obj.dim, dtype=torch.float64)
    assert rel_err(reverse.hvp(v), cached_hessian("tanh_mlp_mse") @ v) < 1e-6  # the same function as losses.mse


def test_float32_model_products_run_in_float32():
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    obj = Objective(model, F.cross_entropy, (torch.randn(20, 4), torch.randint(0, 3, (20,))))
    out = obj.hvp(torch.randn(obj.dim, dtype=torch.float64))
    assert out.dtype == torch.float32 and obj.grad().dtype == torch.float32


@pytest.mark.parametrize("name", ["tanh_mlp_ce", "bn_cnn_train", "transformer_layer"])
def test_cached_hessian_operator_matches_hvp(name):
    case = make_case(name)
    obj = objective_for(case)
    op = obj.hessian()
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    first, second = op(v), op(2 * v)
    assert rel_err(first, cached_hessian(name) @ v) < 1e-6
    assert rel_err(second, 2 * first) < 1e-12
    assert op.n_matvecs == 2


@pytest.mark.parametrize("name", CASES)
def test_matvec_add_adds_the_kept_graph_product_in_place(name):
    """``matvec_add(v, out, c)`` is c·out + H v against the explicit Hessian, in ``out``'s own storage. Once the first
    product has kept the graph of the one chunk, the double backward adds straight into ``out`` (no H v apart) and
    the leaves' ``.grad`` are cleared after; before it, with several chunks, or without a kept graph, the ordinary
    product is added. Either way the same numbers."""
    case = make_case(name)
    exact = cached_hessian(name)
    gen = torch.Generator().manual_seed(10)
    v, start = (torch.randn(exact.shape[0], generator=gen, dtype=torch.float64) for _ in range(2))
    for batch_size, cache, in_place in ((None, "auto", True), (10, "auto", False), (None, False, False)):
        op = objective_for(case, batch_size=batch_size).hessian(cache=cache)
        # the same chunks' product (train-mode BatchNorm's statistics are per chunk), and the explicit Hessian's
        product = objective_for(case, batch_size=batch_size).hvp(v)
        if batch_size is None:
            assert rel_err(product, exact @ v) < 1e-10
        assert op._add_product_to(v, start.clone()) is False  # no graph kept before the first product
        out = start.clone()
        storage = out.data_ptr()
        assert op.matvec_add(v, out, -0.7) is out and out.data_ptr() == storage
        assert rel_err(out, -0.7 * start + product) < 1e-10
        in_place = in_place or (cache == "auto" and len(op._states) == 1)  # a case of ≤ 10 examples: one chunk
        assert op._add_product_to(v, start.clone()) is in_place, (batch_size, cache)
        assert rel_err(op.matvec_add(v, start.clone(), 2.0), 2.0 * start + product) < 1e-10
        assert op.n_matvecs == 2
        if in_place:
            ((_, (leaves, _)),) = op._states
            assert all(leaf.grad is None for leaf in leaves)
    with pytest.raises(ValueError, match="out: expected a flat vector"):
        op.matvec_add(v, start[:-1].clone(), 1.0)


def test_hessian_operator_refuses_stale_parameters():
    case = make_case("tanh_mlp_ce")
    obj = objective_for(case)
    for cache in (True, False):
        op = obj.hessian(cache=cache)
        op(torch.ones(obj.dim, dtype=torch.float64))
        with torch.no_grad():
            case.model[0].weight.add_(0.1)
        with pytest.raises(RuntimeError, match="objective.hessian"):
            op(torch.ones(obj.dim, dtype=torch.float64))


def test_chunk_graphs_are_kept_within_the_memory_budget():
    case = make_case("tanh_mlp_ce")
    exact = cached_hessian("tanh_mlp_ce")
    v = torch.ones(exact.shape[0], dtype=torch.float64)
    kept = objective_for(case, batch_size=10).hessian()
    assert rel_err(kept(v), exact @ v) < 1e-6 and rel_err(kept(v), exact @ v) < 1e-6
    assert kept._complete and len(kept._states) > 1 and kept.graph_bytes > 0
    per_chunk = kept.graph_bytes / len(kept._states)
    partial = objective_for(case, batch_size=10, graph_memory=2.5 * per_chunk).hessian()
    for _ in range(2):
        assert rel_err(partial(v), exact @ v) < 1e-6
    assert len(partial._states) == 2 and not partial._complete
    nothing = objective_for(case, batch_size=10, graph_memory=0).hessian()
    assert rel_err(nothing(v), exact @ v) < 1e-6 and not nothing._states and nothing.graph_bytes == 0
    assert rel_err(objective_for(case, batch_size=10).hessian(cache=False)(v), exact @ v) < 1e-6


def test_operators_are_shared_at_one_point_and_released():
    case = make_case("tanh_mlp_ce")
    obj = objective_for(case, batch_size=10)
    op = obj.hessian()
    op(torch.ones(obj.dim, dtype=torch.float64))
    assert obj.hessian() is op and op._states
    obj.release()
    assert op._states is None and obj.hessian() is not op
    with pytest.raises(ValueError, match="graph_memory"):
        objective_for(case, graph_memory=-1)


@pytest.mark.parametrize("name", CASES)
def test_counts_track_evaluations(name):
    case = make_case(name)
    obj = objective_for(case)
    obj.loss()
    obj.grad()
    obj.hvp(torch.ones(obj.dim, dtype=torch.float64))
    assert obj.counts == {"loss": 1, "grad": 1, "hvp": 1, "ggn": 0, "fisher": 0}


@pytest.mark.parametrize("name", ["tanh_mlp_ce", "bn_cnn_train", "attention"])
def test_evaluating_at_another_point_leaves_the_model_alone(name):
    case = make_case(name)
    obj = objective_for(case)
    x0 = obj.parameters_vector()
    x1 = x0 + 0.05 * torch.randn(obj.dim, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    at_x1 = (obj.loss(at=x1), obj.grad(at=x1), obj.hvp(v, at=x1), obj.quad(v, at=x1))
    assert torch.equal(obj.parameters_vector(), x0)
    with torch.no_grad():  # now really move the model to x1 and compare
        for p, part in zip([p for _, p in case.model.named_parameters()], obj.unflatten(x1)):
            p.copy_(part)
    assert at_x1[0] == pytest.approx(obj.loss(), rel=1e-12)
    assert rel_err(at_x1[1], obj.grad()) < 1e-12
    assert rel_err(at_x1[2], obj.hvp(v)) < 1e-12
    assert at_x1[3] == pytest.approx(obj.quad(v), rel=1e-10)
    with pytest.raises(ValueError, match="at:"):
        obj.loss(at=x1[:-1])


def test_compiled_engine_matches_the_explicit_hessian():
    case = make_case("layernorm_mlp")
    obj = objective_for(case, hvp_engine="compile")
    v = torch.linspace(-1, 1, obj.dim, dtype=torch.float64)
    assert rel_err(obj.hvp(v), cached_hessian("layernorm_mlp") @ v) < 1e-10
    assert rel_err(obj.hessian()(v), cached_hessian("layernorm_mlp") @ v) < 1e-10  # no kept graph: the engine


def test_low_precision_overflow_is_reported_with_the_dtype_and_a_remedy():
    # Activations of ~1e4 overflow float16 (max 65504) inside the products, not float32 or bfloat16.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(32, 8) * 1e4, torch.randn(32, 3)
    obj = Objective(model, mse, (x, y))
    v = torch.ones(obj.dim)
    assert torch.isfinite(obj.hvp(v)).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(obj.hvp(v)).all()
    with (
        torch.autocast("cpu", dtype=torch.float16),
        pytest.raises(FloatingPointError, match="float16 autocast.*float32"),
    ):
        obj.hvp(v)
    with (
        torch.autocast("cpu", dtype=torch.float16),
        pytest.raises(FloatingPointError, match="Hessian-vector product.*float16"),
    ):
        curvlab.eigs(obj)
    half = copy.deepcopy(model).half()
    obj16 = Objective(half, mse, (x.half(), y.half()))
    with pytest.raises(FloatingPointError, match="parameters are torch.float16.*float32 copy"):
        obj16.hvp(torch.ones(obj16.dim))
