"""Error of the finite-difference Hessian-vector product (hvp_engine="finite_difference") and of λ1 solved on it.

For each problem and parameter dtype (float64, float32, bfloat16), three random directions v: the relative error
‖Hv − ref‖/‖ref‖ of the finite-difference product and, beside it, of the exact double-backward product in the
same dtype (the floor that dtype allows), against double backward on a float64 copy of the model. Then λ1 from
Lanczos to tol 1e-5 on finite-difference products, against the float64 exact λ1. Problems: the core bench's
MNIST MLP (ReLU) and transformer LM (ReLU feed-forward), and a small GPT-2 (GELU, a Hugging Face model computing
its own loss). Writes the "Finite-difference products" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
from bench_core import lm_problem, mlp_problem
from common import markdown_table, parse_pinned, write_section

import curvlab
from curvlab.losses import cross_entropy

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}


def gpt2_problem():
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=512, n_positions=64, n_embd=64, n_layer=2, n_head=2, attn_implementation="eager"
    )
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, 512, (8, 64), generator=torch.Generator().manual_seed(1))
    return "GPT-2 2×64 (GELU), 8×64 tokens, own loss", model, {"input_ids": ids, "labels": ids}, None


def objective(model, x, y, dtype, engine):
    model = copy.deepcopy(model).to(dtype)
    if y is None:  # a model computing its own loss from a dict batch
        return curvlab.Objective(model, None, [x], hvp_engine=engine)
    x = x.to(dtype) if x.is_floating_point() else x
    return curvlab.Objective(model, cross_entropy, (x, y), batch_size=1024, hvp_engine=engine)


def rel(a, b) -> float:
    a, b = a.double(), b.double()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def measure(name, model, x, y) -> list[list[object]]:
    truth = objective(model, x, y, torch.float64, "reverse")
    gen = torch.Generator().manual_seed(0)
    vs = [torch.randn(truth.dim, generator=gen, dtype=torch.float64) for _ in range(3)]
    refs = [truth.hvp(v) for v in vs]
    lam = float(curvlab.eigs(truth.hessian(), tol=1e-8).eigenvalues[0])
    rows = []
    for label, dtype in DTYPES.items():
        exact, fd = (objective(model, x, y, dtype, e) for e in ("reverse", "finite_difference"))
        exact_err = statistics.median(rel(exact.hvp(v.to(dtype)), r) for v, r in zip(vs, refs))
        fd_err = statistics.median(rel(fd.hvp(v.to(dtype)), r) for v, r in zip(vs, refs))
        solve = curvlab.eigs(fd.hessian(), tol=1e-5, vectors=False, max_iter=200)
        lam_fd = float(solve.eigenvalues[0])
        rows.append(
            [
                name,
                label,
                f"{exact_err:.1e}",
                f"{fd_err:.1e}",
                f"{lam:.6g}",
                f"{lam_fd:.6g}",
                f"{abs(lam_fd - lam) / abs(lam):.1e}",
                f"{solve.n_matvecs}{'' if solve.converged else ' (not converged)'}",
            ]
        )
        print(rows[-1], flush=True)
    return rows


def step_factor_sweep(name, model, x, y) -> list[list[object]]:
    """λ1's error in float32 against the constant c of the step rule (curvlab.core.hvp.STEP_FACTOR)."""
    from curvlab.core import hvp

    truth = objective(model, x, y, torch.float64, "reverse")
    lam = float(curvlab.eigs(truth.hessian(), tol=1e-8).eigenvalues[0])
    shipped, rows = hvp.STEP_FACTOR, []
    try:
        for factor in (1.0, 0.3, 0.1, 0.03):
            hvp.STEP_FACTOR = factor
            fd = objective(model, x, y, torch.float32, "finite_difference")
            value = float(curvlab.eigs(fd.hessian(), tol=1e-5, vectors=False, max_iter=200).eigenvalues[0])
            rows.append(
                [name, f"{factor:g}{' (shipped)' if factor == shipped else ''}", f"{abs(value - lam) / lam:.1e}"]
            )
            print(rows[-1], flush=True)
    finally:
        hvp.STEP_FACTOR = shipped
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true")
    args = parse_pinned(parser)
    rows = []
    for make in (mlp_problem, lm_problem, gpt2_problem):
        name, model, x, y = make()
        rows += measure(name, model, x, y)
    sweep = step_factor_sweep(*gpt2_problem())
    header = [
        "problem",
        "dtype",
        "exact product error",
        "finite-difference error",
        "λ1 (float64, exact)",
        "λ1 (finite differences)",
        "λ1 error",
        "products",
    ]
    f32 = {r[0]: float(r[6]) for r in rows if r[1] == "float32"}
    verdict = ", ".join(f"{name}: {err:.1e} ({'met' if err <= 1e-3 else 'MISSED'})" for name, err in f32.items())
    lines = [
        "Relative errors against double backward on a float64 copy of the model (median of 3 random directions); "
        "λ1 from `curvlab.eigs(objective.hessian(), tol=1e-5)` with finite-difference products in that dtype (a "
        "tolerance well below the error measured, so that what remains is the products' error). The MLP and the "
        "transformer LM have ReLU activations: the finite-difference steps cross their kinks (docs/core.md).",
        "",
        markdown_table(header, rows),
        "",
        f"Target: finite-difference λ1 within 1e-3 of the exact one in float32 — {verdict}.",
        "",
        "The constant c of the step ε = c·u^(1/3)·max(1, rms(x))/‖v‖, against λ1's error in float32 (GPT-2):",
        "",
        markdown_table(["problem", "c", "λ1 error"], sweep),
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("bench_finite_difference", "Finite-difference products: error by dtype", lines)


if __name__ == "__main__":
    main()
