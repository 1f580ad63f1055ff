"""eigs(): Lanczos and power iteration against known spectra and explicit float64 Hessians."""

import pytest
import torch
from conftest import cached_hessian
from zoo import CASES, make_case

import curvlab
from curvlab import LinearOperator, MatrixOperator, Objective, eigs


def matrix_with_spectrum(values, seed=0):
    values = torch.as_tensor(values, dtype=torch.float64)
    q, _ = torch.linalg.qr(
        torch.randn(len(values), len(values), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    return (q * values) @ q.T, q


def cos(a, b):
    return float(abs(torch.dot(a, b)) / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)))


SPECTRUM = [10.0, 7.0, 5.0, -8.0] + torch.linspace(-1, 1, 56, dtype=torch.float64).tolist()


@pytest.mark.parametrize(
    "which, expected",
    [("LA", [10.0, 7.0, 5.0]), ("SA", [-8.0, -1.0, -1.0 + 2 / 55]), ("LM", [10.0, -8.0, 7.0])],
)
def test_lanczos_finds_the_wanted_end_of_a_known_spectrum(which, expected):
    a, q = matrix_with_spectrum(SPECTRUM)
    res = eigs(a, k=3, which=which, tol=1e-10)
    assert res.converged and res.method == "lanczos" and res.which == which
    assert torch.allclose(res.eigenvalues, torch.tensor(expected, dtype=torch.float64), rtol=1e-8)
    for value, vector in zip(res.eigenvalues, res.eigenvectors.T):
        actual = torch.linalg.vector_norm(a @ vector - value * vector)
        assert actual < 1e-6 * abs(value)
    assert torch.allclose(
        res.residuals,
        torch.linalg.vector_norm(a @ res.eigenvectors - res.eigenvectors * res.eigenvalues, dim=0),
        atol=1e-8,
    )


@pytest.mark.parametrize("name", CASES)
def test_top3_and_bottom_eigenpairs_match_explicit_hessian(name):
    case = make_case(name)
    hessian = cached_hessian(name)
    values, vectors = torch.linalg.eigh(hessian)
    obj = Objective(case.model, case.loss_fn, (case.inputs, case.targets), bn_mode=case.bn_mode)
    top = eigs(obj, k=3, tol=1e-10)
    assert top.converged
    for i in range(3):
        assert abs(top.eigenvalues[i] - values[-1 - i]) <= 1e-6 * abs(values[-1 - i])
        if float(values[-1 - i] - values[-2 - i]) > 1e-4 * float(values[-1]):  # a simple eigenvalue
            assert cos(top.eigenvectors[:, i], vectors[:, -1 - i]) >= 1 - 1e-6
    bottom = eigs(obj, k=1, which="SA", tol=1e-10)
    assert abs(bottom.eigenvalues[0] - values[0]) <= 1e-6 * abs(values[0])
    assert cos(bottom.eigenvectors[:, 0], vectors[:, 0]) >= 1 - 1e-6


def test_repeated_eigenvalues_are_all_found():
    a, _ = matrix_with_spectrum([3.0, 3.0, 3.0, 1.0, 0.5, 0.2, 0.1, 0.0])
    res = eigs(a, k=4, tol=1e-10)
    assert torch.allclose(res.eigenvalues, torch.tensor([3.0, 3.0, 3.0, 1.0], dtype=torch.float64), atol=1e-9)
    gram = res.eigenvectors.T @ res.eigenvectors
    assert torch.allclose(gram, torch.eye(4, dtype=torch.float64), atol=1e-8)


@pytest.mark.parametrize("which, sign", [("LA", 1.0), ("SA", -1.0), ("LM", -1.0)])
def test_a_triple_top_eigenvalue_is_found_three_times_in_a_large_space(which, sign):
    """In 400 dimensions the Krylov space never becomes invariant, so a single Lanczos run sees one direction
    of the triple eigenvalue's eigenspace (plus what rounding adds): the copies come from the orthogonal
    re-runs, and without them the answer misses some."""
    bulk = torch.linspace(-1.0, 3.0, 396, dtype=torch.float64).tolist()
    missed = 0
    for seed in range(4):
        a, q = matrix_with_spectrum([5.0, 5.0, 5.0, 4.0] + bulk, seed=seed)
        a = sign * a
        for k, expected in ((3, [5.0, 5.0, 5.0]), (4, [5.0, 5.0, 5.0, 4.0])):
            res = eigs(a, k=k, which=which, tol=1e-8, seed=seed)
            assert res.converged
            assert torch.allclose(res.eigenvalues, sign * torch.tensor(expected, dtype=torch.float64), atol=1e-6)
            gram = res.eigenvectors.T @ res.eigenvectors
            assert torch.allclose(gram, torch.eye(k, dtype=torch.float64), atol=1e-8)
            residual = a @ res.eigenvectors - res.eigenvectors * res.eigenvalues
            assert float(residual.norm(dim=0).max()) <= 1e-6
            assert torch.linalg.matrix_norm(q[:, :3].T @ res.eigenvectors[:, :3]) ** 2 >= 3 - 1e-8  # the eigenspace
        single = eigs(a, k=3, which=which, tol=1e-8, seed=seed, copies=False)
        missed += not torch.allclose(single.eigenvalues, sign * torch.tensor([5.0] * 3, dtype=torch.float64))
    assert missed >= 1  # the test could fail: one Krylov space alone does miss copies


def test_copies_cost_one_more_top_one_solve_on_a_simple_top():
    a, _ = matrix_with_spectrum(SPECTRUM)
    plain = eigs(a, k=3, tol=1e-8, copies=False)
    full = eigs(a, k=3, tol=1e-8)
    assert torch.allclose(full.eigenvalues, plain.eigenvalues, atol=1e-7)
    top1 = eigs(a, k=1, tol=1e-8).n_matvecs
    assert plain.n_matvecs < full.n_matvecs <= plain.n_matvecs + 2 * top1


def test_exhausting_a_small_space_is_exact():
    a, _ = matrix_with_spectrum([4.0, 2.0, -1.0, 0.5, 0.0])
    res = eigs(a, k=5, tol=1e-14)
    assert res.converged and res.n_iter == 5
    assert torch.allclose(res.eigenvalues, torch.tensor([4.0, 2.0, 0.5, 0.0, -1.0], dtype=torch.float64), atol=1e-12)


def test_power_iteration_finds_the_largest_magnitude_even_if_negative():
    a, q = matrix_with_spectrum([3.0, -9.0, 1.0, 0.5, 0.1, -0.2])
    res = eigs(a, method="power", tol=1e-8)
    assert res.which == "LM" and res.method == "power" and res.converged
    assert res.eigenvalues[0] == pytest.approx(-9.0, rel=1e-6)
    lanczos = eigs(a, which="LA", tol=1e-8)
    assert lanczos.eigenvalues[0] == pytest.approx(3.0, rel=1e-8)
    two = eigs(a, k=2, method="power", tol=1e-10, max_iter=5000)
    assert torch.allclose(two.eigenvalues, torch.tensor([-9.0, 3.0], dtype=torch.float64), rtol=1e-6)
    with pytest.raises(ValueError, match="which"):
        eigs(a, which="SA", method="power")


def test_power_iteration_on_an_objective_matches_lanczos():
    case = make_case("tanh_mlp_ce")
    obj = Objective(case.model, case.loss_fn, (case.inputs, case.targets))
    exact = torch.linalg.eigvalsh(cached_hessian("tanh_mlp_ce"))
    expected = exact[exact.abs().argmax()]
    res = eigs(obj, method="power", tol=1e-8, max_iter=5000)
    assert res.eigenvalues[0] == pytest.approx(float(expected), rel=1e-6)
    assert res.n_matvecs > eigs(obj, tol=1e-8).n_matvecs


def test_warm_start_converges_faster():
    a, q = matrix_with_spectrum(SPECTRUM, seed=2)
    cold = eigs(a, tol=1e-8)
    warm = eigs(a, tol=1e-8, v0=cold.eigenvectors[:, 0] + 1e-6 * torch.randn(60, dtype=torch.float64))
    assert warm.n_matvecs < cold.n_matvecs
    assert warm.eigenvalues[0] == pytest.approx(10.0, rel=1e-8)


def test_products_in_float32_with_a_float64_basis():
    a, _ = matrix_with_spectrum(SPECTRUM, seed=3)
    a32 = a.float()
    op = LinearOperator(lambda v: a32 @ v, 60, dtype=torch.float32)
    res = eigs(op, k=2, tol=1e-5)
    assert res.eigenvalues.dtype == torch.float64 and res.eigenvectors.dtype == torch.float64
    assert torch.allclose(res.eigenvalues, torch.tensor([10.0, 7.0], dtype=torch.float64), rtol=1e-5)


def test_unconverged_runs_say_so():
    a, _ = matrix_with_spectrum(torch.linspace(1, 1.1, 200).tolist())
    res = eigs(a, tol=1e-12, max_iter=3)
    assert not res.converged and res.n_iter == 3 and res.n_matvecs == 3
    power = eigs(a, method="power", tol=1e-12, max_iter=3)
    assert not power.converged and power.n_matvecs == 3


def test_counts_and_reproducibility():
    a, _ = matrix_with_spectrum(SPECTRUM)
    op = MatrixOperator(a)
    first = eigs(op, k=2, tol=1e-6, seed=7)
    assert first.n_matvecs == op.n_matvecs == first.n_iter
    again = eigs(op, k=2, tol=1e-6, seed=7)
    assert torch.equal(first.eigenvalues, again.eigenvalues)
    from_generator = eigs(op, k=2, tol=1e-6, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first.eigenvectors, from_generator.eigenvectors)
    state = torch.get_rng_state()
    eigs(op, seed=None)
    assert torch.equal(state, torch.get_rng_state())


def test_any_callable_operator_plugs_in():
    a, _ = matrix_with_spectrum(SPECTRUM)
    d = torch.linspace(0.5, 2.0, 60, dtype=torch.float64)
    preconditioned = LinearOperator(lambda v: d * (a @ (d * v)), dim=60)
    expected = torch.linalg.eigvalsh(d[:, None] * a * d[None, :])[-1]
    assert eigs(preconditioned, tol=1e-10).eigenvalues[0] == pytest.approx(float(expected), rel=1e-9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 61}, "k"),
        ({"k": 0}, "k"),
        ({"which": "BE"}, "which"),
        ({"method": "arnoldi"}, "method"),
        ({"tol": 0}, "tol"),
        ({"atol": -1.0}, "atol"),
        ({"max_iter": 0}, "max_iter"),
        ({"v0": torch.ones(59)}, "v0"),
        ({"v0": torch.zeros(60)}, "v0"),
        ({"seed": "one"}, "seed"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    a, _ = matrix_with_spectrum(SPECTRUM)
    with pytest.raises((ValueError, TypeError), match=match):
        eigs(a, **kwargs)


def test_bad_operators_name_themselves():
    with pytest.raises(TypeError, match="op: a plain callable"):
        eigs(lambda v: v)
    with pytest.raises(ValueError, match="symmetric"):
        eigs(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        eigs(torch.ones(2, 3))
    with pytest.raises(TypeError, match="op"):
        eigs("hessian")
    op = LinearOperator(lambda v: v[:3], dim=4)
    with pytest.raises(ValueError, match="matvec"):
        eigs(op)
    with pytest.raises(ValueError, match="v: expected a flat vector of length 4"):
        op(torch.ones(3))


def _pair_matrix(eps: float, n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A symmetric matrix with top pair 1, 1 − eps above a bulk in [−0.5, 0.8], and its eigenvectors."""
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, generator=g, dtype=torch.float64) * 1.3 - 0.5
    values[0], values[1] = 1.0, 1.0 - eps
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = (q * values) @ q.T
    return (a + a.T) / 2, q


@pytest.mark.parametrize("eps", [1e-2, 3e-3, 1e-3])
@pytest.mark.parametrize("tol", [1e-3, 1e-4])
def test_a_near_degenerate_top_pair_does_not_stop_early_with_a_wrong_value(eps, tol):
    # A start vector with equal weight on the two top eigenvectors: the top Ritz vector is a mix of
    # them until Lanczos resolves the pair. The default (residual) rule must not stop on the mix;
    # bound="gap" does here (it is documented as assuming an isolated top eigenvalue).
    a, q = _pair_matrix(eps)
    noise = torch.randn(300, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v0 = q[:, 0] + q[:, 1] + 0.1 * noise
    res = curvlab.eigs(a, tol=tol, v0=v0)
    assert res.converged
    assert 1.0 - float(res.eigenvalues[0]) <= tol
    assert float(res.error_bounds[0]) == pytest.approx(float(res.residuals[0]))


def test_gap_bound_stops_once_an_isolated_top_is_good_to_tol():
    a, _ = _pair_matrix(0.2)  # isolated top: 1 above 0.8 and the bulk
    exact = float(torch.linalg.eigvalsh(a)[-1])
    fixed_errors = []
    for steps in range(2, 40):  # the smallest fixed step count that reaches tol
        fixed = curvlab.eigs(a, tol=1e-12, max_iter=steps)
        fixed_errors.append(abs(exact - float(fixed.eigenvalues[0])))
    needed = 2 + next(i for i, e in enumerate(fixed_errors) if e <= 1e-3)
    by_gap = curvlab.eigs(a, tol=1e-3, bound="gap")
    by_residual = curvlab.eigs(a, tol=1e-3)
    assert abs(exact - float(by_gap.eigenvalues[0])) <= min(1e-3, float(by_gap.error_bounds[0]) * 1.01)
    assert by_gap.n_matvecs <= needed + 1
    assert by_residual.n_matvecs > by_gap.n_matvecs
    assert float(by_gap.error_bounds[0]) < float(by_gap.residuals[0])


def test_bound_is_checked():
    with pytest.raises(ValueError, match="bound"):
        curvlab.eigs(torch.eye(3, dtype=torch.float64), bound="tight")
