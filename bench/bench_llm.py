"""λ1 of Hugging Face GPT-2 models on this machine: curvlab's default call against hessian-eigenthings v1.

For each GPT-2 configuration (``GPT2Config(n_layer=L)``, randomly initialised, eager attention, one batch of 2×128
random tokens, the model's own loss), every run below is a fresh process, so that its peak resident memory (Linux's
VmHWM) is its own:

- ``reference``: curvlab, exact products, tol 1e-5 (λ1 within 1e-5 of the truth by the residual bound).
- ``curvlab default``: ``curvlab.eigs(curvlab.Objective(model, None, [batch]).hessian())``, nothing else said.
- ``curvlab fd``: the same with ``hvp_engine="finite_difference"``.
- ``one product``: one curvature product of the engine the default call chose, alone (the memory the default
  call is held to: at most 1.1× it on GPT-2 small; on GPT-2 medium at most the reference's).
- ``he scan``: hessian-eigenthings' Lanczos tridiagonal (its ``lanczos_tridiagonal``, the float32 basis it uses below
  51 steps) run to ``--he-steps``; the top Ritz value of every leading block is the answer ``lanczos(max_iter=m)``
  gives, so one run shows the smallest step count m whose answer is within 1e-3 of the reference, and the time it
  took to get there.
- ``he m``: ``hessian_eigenthings.lanczos(max_iter=m)`` at that smallest sufficient m, alone (its time and memory),
  with exact (autograd) and with finite-difference products.

Writes the "Language models" section of docs/benchmarks.md. ``--layers 2 12`` chooses the configurations.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import markdown_table, parse_pinned, write_section

TOKENS = (2, 128)
TARGET_TOL = 1e-3
TARGET_RSS = 6e9
PRODUCT_RATIO = 1.1  # the default call's peak against one product's, on GPT-2 small (issue 34)


PRESETS = {  # GPT-2's published sizes: n_embd, n_layer, n_head
    "small": (768, 12, 12),
    "medium": (1024, 24, 16),
    "large": (1280, 36, 20),
    "xl": (1600, 48, 25),
}


def model_and_batch(layers: int | str, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """GPT-2 with ``layers`` layers of GPT-2 small's width, or a preset name ("medium", "xl"...)."""
    import transformers

    torch.manual_seed(0)
    width, n_layer, heads = PRESETS[layers] if isinstance(layers, str) else (768, layers, 12)
    config = transformers.GPT2Config(n_embd=width, n_layer=n_layer, n_head=heads, attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(config).to(dtype=dtype, device=device)
    ids = torch.randint(0, config.vocab_size, TOKENS, generator=torch.Generator().manual_seed(1)).to(device)
    return model, {"input_ids": ids, "labels": ids}


def as_layers(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def run_curvlab(layers: int | str, tol: float, engine: str, device: str = "cpu") -> dict:
    import curvlab

    model, batch = model_and_batch(layers, device=device)
    t0 = time.perf_counter()
    objective = curvlab.Objective(model, None, [batch], hvp_engine=engine)
    if tol == TARGET_TOL:
        result = curvlab.eigs(objective.hessian())  # the default call
    else:
        result = curvlab.eigs(objective.hessian(), tol=tol, vectors=False, max_iter=300)
    seconds = time.perf_counter() - t0
    return {
        "value": float(result.eigenvalues[0]),
        "residual": float(result.residuals[0]),
        "products": result.n_matvecs,
        "gradients": objective.counts["grad"],
        "seconds": seconds,
        "basis": result.basis,
        "engine": objective.hvp_engine,
        "converged": result.converged,
        "dim": objective.dim,
    }


def run_product(layers: int | str, engine: str = "reverse", device: str = "cpu") -> dict:
    """One curvature product of ``engine`` (the one "auto" chooses on these models), alone in its process: the
    memory the default call is measured against (its graph built, a float32 direction and the product)."""
    import curvlab

    model, batch = model_and_batch(layers, device=device)
    objective = curvlab.Objective(model, None, [batch], hvp_engine=engine)
    v = torch.randn(objective.dim, generator=torch.Generator().manual_seed(0)).to(device)
    t0 = time.perf_counter()
    objective.hessian().matvec(v)
    return {"products": 1, "seconds": time.perf_counter() - t0, "engine": engine, "dim": objective.dim}


def _he_operator(model, batch, method: str):
    import hessian_eigenthings as he

    model.eval()  # dropout off, as curvlab measures by default (GPT2Config has dropout 0.1: a different loss per call)

    op = he.HessianOperator(model, [batch], he.hf_lm_loss(), method=method)
    times = []
    original = op.matvec

    def counted(v):
        out = original(v)
        times.append(time.perf_counter())
        return out

    op.matvec = counted
    return op, times


def run_he_scan(layers: int, steps: int) -> dict:
    import hessian_eigenthings as he

    model, batch = model_and_batch(layers)
    op, times = _he_operator(model, batch, "autograd")
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    v0 = torch.randn(op.size, dtype=op.dtype, generator=gen)
    td = he.lanczos_tridiagonal(op, v0, steps, reorthogonalize=True)
    alphas = [float(a) for a in td.alphas]
    betas = [float(b) for b in td.betas]
    values = []
    for m in range(1, len(alphas) + 1):
        t = torch.diag(torch.tensor(alphas[:m], dtype=torch.float64))
        if m > 1:
            off = torch.tensor(betas[: m - 1], dtype=torch.float64)
            t += torch.diag(off, 1) + torch.diag(off, -1)
        values.append(float(torch.linalg.eigvalsh(t)[-1]))
    return {"values": values, "seconds_at": [t - t0 for t in times]}


def run_he(layers: int, steps: int, method: str) -> dict:
    import hessian_eigenthings as he

    model, batch = model_and_batch(layers)
    op, times = _he_operator(model, batch, method)
    t0 = time.perf_counter()
    result = he.lanczos(op, k=1, max_iter=steps, which="LA", seed=0)
    return {"value": float(result.eigenvalues[0]), "products": len(times), "seconds": time.perf_counter() - t0}


def child(task: dict) -> None:
    kind = task.pop("kind")
    runners = {"curvlab": run_curvlab, "product": run_product, "he_scan": run_he_scan, "he": run_he}
    out = runners[kind](**task)
    out["peak_rss"] = peak_rss()
    if torch.cuda.is_available():
        out["peak_gpu"] = torch.cuda.max_memory_allocated()
    print("RESULT " + json.dumps(out), flush=True)


def in_process(task: dict, timeout: float = 3600, script: str = __file__) -> dict:
    """``task`` run by ``script --child`` in a fresh process (its peak memory its own): the result it prints."""
    command = [sys.executable, script, "--child", json.dumps(task)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"not finished in {timeout:.0f} s"}
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        tail = (done.stderr or done.stdout)[-400:].strip().replace("\n", " ")
        return {"error": f"exit {done.returncode}: {tail}"}
    return json.loads(line.removeprefix("RESULT "))


class Finished:
    """Runs already measured, kept in ``bench/<section>.runs.json`` as each finishes, so that a bench stopped part
    way (a GPT-2 medium pass takes an hour) starts again where it stopped. Failed runs are not kept."""

    def __init__(self, path: Path, fresh: bool):
        self.path = path
        self.runs = {} if fresh or not path.exists() else json.loads(path.read_text())

    def run(self, key: str, task: dict) -> dict:
        if key in self.runs:
            print(f"  {key}: measured before ({self.path.name})", flush=True)
            return self.runs[key]
        out = in_process(task)
        if "error" not in out:
            self.runs[key] = out
            self.path.write_text(json.dumps(self.runs, indent=1))
        return out


def bench(layers: int | str, he_steps: int, finished: Finished, device: str = "cpu", compare: bool = True) -> dict:
    print(f"GPT-2, {layers} layers", flush=True)
    mine = {"kind": "curvlab", "layers": layers, "device": device}

    def run(name: str, task: dict) -> dict:
        out = finished.run(f"{layers}|{device}|{name}", task)
        print(f"  {name}", out, flush=True)
        return out

    runs = {"reference": run("reference", {**mine, "tol": 1e-5, "engine": "reverse"})}
    runs["curvlab default"] = run("curvlab default", {**mine, "tol": TARGET_TOL, "engine": "auto"})
    runs["curvlab fd"] = run("curvlab fd", {**mine, "tol": TARGET_TOL, "engine": "finite_difference"})
    engine = runs["curvlab default"].get("engine", "reverse")  # the engine "auto" chose: the product to compare with
    runs["one product"] = run("one product", {"kind": "product", "layers": layers, "device": device, "engine": engine})
    if not compare:
        runs["he scan"] = {"error": "not run (--no-compare)"}
        return runs
    scan = run("he scan", {"kind": "he_scan", "layers": layers, "steps": he_steps})
    runs["he scan"] = scan
    reference = runs["reference"]
    if "error" not in scan and "error" not in reference:
        lam = reference["value"]
        good = [m for m, v in enumerate(scan["values"], 1) if abs(v - lam) <= TARGET_TOL * abs(lam)]
        scan["sufficient"] = good[0] if good else None
        if good:
            for method in ("autograd", "finite_difference"):
                task = {"kind": "he", "layers": layers, "steps": good[0], "method": method}
                runs[f"he {method}"] = run(f"he {method} m={good[0]}", task)
    return runs


def rows_of(layers: int, runs: dict) -> list[list[object]]:
    lam = runs["reference"].get("value")
    rows = []
    for name, run in runs.items():
        if name == "he scan":
            continue
        if "error" in run:
            rows.append([layers, name, "failed: " + run["error"][:120], "", "", "", ""])
            continue
        if name == "one product":
            rows.append([layers, f"one product ({run['engine']})", "", "", 1, run["seconds"], run["peak_rss"] / 1e9])
            continue
        error = abs(run["value"] - lam) / abs(lam) if lam else float("nan")
        products = run["products"]
        if name.startswith("he"):
            products = f"{products} (m = {runs['he scan'].get('sufficient')})"
        rows.append(
            [layers, name, f"{run['value']:.6g}", f"{error:.1e}", products, run["seconds"], run["peak_rss"] / 1e9]
        )
    scan = runs["he scan"]
    if "error" not in scan and lam:
        m = scan.get("sufficient")
        values = scan["values"]
        errors = ", ".join(f"{m_}: {abs(v - lam) / abs(lam):.1e}" for m_, v in enumerate(values, 1) if m_ % 4 == 0)
        rows.append([layers, "he scan (m: relative error)", errors, "", len(values), scan["seconds_at"][-1], ""])
        if m is None:
            rows.append([layers, "he: no step count reached 1e-3", "", "", "", "", ""])
    return rows


def verdicts(all_runs: dict[int, dict]) -> list[str]:
    lines = []
    for layers, runs in all_runs.items():
        default, lam = runs.get("curvlab default", {}), runs["reference"].get("value")
        if "error" in default or not lam:
            lines.append(f"- {layers} layers: the default call failed or has no reference: {default.get('error')}")
            continue
        error = abs(default["value"] - lam) / abs(lam)
        he = runs.get("he autograd")
        rss = default["peak_rss"]
        memory = f"peak RSS {rss / 1e9:.2f} GB"
        if layers in (12, "small"):  # the memory target is GPT-2 small's
            memory += f" ({'met' if rss <= TARGET_RSS else 'MISSED'} ≤ 6 GB)"
        product = runs.get("one product", {})
        if "error" not in product and "peak_rss" in product:
            ratio = rss / product["peak_rss"]
            memory += f", {ratio:.2f}× the peak of one {product['engine']} product"
            if layers in (12, "small"):  # issue 34: ≤ 1.1× one product on GPT-2 small
                memory += f" ({'met' if ratio <= PRODUCT_RATIO else 'MISSED'} ≤ {PRODUCT_RATIO}×)"
        reference = runs["reference"]
        if layers == "medium" and "peak_rss" in reference:  # issue 34: ≤ the plain exact Lanczos reference
            met = rss <= reference["peak_rss"]
            memory += f", against the reference's {reference['peak_rss'] / 1e9:.2f} GB ({'met' if met else 'MISSED'} ≤)"
        parts = [f"λ1 within {error:.1e} of the reference ({'met' if error <= TARGET_TOL else 'MISSED'} 1e-3)", memory]
        if he and "error" not in he:
            ratio = default["seconds"] / he["seconds"]
            parts.append(
                f"{default['seconds']:.0f} s = {ratio:.2f}× hessian-eigenthings' {he['seconds']:.0f} s at its smallest "
                f"sufficient step count ({'met' if ratio < 1 else 'MISSED'} < 1×)"
            )
        elif "not run" in runs.get("he scan", {}).get("error", ""):
            basis = 4 * default["dim"] * 30 / 1e9  # its float32 Lanczos basis at 30 steps
            parts.append(f"hessian-eigenthings not run (--no-compare; its 30-step float32 basis is {basis:.0f} GB)")
        else:
            parts.append("hessian-eigenthings reached 1e-3 at no step count scanned")
        fd = runs.get("curvlab fd", {})
        if "error" not in fd:
            fd_error = abs(fd["value"] - lam) / abs(lam)
            parts.append(
                f"finite-difference λ1 within {fd_error:.1e} ({'met' if fd_error <= TARGET_TOL else 'MISSED'})"
            )
        lines.append(f"- {layers} layers, default call: " + "; ".join(parts) + ".")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=as_layers, nargs="+", default=[2, 12], help="layer counts or presets")
    parser.add_argument("--he-steps", type=int, default=30)
    parser.add_argument("--device", default="cpu", help="cuda: curvlab's runs on the GPU (bench_device)")
    parser.add_argument("--no-compare", action="store_true", help="skip hessian-eigenthings")
    parser.add_argument("--child")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--section", default="bench_llm", help="the docs/benchmarks.md section to write")
    parser.add_argument("--fresh", action="store_true", help="measure again the runs bench/SECTION.runs.json holds")
    args = parse_pinned(parser)
    if args.child:
        child(json.loads(args.child))
        return
    finished = Finished(Path(__file__).with_name(f"{args.section}.runs.json"), args.fresh)
    all_runs = {
        layers: bench(layers, args.he_steps, finished, args.device, not args.no_compare) for layers in args.layers
    }
    header = ["layers", "run", "λ1", "error vs reference", "products", "seconds", "peak RSS (GB)"]
    rows = [row for layers, runs in all_runs.items() for row in rows_of(layers, runs)]
    lines = [
        f"GPT-2 (`GPT2LMHeadModel(GPT2Config(n_layer=L))` at GPT-2 small's width, or a published size: medium is "
        f"24 layers × 1024 wide, 16 heads, 355M parameters; eager attention, float32), one batch of "
        f"{TOKENS[0]}×{TOKENS[1]} random tokens, the model's own loss; each run a fresh process (peak RSS = its "
        "VmHWM, the model included). Target: the default call's λ1 within 1e-3 of the reference, at ≤ 6 GB, in "
        "less time than hessian-eigenthings at the smallest step count that reaches the same accuracy; its peak at "
        f"most {PRODUCT_RATIO}× that of *one product* (one curvature product of the engine it chose, alone in a "
        "process: the graph built, a float32 direction and the product) on GPT-2 small, and on GPT-2 medium at most "
        "the reference's (issue 34). The reference is an exact Lanczos solve to 1e-5 without eigenvectors.",
        "",
        markdown_table(header, rows),
        "",
        *verdicts(all_runs),
    ]
    print("\n".join(lines))
    if not args.no_write:
        sizes = ", ".join(str(layers) for layers in args.layers)
        command = "bench/bench_llm.py " + " ".join(sys.argv[1:])
        write_section(args.section, f"Language models: λ1 of GPT-2 ({sizes}) on one machine", lines, command.strip())
    Path(__file__).with_name(f"{args.section}.json").write_text(json.dumps(all_runs, indent=1))


if __name__ == "__main__":
    main()
