"""Gauss–Newton and Fisher operators against explicit float64 matrices built independently
(full Jacobians, loss Hessians in the outputs, per-example gradients from batches of one)."""

import copy

import pytest
import torch
from conftest import rel_err
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from zoo import CASES, make_case

import curvlab
from curvlab.core.fisher import _generator
from curvlab.losses import mse


def objective_for(case, **kw):
    return curvlab.Objective(case.model, case.loss_fn, (case.inputs, case.targets), bn_mode=case.bn_mode, **kw)


def measurement_copy(case):
    """The model in the measurement mode, as a pure function of a flat parameter vector."""
    model = copy.deepcopy(case.model).eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train(case.bn_mode == "train")
            m.track_running_stats = case.bn_mode == "eval"
    params = dict(model.named_parameters())
    names, shapes = list(params), [p.shape for p in params.values()]
    sizes = [s.numel() for s in shapes]
    x0 = torch.cat([p.detach().reshape(-1) for p in params.values()])

    def outputs(flat, inputs):
        parts = dict(zip(names, (t.view(s) for t, s in zip(torch.split(flat, sizes), shapes))))
        return functional_call(model, parts, (inputs,))

    return outputs, x0


def explicit_ggn(case, chunk=None):
    outputs, x0 = measurement_copy(case)
    n = len(case.targets)
    step = chunk or n
    total = torch.zeros(x0.numel(), x0.numel(), dtype=torch.float64)
    with sdpa_kernel([SDPBackend.MATH]):
        for i in range(0, n, step):
            x, y = case.inputs[i : i + step], case.targets[i : i + step]
            total += len(y) / n * chunk_ggn(case, outputs, x0, x, y)
    return total


def chunk_ggn(case, outputs, x0, x, y):
    out = outputs(x0, x)
    jac = torch.autograd.functional.jacobian(lambda flat: outputs(flat, x).reshape(-1), x0)
    h_loss = torch.autograd.functional.hessian(lambda o: case.loss_fn(o.reshape(out.shape), y), out.reshape(-1))
    return jac.T @ h_loss @ jac


def per_example_gradients(case, targets):
    outputs, x0 = measurement_copy(case)
    grads = []
    with sdpa_kernel([SDPBackend.MATH]):
        for i in range(len(targets)):
            flat = x0.clone().requires_grad_(True)
            loss = case.loss_fn(outputs(flat, case.inputs[i : i + 1]), targets[i : i + 1])
            grads.append(torch.autograd.grad(loss, flat)[0])
    return torch.stack(grads)


def dense(op):
    eye = torch.eye(op.dim, dtype=torch.float64)
    return torch.stack([op(eye[i]) for i in range(op.dim)], dim=1)


@pytest.mark.parametrize("name", CASES)
def test_ggn_matches_the_explicit_jacobian_product(name):
    case = make_case(name)
    expected = explicit_ggn(case)
    assert rel_err(dense(objective_for(case).ggn()), expected) < 1e-10


@pytest.mark.parametrize("name", ["tanh_mlp_mse", "layernorm_mlp", "bn_cnn_train"])
def test_ggn_is_size_weighted_over_chunks_like_the_hessian(name):
    case = make_case(name)
    chunk = 7 if name != "bn_cnn_train" else 6
    op = objective_for(case, batch_size=chunk).ggn()
    assert rel_err(dense(op), explicit_ggn(case, chunk=chunk)) < 1e-10
    assert len(op._states) > 1  # every chunk's graph kept (they fit the default budget)


def test_ggn_of_a_linear_least_squares_model_is_its_hessian():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 5, generator=g, dtype=torch.float64), torch.randn(30, 2, generator=g, dtype=torch.float64)
    model = nn.Linear(5, 2).double()
    obj = curvlab.Objective(model, mse, (x, y))
    assert rel_err(dense(obj.ggn()), dense(obj.hessian())) < 1e-12


@pytest.mark.parametrize(
    "name", ["tanh_mlp_ce", "tanh_mlp_mse", "layernorm_mlp", "bn_cnn_eval", "attention", "transformer_layer"]
)
def test_empirical_fisher_matches_per_example_gradients(name):
    case = make_case(name)
    grads = per_example_gradients(case, case.targets)
    expected = grads.T @ grads / len(grads)
    assert rel_err(dense(objective_for(case, batch_size=7).fisher("empirical")), expected) < 1e-10


@pytest.mark.parametrize("name", ["tanh_mlp_ce", "tanh_mlp_mse", "layernorm_mlp"])
def test_monte_carlo_fisher_matches_per_example_gradients_of_its_samples(name):
    case = make_case(name)
    op = objective_for(case).fisher("mc", n_samples=3, seed=4)
    outputs, x0 = measurement_copy(case)
    generator = _generator(4, 0, torch.device("cpu"))
    samples = op.predictive.sample(outputs(x0, case.inputs), case.targets, 3, generator)
    grads = torch.cat([per_example_gradients(case, s) for s in samples])
    assert rel_err(dense(op), grads.T @ grads / len(grads)) < 1e-10
    assert op.likelihood == ("gaussian" if name.endswith("mse") else "categorical")


@pytest.mark.parametrize("name", ["tanh_mlp_ce", "tanh_mlp_mse"])
def test_monte_carlo_fisher_averages_to_the_gauss_newton(name):
    case = make_case(name)
    many = dense(objective_for(case).fisher("mc", n_samples=4000, seed=1))
    ggn = explicit_ggn(case)
    assert rel_err(many, ggn) < 0.06
    assert rel_err(dense(objective_for(case).fisher("mc", n_samples=1, seed=1)), ggn) > 0.1  # it is a sample


def test_solvers_take_the_new_operators_unchanged():
    case = make_case("layernorm_mlp")
    obj = objective_for(case)
    expected = torch.linalg.eigvalsh(explicit_ggn(case)).flip(0)[:2]
    assert torch.allclose(curvlab.eigs(obj.ggn(), k=2, tol=1e-10).eigenvalues, expected, rtol=1e-8)
    grads = per_example_gradients(case, case.targets)
    trace = float((grads**2).sum() / len(grads))
    estimate = curvlab.trace(obj.fisher(), method="hutch++", n_probes=3 * obj.dim).estimate
    assert estimate == pytest.approx(trace, rel=1e-8)


def test_model_is_left_as_found():
    case = make_case("bn_cnn_train")
    model = case.model.train()
    before = copy.deepcopy(model.state_dict())
    obj = objective_for(case)
    v = torch.ones(obj.dim, dtype=torch.float64)
    obj.ggn()(v), obj.fisher()(v), obj.fisher("mc")(v)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_bad_requests_name_themselves():
    case = make_case("tanh_mlp_ce")
    obj = objective_for(case)
    with pytest.raises(ValueError, match="kind"):
        obj.fisher("true")
    with pytest.raises(ValueError, match="n_samples"):
        obj.fisher("mc", n_samples=0)
    with pytest.raises(ValueError, match="likelihood"):
        curvlab.Objective(case.model, lambda o, t: (o**2).mean(), (case.inputs, case.targets)).fisher("mc")
    own = curvlab.Objective(nn.Sequential(nn.Linear(4, 1)).double(), None, [(torch.randn(3, 4, dtype=torch.float64),)])
    with pytest.raises(ValueError, match="loss_fn"):
        own.ggn()
    stale = obj.ggn()
    with torch.no_grad():
        next(case.model.parameters()).add_(1.0)
    with pytest.raises(RuntimeError, match="ggn"):
        stale(torch.ones(obj.dim, dtype=torch.float64))
