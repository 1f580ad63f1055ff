"""curvlab in a plain PyTorch loop: three lines added to an ordinary training script.

An MLP learns sklearn's digits with minibatch SGD. The Monitor records the step's loss, gradient and update
norms every step, and, sharing 20% of the training time, the Hessian's top eigenvalue λ1 against SGD's
stability threshold 2/η and (added here) the critical sharpness along the update. Then a report.

    python examples/monitor_loop.py            # about 15 s on 2 CPU cores → runs/monitor_loop/report.html
"""

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn

import curvlab
from curvlab.experiments.report import write_report
from curvlab.monitor import CriticalSharpness, budget, default_metrics

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--out", default="runs/monitor_loop")
args = parser.parse_args()

digits = load_digits()
x, y = torch.tensor(digits.data, dtype=torch.float32) / 16, torch.tensor(digits.target)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.15)
loss_fn = nn.functional.cross_entropy

# 1-2: what to measure on (512 training examples) and the Monitor (default set + critical sharpness)
objective = curvlab.Objective(model, loss_fn, (x[:512], y[:512]))
metrics = [*default_metrics(), CriticalSharpness(schedule=budget())]
monitor = curvlab.Monitor(objective, optimizer, metrics, run_dir=args.out, budget=0.2)

for _ in range(args.steps):
    idx = torch.randint(0, len(y), (64,))
    optimizer.zero_grad()
    loss = loss_fn(model(x[idx]), y[idx])
    loss.backward()
    optimizer.step()
    monitor.step(loss, (x[idx], y[idx]))  # 3: after every optimizer step
monitor.close()

sharp = [r for r in monitor.records if r["metric"] == "sharpness"]
print(f"{len(sharp)} sharpness measurements; Monitor time = {monitor.overhead:.0%} of the training time")
for r in sharp:
    print(f"  step {r['step']:5d}: λ1 = {r['value']:7.3f}   2/η = {2 / r['lr']:.3f}")
print("report:", write_report([args.out]))
