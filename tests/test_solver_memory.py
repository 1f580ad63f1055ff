"""Solvers hold no more memory than docs/scale.md's formulas: peak resident memory of a solve on a large diagonal
operator, measured in a fresh process (Linux's high-water mark, reset before the solve), against
``curvlab.linalg.lanczos.peak_bytes``; and the basis modes agree with the float64 reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import curvlab
from curvlab.errors import InputError
from curvlab.linalg import lanczos
from curvlab.linalg.operator import MatrixOperator
from curvlab.linalg.trace import peak_bytes as trace_peak_bytes

MEASURE = r"""
import json, sys, torch, curvlab
from curvlab.linalg.operator import LinearOperator

def memory(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

dim, dtype, basis, what, vectors = int(sys.argv[1]), getattr(torch, sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
diagonal = torch.linspace(0.0, 1.0, dim, dtype=dtype)
diagonal[0] = 2.0  # an isolated top eigenvalue: a few steps
op = LinearOperator(lambda v: diagonal * v, dim, dtype=dtype)
op(torch.ones(dim, dtype=dtype))  # warm the allocator and the kernels
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark to the current resident memory
before = memory("VmRSS")
if what == "eigs":
    result = curvlab.eigs(op, tol=1e-6, basis=basis, vectors=vectors == "1")
    if vectors == "1":
        assert result.eigenvectors is not None
    steps, value = result.n_iter, float(result.eigenvalues[0])
elif what == "density":
    result = curvlab.spectral_density(op, n_probes=1, n_steps=12, basis=basis)
    steps, value = 12, float(result.ritz_values[0].max())
else:
    result = curvlab.trace(op, n_probes=int(vectors), method=what)
    steps, value = 0, result.estimate
print(json.dumps({"extra": memory("VmHWM") - before, "steps": steps, "value": value}))
"""

DIM = 4_000_000  # 32 MB a float64 vector
SPARE = 16 * 2**20  # ≈ 4 bytes a parameter: one float32 vector, half a float64 one (the operator's finiteness checks)


def _measure(basis: str, what: str = "eigs", dtype: str = "float64", vectors: bool | str = True) -> dict:
    """The peak extra resident memory of one solve (``what``: eigs, density, or a trace method; ``vectors``: whether
    eigs returns eigenvectors, or a trace's probe count)."""
    count = vectors if isinstance(vectors, str) else "1" if vectors else "0"
    command = [sys.executable, "-c", MEASURE, str(DIM), dtype, basis, what, count]
    # a fixed mmap threshold: every vector is its own mapping, returned to the system when freed (glibc's dynamic
    # threshold would otherwise keep freed vectors of up to 32 MiB in the heap, resident)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc/self high-water mark")
@pytest.mark.parametrize(
    "basis, dtype, vectors",
    [
        ("float64", "float64", True),
        ("float32", "float64", True),
        ("float64", "float32", True),
        ("none", "float32", True),
        ("none", "float64", False),
    ],
)
def test_a_lanczos_solve_stays_within_its_memory_formula(basis, dtype, vectors):
    measured = _measure(basis, dtype=dtype, vectors=vectors)
    itemsize = getattr(torch, dtype).itemsize
    formula = lanczos.peak_bytes(basis, DIM, measured["steps"], itemsize, k=1 if vectors else 0)
    assert measured["value"] == pytest.approx(2.0, rel=1e-6)
    assert formula <= measured["extra"] <= formula + SPARE, (measured, formula)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc/self high-water mark")
def test_no_stored_basis_holds_a_fixed_few_vectors_where_a_stored_one_grows():
    stored, recurrence = _measure("float64", vectors=False), _measure("none", vectors=False)
    vector = DIM * 8
    assert stored["extra"] >= (stored["steps"] - 1) * vector  # the stored basis is really there: the test can see it
    assert recurrence["extra"] <= 3 * vector + SPARE  # the last two vectors and the new one


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc/self high-water mark")
@pytest.mark.parametrize("basis", ["none", "float64"])
def test_a_spectral_density_stays_within_its_memory_formula(basis):
    """SLQ is Lanczos without Ritz vectors, one probe at a time: no start vector kept, no earlier probe's."""
    formula = lanczos.peak_bytes(basis, DIM, 12, 8, k=0)
    assert formula <= _measure(basis, what="density")["extra"] <= formula + SPARE


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc/self high-water mark")
@pytest.mark.parametrize("method, n_probes", [("hutchinson", 6), ("hutch++", 6), ("hutch++", 12)])
def test_a_trace_estimate_stays_within_its_memory_formula(method, n_probes):
    """Hutchinson: one probe and its product at a time; Hutch++: the larger of its QR and its last phase."""
    formula = trace_peak_bytes(method, DIM, n_probes)
    assert formula <= _measure("auto", what=method, vectors=str(n_probes))["extra"] <= formula + SPARE


def _matrix(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    values = torch.cat([torch.tensor([5.0, 3.0, 2.9]), torch.rand(n - 3, generator=g, dtype=torch.float64) * 2 - 1])
    return (q * values) @ q.T, values


@pytest.mark.parametrize("basis", ["float64", "float32", "none"])
def test_every_basis_mode_finds_the_top_eigenpair(basis):
    a, values = _matrix()
    result = curvlab.eigs(MatrixOperator(a), tol=1e-8, basis=basis)
    assert result.basis == basis and result.converged
    assert float(result.eigenvalues[0]) == pytest.approx(5.0, rel=1e-8)
    used = result.n_matvecs
    v = result.eigenvectors[:, 0]
    assert v.dtype == {"float64": torch.float64, "float32": torch.float32, "none": torch.float64}[basis]
    v = v.double()
    assert float(torch.linalg.vector_norm(a @ v - 5.0 * v)) < 1e-6
    assert result.n_matvecs == (2 * used - 1 if basis == "none" else used)  # rebuilt by a second pass when asked


def test_no_vectors_when_not_asked_and_no_second_pass():
    a, _ = _matrix()
    op = MatrixOperator(a)
    result = curvlab.eigs(op, tol=1e-8, basis="none", vectors=False)
    assert result.eigenvectors is None and op.n_matvecs == result.n_matvecs


def test_the_recurrence_alone_serves_k_1_only():
    a, _ = _matrix()
    with pytest.raises(InputError, match="basis.*k = 1"):
        curvlab.eigs(MatrixOperator(a), k=2, basis="none")
    with pytest.raises(InputError, match="basis"):
        curvlab.eigs(MatrixOperator(a), basis="float16")


def test_auto_picks_the_cheapest_basis_that_fits(monkeypatch):
    def room(nbytes):
        monkeypatch.setattr(lanczos, "available_memory", lambda device: nbytes / lanczos.AUTO_FRACTION)

    dim, steps = 1_000_000, 99
    op = curvlab.LinearOperator(lambda v: v, dim)
    room(100 * dim * 8)
    assert lanczos.choose_basis("auto", op, steps) == "float64"
    room(100 * dim * 8 - 1)
    assert lanczos.choose_basis("auto", op, steps) == "float32"
    room(100 * dim * 4 - 1)
    assert lanczos.choose_basis("auto", op, steps) == "none"
    assert lanczos.choose_basis("auto", op, steps, k=3) == "float32"  # k > 1 needs a stored basis
    room(100 * dim * 8)
    op.across = lambda value: value / 2  # another process has half the room: every process takes the smaller
    assert lanczos.choose_basis("auto", op, steps) == "float32"


@pytest.mark.parametrize("name", ["layernorm_mlp", "attention", "bn_cnn_train"])
def test_the_recurrence_alone_gives_lambda_1_of_the_explicit_hessian(name):
    from conftest import cached_hessian
    from zoo import make_case

    case = make_case(name)
    objective = curvlab.Objective(case.model, case.loss_fn, (case.inputs, case.targets))
    exact = float(torch.linalg.eigvalsh(cached_hessian(name))[-1])
    result = curvlab.eigs(objective.hessian(), tol=1e-10, basis="none", max_iter=objective.dim)
    assert float(result.eigenvalues[0]) == pytest.approx(exact, rel=1e-8)


def test_the_memory_table_in_the_docs_is_the_formulas_output():
    script = Path(__file__).resolve().parents[1] / "scripts" / "scale_doc.py"
    out = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, "docs/scale.md's table is stale: run python scripts/scale_doc.py"


CHAIN = r"""
import json, sys, torch, curvlab
from torch import nn

def memory(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

torch.manual_seed(0)
model = nn.Sequential(*[m for _ in range(16) for m in (nn.Linear(500, 500, bias=False), nn.Tanh())])
x, y = torch.randn(8, 500), torch.randn(8, 500)
loss = lambda out, t: ((out - t) ** 2).mean()
"""  # a chain of 16 weight matrices (4M parameters, 16 MB a float32 vector) and a reader of /proc/self/status

MEASURE_HESSIAN = (
    CHAIN
    + r"""
objective = curvlab.Objective(model, loss, (x, y), hvp_engine="reverse")
objective.hessian().matvec(torch.ones(objective.dim))  # the graph built and kept: the solve's products reuse it
open("/proc/self/clear_refs", "w").write("5")
before = memory("VmRSS")
result = curvlab.eigs(objective.hessian(), tol=1e-12, max_iter=12, basis="none", vectors=False)
print(json.dumps({"extra": memory("VmHWM") - before, "dim": objective.dim, "steps": result.n_iter}))
"""
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc/self high-water mark")
def test_the_recurrence_on_a_kept_hessian_holds_two_vectors_its_product_added_in_place():
    """On the kept-graph Hessian of one chunk the three-term recurrence adds each product into the older vector
    (``matvec_add``): the solve holds q_j and that vector, and no product apart from them (docs/scale.md). A chain
    of 16 weight matrices, 16 MB a float32 vector: beyond the kept graph, the two vectors and the double backward's own
    work (its sums of each parameter's contributions wait until the backward reaches the parameter's last use: about
    one vector on this chain) stay under 3.75 vectors; with the product formed apart and then added, 4.3."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 18)}
    out = subprocess.run([sys.executable, "-c", MEASURE_HESSIAN], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    vector = measured["dim"] * 4
    assert measured["steps"] == 12 and measured["extra"] <= 3.75 * vector, (measured, vector)


MEASURE_CHECK = (
    CHAIN
    + r"""
engine = {"check": "auto", "product": "reverse", "finite_difference": "finite_difference"}[sys.argv[1]]
objective = curvlab.Objective(model, loss, (x, y), hvp_engine=engine, graph_memory=0)
direction = torch.randn(objective.dim)  # the one product's direction (the check makes its own)
open("/proc/self/clear_refs", "w").write("5")
before = memory("VmRSS")
if sys.argv[1] == "check":
    chosen = objective.hvp_engine
else:
    chosen, _ = engine, objective.hvp(direction)
print(json.dumps({"extra": memory("VmHWM") - before, "dim": objective.dim, "engine": chosen}))
"""
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc/self high-water mark")
def test_the_engine_check_holds_no_more_than_one_product():
    """``hvp_engine="auto"`` compares one exact product with three finite differences; each is replaced by its
    fingerprint as soon as it is made, so the check holds its direction and one product at a time: its peak beyond
    the model is the larger product's (here the finite difference's: shifted parameters and two gradients) plus its
    direction (drawn inside it; the lone products' are drawn before) and under half a vector of fingerprints and
    draws. Holding the exact product through the finite differences would add a whole vector."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 18)}
    runs = {}
    for what in ("check", "product", "finite_difference"):
        out = subprocess.run(
            [sys.executable, "-c", MEASURE_CHECK, what], capture_output=True, text=True, timeout=300, env=env
        )
        assert out.returncode == 0, out.stderr[-2000:]
        runs[what] = json.loads(out.stdout.strip().splitlines()[-1])
    vector = runs["check"]["dim"] * 4
    assert runs["check"]["engine"] == "reverse"
    one_product = max(runs["product"]["extra"], runs["finite_difference"]["extra"])
    assert runs["check"]["extra"] <= one_product + 1.5 * vector, (runs, vector)


MEASURE_LEFT = (
    CHAIN
    + r"""
from curvlab.machine import return_freed_memory

objective = curvlab.Objective(model, loss, (x, y))
before = memory("VmRSS")
engine = objective.hvp_engine
left = memory("VmRSS") - before
print(json.dumps({"left": left, "dim": objective.dim, "engine": engine, "glibc": return_freed_memory()}))
"""
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc/self resident memory")
def test_the_engine_check_gives_back_what_it_freed():
    """Under glibc's own allocator settings (no fixed mmap threshold), the check's freed products would stay
    resident as heap holes (4.7 vectors on this chain) and add to the solve's peak; after it curvlab asks glibc to
    return them (``malloc_trim``), leaving under 1.5 vectors."""
    out = subprocess.run([sys.executable, "-c", MEASURE_LEFT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    if not measured["glibc"]:
        pytest.skip("no glibc: nothing to give back with")
    assert measured["engine"] == "reverse" and measured["left"] <= 1.5 * measured["dim"] * 4, measured
