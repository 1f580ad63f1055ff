"""Objective(model, None, data): models that compute their own loss, chunk weights, and a Hugging Face GPT-2
checked against an independent Lanczos on ``model(**batch).loss``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import curvlab
from curvlab.losses import cross_entropy

DT = torch.float64


class OwnLoss(nn.Module):
    """A classifier whose forward takes (x, y) and returns its mean loss, or a dict/object holding it."""

    def __init__(self, output: str = "scalar"):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.LayerNorm(7), nn.Linear(7, 3)).to(DT)
        self.output = output

    def forward(self, x, y=None):
        logits = self.net(x)
        if y is None:
            return logits
        loss = cross_entropy(logits, y)
        if self.output == "dict":
            return {"loss": loss, "logits": logits}
        if self.output == "attr":
            return type("Out", (), {"loss": loss, "logits": logits})()
        return loss


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(30, 5, generator=g, dtype=DT), torch.randint(0, 3, (30,), generator=g)


@pytest.mark.parametrize("output", ["scalar", "dict", "attr"])
def test_own_loss_equals_the_same_loss_through_a_loss_fn(output):
    torch.manual_seed(0)
    model = OwnLoss(output)
    x, y = _data()
    own = curvlab.Objective(model, None, (x, y), batch_size=7)  # tuples are called as model(x, y)
    given = curvlab.Objective(model, cross_entropy, (x, y), batch_size=7)
    v = torch.randn(own.dim, dtype=DT)
    assert own.loss() == pytest.approx(given.loss(), rel=1e-12)
    torch.testing.assert_close(own.grad(), given.grad(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(own.hvp(v), given.hvp(v), rtol=1e-10, atol=1e-12)
    dicts = [{"x": x[i : i + 7], "y": y[i : i + 7]} for i in range(0, 30, 7)]  # dicts are called as model(**batch)
    assert curvlab.Objective(model, None, dicts).loss() == pytest.approx(given.loss(), rel=1e-12)


def test_weight_replaces_the_example_count():
    torch.manual_seed(0)
    model = OwnLoss()
    x, y = _data()
    batches = [(x[:10], y[:10]), (x[10:], y[10:])]
    weights = {10: 3.0, 20: 1.0}
    obj = curvlab.Objective(model, None, batches, weight=lambda b: weights[len(b[1])])
    with torch.no_grad():
        parts = [float(model(*b)) for b in batches]
    assert obj.loss() == pytest.approx((3 * parts[0] + 1 * parts[1]) / 4, rel=1e-12)
    zero = curvlab.Objective(model, None, batches, weight=lambda b: torch.tensor(0 if len(b[1]) == 10 else 5))
    assert zero.loss() == pytest.approx(parts[1], rel=1e-12)  # a batch of weight 0 does not count


def test_own_loss_errors_name_the_problem():
    torch.manual_seed(0)
    x, y = _data()
    with pytest.raises(ValueError, match="neither a scalar loss nor has a .loss"):
        curvlab.Objective(OwnLoss(), None, [(x,)]).loss()  # no labels: the model returns logits
    with pytest.raises(ValueError, match="weight: expected weight\\(batch\\) to return a finite number"):
        curvlab.Objective(OwnLoss(), None, (x, y), weight=lambda b: -1.0).loss()
    with pytest.raises(TypeError, match="weight: expected a callable"):
        curvlab.Objective(OwnLoss(), None, (x, y), weight=3)
    with pytest.raises(TypeError, match="loss_fn: expected a callable"):
        curvlab.Objective(OwnLoss(), "mse", (x, y))
    with pytest.raises(ValueError, match="loss_fn=None"):
        curvlab.Objective(OwnLoss(), cross_entropy, [{"x": x}])  # a dict without targets, given a loss_fn


def _tiny_gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=29, n_positions=12, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config).to(DT)
    g = torch.Generator().manual_seed(3)
    batches = []
    for rows, pad_from in ((4, 12), (3, 8)):  # the second batch is padded: fewer label tokens count
        ids = torch.randint(0, 29, (rows, 12), generator=g)
        mask = torch.ones_like(ids)
        mask[:, pad_from:] = 0
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)})
    return model, batches


def token_count(batch):
    return int((batch["labels"][:, 1:] != -100).sum())


def test_hugging_face_gpt2_top_eigenvalue_matches_an_independent_lanczos():
    """λ_max of the token-weighted mean of model(**batch).loss, by curvlab and by scipy's eigsh on plain autograd."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    model, batches = _tiny_gpt2()
    model.train()
    modes = [m.training for m in model.modules()]
    obj = curvlab.Objective(model, None, batches, weight=token_count)
    ours = curvlab.eigs(obj.hessian(), k=1, tol=1e-10)

    params = [p for p in model.parameters() if p.requires_grad]
    weights = [token_count(b) for b in batches]
    import copy

    config = copy.deepcopy(model.config)
    config._attn_implementation = "eager"  # written-out attention (curvlab's run goes through SDPA's MATH kernel)
    reference = type(model)(config).to(DT)
    reference.load_state_dict(model.state_dict())
    reference.eval()  # dropout off, as the Objective measures by default
    leaves = list(reference.parameters())

    def hvp(v):
        v = torch.as_tensor(v, dtype=DT).reshape(-1)
        loss = sum(w * reference(**b).loss for w, b in zip(weights, batches)) / sum(weights)
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        return torch.cat([h.reshape(-1) for h in torch.autograd.grad(flat @ v, leaves)]).detach().numpy()

    n = sum(p.numel() for p in params)
    top = eigsh(LinearOperator((n, n), matvec=hvp, dtype=np.float64), k=1, which="LA", tol=1e-10)[0][0]
    assert float(ours.eigenvalues[0]) == pytest.approx(top, rel=1e-4)
    assert [m.training for m in model.modules()] == modes  # left in its original (training) mode


def test_hugging_face_gpt2_every_measurement_runs_on_its_own_loss():
    model, batches = _tiny_gpt2()
    obj = curvlab.Objective(model, None, batches, weight=token_count)
    g = obj.grad()
    estimate = curvlab.trace(obj.hessian(), n_probes=6, seed=0)
    assert np.isfinite(estimate.estimate) and estimate.n_matvecs == 6
    assert curvlab.spectral_density(obj.hessian(), n_probes=1, n_steps=8).density.sum() > 0
    res = curvlab.critical_sharpness(obj, -0.1 * g, 0.1)
    assert res.bracketed and res.value > 0 and res.n_evals <= 10  # forward passes only
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    monitor = curvlab.Monitor(obj, opt, metrics=["sharpness", "critical_sharpness", "directional"])
    for batch in batches:
        opt.zero_grad()
        model(**batch).loss.backward()
        opt.step()
        monitor.step(None, batch)
    monitor.measure()
    measured = {r["metric"] for r in monitor.records}
    assert {"sharpness", "critical_sharpness", "directional_sharpness"} <= measured


def test_padded_batches_of_a_causal_lm_weigh_by_their_counted_tokens_by_default():
    """Two padded batches of different lengths: with no weight given, F is the mean cross-entropy over every counted
    (≠ -100, shifted) label token of the set, computed here independently from the logits of one pass each."""
    model, batches = _tiny_gpt2()
    assert [token_count(b) for b in batches][0] != [token_count(b) for b in batches][1]  # the weights matter
    objective = curvlab.Objective(model, None, batches)
    model.eval()
    with torch.no_grad():
        logits = [model(input_ids=b["input_ids"]).logits[:, :-1] for b in batches]
    flat_logits = torch.cat([lg.reshape(-1, lg.shape[-1]) for lg in logits])
    flat_labels = torch.cat([b["labels"][:, 1:].reshape(-1) for b in batches])
    expected = float(torch.nn.functional.cross_entropy(flat_logits.float(), flat_labels, ignore_index=-100))
    assert objective.loss() == pytest.approx(expected, rel=1e-5)
    per_example = curvlab.Objective(model, None, batches, weight=lambda b: len(b["input_ids"]))
    assert per_example.loss() != pytest.approx(expected, rel=1e-5)  # the example count would weigh them wrongly


def test_a_list_of_two_tensors_is_refused_as_ambiguous_when_the_model_computes_its_loss():
    x = torch.randn(6, 3)
    with pytest.raises(ValueError, match="ambiguous"):
        curvlab.Objective(nn.Linear(3, 1), None, [x, x])
