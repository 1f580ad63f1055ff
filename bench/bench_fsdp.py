"""λ1 of an FSDP2-sharded transformer LM on 1, 2 and 4 processes: per-rank memory and time.

Each world size runs under torchrun (gloo on the CPU, nccl on GPUs): a causal transformer LM (curvlab's CausalLM,
about 10M parameters in float32) built on the meta device, wrapped block by block with ``fully_shard`` and
materialised shard by shard, then measured by a ShardedObjective on an even split of 8 sequences of 64 tokens:
one gradient, then λ1 by the default ``eigs`` call. Per rank: the entries of its vectors, the peak resident memory
added by the gradient and by the λ1 solve (VmHWM reset before each, Linux), and λ1's time as a ratio to the
gradient's time in the same run (this machine has 2 cores, so 4 processes share them: the ratio is the fair
figure). Writes its section of docs/benchmarks.md.

The MLPs use GELU: products from two gradients are inaccurate across ReLU's kinks (docs/core.md), which with the
different summation orders of different world sizes would show as different λ1.

    python bench/bench_fsdp.py            # about 8 minutes on 2 CPU cores
    python bench/bench_fsdp.py --worlds 1 2 4 8 --no-write    # on a GPU machine: NCCL, one GPU per rank
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, parse_pinned, write_section  # noqa: E402

WORLDS = (1, 2, 4)
MODEL = dict(vocab=4096, context=64, d_model=384, n_layers=4, n_heads=6, d_ff=1536, activation="gelu")


def peak_since_reset() -> int:
    """Bytes of the resident-set high-water mark (VmHWM) of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> int:
    """Reset VmHWM to the current resident set (Linux: clear_refs 5); returns the current resident bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def worker(out: Path) -> None:
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.distributed.fsdp import fully_shard

    import curvlab
    from curvlab.distributed import rank_shard
    from curvlab.fsdp import ShardedObjective
    from curvlab.models.transformer import CausalLM

    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else None
    dist.init_process_group("nccl" if device is not None else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    with torch.device("meta"):
        model = CausalLM(**MODEL)
    for layer in model.blocks.layers:
        fully_shard(layer)
    fully_shard(model)
    model.to_empty(device=device or "cpu")
    with torch.no_grad():  # the same model whatever the world size: each parameter drawn whole, this rank's rows kept
        generator = torch.Generator().manual_seed(0)
        for p in model.parameters():
            whole = torch.randn(p.shape, generator=generator) * 0.02
            rows = torch.chunk(whole, world, dim=0)  # FSDP2 cuts dimension 0 like torch.chunk
            p.to_local().copy_(rows[rank] if rank < len(rows) else whole[:0])
        model.mask.copy_(torch.nn.Transformer.generate_square_subsequent_mask(MODEL["context"]))

    def lm_loss(logits, targets):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    tokens = torch.randint(0, MODEL["vocab"], (8, MODEL["context"] + 1), generator=torch.Generator().manual_seed(1))
    data = rank_shard((tokens[:, :-1], tokens[:, 1:]), world, rank)
    if device is not None:
        data = tuple(t.to(device) for t in data)
    objective = ShardedObjective(model, lm_loss, data)
    objective.grad()  # warm-up: first-call costs (FSDP2's lazy set-up, the roundoff read)
    base = reset_peak()
    t0 = time.perf_counter()
    objective.grad()
    grad_seconds = time.perf_counter() - t0
    grad_peak = peak_since_reset() - base
    base = reset_peak()
    t0 = time.perf_counter()
    result = curvlab.eigs(objective.hessian(), vectors=False)
    eig_seconds = time.perf_counter() - t0
    row = {
        "world": world,
        "rank": rank,
        "size": objective.size,
        "local": objective.dim,
        "grad_s": grad_seconds,
        "grad_peak": grad_peak,
        "eig_s": eig_seconds,
        "eig_peak": peak_since_reset() - base,
        "lambda1": float(result.eigenvalues[0]),
        "products": result.n_matvecs,
        "basis": result.basis,
    }
    (out / f"w{world}r{rank}.json").write_text(json.dumps(row))
    dist.barrier()
    dist.destroy_process_group()


def run(world: int, out: Path) -> list[dict]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world)]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // world))}
    subprocess.run([*command, __file__, "--worker", str(out)], check=True, env=env, capture_output=True)
    return [json.loads((out / f"w{world}r{r}.json").read_text()) for r in range(world)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker")
    parser.add_argument("--worlds", type=int, nargs="+", default=list(WORLDS))
    parser.add_argument("--no-write", action="store_true")
    args = parse_pinned(parser)
    if args.worker:
        worker(Path(args.worker))
        return
    rows = []
    gpus = torch.cuda.device_count()
    with tempfile.TemporaryDirectory() as tmp:
        for world in args.worlds:
            if gpus and world > gpus:  # NCCL takes one GPU per rank
                print(f"{world} processes: skipped, {gpus} GPU(s) here", flush=True)
                continue
            ranks = run(world, Path(tmp))
            print(f"{world} process(es): {ranks}", flush=True)
            rows.append(ranks)
    mb = 1 / 2**20
    table = []
    for ranks in rows:
        first = ranks[0]
        table.append(
            [
                first["world"],
                f"{first['size']:,}",
                f"{max(r['local'] for r in ranks):,}",
                f"{max(r['grad_peak'] for r in ranks) * mb:.0f}",
                f"{max(r['eig_peak'] for r in ranks) * mb:.0f}",
                f"{first['eig_s']:.1f}",
                f"{first['eig_s'] / first['grad_s']:.1f}",
                first["products"],
                first["basis"],
                f"{first['lambda1']:.6g}",
            ]
        )
    header = [
        "processes",
        "parameters",
        "entries per rank (most)",
        "gradient peak MB/rank",
        "λ1 peak MB/rank",
        "λ1 s",
        "λ1 / gradient time",
        "products",
        "basis",
        "λ1",
    ]
    lines = [
        "A causal transformer LM (4 pre-norm layers, GELU, d = 384, vocabulary 4,096, about 10M float32 parameters)",
        "sharded by FSDP2 (`fully_shard` per layer and at the root, built on the meta device), measured by",
        "`curvlab.fsdp.ShardedObjective` on 8 sequences of 64 tokens split evenly across the ranks: one gradient, then",
        "the default `eigs(objective.hessian(), vectors=False)` (products from two gradients through the sharded",
        "model). Peaks are the resident memory each rank adds during the call (VmHWM reset before it), the most over",
        "the ranks; times are rank 0's. Gloo on 2 CPU cores, so more processes share the same cores: the memory",
        "columns are the scaling figure, and time is given as a ratio to the same run's gradient.",
        "",
        markdown_table(header, table),
        "",
        "Every row measures the same model on the same 8 sequences (each parameter drawn whole and cut to the",
        "rank's rows), so λ1 agrees across rows to the solve's tolerance (1e-3); the equality of sharded and",
        "one-process values to 1e-9 in float64 is tested in tests/test_fsdp.py.",
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("bench_fsdp", "FSDP2: λ1 of a sharded transformer LM on 1, 2 and 4 processes", lines)


if __name__ == "__main__":
    main()
