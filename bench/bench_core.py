"""Benchmark of the operator core (issue 2): gradient vs HVP cost, and λ_max solvers side by side.

Run with ``make bench`` (installs the ``bench`` extra: PyHessian, hessian-eigenthings, curvlinops,
SciPy). Everything is measured in this one run on this machine; the Markdown tables are written to
``docs/benchmarks.md`` between the BEGIN/END markers of the core section.

Problems: (a) MLP 784-256-256-10 (ReLU) on 2,048 examples (sklearn digits upsampled to 28×28,
so the Hessian is that of a real classification problem); (b) a small causal transformer LM
(2 layers, d=64, 2 heads, context 32, 64 sequences = 2,048 tokens) on characters of Python's
``argparse.py`` source. float32 models, as users run them; the reference λ_max comes from a float64
copy with Lanczos at tol 1e-9.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import curvlab
from curvlab.losses import cross_entropy

from common import interleaved_medians, markdown_table, write_section



# ----- problems ------------------------------------------------------------------------------------
def mlp_problem():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    digits = load_digits()
    images = torch.tensor(digits.images[:2048], dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False).reshape(-1, 784)
    y = torch.tensor(digits.target[:2048])
    x, y = torch.cat([x, x])[:2048], torch.cat([y, y])[:2048]  # digits has 1,797 images
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    _train(model, x, y, steps=50, lr=0.1)
    return "MLP 784-256-256-10, 2,048 ex.", model, x, y


class TinyLM(nn.Module):
    def __init__(self, vocab: int, d: int = 64, layers: int = 2, heads: int = 2, context: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(context, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context), persistent=False)

    def forward(self, tokens):
        h = self.embed(tokens) + self.pos[: tokens.shape[1]]
        return self.head(self.blocks(h, mask=self.mask[: tokens.shape[1], : tokens.shape[1]], is_causal=True))


def lm_problem():
    torch.manual_seed(0)
    text = inspect.getsource(argparse)
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    context, n_seq = 32, 64
    starts = torch.arange(n_seq) * (len(ids) // n_seq)
    x = torch.stack([ids[s : s + context] for s in starts])
    y = torch.stack([ids[s + 1 : s + context + 1] for s in starts])
    model = TinyLM(len(chars), context=context)
    with sdpa_kernel([SDPBackend.MATH]):
        _train(model, x, y, steps=30, lr=1e-3, adam=True)
    return f"Transformer LM 2×64, 2 heads, {n_seq}×{context} tokens", model, x, y


class FlatLogits(nn.Module):
    """(B, T, V) language-model logits as (B·T, V), for tools that expect classification outputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out.reshape(-1, out.shape[-1])


def _train(model, x, y, steps, lr, adam=False):
    opt = torch.optim.Adam(model.parameters(), lr=lr) if adam else torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        cross_entropy(model(x), y).backward()
        opt.step()


# ----- part 1: gradient vs HVP -----------------------------------------------------------------------
def hvp_costs(model, x, y, rounds):
    """Gradient and HVP variants, timed round-robin (see common.interleaved_medians)."""
    params = list(model.parameters())
    directions = [torch.randn_like(p) for p in params]
    objective = curvlab.Objective(model, cross_entropy, (x, y))
    v = torch.randn(objective.dim)
    engines = {e: curvlab.Objective(model, cross_entropy, (x, y), hvp_engine=e) for e in ("reverse", "forward")}
    operator = objective.hessian(cache=True)
    with sdpa_kernel([SDPBackend.MATH]):
        kept = torch.autograd.grad(cross_entropy(model(x), y), params, create_graph=True)

    def plain_gradient():
        model.zero_grad(set_to_none=True)
        cross_entropy(model(x), y).backward()

    def raw_double_backward():
        grads = torch.autograd.grad(cross_entropy(model(x), y), params, create_graph=True)
        torch.autograd.grad(grads, params, grad_outputs=directions)

    fns = {
        "gradient (plain loss.backward())": plain_gradient,
        "floor: raw torch double backward, no curvlab": raw_double_backward,
        "floor: raw torch product on a kept graph": lambda: torch.autograd.grad(
            kept, params, grad_outputs=directions, retain_graph=True
        ),
        "gradient (Objective.grad)": objective.grad,
        "HVP, engine='reverse'": lambda: engines["reverse"].hvp(v),
        "HVP, engine='forward'": lambda: engines["forward"].hvp(v),
        "HVP, cached Hessian operator (inside eigs)": lambda: operator(v),
    }
    with sdpa_kernel([SDPBackend.MATH]):
        return interleaved_medians(fns, rounds)


# ----- part 2: λ_max solvers -----------------------------------------------------------------------
def reference_lambda(model, x, y) -> float:
    model64 = copy.deepcopy(model).double()
    x64 = x.double() if x.is_floating_point() else x
    res = curvlab.eigs(curvlab.Objective(model64, cross_entropy, (x64, y)), tol=1e-9, max_iter=300)
    assert res.converged, "reference Lanczos did not converge"
    return float(res.eigenvalues[0])


def solver_runs(model, x, y):
    """Each entry: (tool, setting, callable returning (λ, n_hvp))."""

    def curvlab_run(method, tol):
        def run():
            res = curvlab.eigs(curvlab.Objective(model, cross_entropy, (x, y)), method=method, tol=tol)
            return float(res.eigenvalues[0]), res.n_matvecs

        return run

    def pyhessian_run(tol):
        def run():
            import importlib

            ph = importlib.import_module("pyhessian.hessian")  # the package shadows the module with a class

            count = [0]
            original = ph.hessian_vector_product

            def counted(*args, **kwargs):
                count[0] += 1
                return original(*args, **kwargs)

            ph.hessian_vector_product = counted
            try:
                torch.manual_seed(0)
                h = ph.hessian(model, cross_entropy, data=(x, y), cuda=False)
                values, _ = h.eigenvalues(maxIter=100, tol=tol, top_n=1)
            finally:
                ph.hessian_vector_product = original
            return float(values[0]), count[0]

        return run

    def eigenthings_run(algorithm, **kwargs):
        def run():
            import hessian_eigenthings as he

            op = he.HessianOperator(model, [(x, y)], he.supervised_loss(cross_entropy))
            count = [0]
            original = op.matvec

            def counted(v):
                count[0] += 1
                return original(v)

            op.matvec = counted
            fn = he.lanczos if algorithm == "lanczos" else he.deflated_power_iteration
            res = fn(op, k=1, seed=0, **({"which": "LA"} if algorithm == "lanczos" else {}), **kwargs)
            return float(res.eigenvalues[0]), count[0]

        return run

    def curvlinops_run(tol):
        def run():
            import numpy as np
            from curvlinops import HessianLinearOperator
            from scipy.sparse.linalg import LinearOperator, eigsh

            flat = FlatLogits(model)  # curvlinops wants (N, C) logits and a loss module with .reduction
            H = HessianLinearOperator(
                flat, nn.CrossEntropyLoss(), list(model.parameters()), [(x, y.reshape(-1))], check_deterministic=False
            ).to_scipy()
            count = [0]

            def matvec(v):
                count[0] += 1
                return H @ v

            counted = LinearOperator(H.shape, matvec=matvec, dtype=H.dtype)
            v0 = np.random.default_rng(0).standard_normal(H.shape[0])
            values = eigsh(counted, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
            return float(values[0]), count[0]

        return run

    return [
        ("curvlab Lanczos", "defaults (tol 1e-3)", curvlab_run("lanczos", 1e-3)),
        ("curvlab power iteration", "defaults (tol 1e-3)", curvlab_run("power", 1e-3)),
        ("PyHessian 0.1 power iteration", "defaults = tol 1e-3 (maxIter 100)", pyhessian_run(1e-3)),
        ("PyHessian 0.1 power iteration", "tol 1e-4 (maxIter 100)", pyhessian_run(1e-4)),
        ("hessian-eigenthings 1.0.0a5 Lanczos", "defaults (k=1 → 2 steps)", eigenthings_run("lanczos")),
        ("hessian-eigenthings 1.0.0a5 Lanczos", "tol 1e-3 (steps fixed: tol only flags)", eigenthings_run("lanczos", tol=1e-3)),
        ("hessian-eigenthings 1.0.0a5 Lanczos", "tol 1e-3, max_iter 30", eigenthings_run("lanczos", tol=1e-3, max_iter=30)),
        ("hessian-eigenthings 1.0.0a5 power", "defaults (tol 1e-4)", eigenthings_run("power")),
        ("hessian-eigenthings 1.0.0a5 power", "tol 1e-3", eigenthings_run("power", tol=1e-3)),
        ("curvlinops + scipy eigsh", "defaults (tol 0)", curvlinops_run(0)),
        ("curvlinops + scipy eigsh", "tol 1e-3", curvlinops_run(1e-3)),
    ]


def solver_table(model, x, y, repeats):
    with sdpa_kernel([SDPBackend.MATH]):  # other tools need this for attention; curvlab does it itself
        reference = reference_lambda(model, x, y)
        rows = []
        for tool, setting, run in solver_runs(model, x, y):
            times, value, n_hvp = [], math.nan, 0
            run()  # untimed warm-up: allocator and caches, so the order of the rows does not matter
            for _ in range(repeats):
                t0 = time.perf_counter()
                value, n_hvp = run()
                times.append(time.perf_counter() - t0)
            error = abs(value - reference) / abs(reference)
            rows.append([tool, setting, sorted(times)[len(times) // 2], n_hvp, f"{value:.6g}", error, "yes" if error <= 1e-3 else "no"])
            print(f"  {tool:38s} {setting:40s} {rows[-1][2]:8.3f}s {n_hvp:4d} HVPs  λ={value:.6g}  rel.err={error:.1e}", flush=True)
    return reference, rows


# ----- report ------------------------------------------------------------------------------------------
def verdicts(name, costs, rows):
    grad = costs["gradient (plain loss.backward())"]
    lines = []
    ratio = costs["HVP, engine='reverse'"] / grad
    floor = costs["floor: raw torch double backward, no curvlab"] / grad
    if name.startswith("MLP"):
        lines.append(
            f"- HVP target (≤ 2.6× a gradient, MLP): default engine {ratio:.2f}× — "
            + ("**met**." if ratio <= 2.6 else f"**missed** by {ratio / 2.6 - 1:.0%}.")
            + f" torch's own double backward with nothing around it: {floor:.2f}×."
        )
    ours = next(r for r in rows if r[0] == "curvlab Lanczos")
    others = [r for r in rows if not r[0].startswith("curvlab") and r[6] == "yes"]
    if others:
        best = min(others, key=lambda r: r[2])
        speedup = best[2] / ours[2]
        lines.append(
            f"- λ_max target (≤ ½ the wall time of the fastest other tool reaching 1e-3): curvlab Lanczos "
            f"{ours[2]:.3f} s vs {best[0]} ({best[1]}) {best[2]:.3f} s = {speedup:.1f}× faster — "
            + ("**met**." if speedup >= 2 else "**missed** (needs 2×).")
            + f" HVPs: {ours[3]} vs {best[3]}."
        )
    else:
        lines.append("- No other tool reached 1e-3 relative accuracy on this problem.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per solver run (median)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    sections = []
    for make in (mlp_problem, lm_problem):
        name, model, x, y = make()
        n_params = sum(p.numel() for p in model.parameters())
        print(f"\n== {name} ({n_params:,} parameters)", flush=True)
        costs = hvp_costs(model, x, y, max(2 * args.repeats, 9))
        grad = costs["gradient (plain loss.backward())"]
        for key, seconds in costs.items():
            print(f"  {key:45s} {seconds * 1e3:8.1f} ms  {seconds / grad:5.2f}× gradient", flush=True)
        reference, rows = solver_table(model, x, y, args.repeats)
        sections += [
            f"### {name} — {n_params:,} parameters",
            "",
            markdown_table(["quantity", "time (ms)", "× gradient"], [[k, v * 1e3, v / grad] for k, v in costs.items()]),
            "",
            f"λ_max to 1e-3 relative; reference λ_max = {reference:.6g} (float64 copy, Lanczos tol 1e-9). "
            f"Times are medians of {args.repeats} runs after one untimed warm-up run, and include building each tool's operator.",
            "",
            markdown_table(["tool", "setting", "time (s)", "HVPs", "λ_max", "rel. error", "≤ 1e-3"], rows),
            "",
            *verdicts(name, costs, rows),
            "",
        ]
    if not args.no_write:
        write_section("bench_core", "Operator core: HVP cost and λ_max solvers", sections)
        print("\nwrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
