"""curvlab inside PyTorch Lightning: one callback, no change to the LightningModule.

    python examples/lightning_train.py         # about 20 s on 2 CPU cores → runs/lightning/report.html

With ``loss_fn=None`` the callback measures the loss the module's ``training_step`` returns; the Monitor's
scalars go to the trainer's loggers as ``curvlab/...`` (here a CSV file), its records to ``run_dir``.
"""

import argparse

import lightning as L
import torch
from sklearn.datasets import load_digits
from torch import nn

from curvlab.experiments.report import write_report
from curvlab.integrations.lightning import CurvlabCallback


class DigitsClassifier(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.LayerNorm(128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--out", default="runs/lightning")
args = parser.parse_args()

digits = load_digits()
x, y = torch.tensor(digits.data, dtype=torch.float32) / 16, torch.tensor(digits.target)
L.seed_everything(0)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True)

curvlab_callback = CurvlabCallback((x[:512], y[:512]), budget=0.2, run_dir=args.out)
trainer = L.Trainer(
    max_epochs=args.epochs,
    accelerator="cpu",
    callbacks=[curvlab_callback],
    enable_progress_bar=False,
    logger=L.pytorch.loggers.CSVLogger(args.out),
    log_every_n_steps=10,
    enable_checkpointing=False,
)
trainer.fit(DigitsClassifier(), loader)

records = curvlab_callback.monitor.records
for r in records:
    if r["metric"] == "preconditioned_sharpness":
        print(
            f"step {r['step']:4d}: Adam's preconditioned λ1 = {r['value']:8.1f}   its threshold 38/η = "
            f"{38 / r['lr']:.0f}"
        )
print("report:", write_report([args.out]))
