"""Critical sharpness along real runs, beside λ1 and the directional sharpness of the update.

Full-batch GD trains a tanh MLP on 1,000 sklearn digits at η = 0.5 (2/η = 4: it stays below the edge) and at
η = 1 (2/η = 2: it reaches the edge, catapults and settles). Every 10 steps the Monitor measures λ1 (Lanczos),
the directional sharpness uᵀHu/‖u‖² of the step's update u (its "actual" pseudo-update), and the critical
sharpness λc (forward passes only) along the same update, all at x_{t−1} on the training set. Writes
docs/metrics/critical_sharpness.png and prints the numbers quoted in docs/metrics/critical_sharpness.md.

    python scripts/critical_sharpness_figure.py      # about two minutes on 2 CPU cores
"""

from pathlib import Path
from statistics import median

import torch
from sklearn.datasets import load_digits
from torch import nn

import curvlab
from curvlab.losses import cross_entropy
from curvlab.monitor import CriticalSharpness, Directional, Sharpness, every
from curvlab.plotting import pyplot, save_figure

OUT = Path(__file__).resolve().parent.parent / "docs" / "metrics" / "critical_sharpness.png"
STEPS = 600


def run(lr: float) -> tuple[list[dict], list[float]]:
    digits = load_digits()
    x, y = torch.tensor(digits.data[:1000], dtype=torch.float32) / 16, torch.tensor(digits.target[:1000])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    metrics = [
        Sharpness(schedule=every(10)),
        CriticalSharpness(schedule=every(10)),
        Directional(schedule=every(10), shadows={"gd": lambda ps: torch.optim.SGD(ps, lr=1.0)}),
    ]
    monitor = curvlab.Monitor(curvlab.Objective(model, cross_entropy, (x, y)), optimizer, metrics)
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        monitor.step(loss, (x, y))
    return monitor.records, losses


def series(records, metric, **where):
    rows = [r for r in records if r["metric"] == metric and all(r.get(k) == v for k, v in where.items())]
    return [r["step"] for r in rows], [r["value"] for r in rows]


plt = pyplot()
fig, axes = plt.subplots(2, 2, figsize=(11, 6), sharex=True)
for column, lr in enumerate((0.5, 1.0)):
    records, losses = run(lr)
    top, bottom = axes[0, column], axes[1, column]
    top.plot(*series(records, "sharpness", index=1), "C0-", label="λ1 (Lanczos, HVPs)")
    top.plot(
        *series(records, "directional_sharpness", optimizer="actual"),
        "C2:",
        label="directional sharpness of the update",
    )
    top.plot(*series(records, "critical_sharpness"), "C1.-", ms=3, label="critical sharpness λc (forward passes)")
    top.axhline(2 / lr, color="k", lw=0.8, ls="--", label="2/η")
    top.set_yscale("log"), top.set_title(f"Full-batch GD, η = {lr}, MLP on 1,000 digits"), top.legend(fontsize=7)
    bottom.plot(range(1, STEPS + 1), losses, "k-", lw=0.8)
    bottom.set_yscale("log"), bottom.set_xlabel("step")
    steps, crit = series(records, "critical_sharpness")
    _, lam = series(records, "sharpness", index=1)
    _, directional = series(records, "directional_sharpness", optimizer="actual")
    evals = [r["n_evals"] for r in records if r["metric"] == "critical_sharpness"]
    rose = [s for s in steps if s < STEPS and losses[s] > losses[s - 1]]  # losses[s] = F(x_s): did step s raise it
    above = [s for s, c in zip(steps, crit) if lr * c > 2]
    ratios = [c / d for c, d in zip(crit, directional) if d > 0]
    print(
        f"η = {lr}: {len(steps)} measurements; forward passes per λc median {median(evals)}, max {max(evals)}; "
        f"λc ≤ λ1 at {sum(c <= 1.001 * v for c, v in zip(crit, lam))}; median λc / directional sharpness "
        f"{median(ratios):.2f}; "
        f"λc at steps 100–180: {[round(c, 2) for s, c in zip(steps, crit) if 100 <= s <= 180]}; "
        f"η·λc > 2 at steps {above}; the loss rose at measured steps {rose}"
    )
axes[0, 0].set_ylabel("curvature"), axes[1, 0].set_ylabel("training loss")
save_figure(fig, OUT)
print("wrote", OUT)
