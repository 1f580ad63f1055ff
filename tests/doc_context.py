"""What the README and docs snippets take as the reader's own: a model, its loss, data, an optimizer, a trainer.

tests/test_doc_snippets.py runs every Python block of README.md and docs/ in one of these namespaces, chosen by
an HTML comment before the block (``<!-- snippet: lm -->``; none means ``classifier``). Each context is small
enough that a snippet runs in seconds, and holds only what a reader would already have written."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import curvlab
from curvlab.data import load_digits
from curvlab.losses import cross_entropy
from curvlab.models import mlp


def _digits(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits()
    return x[:n], y[:n]


def classifier() -> dict:
    """A digits MLP after a few SGD steps: model, loss_fn, data in every form the docs name, an optimizer, an update."""
    torch.manual_seed(0)
    x, y = _digits()
    model = mlp(64, [16], 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    objective = curvlab.Objective(model, cross_entropy, (x, y))
    params_before = objective.parameters_vector().clone()
    for xb, yb in loader:
        optimizer.zero_grad()
        cross_entropy(model(xb), yb).backward()
        optimizer.step()
    params_after = objective.parameters_vector().clone()
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    return {
        "torch": torch,
        "curvlab": curvlab,
        "model": model,
        "loss_fn": cross_entropy,
        "x": x,
        "y": y,
        "inputs": x,
        "targets": y,
        "x_measure": x[:64],
        "y_measure": y[:64],
        "loader": loader,
        "optimizer": optimizer,
        "objective": objective,
        "obj": objective,
        "lr": 0.1,
        "params_before": params_before,
        "params_after": params_after,
        "update": params_after - params_before,
        "v": torch.randn(objective.dim),
        "u": torch.randn(objective.dim),
        "adam_v_hat": adam_variance(model, adam, loader),
        "eps": 1e-8,
        "pretraining_objective": curvlab.Objective(model, cross_entropy, tuple(t[128:] for t in _digits(256))),
        "steps": 3,
        "base": torch.optim.SGD(model.parameters(), lr=0.1),
        "epochs": 2,
    }


def adam_variance(model: nn.Module, adam: torch.optim.Adam, loader: DataLoader) -> torch.Tensor:
    """Adam's bias-corrected second moment, flattened, after one step on the first batch (the step is undone)."""
    before = [p.detach().clone() for p in model.parameters()]
    xb, yb = next(iter(loader))
    adam.zero_grad()
    cross_entropy(model(xb), yb).backward()
    adam.step()
    with torch.no_grad():
        for p, b in zip(model.parameters(), before):
            p.copy_(b)
    beta2 = adam.param_groups[0]["betas"][1]
    return torch.cat([adam.state[p]["exp_avg_sq"].reshape(-1) / (1 - beta2) for p in model.parameters()])


def lm() -> dict:
    """A tiny Hugging Face GPT-2 computing its own loss, its batches, and a Trainer's parts."""
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2, attn_implementation="eager")
    model = GPT2LMHeadModel(config)
    ids = torch.randint(0, 50, (4, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    labels = ids.clone()
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    train_set = [{"input_ids": row, "attention_mask": torch.ones_like(row), "labels": row} for row in ids]
    args = TrainingArguments(
        output_dir="hf_out", max_steps=3, per_device_train_batch_size=2, report_to=[], save_strategy="no"
    )
    return {
        "torch": torch,
        "curvlab": curvlab,
        "model": model,
        "ids": ids,
        "mask": mask,
        "labels": labels,
        "batch": batch,
        "batches": [batch],
        "measure_batches": [batch],
        "train_set": train_set,
        "args": args,
        "Trainer": Trainer,
    }


class _LightningClassifier:
    """Built lazily: importing lightning costs seconds, and only the trainer snippets need it."""

    @staticmethod
    def make(model: nn.Module):
        import lightning as L

        class Module(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.model = model

            def training_step(self, batch, batch_idx):
                inputs, targets = batch
                return cross_entropy(self.model(inputs), targets)

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        return Module()


def trainers() -> dict:
    """Both trainers' snippets: Lightning (``L``, a LightningModule) and a Hugging Face ``hf_trainer``."""
    import lightning as L

    names = classifier()
    language = lm()
    names["L"] = L
    names["module"] = _LightningClassifier.make(names["model"])
    names["measure_batches"] = language["measure_batches"]
    names["hf_trainer"] = language["Trainer"](
        model=language["model"], args=language["args"], train_dataset=language["train_set"]
    )
    return names


class TinyLM(nn.Module):
    """A causal LM of the shape the FSDP snippet wraps: ``model.blocks``, a sequence of residual blocks."""

    def __init__(self, vocab: int = 11, width: int = 8, depth: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.Tanh()) for _ in range(depth)
        )
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def train(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list, loss_fn=lm_loss, steps: int = 2) -> None:
    """A few optimizer steps: the reader's training loop before measuring."""
    for step in range(steps):
        inputs, targets = batches[step % len(batches)]
        optimizer.zero_grad()
        loss_fn(model(inputs), targets).backward()
        optimizer.step()


def ddp() -> dict:
    """Under torchrun, the data-parallel snippet's own parts: its model builder, data and loss."""
    x, y = _digits(48)
    return {
        "build_model": lambda: _seeded(lambda: mlp(64, [8], 10)),
        "inputs": x,
        "targets": y,
        "loss_fn": cross_entropy,
    }


def fsdp() -> dict:
    """Under torchrun, the FSDP snippet's own parts: an LM with ``model.blocks``, its loss, batches and loop."""
    tokens = torch.randint(0, 11, (8, 9), generator=torch.Generator().manual_seed(1))
    return {
        "build_model": lambda: _seeded(lambda: TinyLM(depth=1)),  # one block: fewer collectives a pass
        "loss_fn": lm_loss,
        "measurement_batches": [(tokens[:4, :-1], tokens[:4, 1:]), (tokens[4:, :-1], tokens[4:, 1:])],
        "train": train,
        "lr": 0.01,
    }


def _seeded(build):
    """The same initial model on every rank, as a reader's seeded builder gives."""
    torch.manual_seed(0)
    return build()


CONTEXTS = {"classifier": classifier, "lm": lm, "trainers": trainers, "ddp": ddp, "fsdp": fsdp}
