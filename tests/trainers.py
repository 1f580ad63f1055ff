"""Trainer pieces the callback tests share: a small LayerNorm classifier, its data, and a Lightning Trainer on the CPU
that writes nothing of its own; Hugging Face training arguments of the same kind. Imported by tests that have checked
``pytest.importorskip("lightning")`` and ``pytest.importorskip("transformers")``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import transformers
from torch import nn


class Classifier(L.LightningModule):
    """8 features → 3 classes through a LayerNorm MLP, trained by Adam; its training step logs and returns a dict."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return {"loss": loss}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def classification_data(scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """64 seeded examples for :class:`Classifier` (features × ``scale``)."""
    g = torch.Generator().manual_seed(5)
    return scale * torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)


def quiet_trainer(**options: Any) -> L.Trainer:
    """``L.Trainer`` on the CPU with no logger, checkpoint, progress bar or model summary; ``options`` add to or
    override these."""
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**{**defaults, **options})


def quiet_training_args(output_dir: Path, steps: int, **options: Any) -> transformers.TrainingArguments:
    """Hugging Face ``TrainingArguments`` for ``steps`` seeded steps of batch 8 on the CPU, with no report, saved
    checkpoint, progress bar or worker process; ``options`` add to or override these."""
    defaults = dict(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    return transformers.TrainingArguments(**{**defaults, **options})
