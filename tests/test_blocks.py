"""block_eigs: the top eigenvalues of the curvature's diagonal blocks against explicit float64 blocks."""

import pytest
import torch
from conftest import cached_hessian
from test_ggn_fisher import explicit_ggn, objective_for
from zoo import make_case

import curvlab


def explicit_blocks(matrix, objective, blocks):
    index = curvlab.geometry.block_indices(objective, blocks)
    return {name: torch.linalg.eigvalsh(matrix[i][:, i]).flip(0) for name, i in index.items()}


@pytest.mark.parametrize("name", ["layernorm_mlp", "attention", "bn_cnn_train"])
def test_module_blocks_match_the_explicit_hessian(name):
    case = make_case(name)
    obj = objective_for(case)
    result = curvlab.block_eigs(obj, k=2, tol=1e-10)
    expected = explicit_blocks(cached_hessian(name), obj, "module")
    owners = {n.rpartition(".")[0] for n in obj.names}
    assert set(result) == owners  # one block per module that owns parameters, keyed by qualified name
    for block, res in result.items():
        assert torch.allclose(res.eigenvalues, expected[block][:2], rtol=1e-7, atol=1e-10), block


def test_named_blocks_and_the_gauss_newton():
    case = make_case("layernorm_mlp")
    obj = objective_for(case)
    blocks = {"first": ["0.weight", "0.bias"], "norm_and_head": lambda n, p: not n.startswith("0.")}
    result = curvlab.block_eigs(obj, blocks=blocks, curvature="ggn", tol=1e-10)
    expected = explicit_blocks(explicit_ggn(case), obj, blocks)
    assert set(result) == {"first", "norm_and_head"}
    for block, res in result.items():
        assert float(res.eigenvalues[0]) == pytest.approx(float(expected[block][0]), rel=1e-7)


def test_one_graph_serves_every_block():
    case = make_case("layernorm_mlp")
    obj = objective_for(case, batch_size=8)
    curvlab.block_eigs(obj)
    assert obj.counts["grad"] == 0 and obj.hessian()._complete  # products on the kept graphs only


def test_bad_blocks_name_themselves():
    obj = objective_for(make_case("layernorm_mlp"))
    with pytest.raises(ValueError, match="blocks"):
        curvlab.block_eigs(obj, blocks="layer")
    with pytest.raises(TypeError, match="blocks"):
        curvlab.block_eigs(obj, blocks={})
    with pytest.raises(ValueError, match="curvature"):
        curvlab.block_eigs(obj, curvature="kfac")
