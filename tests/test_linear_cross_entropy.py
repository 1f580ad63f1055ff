"""The fused head cross-entropy (curvlab.losses.linear_cross_entropy): its value and first and second derivatives
against autograd through explicit logits in float64, against finite differences (gradgradcheck), and through a
whole GPT-2 inside an Objective; a product keeps no logits. The Objective's ``fused_head`` choice (core.lm_head):
"auto" fuses a large vocabulary's head and keeps a small one's logits, nowhere else, and never a loss it does not
reproduce."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import curvlab
from curvlab import losses as fused
from curvlab.core import engine_choice, lm_head
from curvlab.core.engine_choice import remembered
from curvlab.errors import InputError
from curvlab.losses import linear_cross_entropy
from curvlab.models import FusedHeadLoss
from curvlab.models.huggingface import LogitsOf


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 3 tokens at a vocabulary of 11, so that every test crosses block boundaries."""
    monkeypatch.setattr(fused, "BLOCK_ELEMENTS", 33)


def _head_problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 4, dtype=torch.float64, generator=gen)
    lower = torch.randn(4, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(11, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    targets = torch.randint(0, 11, (8,), generator=gen)
    targets[2] = targets[6] = -100
    return x, lower, weight, targets


def _hvp(loss_of, params, vector):
    grads = torch.autograd.grad(loss_of(*params), params, create_graph=True)
    return torch.autograd.grad(grads, params, vector)


def test_value_gradient_and_hessian_products_match_explicit_logits(small_blocks):
    x, lower, weight, targets = _head_problem()
    params = (lower, weight)
    vector = tuple(torch.randn_like(p) for p in params)
    explicit = lambda lo, w: F.cross_entropy(torch.tanh(x @ lo) @ w.T, targets)  # noqa: E731
    mine = lambda lo, w: linear_cross_entropy(torch.tanh(x @ lo), w, targets)  # noqa: E731
    assert mine(*params).item() == pytest.approx(explicit(*params).item(), rel=1e-14)
    for a, b in zip(torch.autograd.grad(mine(*params), params), torch.autograd.grad(explicit(*params), params)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(_hvp(mine, params, vector), _hvp(explicit, params, vector)):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)


def test_second_derivatives_against_finite_differences(small_blocks):
    """gradgradcheck: the product's backward (including the incoming gradient's own derivative, through a loss
    that is squared) against central differences of the gradient."""
    x, lower, weight, targets = _head_problem(1)
    hidden = torch.tanh(x @ lower).detach().requires_grad_()
    assert torch.autograd.gradgradcheck(lambda h, w: 3 * linear_cross_entropy(h, w, targets) ** 2, (hidden, weight))


def test_batched_shapes_and_float32(small_blocks):
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(2, 5, 6, generator=gen, requires_grad=True)
    weight = torch.randn(11, 6, generator=gen, requires_grad=True)
    targets = torch.randint(0, 11, (2, 5), generator=gen)
    loss = linear_cross_entropy(hidden, weight, targets)
    reference = F.cross_entropy((hidden @ weight.T).reshape(-1, 11), targets.reshape(-1))
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(reference.item(), rel=1e-5)
    grads = torch.autograd.grad(loss, (hidden, weight))
    expected = torch.autograd.grad(reference, (hidden, weight))
    assert grads[0].shape == hidden.shape
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "args, named",
    [
        ((torch.randn(3, 4), torch.randn(5, 3), torch.zeros(3, dtype=torch.long)), "weight"),
        ((torch.randn(3, 4), torch.randn(5, 4), torch.zeros(4, dtype=torch.long)), "targets"),
        ((torch.randn(3, 4), torch.randn(5, 4), torch.zeros(3)), "targets"),
        ((torch.randn(3, 4), torch.randn(5, 4, dtype=torch.float64), torch.zeros(3, dtype=torch.long)), "weight"),
        ((torch.randn(3, 4), torch.randn(5, 4), torch.tensor([0, 5, -100])), "targets"),
        ((torch.randn(3, 4), torch.randn(5, 4), torch.tensor([0, -1, 4])), "targets"),
    ],
)
def test_bad_input_names_the_argument(args, named):
    with pytest.raises(InputError, match=f"^{named}:"):
        linear_cross_entropy(*args)


transformers = pytest.importorskip("transformers")


class ExplicitLogits(torch.nn.Module):
    """The Hugging Face causal-LM loss written out in the model's own dtype (Hugging Face computes it in float32)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, labels):
        logits = self.model(input_ids=input_ids).logits[:, :-1]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))


def _gpt2(vocab: int = 53):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=16,
        n_layer=2,
        n_embd=16,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
    )
    config._attn_implementation = "eager"
    model = transformers.GPT2LMHeadModel(config).double()
    ids = torch.randint(0, vocab, (3, 15), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[1, 4] = -100
    return model, [{"input_ids": ids, "labels": labels}]


def test_gpt2_objective_matches_the_explicit_loss(monkeypatch):
    monkeypatch.setattr(fused, "BLOCK_ELEMENTS", 4 * 53)
    monkeypatch.setattr(engine_choice, "TIMED_FROM", float("inf"))  # "auto" judged on correctness alone here
    model, data = _gpt2()
    reference = curvlab.Objective(ExplicitLogits(model), None, data)
    objective = curvlab.Objective(FusedHeadLoss(model), None, data)
    assert objective.names == reference.names
    assert objective.loss() == pytest.approx(reference.loss(), rel=1e-14)
    hf_own = curvlab.Objective(model, None, data, fused_head=False).loss()  # float32 inside
    assert objective.loss() == pytest.approx(hf_own, rel=1e-6)
    torch.testing.assert_close(objective.grad(), reference.grad(), rtol=1e-11, atol=1e-13)
    vector = torch.randn(objective.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(objective.hvp(vector), reference.hvp(vector), rtol=1e-10, atol=1e-12)
    mine, theirs = curvlab.eigs(objective, tol=1e-9), curvlab.eigs(reference, tol=1e-9)
    assert float(mine.eigenvalues[0]) == pytest.approx(float(theirs.eigenvalues[0]), rel=1e-9)
    assert remembered(objective) == "reverse"  # "auto"'s check found the fused second derivative right
    differences = curvlab.Objective(FusedHeadLoss(model), None, data, hvp_engine="finite_difference")
    torch.testing.assert_close(differences.hvp(vector), reference.hvp(vector), rtol=1e-5, atol=1e-7)


def _largest_saved(loss, params, vocabulary: int) -> int:
    """The largest tensor with a vocabulary-sized dimension that the gradient's kept graph saves (walked from the
    gradient, every node's saved tensors, custom functions' included)."""
    return _largest_saved_by(torch.autograd.grad(loss, params, create_graph=True), vocabulary)


def _largest_saved_by(grads, vocabulary: int) -> int:
    seen, stack, largest = set(), [g.grad_fn for g in grads if g.grad_fn is not None], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        saved = [getattr(node, name, None) for name in dir(node) if name.startswith("_saved_")]
        saved += list(getattr(node, "saved_tensors", ()) or ())
        largest = max([largest] + [t.numel() for t in saved if isinstance(t, torch.Tensor) and vocabulary in t.shape])
        stack.extend(next_node for next_node, _ in node.next_functions)
    return largest


def test_a_product_keeps_no_logits():
    """The gradient's kept graph holds the head's weight and one number per token, never a (tokens × vocabulary)
    tensor (45 tokens: more than the width, so the weight is smaller than half the logits); the explicit loss's
    graph does (the contrast)."""
    model, data = _gpt2()
    params = list(model.parameters())
    logits_numel = data[0]["input_ids"].numel() * 53
    fused_largest = _largest_saved(FusedHeadLoss(model)(**data[0]), params, 53)
    explicit_largest = _largest_saved(ExplicitLogits(model)(**data[0]), params, 53)
    assert 0 < fused_largest < logits_numel // 2 <= explicit_largest


def test_fused_head_refuses_a_model_without_a_plain_head():
    with pytest.raises(InputError, match="^model:"):
        FusedHeadLoss(torch.nn.Linear(3, 4))


def _kept_graph_largest(objective, vocabulary: int) -> int:
    """The largest vocabulary-sized tensor the Hessian operator's kept graph saves, after one product."""
    operator = objective.hessian()
    operator.matvec(torch.ones(objective.dim, dtype=torch.float64))
    ((_, (_, grads)),) = operator._states
    return _largest_saved_by(grads, operator.objective.model.config.vocab_size)


def test_auto_fuses_a_large_vocabulary_head_and_keeps_the_model_loss():
    """Vocabulary 500 on a 16-wide GPT-2 (45 tokens: 1.5 logits per parameter): "auto" fuses. It gives the model's own
    loss (the explicit FusedHeadLoss objective's values exactly; the logits' to float32, which Hugging Face computes
    its loss in) and its kept graph holds no logits, which the same objective through the logits does (the
    contrast)."""
    model, data = _gpt2(vocab=500)
    assert lm_head.logits_per_parameter(model, 45) > lm_head.FUSED_FROM
    auto = curvlab.Objective(model, None, data)
    assert auto.loss_head is None  # decided by the first evaluation
    wrapped = curvlab.Objective(FusedHeadLoss(model), None, data)
    logits = curvlab.Objective(model, None, data, fused_head=False)
    assert auto.loss() == wrapped.loss()
    assert (auto.loss_head, logits.loss_head) == ("fused", "model")
    assert auto.settings["loss_head"] == "fused" and logits.settings["loss_head"] == "model"
    assert auto.loss() == pytest.approx(logits.loss(), rel=1e-6)
    torch.testing.assert_close(auto.grad(), wrapped.grad(), rtol=1e-12, atol=1e-14)
    vector = torch.randn(auto.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(auto.hvp(vector), wrapped.hvp(vector), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(auto.hvp(vector), logits.hvp(vector), rtol=1e-5, atol=1e-7)
    mine, theirs = curvlab.eigs(auto, tol=1e-9), curvlab.eigs(wrapped, tol=1e-9)
    assert float(mine.eigenvalues[0]) == pytest.approx(float(theirs.eigenvalues[0]), rel=1e-9)
    logits_numel = 45 * 500
    assert 0 < _kept_graph_largest(auto, 500) < logits_numel // 2 <= _kept_graph_largest(logits, 500)


def test_auto_fuses_a_llama_head_too():
    """Llama (untied head, an attention mask in the batch): "auto" fuses at 1 logit per parameter, with the values
    of the explicit FusedHeadLoss objective and the model's own loss to float32."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=400,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16,
    )
    config._attn_implementation = "eager"
    model = transformers.LlamaForCausalLM(config).double()
    ids = torch.randint(0, 400, (3, 15), generator=torch.Generator().manual_seed(1))
    data = [{"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)}]
    auto = curvlab.Objective(model, None, data)
    wrapped = curvlab.Objective(FusedHeadLoss(model), None, data)
    assert auto.loss() == wrapped.loss() and auto.loss_head == "fused"
    assert auto.loss() == pytest.approx(curvlab.Objective(model, None, data, fused_head=False).loss(), rel=1e-6)
    vector = torch.randn(auto.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(auto.hvp(vector), wrapped.hvp(vector), rtol=1e-12, atol=1e-14)


def test_auto_keeps_a_small_vocabulary_head_through_its_logits():
    """Vocabulary 53 (0.3 logits per parameter): "auto" keeps the logits; True fuses the same model."""
    model, data = _gpt2()
    assert lm_head.logits_per_parameter(model, 45) < lm_head.FUSED_FROM
    auto, forced = curvlab.Objective(model, None, data), curvlab.Objective(model, None, data, fused_head=True)
    auto.loss(), forced.loss()
    assert (auto.loss_head, forced.loss_head) == ("model", "fused")
    assert forced.loss() == curvlab.Objective(FusedHeadLoss(model), None, data).loss()


@pytest.mark.parametrize(
    "change",
    ["another batch key", "dropout", "forward engine", "a loss_fn", "a head with a bias"],
)
def test_auto_keeps_the_logits_where_the_fused_head_does_not_apply(change):
    model, data = _gpt2(vocab=500)
    options = {}
    if change == "another batch key":
        data = [{**data[0], "token_type_ids": torch.zeros_like(data[0]["input_ids"])}]
    elif change == "dropout":
        options = {"dropout": True}
    elif change == "forward engine":
        options = {"hvp_engine": "forward"}
    elif change == "a head with a bias":
        head = model.lm_head
        model.lm_head = torch.nn.Linear(head.in_features, head.out_features, dtype=head.weight.dtype)
    if change == "a loss_fn":  # the logits' own model, a loss given: no head of the model's own loss to fuse
        ids = data[0]["input_ids"]
        objective = curvlab.Objective(LogitsOf(model), fused.cross_entropy, [(ids, ids)])
    else:
        objective = curvlab.Objective(model, None, data, **options)
    objective.loss()
    assert objective.loss_head == "model"


class ScaledLoss(transformers.GPT2LMHeadModel):
    """A GPT-2 whose own loss is not the fused head's (scaled): "auto" must not replace it."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.loss = 1.5 * out.loss
        return out


def test_a_loss_the_fused_head_does_not_reproduce_keeps_its_logits(monkeypatch):
    monkeypatch.setattr(lm_head, "ARCHITECTURES", (*lm_head.ARCHITECTURES, "ScaledLoss"))
    model, data = _gpt2(vocab=500)
    scaled = ScaledLoss(model.config).double()
    scaled.load_state_dict(model.state_dict())
    auto = curvlab.Objective(scaled, None, data)
    with pytest.warns(UserWarning, match="does not reproduce"):
        value = auto.loss()
    assert auto.loss_head == "model"
    assert value == pytest.approx(1.5 * curvlab.Objective(model, None, data, fused_head=False).loss(), rel=1e-6)
    with pytest.raises(InputError, match="^fused_head: True"):
        curvlab.Objective(scaled, None, data, fused_head=True).loss()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fused_head": "yes"}, "expected True, False or 'auto'"),
        ({"fused_head": 1}, "expected True, False or 'auto'"),
        ({"fused_head": True, "hvp_engine": "forward"}, "no forward-mode derivative"),
    ],
)
def test_fused_head_choices_are_checked(kwargs, message):
    model, data = _gpt2()
    with pytest.raises(InputError, match="^fused_head:.*" + message.replace("(", r"\(")):
        curvlab.Objective(model, None, data, **kwargs)


def test_fused_head_true_refuses_what_it_cannot_fuse():
    with pytest.raises(InputError, match="^fused_head: True.*loss_fn"):
        curvlab.Objective(
            torch.nn.Linear(3, 2), fused.cross_entropy, (torch.randn(4, 3), torch.zeros(4).long()), fused_head=True
        )
    model, data = _gpt2()
    extra = [{**data[0], "token_type_ids": torch.zeros_like(data[0]["input_ids"])}]
    with pytest.raises(InputError, match="^fused_head: True.*input_ids, labels and attention_mask"):
        curvlab.Objective(model, None, extra, fused_head=True).loss()
