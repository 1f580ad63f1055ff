"""Hessian products for a block of vectors at once: does a batched double backward cost less per vector?

Issue 34 (item 4) suggests products for a block at once (``torch.autograd.grad(..., is_grads_batched=True)``, which
vmaps the double backward over the block) as a way to a λ1 solve cheaper than hessian-eigenthings'. A block Lanczos
pays only if a block of b products costs clearly less than b single products: it needs about as many products in
all as single-vector Lanczos to reach the same accuracy (more, on a well-separated top eigenvalue). This measures
that cost on the kept graph the solver reuses (the gradient's graph built once; each product one backward through
it), for block sizes 1 (b single products, one after the other), 2, 4 and 8, on bench_core's MLP (one chunk and
four: the graphs of four chunks, each product their size-weighted mean) and on bench_monitor's small MLP (where a
product takes a few milliseconds and per-call overhead weighs more). Timed round-robin (medians over rounds),
batched products checked against single ones.

Run: ``python bench/bench_batched.py`` (after ``make install``). Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from bench_core import batches, mlp_problem
from bench_monitor import mlp_setup
from common import interleaved_medians, markdown_table, parse_pinned, write_section
from torch.func import functional_call

from curvlab.losses import cross_entropy

BLOCKS = (2, 4, 8)
PAYS = 0.75  # per-vector cost of a batched product, against a single one, below which a block method could pay


def kept_graphs(model: torch.nn.Module, chunks: list) -> tuple[list[torch.Tensor], list[tuple[list, float]]]:
    """The leaves and, per chunk, (its gradient with the graph kept, its weight in the mean)."""
    names = [name for name, _ in model.named_parameters()]
    leaves = [p.detach().requires_grad_(True) for p in model.parameters()]
    total = sum(len(y) for _, y in chunks)
    graphs = []
    for x, y in chunks:
        loss = cross_entropy(functional_call(model, dict(zip(names, leaves)), (x,)), y)
        graphs.append((list(torch.autograd.grad(loss, leaves, create_graph=True)), len(y) / total))
    return leaves, graphs


def product(leaves: list, graphs: list, vs: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
    """H v (or, batched, H v_i for the leading dimension of every tensor in ``vs``), the chunks' weighted mean."""
    out = None
    for grads, weight in graphs:
        parts = torch.autograd.grad(grads, leaves, vs, retain_graph=True, is_grads_batched=batched)
        parts = [weight * p for p in parts]
        out = parts if out is None else [a + b for a, b in zip(out, parts)]
    assert out is not None
    return out


def block_timings(leaves: list, graphs: list, rounds: int) -> dict[str, float]:
    """Per-vector seconds of b single products and of one batched product of b vectors, for every b; and the
    largest relative difference between the two."""
    gen = torch.Generator().manual_seed(0)
    blocks = {b: [torch.randn((b, *p.shape), generator=gen) for p in leaves] for b in (1, *BLOCKS)}

    def singles(b: int) -> Callable[[], object]:
        return lambda: [product(leaves, graphs, [v[i] for v in blocks[b]], False) for i in range(b)]

    def batched(b: int) -> Callable[[], object]:
        return lambda: product(leaves, graphs, blocks[b], True)

    fns: dict[str, Callable[[], object]] = {"single": singles(1)}
    for b in BLOCKS:
        fns[f"batched {b}"] = batched(b)
    seconds = interleaved_medians(fns, rounds=rounds)
    result = {"single": seconds["single"]}
    worst = 0.0
    for b in BLOCKS:
        result[f"batched {b}"] = seconds[f"batched {b}"] / b
        together = product(leaves, graphs, blocks[b], True)
        for i in range(b):
            alone = product(leaves, graphs, [v[i] for v in blocks[b]], False)
            num = sum(float((t[i] - a).norm() ** 2) for t, a in zip(together, alone)) ** 0.5
            den = sum(float(a.norm() ** 2) for a in alone) ** 0.5
            worst = max(worst, num / den)
    result["difference"] = worst
    return result


def problems() -> list[tuple[str, torch.nn.Module, list]]:
    name, model, x, y = mlp_problem()
    small_name, make, sx, sy, _, n = mlp_setup()
    torch.manual_seed(0)
    small = make()
    return [
        (f"{name}, 1 chunk", model, batches(x, y, 1)),
        (f"{name}, 4 chunks", model, batches(x, y, 4)),
        (f"{small_name.split(',')[0]}, {n} examples (bench_monitor)", small, [(sx[:n], sy[:n])]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--no-write", action="store_true")
    args = parse_pinned(parser)
    rows, verdicts = [], []
    for name, model, chunks in problems():
        rounds = args.rounds if len(chunks) > 1 or chunks[0][0].shape[0] > 1000 else 10 * args.rounds
        leaves, graphs = kept_graphs(model, chunks)
        t = block_timings(leaves, graphs, rounds)
        ratios = {b: t[f"batched {b}"] / t["single"] for b in BLOCKS}
        rows.append(
            [name, f"{t['single'] * 1e3:.3g}"]
            + [f"{t[f'batched {b}'] * 1e3:.3g}" for b in BLOCKS]
            + [f"{ratios[b]:.2f}" for b in BLOCKS]
            + [f"{t['difference']:.1e}"]
        )
        best = min(BLOCKS, key=lambda b: ratios[b])
        pays = ratios[best] <= PAYS
        verdicts.append(
            f"- {name}: the cheapest block per vector is b = {best}, {ratios[best]:.2f}× a single product: "
            f"**{'could pay' if pays else 'does not pay'}** (a block method could pay below {PAYS}×)."
        )
        print(rows[-1], flush=True)
    header = (
        ["problem", "single product ms"]
        + [f"batched b={b}: ms per vector" for b in BLOCKS]
        + [f"b={b} / single" for b in BLOCKS]
        + ["batched vs single, relative difference (max)"]
    )
    lines = [
        "Exact Hessian products on the kept graph (the gradient's graph built once, each product one backward "
        "through it, as curvlab's solver makes them): b products one after the other against one batched "
        "product of b vectors (`torch.autograd.grad(..., is_grads_batched=True)`), per vector, medians of "
        f"round-robin rounds. Cheaper per vector below 1; a block Lanczos would need about as many products as "
        f"single-vector Lanczos, so it could pay only well below 1 (taken here as ≤ {PAYS}×).",
        "",
        markdown_table(header, rows),
        "",
        *verdicts,
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("bench_batched", "Batched products for a block of vectors", lines)


if __name__ == "__main__":
    main()
