"""Hugging Face causal LMs from a config (issue 35, item 4 in part): ``[model] name = "gpt2"`` or ``"llama"`` with
their config fields, trained by ``curvlab run`` on an offline corpus, with the Monitor's block sharpness split as
Wang et al. (2025) split a transformer; products checked against the wrapped model's own double backward."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ranks import gloo_aborted

pytest.importorskip("transformers")

from curvlab import Objective  # noqa: E402
from curvlab.data import load_dataset  # noqa: E402
from curvlab.errors import InputError  # noqa: E402
from curvlab.experiments.config import load_config, to_toml, validate  # noqa: E402
from curvlab.experiments.report import write_report  # noqa: E402
from curvlab.experiments.run import start_run  # noqa: E402
from curvlab.geometry.transformer_blocks import WANG_ORDER, wang_agreement  # noqa: E402
from curvlab.losses import cross_entropy  # noqa: E402
from curvlab.models import build_model  # noqa: E402
from curvlab.monitor import load_records  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = {"name": "python_docs", "level": "word", "context": 8, "vocab_size": 64, "n_sequences": 48}
MODELS = {
    "gpt2": {"n_layer": 1, "n_embd": 16, "n_head": 2},
    "llama": {"num_hidden_layers": 1, "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2},
}
WANG_BLOCKS = {"embeddings", "attention QK", "attention VO", "MLP", "norms"}


def test_hugging_face_lms_train_from_a_config_and_their_report_orders_the_blocks_beside_wang_et_al(tmp_path):
    """GPT-2 and Llama trained by ``curvlab run``'s machinery from a config, their block sharpness split as Wang et
    al. split a transformer, and one report overlaying the two runs with the blocks' ordering beside theirs."""
    for name in sorted(MODELS):
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
    page = write_report([tmp_path / name for name in sorted(MODELS)], tmp_path / "both").read_text()
    assert "Blockwise sharpness against Wang et al. (2025)" in page and "block_order.png" in page
    for name in MODELS:  # a row per run and measurement, its pairs counted over Wang et al.'s five blocks
        assert page.count(f"<td>{name}</td>") >= 3 and "of 10</td>" in page
    assert (tmp_path / "both" / "figures" / "block_order.png").exists()


def test_wang_agreement_counts_the_pairs_in_their_order():
    values = dict(zip(WANG_ORDER, (0.1, 1.0, 2.0, 3.0, 30.0)))
    assert wang_agreement(values) == (10, 10)
    assert wang_agreement(dict(zip(WANG_ORDER, (5.0, 4.0, 3.0, 2.0, 1.0)))) == (0, 10)
    swapped = {**values, "MLP": 5.0}  # MLP above VO: the pair (MLP, VO) alone is out of order
    assert wang_agreement(swapped) == (9, 10)
    assert wang_agreement({k: v for k, v in values.items() if k != "norms"} | {"head": 9.0}) == (6, 6)


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


def test_the_example_config_runs_under_fsdp_on_two_processes_and_reports_the_blocks(tmp_path):
    """examples/gpt2_blocks.toml, made small (1 layer × 32, 4 steps, the blocks measured at step 4) and otherwise
    as shipped: GPT-2 on BPE tokens sharded by FSDP2 over 2 CPU processes through ``curvlab run``, its block
    sharpness on the sharded model, its validation loss on the held-out split, and the run's report showing the
    blocks' ordering beside Wang et al.'s."""
    config = load_config(ROOT / "examples" / "gpt2_blocks.toml")
    assert config["train"]["parallel"] == "fsdp" and config["train"]["processes"] == 2
    config["model"] |= {"n_layer": 1, "n_embd": 32, "n_head": 2}
    config["data"] |= {"context": 16, "vocab_size": 300, "n_sequences": 128}
    config["train"] |= {"steps": 4, "eval_every": 2}
    config["monitor"]["schedules"] = {"block_sharpness": 4}  # once, at the last step
    (tmp_path / "small.toml").write_text(to_toml(validate(config)))
    for attempt in range(2):  # gloo's teardown abort at exit (tests/ranks.py): launched once more, saying so
        run_dir = tmp_path / f"run{attempt}"
        cli = [
            sys.executable,
            "-m",
            "curvlab.cli",
            "run",
            str(tmp_path / "small.toml"),
            "--out",
            str(run_dir),
            "--quiet",
        ]
        done = subprocess.run(cli, capture_output=True, text=True, timeout=600)
        if not gloo_aborted(done) or attempt:
            break
        print("a gloo rank aborted at exit; launching again once", file=sys.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = load_records(run_dir)
    assert WANG_BLOCKS <= set(rows[rows.metric == "block_sharpness"].block)
    validation = rows[rows.metric == "validation_loss"]
    assert list(validation.step) == [2, 4] and bool((validation.value > 0).all())  # all-reduced over the shards
    page = (run_dir / "report.html").read_text()
    assert "Blockwise sharpness against Wang et al. (2025)" in page and "of 10</td>" in page
