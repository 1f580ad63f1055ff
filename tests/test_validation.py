"""Language-model data and validation: subword (BPE) tokens trained on the training text only, and the validation
loss on the held-out split, exact against an independent evaluation and invisible to the training trajectory."""

import pytest
import torch
from torch import nn

from curvlab import Objective
from curvlab.data import load_dataset
from curvlab.data.sources import language_model
from curvlab.experiments import ConfigError, start_run
from curvlab.experiments.build import build_loss, build_model_from
from curvlab.experiments.config import validate
from curvlab.experiments.report import key_numbers, write_report
from curvlab.experiments.run_dir import load_checkpoint
from curvlab.monitor import load_records, read_records


def test_bpe_is_trained_on_the_training_text_only():
    """The held-out tenth is a string the training text never has: no merge was learnt for it, so it is encoded
    byte by byte (a token per character, all ASCII). Trained on the whole text, the tokenizer merges it into about
    one token in five characters. The same text gives the same tokens."""
    prose = "the cat sat on the mat and the dog ran. " * 2400 + "." * 30  # 96,030 characters
    rare = " zqzqzqzqzq" * 970  # 10,670: exactly the last tenth
    assert int(0.9 * len(prose + rare)) == len(prose)
    data = language_model(prose + rare, "t", level="bpe", vocab_size=300, context=8)
    assert data.x_test is not None
    assert data.x_test.numel() >= len(rare) - 8  # byte by byte (the last partial window is dropped)
    again = language_model(prose + rare, "t", level="bpe", vocab_size=300, context=8)
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.x_test, data.x_test)


def test_bpe_needs_the_bytes():
    with pytest.raises(ValueError, match="vocab_size: level 'bpe' needs at least the 256 bytes"):
        load_dataset("python_docs", level="bpe", vocab_size=100)


def _bn_dropout_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 3)).double()


def test_the_validation_objective_is_the_eval_mode_mean_and_restores_everything():
    """The Objective a run scores validation with (``bn_mode="eval"``, chunks of ``max_chunk``): uneven chunks (50 rows
    in chunks of at most 7) weighted by their rows give the mean over all 50, in eval mode (BatchNorm on running
    statistics, no dropout); modes, BatchNorm statistics and the RNG are as they were."""
    model = _bn_dropout_model()
    x, y = torch.randn(50, 5, dtype=torch.float64), torch.randint(0, 3, (50,))
    model(torch.randn(64, 5, dtype=torch.float64))  # running statistics away from their initial values
    stats = [b.clone() for b in model.buffers()]
    rng = torch.get_rng_state()
    value = Objective(model, nn.functional.cross_entropy, (x, y), batch_size=7, bn_mode="eval").loss()
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))
    assert torch.equal(rng, torch.get_rng_state())
    model.eval()
    with torch.no_grad():
        expected = float(nn.functional.cross_entropy(model(x), y))
    assert value == pytest.approx(expected, rel=1e-12)


GPT2_DROPOUTS = ("resid_pdrop", "embd_pdrop", "attn_pdrop")  # nn.Dropout layers: on in training, off in eval mode


def _lm_config(eval_every=None):
    return validate(
        {
            "name": "lm",
            "seed": 5,
            "data": {"name": "python_docs", "level": "bpe", "vocab_size": 300, "context": 16, "n_sequences": 64},
            "model": {"name": "gpt2", "n_layer": 1, "n_embd": 32, **dict.fromkeys(GPT2_DROPOUTS, 0.1)},
            "optimizer": {"name": "adamw", "lr": 3e-3},
            "train": {"batch_size": 16, "steps": 12, "checkpoint_every": 6, "eval_every": eval_every},
            "monitor": {"metrics": ["step"]},
        }
    )


def test_a_run_scores_its_validation_loss_without_changing_its_trajectory(tmp_path):
    """Every eval_every steps and at the end a validation_loss record, equal to the final model's eval-mode loss on
    the held-out split (rebuilt from the checkpoint); the training losses are those of a run without validation,
    bit for bit (GPT-2's dropout is on in training and draws from the RNG)."""
    config = _lm_config(eval_every=5)
    start_run(config, tmp_path / "val", quiet=True)
    start_run(_lm_config(), tmp_path / "plain", quiet=True)
    records = read_records(tmp_path / "val")
    validation = [r for r in records if r["metric"] == "validation_loss"]
    assert [r["step"] for r in validation] == [5, 10, 12] and all(r["group"] == "validation" for r in validation)

    def losses(run):
        return [r["value"] for r in read_records(tmp_path / run) if r["metric"] == "loss"]

    assert losses("val") == losses("plain")
    data = load_dataset("python_docs", level="bpe", vocab_size=300, context=16)
    model = build_model_from(config, data)
    model.load_state_dict(load_checkpoint(tmp_path / "val")["model"])
    model.eval()
    with torch.no_grad():
        expected = float(build_loss(config, data)(model(data.x_test), data.y_test))
    assert validation[-1]["value"] == pytest.approx(expected, rel=1e-5)
    write_report([tmp_path / "val"])
    row = key_numbers("val", tmp_path / "val", load_records(tmp_path / "val"), None)
    assert row["final validation loss"] == validation[-1]["value"]


def test_validation_needs_a_held_out_split(tmp_path):
    config = validate(
        {
            "data": {"name": "digits", "test_fraction": 0.0},
            "model": {"name": "linear"},
            "optimizer": {"name": "sgd", "lr": 0.1},
            "train": {"batch_size": 32, "steps": 2, "eval_every": 1},
            "monitor": {"metrics": ["step"]},
        }
    )
    with pytest.raises(ConfigError, match="train.eval_every: data 'digits' has no held-out split"):
        start_run(config, tmp_path / "r", quiet=True)
