"""Both trainer callbacks under bf16 mixed precision: measurements are in float32 by default (equal to a float32
computation at the same parameters), under the trainer's autocast with ``autocast=True`` (equal to the same
computation under torch.autocast, and different from float32), and training is bit-identical with or without the
callback. Reference values come from a fresh copy of the model at the parameters the measurement saw."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from curvlab.core.curvature import low_precision_dtype
from curvlab.monitor import Metric, every

L = pytest.importorskip("lightning")
transformers = pytest.importorskip("transformers")

from trainers import Classifier, classification_data, quiet_trainer, quiet_training_args  # noqa: E402

from curvlab.integrations.lightning import CurvlabCallback as LightningCallback  # noqa: E402
from curvlab.integrations.transformers import CurvlabCallback as HFCallback  # noqa: E402


class LossProbe(Metric):
    """Records the Objective's loss at every step, with the parameters and the autocast state it was taken in."""

    name = "loss_probe"

    def __init__(self):
        super().__init__(every(1))
        self.seen: list[tuple[float, dict, torch.dtype | None]] = []

    def measure(self, monitor, info):
        objective = monitor.objective
        state = {k: v.detach().clone() for k, v in objective.model.state_dict().items()}
        loss = objective.loss()
        self.seen.append((loss, state, low_precision_dtype()))
        yield "loss_probe", loss, {}


def _float32_and_bf16(loss_of) -> tuple[float, float]:
    """``loss_of()`` in float32, then under bf16 autocast (as the trainers' mixed precision computes)."""
    with torch.no_grad():
        float32 = float(loss_of())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return float32, float(loss_of())


# ----- Lightning --------------------------------------------------------------------------------------------------
def _lightning_fit(callback, steps=3):
    L.seed_everything(0, verbose=False)
    x, y = classification_data(scale=4.0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    module = Classifier()
    trainer = quiet_trainer(max_steps=steps, precision="bf16-mixed", callbacks=[callback] if callback else [])
    trainer.fit(module, loader)
    return module, (x, y)


@pytest.mark.parametrize("autocast", [False, True])
def test_lightning_bf16_measures_in_float32_unless_asked(autocast):
    plain, data = _lightning_fit(None)
    probe = LossProbe()
    watched, _ = _lightning_fit(LightningCallback(data, metrics=[probe], autocast=autocast))
    for p, q in zip(plain.parameters(), watched.parameters()):
        assert torch.equal(p, q)  # training is the same, measured or not
    assert len(probe.seen) == 3
    for loss, state, dtype in probe.seen:
        float32, bf16 = _float32_and_bf16(lambda s=state: _classifier_loss(s, data))
        assert abs(bf16 - float32) > 1e-6 * abs(float32)  # the two precisions are told apart on this model
        assert dtype == (torch.bfloat16 if autocast else None)
        assert loss == pytest.approx(bf16 if autocast else float32, rel=1e-7)


def _classifier_loss(state: dict, data: tuple) -> torch.Tensor:
    """The loss of a fresh Classifier holding ``state`` (saved through the training_step view, hence the prefix)."""
    model = Classifier()
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    x, y = data
    return nn.functional.cross_entropy(model(x), y)


# ----- Hugging Face -----------------------------------------------------------------------------------------------
CONFIG = dict(vocab_size=32, n_positions=16, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)


def _hf_train(callback_options, tmp_path, steps=3):
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**CONFIG, attn_implementation="eager"))
    ids = torch.randint(0, 32, (16, 12), generator=torch.Generator().manual_seed(1))
    rows = [{"input_ids": r, "labels": r} for r in ids]
    args = quiet_training_args(tmp_path / "hf", steps, bf16=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows)
    batch = {"input_ids": ids[:8], "labels": ids[:8]}
    probe = LossProbe()
    if callback_options is not None:
        HFCallback([batch], metrics=[probe], **callback_options).attach(trainer)
    trainer.train()
    return model, batch, probe


@pytest.mark.parametrize("autocast", [False, True])
def test_hugging_face_bf16_measures_in_float32_unless_asked(autocast, tmp_path):
    plain, _, _ = _hf_train(None, tmp_path)
    watched, batch, probe = _hf_train({"autocast": autocast}, tmp_path)
    for p, q in zip(plain.parameters(), watched.parameters()):
        assert torch.equal(p, q)  # accelerate's autocast wrapper is back in place after each measurement
    assert "_original_forward" in vars(watched) and watched.forward is not watched._original_forward
    assert len(probe.seen) == 3
    fresh = transformers.GPT2LMHeadModel(transformers.GPT2Config(**CONFIG, attn_implementation="eager"))
    for loss, state, _ in probe.seen:
        reference = copy.deepcopy(fresh)
        reference.load_state_dict(state)
        reference.eval()  # the Objective measures without dropout
        float32, bf16 = _float32_and_bf16(lambda m=reference: m(**batch).loss)
        assert abs(bf16 - float32) > 1e-6 * abs(float32)
        assert loss == pytest.approx(bf16 if autocast else float32, rel=1e-7)
