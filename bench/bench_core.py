"""Benchmark of the operator core: the cost of a product against a gradient, and λ_max to 1e-3 by
curvlab and by the other tools side by side, on one chunk of data and on four.

Run with ``make bench`` (installs the ``bench`` extra: PyHessian, hessian-eigenthings, curvlinops,
SciPy). Everything is measured in this one run on this machine; the Markdown tables are written to
``docs/benchmarks.md`` between the BEGIN/END markers of the core section.

Problems: (a) MLP 784-512-256-10 (ReLU) on 4,096 MNIST images, briefly trained; (b) a small causal
transformer LM (2 layers, d=64, 2 heads, context 32, 64 sequences = 2,048 tokens) on characters of
Python's ``argparse.py`` source. float32 models, as users run them; the reference λ_max comes from a
float64 copy with Lanczos at tol 1e-9. Each tool is given the setting it needs to reach 1e-3: the
smallest sufficient step count for hessian-eigenthings' fixed-step Lanczos, the loosest sufficient
tolerance for PyHessian's power iteration.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import math
import time

import torch
from common import interleaved_medians, markdown_table, parse_pinned, write_section
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import curvlab
from curvlab.losses import cross_entropy


# ----- problems ------------------------------------------------------------------------------------
def mnist(n: int, seed: int = 0):
    from curvlab.data import load_dataset

    data = load_dataset("mnist", subset=n, seed=seed)
    return data.x_train.reshape(n, -1).float(), data.y_train


def mlp(widths=(784, 512, 256, 10)) -> nn.Module:
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def mlp_problem():
    torch.manual_seed(0)
    x, y = mnist(4096)
    model = mlp()
    _train(model, x, y, steps=50, lr=0.1)
    return "MLP 784-512-256-10, 4,096 MNIST images", model, x, y


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


# ----- part 1: what a product costs ----------------------------------------------------------------
def product_costs(model, x, y, rounds):
    """A gradient and every kind of curvature product, timed round-robin (see common.interleaved_medians)."""
    params = list(model.parameters())
    directions = [torch.randn_like(p) for p in params]
    objective = curvlab.Objective(model, cross_entropy, (x, y))
    v = torch.randn(objective.dim)
    engines = {e: curvlab.Objective(model, cross_entropy, (x, y), hvp_engine=e) for e in ("reverse", "forward")}
    hessian, ggn, fisher = objective.hessian(), objective.ggn(), objective.fisher()
    hessian(v), ggn(v), fisher(v)  # keep the graphs: what every product inside a solve costs
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
        "HVP on its own, Objective.hvp (engine 'reverse')": lambda: engines["reverse"].hvp(v),
        "HVP on its own, engine 'forward'": lambda: engines["forward"].hvp(v),
        "HVP inside a solve (Hessian operator, kept graph)": lambda: hessian(v),
        "GGN product inside a solve (kept graph)": lambda: ggn(v),
        "empirical Fisher product inside a solve (kept graph)": lambda: fisher(v),
        "first product at a new point (builds the kept graph)": lambda: curvlab.HessianOperator(objective)(v),
    }
    with sdpa_kernel([SDPBackend.MATH]):
        return interleaved_medians(fns, rounds)


def compiled_ratio(model, x, y, rounds):
    """hvp_engine='compile' (torch.compile'd forward-over-reverse) against the eager engines, and
    what compiling costs once. Double backward cannot be compiled (AOTAutograd refuses it)."""
    objectives = {
        e: curvlab.Objective(model, cross_entropy, (x, y), hvp_engine=e) for e in ("reverse", "forward", "compile")
    }
    v = torch.randn(objectives["reverse"].dim)
    t0 = time.perf_counter()
    try:
        objectives["compile"].hvp(v)
    except Exception as err:  # noqa: BLE001 - reported, not hidden
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"}
    compile_seconds = time.perf_counter() - t0
    times = interleaved_medians({e: (lambda o=o: o.hvp(v)) for e, o in objectives.items()}, rounds)
    return {"compile_seconds": compile_seconds, **times}


# ----- part 2: λ_max solvers -----------------------------------------------------------------------
def float64_copy(model, x):
    """A float64 copy of the model in training mode (PyHessian leaves the bench model in eval mode), and x."""
    return copy.deepcopy(model).double().train(), (x.double() if x.is_floating_point() else x)


def reference_lambda(model, x, y) -> float:
    model64, x64 = float64_copy(model, x)
    res = curvlab.eigs(curvlab.Objective(model64, cross_entropy, (x64, y)), tol=1e-9, max_iter=300)
    assert res.converged, "reference Lanczos did not converge"
    return float(res.eigenvalues[0])


def batches(x, y, n_chunks):
    size = len(x) // n_chunks
    return [(x[i * size : (i + 1) * size], y[i * size : (i + 1) * size]) for i in range(n_chunks)]


def curvlab_run(model, x, y, n_chunks, **options):
    def run():
        obj = curvlab.Objective(model, cross_entropy, (x, y), batch_size=len(x) // n_chunks)
        res = curvlab.eigs(obj, **options)
        return float(res.eigenvalues[0]), res.n_matvecs

    return run


def pyhessian_run(model, x, y, n_chunks, tol):
    def run():
        import importlib

        ph = importlib.import_module("pyhessian.hessian")  # the package shadows the module with a class
        count = [0]
        originals = ph.hessian_vector_product, ph.hessian.dataloader_hv_product

        def counted(*args, **kwargs):
            count[0] += 1
            return originals[0](*args, **kwargs)

        def counted_loader(self, v):
            count[0] += 1
            return originals[1](self, v)

        ph.hessian_vector_product, ph.hessian.dataloader_hv_product = counted, counted_loader
        try:
            torch.manual_seed(0)
            if n_chunks == 1:
                h = ph.hessian(model, cross_entropy, data=(x, y), cuda=False)
            else:
                h = ph.hessian(model, cross_entropy, dataloader=batches(x, y, n_chunks), cuda=False)
            values, _ = h.eigenvalues(maxIter=100, tol=tol, top_n=1)
        finally:
            ph.hessian_vector_product, ph.hessian.dataloader_hv_product = originals
        return float(values[0]), count[0]

    return run


def eigenthings_run(model, x, y, n_chunks, algorithm, **kwargs):
    def run():
        import hessian_eigenthings as he

        op = he.HessianOperator(model, batches(x, y, n_chunks), he.supervised_loss(cross_entropy))
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


def curvlinops_run(model, x, y, n_chunks, tol):
    def run():
        import numpy as np
        from curvlinops import HessianLinearOperator
        from scipy.sparse.linalg import LinearOperator, eigsh

        flat = FlatLogits(model)  # curvlinops wants (N, C) logits and a loss module with .reduction
        data = [(a, b.reshape(-1)) for a, b in batches(x, y, n_chunks)]
        H = HessianLinearOperator(
            flat, nn.CrossEntropyLoss(), list(model.parameters()), data, check_deterministic=False
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


def smallest_sufficient(make_run, reference, settings):
    """The first setting (in order) whose λ_max is within 1e-3 of the reference, or None."""
    for setting in settings:
        value, _ = make_run(setting)()
        if abs(value - reference) <= 1e-3 * abs(reference):
            return setting
    return None


def solver_runs(model, x, y, n_chunks, reference):
    """Each entry: (tool, setting, callable returning (λ, n_hvp)); the anchors at the setting they need."""
    steps = smallest_sufficient(
        lambda m: eigenthings_run(model, x, y, n_chunks, "lanczos", max_iter=m, tol=1e-3), reference, range(2, 60)
    )
    fixed = smallest_sufficient(
        lambda m: curvlab_run(model, x, y, n_chunks, tol=1e-12, max_iter=m), reference, range(2, 60)
    )
    tol = smallest_sufficient(
        lambda t: pyhessian_run(model, x, y, n_chunks, t), reference, (1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
    )
    runs = [
        ("curvlab Lanczos", "defaults (tol 1e-3, bound='residual')", curvlab_run(model, x, y, n_chunks, tol=1e-3)),
        ("curvlab Lanczos", "tol 1e-3, bound='gap'", curvlab_run(model, x, y, n_chunks, tol=1e-3, bound="gap")),
        (
            "curvlab power iteration",
            "defaults (tol 1e-3)",
            curvlab_run(model, x, y, n_chunks, method="power", tol=1e-3),
        ),
        (
            "hessian-eigenthings 1.0.0a5 Lanczos",
            f"smallest sufficient step count: max_iter {steps}",
            eigenthings_run(model, x, y, n_chunks, "lanczos", max_iter=steps, tol=1e-3),
        ),
        ("hessian-eigenthings 1.0.0a5 power", "tol 1e-3", eigenthings_run(model, x, y, n_chunks, "power", tol=1e-3)),
        ("curvlinops + scipy eigsh", "tol 1e-3", curvlinops_run(model, x, y, n_chunks, 1e-3)),
    ]
    if tol is not None:
        runs.insert(
            3,
            (
                "PyHessian 0.1 power iteration",
                f"loosest sufficient tol {tol:g} (maxIter 100)",
                pyhessian_run(model, x, y, n_chunks, tol),
            ),
        )
    return runs, fixed


def solver_table(model, x, y, n_chunks, reference, repeats):
    with sdpa_kernel([SDPBackend.MATH]):  # other tools need this for attention; curvlab does it itself
        runs, fixed = solver_runs(model, x, y, n_chunks, reference)
        rows = []
        for tool, setting, run in runs:
            times, value, n_hvp = [], math.nan, 0
            run()  # untimed warm-up: allocator and caches, so the order of the rows does not matter
            for _ in range(repeats):
                t0 = time.perf_counter()
                value, n_hvp = run()
                times.append(time.perf_counter() - t0)
            error = abs(value - reference) / abs(reference)
            rows.append(
                [
                    tool,
                    setting,
                    sorted(times)[len(times) // 2],
                    n_hvp,
                    f"{value:.6g}",
                    error,
                    "yes" if error <= 1e-3 else "no",
                ]
            )
            print(
                f"  [{n_chunks} chunk(s)] {tool:36s} {setting:44s} {rows[-1][2]:8.3f}s {n_hvp:4d} HVPs  λ={value:.6g} "
                f" rel.err={error:.1e}",
                flush=True,
            )
    return rows, fixed


# ----- part 3: precision -------------------------------------------------------------------------------
def precision_rows(model, x, y, reference):
    """λ_max and one HVP under bf16 autocast (fp32 accumulation), against the float64 reference."""
    model64, x64 = float64_copy(model, x)
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(0))
    exact_hv = curvlab.Objective(model64, cross_entropy, (x64, y)).hvp(v.double())
    rows = []
    for label, ctx in (
        ("float32", contextlib.nullcontext),
        ("bf16 autocast", lambda: torch.autocast("cpu", dtype=torch.bfloat16)),
    ):
        obj = curvlab.Objective(model, cross_entropy, (x, y))
        with ctx():
            t0 = time.perf_counter()
            try:
                lam = float(curvlab.eigs(obj, tol=1e-3).eigenvalues[0])
                hv = obj.hvp(v)
            except FloatingPointError as err:
                rows.append([label, "—", "—", f"refused: {str(err)[:80]}"])
                continue
            seconds = time.perf_counter() - t0
        hv_err = float(torch.linalg.vector_norm(hv.double() - exact_hv) / torch.linalg.vector_norm(exact_hv))
        rows.append([label, abs(lam - reference) / abs(reference), hv_err, f"{seconds:.2f} s"])
    return rows


# ----- part 4: agreement with curvlinops ---------------------------------------------------------------
def curvlinops_agreement(model, x, y, per_example: bool) -> list[list]:
    """Relative difference of one product with curvlinops' operators, float64 copies, four chunks.
    ``per_example``: whether curvlinops' examples (rows of the flattened logits) are curvlab's (for a
    sequence model curvlab's example is a sequence, curvlinops' a token: their empirical Fishers differ)."""
    from curvlinops import EFLinearOperator, GGNLinearOperator, HessianLinearOperator

    model64, x64 = float64_copy(model, x)
    objective = curvlab.Objective(model64, cross_entropy, (x64, y), batch_size=len(x) // 4)
    data = [(a, b.reshape(-1)) for a, b in batches(x64, y, 4)]
    params = list(model64.parameters())
    v = torch.randn(objective.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pairs = [("Hessian", objective.hessian(), HessianLinearOperator), ("GGN", objective.ggn(), GGNLinearOperator)]
    if per_example:
        pairs.append(("empirical Fisher", objective.fisher(), EFLinearOperator))
    rows = []
    with sdpa_kernel([SDPBackend.MATH]):
        for name, ours, make in pairs:
            rows.append([name, relative_error(ours(v), curvlinops_product(make, model64, params, data, v))])
        rows += smooth_copy_check(model64, x64, y, data, params)
    return rows


def curvlinops_product(make, model64, params, data, v: torch.Tensor) -> torch.Tensor:
    """One product of the curvlinops operator class ``make`` (cross-entropy on flattened logits) with v."""
    import numpy as np

    operator = make(FlatLogits(model64), nn.CrossEntropyLoss(), params, data, check_deterministic=False).to_scipy()
    return torch.from_numpy(np.asarray(operator @ v.numpy()))


def relative_error(a: torch.Tensor, reference: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - reference) / torch.linalg.vector_norm(reference))


def smooth_copy_check(model64, x64, y, data, params) -> list[list]:
    """Both tools' Hessian products against central differences of the gradient, on the float64 copy with GELU in
    place of ReLU (with ReLU the loss has kinks at the differencing scale, so differences mean nothing)."""
    from curvlinops import HessianLinearOperator

    for module in model64.modules():
        if isinstance(module, nn.TransformerEncoderLayer):
            module.activation = nn.functional.gelu
        for child_name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, nn.GELU())
    objective = curvlab.Objective(model64, cross_entropy, (x64, y), batch_size=len(x64) // 4)
    v = torch.randn(objective.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with sdpa_kernel([SDPBackend.MATH]):
        point, h = objective.parameters_vector(), 1e-6
        differences = (objective.grad(at=point + h * v) - objective.grad(at=point - h * v)) / (2 * h)
        theirs = curvlinops_product(HessianLinearOperator, model64, params, data, v)
        return [
            [
                "Hessian, GELU copy: curvlab vs central differences (h = 1e-6)",
                relative_error(objective.hvp(v), differences),
            ],
            ["Hessian, GELU copy: curvlinops vs central differences (h = 1e-6)", relative_error(theirs, differences)],
        ]


# ----- report ------------------------------------------------------------------------------------------
def verdicts(costs, tables, compiled):
    grad = costs["gradient (plain loss.backward())"]
    inside = costs["HVP inside a solve (Hessian operator, kept graph)"] / grad
    alone = costs["HVP on its own, Objective.hvp (engine 'reverse')"] / grad
    floor = costs["floor: raw torch double backward, no curvlab"] / grad
    lines = [
        f"- HVP target (≤ 2.3× a gradient): a product inside a solve (the kept graph) costs {inside:.2f}× — "
        + ("**met**" if inside <= 2.3 else "**missed**")
        + f"; an HVP on its own (forward + double backward) {alone:.2f}× — "
        + ("**met**" if alone <= 2.3 else "**missed**")
        + f", against torch's own double backward with nothing around it at {floor:.2f}×"
        + (
            f"; with hvp_engine='compile' {compiled['compile'] / grad:.2f}× — "
            + ("**met**." if compiled["compile"] / grad <= 2.3 else "**missed**.")
            if "compile" in compiled
            else "."
        )
    ]
    for n_chunks, (rows, fixed) in tables.items():
        ours = next(r for r in rows if r[0] == "curvlab Lanczos" and "defaults" in r[1])
        gap = next(r for r in rows if r[0] == "curvlab Lanczos" and "gap" in r[1])
        anchors = [r for r in rows if not r[0].startswith("curvlab") and r[6] == "yes"]
        where = f"{n_chunks} chunk" + ("s" if n_chunks > 1 else "")
        lines.append(
            f"- HVP count ({where}): the smallest sufficient fixed step count is {fixed}; curvlab Lanczos took "
            f"{ours[3]} products with the default residual bound (target ≤ {fixed + 1 if fixed else '?'}: "
            + ("**met**" if fixed and ours[3] <= fixed + 1 else "**missed**")
            + f"), {gap[3]} with bound='gap' ("
            + ("met" if fixed and gap[3] <= fixed + 1 else "missed")
            + ")."
        )
        if anchors:
            best = min(anchors, key=lambda r: r[2])
            for label, r in (("default", ours), ("bound='gap'", gap)):
                ratio = r[2] / best[2]
                lines.append(
                    f"- λ_max target ({where}, {label}): {r[2]:.3f} s vs the fastest anchor reaching 1e-3, {best[0]} "
                    f"({best[1]}), {best[2]:.3f} s = {ratio:.2f}× (target ≤ 0.75×: "
                    + ("**met**" if ratio <= 0.75 else "**missed**")
                    + ")."
                )
        ph = next((r for r in rows if r[0].startswith("PyHessian")), None)
        if ph is not None:
            ratio = ours[2] / ph[2]
            lines.append(
                f"- Against PyHessian at the tolerance it needs ({where}): {ratio:.2f}× (target ≤ 0.5×: "
                + ("**met**" if ratio <= 0.5 else "**missed**")
                + ")."
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per solver run (median)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = parse_pinned(parser)
    sections = []
    for make in (mlp_problem, lm_problem):
        name, model, x, y = make()
        n_params = sum(p.numel() for p in model.parameters())
        print(f"\n== {name} ({n_params:,} parameters)", flush=True)
        costs = product_costs(model, x, y, max(2 * args.repeats, 9))
        grad = costs["gradient (plain loss.backward())"]
        for key, seconds in costs.items():
            print(f"  {key:55s} {seconds * 1e3:8.1f} ms  {seconds / grad:5.2f}× gradient", flush=True)
        compiled = compiled_ratio(model, x, y, max(2 * args.repeats, 9))
        print(f"  torch.compile: {compiled}", flush=True)
        reference = reference_lambda(model, x, y)
        tables = {n: solver_table(model, x, y, n, reference, args.repeats) for n in (1, 4)}
        precision = precision_rows(model, x, y, reference)
        agreement = curvlinops_agreement(model, x, y, per_example=name.startswith("MLP"))
        print("  curvlinops agreement:", agreement, flush=True)
        for row in precision:
            print("  precision:", row, flush=True)
        if "error" in compiled:
            compile_line = f"torch.compile of the forward-over-reverse HVP failed here: {compiled['error']}."
        else:
            compile_line = (
                f"`hvp_engine='compile'` (torch.compile'd forward-over-reverse): {compiled['compile'] * 1e3:.1f} ms "
                "per HVP "
                f"= {compiled['compile'] / compiled['forward']:.2f}× the eager forward-over-reverse engine, "
                f"{compiled['compile'] / compiled['reverse']:.2f}× the default double backward, "
                f"**{compiled['compile'] / grad:.2f}× a gradient**; compiling took {compiled['compile_seconds']:.1f} "
                "s once "
                "(again for each new chunk shape). Double backward cannot be compiled "
                "(AOTAutograd: 'does not currently support double backward')."
            )
        sections += [
            f"### {name} — {n_params:,} parameters",
            "",
            markdown_table(["product", "time (ms)", "× gradient"], [[k, v * 1e3, v / grad] for k, v in costs.items()]),
            "",
            compile_line,
            "",
            f"λ_max to 1e-3 relative; reference λ_max = {reference:.6g} (float64 copy, Lanczos tol 1e-9). "
            f"Times are medians of {args.repeats} runs after one untimed warm-up run, and include building each tool's "
            "operator (and curvlab's kept graphs).",
            "",
        ]
        for n_chunks, (rows, _) in tables.items():
            sections += [
                f"**{n_chunks} chunk{'s' if n_chunks > 1 else ''} of {len(x) // n_chunks:,} examples**",
                "",
                markdown_table(["tool", "setting", "time (s)", "HVPs", "λ_max", "rel. error", "≤ 1e-3"], rows),
                "",
            ]
        sections += [
            *verdicts(costs, tables, compiled),
            "",
            "Precision (relative errors against the float64 model; bf16 autocast with float32 parameters and "
            "accumulation):",
            "",
            markdown_table(["run in", "λ_max rel. error", "HVP rel. error", "time (λ_max + HVP)"], precision),
            "",
            "Agreement with curvlinops' operators (float64 copies, four chunks, one product with a random vector; "
            "for the LM curvlinops' example is a token and curvlab's a sequence, so their empirical Fishers differ "
            "by definition and are not compared; rows without 'vs' are curvlab against curvlinops):",
            "",
            markdown_table(["product", "relative difference"], agreement),
            "",
        ]
    if not args.no_write:
        write_section("bench_core", "Operator core: product costs and λ_max solvers", sections)
        print("\nwrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
