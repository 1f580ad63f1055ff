"""The blockwise split of a transformer (embeddings, attention QK, attention VO, MLP, norms): which parameters go
where, on a Hugging Face GPT-2 (fused query-key-value columns) and torch's own encoder layer (fused rows), and each
block's top eigenvalue against the explicit float64 Hessian's diagonal block."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

import curvlab
from curvlab.errors import InputError
from curvlab.geometry.blocks import block_indices

transformers = pytest.importorskip("transformers")
DT = torch.float64


def _tiny_gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=7, n_positions=6, n_embd=4, n_layer=1, n_head=2, n_inner=8, attn_implementation="eager"
    )
    model = transformers.GPT2LMHeadModel(config).to(DT)
    ids = torch.randint(0, 7, (3, 6), generator=torch.Generator().manual_seed(1))
    return model, [{"input_ids": ids, "labels": ids}]


def test_gpt2_parameters_fall_into_the_five_blocks_and_qkv_is_split_by_columns():
    model, data = _tiny_gpt2()
    objective = curvlab.Objective(model, None, data)
    blocks = block_indices(objective, "transformer")
    assert set(blocks) == {"embeddings", "attention QK", "attention VO", "MLP", "norms"}
    every = torch.cat(list(blocks.values()))
    assert every.numel() == objective.dim and every.unique().numel() == objective.dim  # a partition
    d, n = 4, dict(model.named_parameters())
    c_attn_w = n["transformer.h.0.attn.c_attn.weight"].numel()
    assert blocks["attention QK"].numel() == c_attn_w * 2 // 3 + 2 * d  # Q and K columns and biases
    proj = n["transformer.h.0.attn.c_proj.weight"].numel() + d
    assert blocks["attention VO"].numel() == c_attn_w // 3 + d + proj
    assert blocks["embeddings"].numel() == 7 * d + 6 * d
    assert blocks["norms"].numel() == 3 * 2 * d


def test_each_blocks_top_eigenvalue_is_the_explicit_hessians_block():
    model, data = _tiny_gpt2()
    objective = curvlab.Objective(model, None, data)
    names = list(objective.names)
    shapes = [p.shape for _, p in objective.parameters]
    x0 = objective.parameters_vector().detach()

    def loss(flat):
        parts, start = {}, 0
        for name, shape in zip(names, shapes):
            parts[name] = flat[start : start + shape.numel()].view(shape)
            start += shape.numel()
        model.eval()
        return functional_call(model, parts, (), data[0]).loss

    hessian = torch.autograd.functional.hessian(loss, x0)
    results = curvlab.block_eigs(objective, "transformer", tol=1e-10)
    for block, index in block_indices(objective, "transformer").items():
        exact = float(torch.linalg.eigvalsh(hessian[index][:, index])[-1])
        assert float(results[block].eigenvalues[0]) == pytest.approx(exact, rel=1e-6, abs=1e-9), block


def test_torch_encoder_layers_split_their_fused_rows_and_unknown_fusions_are_named():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True)
    model = nn.Sequential(layer, nn.Flatten(), nn.Linear(12, 2)).to(DT)
    objective = curvlab.Objective(
        model, nn.functional.cross_entropy, (torch.randn(5, 3, 4, dtype=DT), torch.zeros(5).long())
    )
    blocks = block_indices(objective, "transformer")
    in_proj = 3 * 4 * 4 + 3 * 4
    assert blocks["attention QK"].numel() == in_proj * 2 // 3
    assert blocks["attention VO"].numel() == in_proj // 3 + 4 * 4 + 4  # value rows and out_proj
    assert blocks["MLP"].numel() == 4 * 8 + 8 + 8 * 4 + 4 and blocks["norms"].numel() == 2 * 2 * 4

    class NeoXLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.Module()
            self.attention.query_key_value = nn.Linear(4, 12)

        def forward(self, x):
            return self.attention.query_key_value(x)

    fused = curvlab.Objective(
        NeoXLike().to(DT), lambda o, y: o.pow(2).mean(), (torch.randn(2, 4, dtype=DT), torch.zeros(2))
    )
    with pytest.raises(InputError, match="query_key_value.*dict"):
        block_indices(fused, "transformer")
