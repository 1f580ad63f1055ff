"""The fused language-model head (``curvlab.models.FusedHeadLoss``) against the model's own loss: one Hessian
product's memory and time on GPT-2 small.

GPT-2 small (``GPT2LMHeadModel(GPT2Config())``: 12 layers × 768, vocabulary 50,257, eager attention, float32,
randomly initialised), one batch of B×T random tokens, exact (double backward) products. Each run is a fresh process,
so that its peak resident memory (Linux's VmHWM) is its own: the model, the gradient's kept graph, a float32
direction and products (the first builds the graph; the median of the next three is a product's time inside a
solve). The two losses are the same function (tests/test_linear_cross_entropy.py: to 1e-10 in float64); their
products here are compared through a fixed random projection and their norms. Beside each verdict, what the
Objective's ``fused_head="auto"`` chooses at that batch (curvlab.core.lm_head: fused from ``FUSED_FROM`` logits per
parameter), and whether that agrees with the verdict.

Run: ``python bench/bench_lm_head.py`` (after ``make install``; ``make bench-llm`` runs it last). Writes its section
of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from bench_llm import in_process, model_and_batch, peak_rss
from common import markdown_table, parse_pinned, write_section

SIZES = ((2, 128), (4, 256), (6, 256))  # B×T tokens: bench_llm's batch, then larger ones (8×256 through the
# model's own loss fills this 23 GB machine)
LOSSES = ("own loss", "fused head")
IN_SOLVE = 3  # products on the kept graph after the first: their median is a product's time inside a solve
PAYS_MEMORY = 0.95  # the fused head pays where its peak is at most this × the own loss's ...
PAYS_TIME = 1.10  # ... and its products take at most this × the own loss's


def run_product(loss: str, batch: int, tokens: int) -> dict:
    """Exact Hessian products of GPT-2 small on ``batch``×``tokens`` random tokens through ``loss``: the first (it
    builds the kept graph), then ``IN_SOLVE`` more on that graph."""
    import curvlab
    from curvlab.models import FusedHeadLoss

    model, data = model_and_batch("small")
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(1))
    data = {"input_ids": ids, "labels": ids}
    measured = FusedHeadLoss(model) if loss == "fused head" else model
    objective = curvlab.Objective(measured, None, [data], hvp_engine="reverse", fused_head=False)
    gen = torch.Generator().manual_seed(0)
    direction, projection = torch.randn(objective.dim, generator=gen), torch.randn(objective.dim, generator=gen)
    operator = objective.hessian()
    t0 = time.perf_counter()
    product = operator.matvec(direction)
    first = time.perf_counter() - t0
    seconds = []
    for _ in range(IN_SOLVE):
        del product
        t0 = time.perf_counter()
        product = operator.matvec(direction)
        seconds.append(time.perf_counter() - t0)
    return {
        "first product s": first,
        "product in a solve s": statistics.median(seconds),
        "projection": float(product.double() @ projection.double()),
        "norm": float(product.double().norm()),
        "loss": objective.loss(),
    }


def auto_choice(batch: int, tokens: int) -> dict:
    """What ``fused_head="auto"`` chooses for GPT-2 small on ``batch``×``tokens`` tokens (its first evaluation decides),
    and the logits per parameter its rule reads."""
    import curvlab
    from curvlab.core.lm_head import logits_per_parameter

    model, _ = model_and_batch("small")
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(1))
    objective = curvlab.Objective(model, None, [{"input_ids": ids, "labels": ids}])
    objective.loss()
    return {"auto": objective.loss_head, "logits per parameter": logits_per_parameter(model, batch * tokens)}


def child(task: dict) -> None:
    out = run_product(**task)
    out["peak_rss"] = peak_rss()  # before the choice below, whose passes are no part of a product's peak
    if task["loss"] == "own loss":
        out.update(auto_choice(task["batch"], task["tokens"]))
    print("RESULT " + json.dumps(out), flush=True)


def rows_and_verdicts(runs: dict) -> tuple[list[list[object]], list[str]]:
    from curvlab.core.lm_head import FUSED_FROM

    rows, verdicts, agreed = [], [], True
    for batch, tokens in SIZES:
        own, fused = runs[f"own loss {batch}x{tokens}"], runs[f"fused head {batch}x{tokens}"]
        for name, run in (("own loss", own), ("fused head", fused)):
            rows.append(
                [
                    f"{batch}×{tokens}",
                    name,
                    run["peak_rss"] / 1e9,
                    run["peak_rss"] / own["peak_rss"],
                    run["first product s"],
                    run["product in a solve s"],
                    run["product in a solve s"] / own["product in a solve s"],
                    abs(run["projection"] - own["projection"]) / abs(own["projection"]),
                    abs(run["norm"] - own["norm"]) / own["norm"],
                ]
            )
        memory = fused["peak_rss"] / own["peak_rss"]
        speed = fused["product in a solve s"] / own["product in a solve s"]
        pays = memory <= PAYS_MEMORY and speed <= PAYS_TIME
        agrees = (own["auto"] == "fused") == pays
        agreed = agreed and agrees
        verdicts.append(
            f"- {batch}×{tokens} tokens: the fused head's peak is {memory:.2f}× the own loss's "
            f"({(own['peak_rss'] - fused['peak_rss']) / 1e9:.2f} GB less), a product in a solve {speed:.2f}× its time: "
            f"**{'pays' if pays else 'does not pay'}** (pays: peak ≤ {PAYS_MEMORY}× and time ≤ {PAYS_TIME}×). "
            f'`fused_head="auto"` reads {own["logits per parameter"]:.2f} logits per parameter and chooses '
            f"{'the fused head' if own['auto'] == 'fused' else 'the logits'}: "
            f"{'agrees with' if agrees else 'DISAGREES with'} the verdict."
        )
    verdicts.append(
        f'- `fused_head="auto"` (fused from {FUSED_FROM} logits per parameter) '
        f"{'agrees with every verdict' if agreed else 'DISAGREES with a verdict'} above."
    )
    return rows, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child")
    parser.add_argument("--no-write", action="store_true")
    args = parse_pinned(parser)
    if args.child:
        child(json.loads(args.child))
        return
    runs = {}
    for batch, tokens in SIZES:
        for loss in LOSSES:
            key = f"{loss} {batch}x{tokens}"
            runs[key] = in_process({"loss": loss, "batch": batch, "tokens": tokens}, script=__file__)
            print(key, runs[key], flush=True)
            if "error" in runs[key]:
                raise SystemExit(f"{key}: {runs[key]['error']}")
    rows, verdicts = rows_and_verdicts(runs)
    header = [
        "tokens (B×T)",
        "loss",
        "peak RSS (GB)",
        "peak / own loss's",
        "first product (s, builds the graph)",
        "product in a solve (s)",
        "time / own loss's",
        "projection: relative difference",
        "norm: relative difference",
    ]
    lines = [
        "GPT-2 small (12 layers × 768, vocabulary 50,257; eager attention, float32, random weights), one batch of "
        'random tokens, exact Hessian products (`hvp_engine="reverse"`), the model\'s own loss against '
        "`curvlab.models.FusedHeadLoss(model)` (the same loss, its head and cross-entropy fused so that no "
        "tokens × vocabulary logits are kept). Each run a fresh process: peak RSS = its VmHWM (the model, the "
        "gradient's kept graph, a direction and its products); the first product builds the graph, the median of the "
        f"next {IN_SOLVE} is a product inside a solve. The products agree through a fixed random projection and "
        "their norms (float32 rounding; in float64 the two agree to 1e-10, tests/test_linear_cross_entropy.py).",
        "",
        markdown_table(header, rows),
        "",
        *verdicts,
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("bench_lm_head", "The fused language-model head: one product's memory and time", lines)
    Path(__file__).with_name("bench_lm_head.json").write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
