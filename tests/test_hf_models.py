"""Hugging Face causal LMs from a config (issue 35, item 4 in part): ``[model] name = "gpt2"`` or ``"llama"`` with
their config fields, trained by ``curvlab run`` on an offline corpus, with the Monitor's block sharpness split as
Wang et al. (2025) split a transformer; products checked against the wrapped model's own double backward."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from curvlab import Objective  # noqa: E402
from curvlab.data import load_dataset  # noqa: E402
from curvlab.errors import InputError  # noqa: E402
from curvlab.experiments.config import validate  # noqa: E402
from curvlab.experiments.run import start_run  # noqa: E402
from curvlab.losses import cross_entropy  # noqa: E402
from curvlab.models import build_model  # noqa: E402
from curvlab.monitor import load_records  # noqa: E402

DATA = {"name": "python_docs", "level": "word", "context": 8, "vocab_size": 64, "n_sequences": 48}
MODELS = {
    "gpt2": {"n_layer": 1, "n_embd": 16, "n_head": 2},
    "llama": {"num_hidden_layers": 1, "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2},
}
WANG_BLOCKS = {"embeddings", "attention QK", "attention VO", "MLP", "norms"}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_hugging_face_lm_trains_from_a_config_and_its_blocks_follow_the_transformer_split(tmp_path, name):
    config = validate(
        {
            "name": name,
            "data": DATA,
            "model": {"name": name, **MODELS[name]},
            "optimizer": {"name": "adamw", "lr": 1e-3},
            "train": {"batch_size": 16, "steps": 4},
            "monitor": {
                "metrics": ["block_sharpness"],
                "schedules": {"block_sharpness": 2},
                "options": {"block_sharpness": {"blocks": "transformer"}},
            },
        }
    )
    start_run(config, tmp_path / name, quiet=True)
    records = load_records(tmp_path / name)
    rows = records[records.metric == "block_sharpness"]
    assert set(rows.step) == {2, 4}
    assert WANG_BLOCKS <= set(rows.block)  # GPT-2 ties its head to the embeddings; Llama's is its own block
    assert rows.value.notna().all() and (rows.value.abs() > 0).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_hugging_face_lm_hessian_product_is_its_own_double_backward(name):
    """The wrapped model (eager attention) is twice differentiable: curvlab's product equals torch's double
    backward through the Hugging Face model itself, in float64."""
    ds = load_dataset("python_docs", level="word", context=8, vocab_size=64, n_sequences=8)
    model = build_model(name, ds, **MODELS[name]).double()
    x, y = ds.x_train[:4], ds.y_train[:4]
    params = [p for p in model.parameters() if p.requires_grad]
    v = [torch.randn_like(p) for p in params]
    loss = cross_entropy(model.model(input_ids=x).logits, y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    expected = torch.cat([h.reshape(-1) for h in torch.autograd.grad(grads, params, grad_outputs=v)])
    objective = Objective(model, cross_entropy, (x, y))
    product = objective.hessian() @ torch.cat([t.reshape(-1) for t in v])
    assert torch.allclose(product, expected, rtol=1e-10, atol=1e-12)


def test_a_misspelt_config_field_is_refused_not_ignored():
    ds = load_dataset("python_docs", level="word", context=8, vocab_size=64, n_sequences=8)
    with pytest.raises(InputError, match="n_layers"):
        build_model("gpt2", ds, n_layers=3)  # GPT2Config's field is n_layer
    model = build_model("gpt2", ds, n_layer=1, n_embd=16, n_head=2, activation_function="gelu")
    assert model.model.config.activation_function == "gelu" and model.model.config.n_layer == 1
