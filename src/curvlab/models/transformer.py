"""Causal transformer language models: the PyTorch-tutorial size used by Kunstner et al. 2023 (2 layers, 200-dim,
2 heads) and a NanoLM-like 6-layer one. Attention goes through scaled_dot_product_attention, which
curvlab runs under the MATH backend, so every model here is twice differentiable on the CPU."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from curvlab.errors import InputError

SIZES: dict[str, dict[str, Any]] = {
    "tutorial": dict(d_model=200, n_layers=2, n_heads=2, d_ff=200),
    "nanolm": dict(d_model=128, n_layers=6, n_heads=4, d_ff=512),
    "tiny": dict(d_model=64, n_layers=2, n_heads=2, d_ff=256),
}


class CausalLM(nn.Module):
    def __init__(
        self,
        vocab: int,
        context: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.randn(context, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, d_ff, dropout=dropout, activation=activation, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context), persistent=False)

    def forward(self, tokens):
        t = tokens.shape[1]
        h = self.embed(tokens) + self.pos[:t]
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        return self.head(self.norm(h))


def transformer_lm(vocab: int, context: int, size: str = "tutorial", dropout: float = 0.0) -> CausalLM:
    if size not in SIZES:
        raise InputError(f"size: expected one of {sorted(SIZES)}, got {size!r}")
    return CausalLM(vocab, context, dropout=dropout, **SIZES[size])
