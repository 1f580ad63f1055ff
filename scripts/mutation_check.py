"""Mutations of the size each numerical claim rules out, each applied to a copy of the source, each against the tests
that back the claim: a mutation the tests still pass *survives*, and the claim is stricter than its tests.

    python scripts/mutation_check.py            # every mutation (several minutes); writes docs/mutation-check.md
    python scripts/mutation_check.py NAME ...   # some of them
    make mutation-check

Exits 1 when any mutation survives. Each mutation replaces one exact piece of a source file (the script stops if
the piece is no longer there, so a mutation cannot silently stop applying); the copy is imported first
(``PYTHONPATH``), ahead of the installed package. Not run in CI: run it before calling a numerical change done.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "mutation-check.md"


@dataclass(frozen=True)
class Mutation:
    name: str
    claim: str  # what the docs or a test promise, which the mutation breaks by the size it rules out
    file: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments: the tests that back the claim


MUTATIONS = (
    Mutation(
        "mc-fisher-unweighted",
        "the MC Fisher averages to the Gauss-Newton matrix for sequences and multi-output BCE (docs/core.md); "
        "each example's gradient left unweighted by its likelihood terms",
        "src/curvlab/core/fisher.py",
        "    return losses * terms.to(losses.dtype), n_samples * float(terms.sum())\n",
        "    return losses, n_samples * float(len(terms))\n",
        ("tests/test_peer_cases.py", "-k", "monte_carlo"),
    ),
    Mutation(
        "sum-reduction-accepted",
        "a loss that is not a mean over examples is refused (docs/which-curvature.md); a probed sum accepted",
        "src/curvlab/core/reduction.py",
        "PROBE_RTOL = 1e-3 ",
        "PROBE_RTOL = 1.5 ",
        ("tests/test_peer_cases.py", "-k", "refused"),
    ),
    Mutation(
        "adam-p-without-bias-factor",
        "Adam's P carries the first moment's bias factor (definitions §2, Cohen et al. 2022); left out",
        "src/curvlab/optim/introspection.py",
        '    return cast(Tensor, ((v / (1 - beta2**step)).sqrt() + group["eps"]) * (1 - beta1**step))\n',
        '    return cast(Tensor, (v / (1 - beta2**step)).sqrt() + group["eps"])\n',
        ("tests/test_paper_formulas.py", "-k", "adams_step"),
    ),
    Mutation(
        "finite-difference-step",
        "the finite-difference step uses c = 0.1 (docs/core.md); c = 1 is ten times the documented step",
        "src/curvlab/core/hvp.py",
        "STEP_FACTOR = 0.1 ",
        "STEP_FACTOR = 1.0 ",
        ("tests/test_finite_difference.py",),
    ),
    Mutation(
        "hessian-product-scale",
        "Hessian-vector products equal the explicit float64 Hessian's to 1e-8 and better; scaled by 1 + 1e-6",
        "src/curvlab/core/objective.py",
        '        return checked_finite(product, "Hessian-vector product", lambda: self.loss(at))',
        '        return checked_finite(product * (1 + 1e-6), "Hessian-vector product", lambda: self.loss(at))',
        ("tests/test_hvp.py",),
    ),
    Mutation(
        "fsdp-product-scale",
        "sharded products equal the one-process exact ones to 1e-8 (docs/distributed.md); scaled by 1 + 5e-7",
        "src/curvlab/fsdp.py",
        "            product = self._difference(v)\n",
        "            product = self._difference(v) * (1 + 5e-7)\n",
        ("tests/test_fsdp.py", "-k", "equal_one_process"),
    ),
    Mutation(
        "monitor-write-outside-clock",
        "every record the Monitor writes counts inside its clock (docs/metrics/monitor.md); add_record's not",
        "src/curvlab/monitor/monitor.py",
        "        with self.charged():\n            self._context = None",
        "        with contextlib.nullcontext():\n            self._context = None",
        ("tests/test_budget.py",),
    ),
    Mutation(
        "budget-granted-1.5x",
        "the Monitor spends at most its budget of the training time; granted 1.5 times it",
        "src/curvlab/monitor/schedules.py",
        "        self.budget = float(budget)\n",
        "        self.budget = 1.5 * float(budget)\n",
        ("tests/test_budget.py",),
    ),
    Mutation(
        "budget-granted-1.25x-real-clock",
        "on a real clock the Monitor spends at most its budget (the real-clock test alone); granted 1.25 times it",
        "src/curvlab/monitor/schedules.py",
        "        self.budget = float(budget)\n",
        "        self.budget = 1.25 * float(budget)\n",
        ("tests/test_budget.py", "-k", "real_clock"),
    ),
    Mutation(
        "checkpoint-loads-code",
        "opening a run directory runs none of its code (docs/experiments.md); checkpoints unpickled unrestricted",
        "src/curvlab/experiments/run_dir.py",
        "            return torch.load(source, weights_only=True)",
        "            return torch.load(source, weights_only=False)",
        ("tests/test_run_dir_safety.py",),
    ),
    Mutation(
        "lanczos-extra-vectors",
        "a Lanczos solve holds no more than docs/scale.md's formula; two extra float64 vectors held through the solve",
        "src/curvlab/linalg/lanczos.py",
        "        q = self._vectors[j].to(F64)\n",
        "        q = self._vectors[j].to(F64)\n        self._held = [q.clone(), q.clone()]\n",
        ("tests/test_solver_memory.py", "-k", "memory_formula"),
    ),
    Mutation(
        "lanczos-keeps-start",
        "a Lanczos solve holds no more than docs/scale.md's formula; the float64 start vector held for the whole solve",
        "src/curvlab/linalg/lanczos.py",
        "        del v0\n",
        "        self._held = start.to(F64).clone()\n        del v0\n",
        ("tests/test_solver_memory.py", "-k", "memory_formula"),
    ),
    Mutation(
        "hutchinson-holds-two-probes",
        "Hutchinson holds one probe and its product at a time (docs/scale.md); the previous probe kept while drawing",
        "src/curvlab/linalg/trace.py",
        "        del z  # freed",
        "        pass  # freed",
        ("tests/test_solver_memory.py", "-k", "trace_estimate"),
    ),
    Mutation(
        "lanczos-keeps-random-start",
        "without a stored basis a random start is drawn again for the Ritz vectors, not kept (docs/scale.md); kept",
        "src/curvlab/linalg/lanczos.py",
        'keep = basis == "none" and keep_start and self._start_state is None',
        'keep = basis == "none" and keep_start',
        ("tests/test_solver_memory.py", "-k", "memory_formula"),
    ),
    Mutation(
        "hessian-product-formed-apart",
        "the recurrence adds a kept Hessian's product into the older vector in place (docs/scale.md); formed apart",
        "src/curvlab/core/hessian.py",
        "        return one_chunk and not self.objective.collective",
        "        return False and one_chunk and not self.objective.collective",
        ("tests/test_solver_memory.py", "tests/test_hvp.py", "-k", "kept_hessian or matvec_add"),
    ),
    Mutation(
        "engine-check-holds-exact-product",
        "the engine check holds one product at a time (docs/scale.md); the exact one held through the others",
        "src/curvlab/core/engine_choice.py",
        "        del exact  # the check holds one product at a time\n",
        "        pass\n",
        ("tests/test_solver_memory.py", "-k", "engine_check"),
    ),
    Mutation(
        "engine-check-builds-its-own-graph",
        "a Hessian operator's first product makes the engine check itself, on the graph it keeps (docs/core.md); "
        "the check made alone first, on a graph of its own",
        "src/curvlab/core/hessian.py",
        '        if obj._engine == "auto" and not obj.collective:',
        "        if False:",
        ("tests/test_finite_difference.py", "-k", "first_product or builds_no_graph"),
    ),
    Mutation(
        "engine-time-rule-without-margin",
        "auto takes finite differences for time only above 2× an exact product (docs/core.md); at any excess",
        "src/curvlab/core/engine_choice.py",
        "exact_seconds > TIME_MARGIN * self.seconds",
        "exact_seconds > self.seconds",
        ("tests/test_finite_difference.py", "-k", "time_rule"),
    ),
    Mutation(
        "engine-time-rule-on-one-timing",
        "auto times a slow exact product again before it switches for time (docs/core.md); one timing decides",
        "src/curvlab/core/engine_choice.py",
        "        if evidence.too_slow(seconds):  # timed again",
        "        if False:  # timed again",
        ("tests/test_finite_difference.py", "-k", "one_slow_exact_product"),
    ),
    Mutation(
        "operator-time-rule-on-one-timing",
        "the check inside a Hessian operator's first product times a slow exact product again too; one timing decides",
        "src/curvlab/core/hessian.py",
        "        if evidence.too_slow(seconds):  # timed again",
        "        if False:  # timed again",
        ("tests/test_finite_difference.py", "-k", "one_slow_exact_product"),
    ),
    Mutation(
        "engine-time-rule-across-kinks",
        "auto takes finite differences for time only where they agree within 1% (docs/core.md); also across kinks",
        "src/curvlab/core/engine_choice.py",
        "        return slow and self.spread <= UNRELIABLE * self.size",
        "        return slow",
        ("tests/test_finite_difference.py", "-k", "time_rule"),
    ),
    Mutation(
        "monitor-warm-starts-adams-preconditioned",
        "the Monitor's preconditioned sharpness starts cold (warm starts on Adam's moving preconditioner settle on "
        "another eigenvalue, bench_start); warm-started",
        "src/curvlab/monitor/metrics.py",
        'return self.warm is True or (self.warm == "auto" and not preconditioned)',
        'return self.warm is True or self.warm == "auto"',
        ("tests/test_monitor.py", "-k", "warm_starts_the_plain"),
    ),
    Mutation(
        "fused-head-without-softmax-curvature",
        "the fused head's product includes the softmax's curvature (curvlab.losses); left out of the hidden part",
        "src/curvlab/losses.py",
        "block = torch.mm(probs, b, out=d_hidden[rows]).addmm_(curvature, w)",
        "block = torch.mm(probs, b, out=d_hidden[rows])",
        ("tests/test_linear_cross_entropy.py", "-k", "hessian_products or finite_differences"),
    ),
    Mutation(
        "fused-head-mean-over-ignored",
        "the fused head's mean leaves out ignored (-100) targets, as torch and Hugging Face do; counted in",
        "src/curvlab/losses.py",
        "    return (targets != IGNORE_INDEX).sum()",
        "    return torch.ones_like(targets).sum()",
        ("tests/test_linear_cross_entropy.py", "-k", "explicit"),
    ),
    Mutation(
        "fused-head-auto-without-agreement",
        "fused_head='auto' replaces a model's own loss only where the fused head gives the same loss (docs/scale.md); "
        "the agreement check skipped",
        "src/curvlab/core/objective.py",
        "            if agree(own, fused):",
        "            if True:",
        ("tests/test_linear_cross_entropy.py", "-k", "does_not_reproduce"),
    ),
    Mutation(
        "fused-head-auto-fuses-small-logits",
        "fused_head='auto' fuses from FUSED_FROM logits per parameter, where bench_lm_head measured it to pay; "
        "from a tenth of that",
        "src/curvlab/core/objective.py",
        "            if per_parameter < FUSED_FROM:",
        "            if per_parameter < FUSED_FROM / 10:",
        ("tests/test_linear_cross_entropy.py", "-k", "small_vocabulary"),
    ),
    Mutation(
        "fused-head-auto-never-fuses",
        "fused_head='auto' fuses a large vocabulary's head (docs/scale.md); from ten times FUSED_FROM",
        "src/curvlab/core/objective.py",
        "            if per_parameter < FUSED_FROM:",
        "            if per_parameter < FUSED_FROM * 10:",
        ("tests/test_linear_cross_entropy.py", "-k", "large_vocabulary"),
    ),
    Mutation(
        "engine-check-keeps-freed-memory",
        "what the engine check freed is given back to the system (docs/scale.md); left resident",
        "src/curvlab/core/engine_choice.py",
        "    return_freed_memory()  # the check's",
        "    pass  # the check's",
        ("tests/test_solver_memory.py", "-k", "gives_back"),
    ),
    Mutation(
        "validation-in-train-mode",
        "the validation loss is scored in eval mode (docs/experiments.md); BatchNorm on batch statistics, dropout on",
        "src/curvlab/experiments/training.py",
        '"bn_mode": "eval"}',
        '"bn_mode": "train", "dropout": True}',
        ("tests/test_validation.py", "-k", "a_run_scores"),
    ),
    Mutation(
        "bpe-trained-on-held-out-text",
        "BPE is trained on the training text only (docs/experiments.md); trained on the held-out tenth too",
        "src/curvlab/data/sources.py",
        "bpe.train_from_iterator([text[:cut]], trainer=trainer)",
        "bpe.train_from_iterator([text], trainer=trainer)",
        ("tests/test_validation.py", "-k", "bpe"),
    ),
)


def apply(mutation: Mutation, tree: Path) -> None:
    path = tree / mutation.file
    text = path.read_text()
    if text.count(mutation.old) != 1:
        sys.exit(f"{mutation.name}: {mutation.file} holds {text.count(mutation.old)} copies of the piece to mutate")
    path.write_text(text.replace(mutation.old, mutation.new))


def run(mutation: Mutation) -> tuple[bool, float]:
    """(caught, seconds): whether the mutated copy fails the mutation's tests."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "copy"
        shutil.copytree(ROOT / "src", tree / "src")
        apply(mutation, tree)
        env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1"}
        where = subprocess.run(
            [sys.executable, "-c", "import curvlab; print(curvlab.__file__)"], env=env, capture_output=True, text=True
        )
        if not where.stdout.strip().startswith(str(tree)):  # the tests would run the unmutated package
            sys.exit(f"{mutation.name}: the copy is not the curvlab imported ({where.stdout.strip()})")
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutation.tests],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode not in (0, 1):  # 1: tests failed; no tests, or an error collecting them, is no verdict
            sys.exit(f"{mutation.name}: pytest exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return done.returncode == 1, time.perf_counter() - t0


def page(rows: list[tuple[Mutation, bool, float]]) -> str:
    caught = sum(c for _, c, _ in rows)
    lines = [
        "# Mutation check",
        "",
        "Written by `python scripts/mutation_check.py` (`make mutation-check`) on "
        f"{datetime.now(UTC).date().isoformat()}: each mutation breaks one numerical claim by the size the claim "
        "rules out, in a copy of the source, and runs the tests that back the claim. **Caught** means they failed, "
        f"as they must. **{caught} of {len(rows)} caught.**",
        "",
        "| mutation | claim it breaks | file | tests | result | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for m, c, seconds in rows:
        result = "caught" if c else "**survived**"
        lines.append(f"| {m.name} | {m.claim} | `{m.file}` | `{' '.join(m.tests)}` | {result} | {seconds:.0f} |")
    return "\n".join(lines) + "\n"


def main(names: list[str]) -> int:
    unknown = set(names) - {m.name for m in MUTATIONS}
    if unknown:
        sys.exit(f"names: expected some of {[m.name for m in MUTATIONS]}, got {sorted(unknown)}")
    rows = []
    for mutation in MUTATIONS:
        if names and mutation.name not in names:
            continue
        caught, seconds = run(mutation)
        print(f"{mutation.name}: {'caught' if caught else 'SURVIVED'} ({seconds:.0f} s)", flush=True)
        rows.append((mutation, caught, seconds))
    if not names:
        PAGE.write_text(page(rows))
        print(f"wrote {PAGE}")
    return 0 if all(c for _, c, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
