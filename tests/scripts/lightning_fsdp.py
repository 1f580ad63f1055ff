"""Run by a test under torchrun (2 CPU processes, gloo): a LightningModule whose MLP is sharded by FSDP2 in
``configure_model`` (Lightning's ModelParallelStrategy), trained 8 steps with AdamW, with the default-argument
CurvlabCallback measuring λ1 every 4 steps (argv[2] == "with") or without it ("without"). Rank 0 writes the final
full parameters to OUT/<argv[2]>.pt and, with the callback, the records' (step, metric, value) to OUT/rows.json."""

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import ModelParallelStrategy
from sklearn.datasets import load_digits
from torch import nn
from torch.distributed.fsdp import fully_shard

from curvlab.distributed import finish
from curvlab.integrations.lightning import CurvlabCallback
from curvlab.monitor import Sharpness, StepStats, every


class Digits(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))

    def configure_model(self):
        mesh = self.device_mesh["data_parallel"]
        fully_shard(self.net[0], mesh=mesh)
        fully_shard(self.net, mesh=mesh)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def main() -> None:
    out, mode = Path(sys.argv[1]), sys.argv[2]
    digits = load_digits()
    x, y = torch.tensor(digits.data, dtype=torch.float32) / 16, torch.tensor(digits.target)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:384], y[:384]), batch_size=32)
    callbacks = []
    if mode == "with":
        metrics = [StepStats(), Sharpness(schedule=every(4))]
        callbacks.append(CurvlabCallback((x[384:512], y[384:512]), metrics=metrics))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
        max_steps=8,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=True,
    )
    module = Digits()
    trainer.fit(module, loader)
    final = {name: p.full_tensor() for name, p in module.named_parameters()}
    if trainer.global_rank == 0:
        torch.save(final, out / f"{mode}.pt")
        if callbacks:
            rows = [(r["step"], r["metric"], r["value"]) for r in callbacks[0].monitor.records]
            (out / "rows.json").write_text(json.dumps(rows))
    finish()  # leave the process group together: a rank exiting with gloo's threads alive can abort at exit


if __name__ == "__main__":
    main()
