"""trace() and spectral_density() against exact traces and known spectra."""

import pytest
import torch
from conftest import cached_hessian
from test_eigs import matrix_with_spectrum
from zoo import make_case

from curvlab import Objective, spectral_density, trace


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
@pytest.mark.parametrize("name", ["tanh_mlp_ce", "layernorm_mlp", "bn_cnn_train", "attention"])
def test_trace_within_three_standard_errors(name, method):
    case = make_case(name)
    obj = Objective(case.model, case.loss_fn, (case.inputs, case.targets), bn_mode=case.bn_mode)
    res = trace(obj, method=method, n_probes=60, seed=1)
    exact = float(torch.trace(cached_hessian(name)))
    assert res.n_matvecs == 60 and res.stderr > 0
    assert abs(res.estimate - exact) <= 3 * res.stderr


def test_hutchpp_beats_hutchinson_on_a_dominant_top_space():
    values = [100.0, 80.0, 60.0, 40.0] + [0.1] * 196
    a, _ = matrix_with_spectrum(values, seed=4)
    exact = sum(values)
    errors = {
        m: [abs(trace(a, method=m, n_probes=30, seed=s).estimate - exact) for s in range(5)]
        for m in ("hutchinson", "hutch++")
    }
    assert max(errors["hutch++"]) < min(errors["hutchinson"])
    assert trace(a, method="hutch++", n_probes=30).stderr < trace(a, method="hutchinson", n_probes=30).stderr


def test_hutchinson_stderr_is_the_sample_standard_error():
    a, _ = matrix_with_spectrum([3.0, 1.0, -2.0, 0.5], seed=5)
    res = trace(a, n_probes=10, seed=3)
    assert res.samples.numel() == 10
    assert res.estimate == pytest.approx(float(res.samples.mean()))
    assert res.stderr == pytest.approx(float(res.samples.std()) / 10**0.5)


def test_density_integrates_to_one_and_covers_the_spectrum():
    values = torch.linspace(-2, 5, 80)
    a, _ = matrix_with_spectrum(values.tolist(), seed=6)
    d = spectral_density(a, n_probes=4, n_steps=30, seed=0)
    assert d.mass() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(d.weights.sum(dim=1), torch.ones(4, dtype=torch.float64), atol=1e-10)
    assert d.ritz_values.min() >= -2 - 1e-8 and d.ritz_values.max() <= 5 + 1e-8
    assert d.n_matvecs == 4 * 30
    mean = float(torch.trapezoid(d.grid * d.density, d.grid))
    assert mean == pytest.approx(float(values.mean()), abs=0.5)


def test_full_quadrature_recovers_the_eigenvalues():
    values = [4.0, 2.5, 1.0, -0.5, -3.0]
    a, _ = matrix_with_spectrum(values, seed=7)
    d = spectral_density(a, n_probes=2, n_steps=10)
    for row in d.ritz_values:
        assert torch.allclose(row.sort().values, torch.tensor(sorted(values), dtype=torch.float64), atol=1e-9)


def test_density_of_a_network_hessian():
    case = make_case("layernorm_mlp")
    obj = Objective(case.model, case.loss_fn, (case.inputs, case.targets))
    d = spectral_density(obj.hessian(), n_probes=3, n_steps=20, seed=2)
    exact = torch.linalg.eigvalsh(cached_hessian("layernorm_mlp"))
    assert d.mass() == pytest.approx(1.0, abs=1e-6)
    assert float(d.ritz_values.nan_to_num(0).max()) == pytest.approx(float(exact[-1]), rel=1e-6)


def test_density_plot_draws(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    a, _ = matrix_with_spectrum([1.0, 2.0, 3.0], seed=8)
    ax = spectral_density(a, n_probes=1, n_steps=3).plot()
    ax.figure.savefig(tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda a: trace(a, method="girard"), "method"),
        (lambda a: trace(a, n_probes=1), "n_probes"),
        (lambda a: trace(a, method="hutch++", n_probes=2), "n_probes"),
        (lambda a: spectral_density(a, n_probes=0), "n_probes"),
        (lambda a: spectral_density(a, n_steps=0), "n_steps"),
        (lambda a: spectral_density(a, bandwidth=-1.0), "bandwidth"),
        (lambda a: trace(a, generator="g"), "generator"),
    ],
)
def test_bad_arguments_name_themselves(call, match):
    a, _ = matrix_with_spectrum([1.0, 2.0, 3.0])
    with pytest.raises((ValueError, TypeError), match=match):
        call(a)


def test_the_old_name_of_the_density_bandwidth_still_works_and_warns():
    a, _ = matrix_with_spectrum([1.0, 2.0, 3.0])
    new = spectral_density(a, n_probes=2, n_steps=3, bandwidth=0.05)
    with pytest.warns(DeprecationWarning, match="bandwidth"):
        old = spectral_density(a, n_probes=2, n_steps=3, sigma=0.05)
    assert torch.equal(old.density, new.density) and old.bandwidth == 0.05
    with pytest.warns(DeprecationWarning, match="bandwidth"):
        assert old.sigma == 0.05
