"""Objective: every data form, leaving the model exactly as found, and clear errors on bad input."""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import rel_err
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from zoo import make_case

from curvlab import Objective, eigs, spectral_density, trace


def _xy(n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


class DictModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _mlp()

    def forward(self, pixels, scale=1.0):
        return self.net(pixels * scale)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _mlp()

    def forward(self, a, b):
        return self.net(a + b)


def test_every_data_form_gives_the_same_objective():
    model = _mlp()
    x, y = _xy()
    v = torch.randn(
        sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    reference = Objective(model, F.cross_entropy, (x, y))
    forms = [
        (x, y),
        TensorDataset(x, y),
        DataLoader(TensorDataset(x, y), batch_size=8),
        DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True),
        [(x[i : i + 11], y[i : i + 11]) for i in range(0, 30, 11)],
    ]
    for data in forms:
        obj = Objective(model, F.cross_entropy, data, batch_size=7 if isinstance(data, TensorDataset) else None)
        assert obj.loss() == pytest.approx(reference.loss(), rel=1e-12)
        assert rel_err(obj.grad(), reference.grad()) < 1e-12
        assert rel_err(obj.hvp(v), reference.hvp(v)) < 1e-12


def test_dict_and_multi_input_batches():
    x, y = _xy()
    plain = Objective(_mlp(), F.cross_entropy, (x, y))
    dict_model = DictModel()
    as_dict = Objective(
        dict_model, F.cross_entropy, [{"pixels": x[:15], "labels": y[:15]}, {"pixels": x[15:], "labels": y[15:]}]
    )
    assert as_dict.loss() == pytest.approx(plain.loss(), rel=1e-12)
    assert rel_err(as_dict.grad(), plain.grad()) < 1e-12
    two = Objective(TwoInputs(), F.cross_entropy, [(x / 2, x / 2, y)])
    assert two.loss() == pytest.approx(plain.loss(), rel=1e-12)


def test_flatten_roundtrip_follows_parameter_order():
    model = _mlp()
    obj = Objective(model, F.cross_entropy, _xy())
    flat = obj.parameters_vector()
    assert obj.names == ("0.weight", "0.bias", "2.weight", "2.bias")
    assert torch.equal(flat[:20], model[0].weight.detach().reshape(-1))
    parts = obj.unflatten(flat)
    assert all(torch.equal(a, p.detach()) for a, p in zip(parts, model.parameters()))
    assert torch.equal(obj.flatten(parts), flat)


def _snapshot(model):
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "modes": [m.training for m in model.modules()],
        "torch_rng": torch.get_rng_state(),
        "py_rng": random.getstate(),
        "np_rng": np.random.get_state()[1].copy(),
    }


def _assert_same(before, after):
    assert all(torch.equal(a, b) for a, b in zip(before["params"], after["params"]))
    assert before["requires_grad"] == after["requires_grad"]
    for a, b in zip(before["grads"], after["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(before["buffers"], after["buffers"]))
    assert before["modes"] == after["modes"]
    assert torch.equal(before["torch_rng"], after["torch_rng"])
    assert before["py_rng"] == after["py_rng"]
    assert np.array_equal(before["np_rng"], after["np_rng"])


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("dropout", [False, True])
def test_measuring_leaves_the_model_exactly_as_found(bn_mode, dropout):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Dropout(0.3), nn.Linear(32, 3)
    ).double()
    model.train()
    model[1].eval()  # a mixed-mode model
    model[0].bias.requires_grad_(False)  # a frozen parameter
    x = torch.randn(12, 1, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (12,))
    F.cross_entropy(model(x), y).backward()  # existing .grad must survive
    loader = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True)
    before = _snapshot(model)
    obj = Objective(model, F.cross_entropy, loader, bn_mode=bn_mode, dropout=dropout)
    (
        obj.loss(),
        obj.grad(),
        obj.hvp(torch.ones(obj.dim, dtype=torch.float64)),
        obj.quad(torch.ones(obj.dim, dtype=torch.float64)),
    )
    H = obj.hessian()
    eigs(H, k=2), trace(H, n_probes=4), spectral_density(H, n_probes=2, n_steps=5)
    _assert_same(before, _snapshot(model))
    assert obj.settings["bn_mode"] == bn_mode and obj.settings["dropout"] is dropout


def test_dropout_measurement_is_a_fixed_function():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Tanh(), nn.Linear(16, 3)).double()
    data = _xy()
    on = Objective(model, F.cross_entropy, data, dropout=True)
    off = Objective(model, F.cross_entropy, data, dropout=False)
    assert on.loss() == on.loss()
    assert on.loss() != off.loss()
    v = torch.ones(on.dim, dtype=torch.float64)
    assert torch.equal(on.hvp(v), on.hvp(v))
    assert torch.equal(on.hessian()(v), on.hvp(v))


def test_objective_does_not_change_a_training_trajectory():
    """Train twice from the same seed, once measuring between steps: bit-identical parameters."""

    def train(measure: bool):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.2), nn.Tanh(), nn.Linear(8, 3)).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x, y = _xy(40)
        obj = Objective(model, F.cross_entropy, (x, y), batch_size=16)
        for _step in range(5):
            idx = torch.randperm(40)[:10]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            if measure:
                eigs(obj, k=1), obj.grad()
        return [p.detach().clone() for p in model.parameters()] + [b.clone() for b in model.buffers()]

    assert all(torch.equal(a, b) for a, b in zip(train(False), train(True)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"data": (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))}, "data"),
        ({"data": []}, "data"),
        ({"data": TensorDataset(torch.zeros(0, 4), torch.zeros(0))}, "data"),
        ({"data": None}, "data"),
        ({"data": (x for x in [1])}, "data"),
        ({"data": [{"pixels": torch.zeros(2, 4)}]}, "data"),
        ({"data": (torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))}, "data"),
        ({"data": "digits"}, "data"),
        ({"batch_size": 0}, "batch_size"),
        ({"bn_mode": "training"}, "bn_mode"),
        ({"hvp_engine": "jvp-jvp"}, "hvp_engine"),
        ({"params": ["nope.weight"]}, "params"),
        ({"params": lambda n, p: False}, "params"),
        ({"loss_fn": "cross_entropy"}, "loss_fn"),
        ({"model": "mlp"}, "model"),
        ({"dropout": "yes"}, "dropout"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    args = {"model": _mlp(), "loss_fn": F.cross_entropy, "data": _xy()}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        Objective(args.pop("model"), args.pop("loss_fn"), args.pop("data"), **args)


def test_bad_vectors_and_losses_name_themselves():
    obj = Objective(_mlp(), F.cross_entropy, _xy())
    with pytest.raises(ValueError, match="v: expected a flat vector of length 43"):
        obj.hvp(torch.ones(42, dtype=torch.float64))
    with pytest.raises(ValueError, match="u:"):
        obj.quad(torch.ones(43, 1, dtype=torch.float64))
    with pytest.raises(TypeError, match="v:"):
        obj.hvp([1.0] * 43)
    with pytest.raises(ValueError, match="tensors"):
        obj.flatten([torch.ones(3)])
    non_scalar = Objective(_mlp(), lambda out, y: F.cross_entropy(out, y, reduction="none"), _xy())
    with pytest.raises(ValueError, match="loss_fn: must return a scalar"):
        non_scalar.loss()
    with pytest.raises(ValueError, match="loss_fn"):
        non_scalar.hvp(torch.ones(43, dtype=torch.float64))


def test_settings_expose_the_measurement_choices():
    case = make_case("bn_cnn_eval")
    obj = Objective(case.model, case.loss_fn, (case.inputs, case.targets), bn_mode="eval")
    assert obj.settings == {"bn_mode": "eval", "dropout": False, "hvp_engine": "reverse", "dim": obj.dim}


def test_shuffled_loader_with_train_mode_bn_is_one_fixed_function():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, y = _xy(30)
    obj = Objective(model, F.cross_entropy, DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True))
    v = torch.ones(obj.dim, dtype=torch.float64)
    first = obj.hvp(v)
    torch.rand(5)  # training consumes random numbers between measurements
    assert torch.equal(first, obj.hvp(v))
    assert obj.loss() == obj.loss()
    other_seed = Objective(model, F.cross_entropy, DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True), seed=1)
    assert not torch.equal(first, other_seed.hvp(v))  # another shuffle: other BN batches
