"""curvlab inside sharded training: a causal transformer LM trained with FSDP2 (`fully_shard`) and AdamW, its
sharpness measured along the run from each rank's shards (no rank ever holds a whole parameter vector).

The model learns the characters of the Zen of Python. Every rank draws the same global batch and trains on its
part; the measurement set (16 sequences) is split across the ranks. The Monitor records the step's statistics every
step and, every 25 steps, λ1 of the Hessian and the preconditioned λ1 of AdamW against its threshold, by products
from two gradients through the sharded model. Then a report (rank 0).

    torchrun --nproc-per-node 2 examples/fsdp_train.py     # about 1 min on 2 CPU cores → runs/fsdp_train/report.html
"""

import argparse
import codecs
import contextlib
import io

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.fsdp import fully_shard

import curvlab
from curvlab.distributed import rank_shard
from curvlab.experiments.report import write_report
from curvlab.fsdp import ShardedObjective
from curvlab.models.transformer import CausalLM
from curvlab.monitor import Sharpness, StepStats, every

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--out", default="runs/fsdp_train")
parser.add_argument("--no-monitor", action="store_true", help="train without measuring (to compare trajectories)")
args = parser.parse_args()

dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
rank, world = dist.get_rank(), dist.get_world_size()

with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints it
    import this
text = codecs.decode(this.s, "rot13")
vocab = sorted(set(text))
ids = torch.tensor([vocab.index(c) for c in text])
context = 32
starts = torch.arange(0, len(ids) - context - 1, 8)
sequences = torch.stack([ids[s : s + context + 1] for s in starts.tolist()])
inputs, targets = sequences[:, :-1], sequences[:, 1:]


def lm_loss(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


torch.manual_seed(0)
model = CausalLM(len(vocab), context, d_model=64, n_layers=2, n_heads=2, d_ff=128)
for layer in model.blocks.layers:  # each block, then the root: FSDP2's usual nested wrapping
    fully_shard(layer)
fully_shard(model)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)

if not args.no_monitor:
    # 1-2: what to measure on (this rank's part of 16 sequences) and the Monitor
    objective = ShardedObjective(model, lm_loss, rank_shard((inputs[:16], targets[:16]), world, rank))
    metrics = [StepStats(), Sharpness(schedule=every(25))]
    monitor = curvlab.Monitor(objective, optimizer, metrics, run_dir=args.out)

batches = torch.Generator().manual_seed(1)  # the same global batch on every rank
for _ in range(args.steps):
    idx = torch.randint(0, len(inputs), (16,), generator=batches)
    x, y = rank_shard((inputs[idx], targets[idx]), world, rank)
    optimizer.zero_grad()
    loss = lm_loss(model(x), y)
    loss.backward()
    optimizer.step()
    if not args.no_monitor:
        monitor.step(loss, (x, y))  # 3: after every optimizer step

final = {name: p.full_tensor() for name, p in model.named_parameters()}  # a collective: every rank
if rank == 0:
    torch.save(final, f"{args.out}/final_parameters.pt" if not args.no_monitor else f"{args.out}.pt")
if not args.no_monitor:
    monitor.close()
    if rank == 0:
        rows = [r for r in monitor.records if r["metric"] in ("sharpness", "preconditioned_sharpness")]
        for r in rows:
            print(f"  step {r['step']:4d}: {r['metric']:24s} = {r['value']:9.3f}")
        print("report:", write_report([args.out]))
dist.barrier()
dist.destroy_process_group()
