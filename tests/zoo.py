"""Small float64 models and an *independent* explicit-Hessian reference for the tests.

The reference builds F from a deep copy of the model with ``torch.func.functional_call`` and
``torch.autograd.functional.hessian``; it shares no code with curvlab's Objective.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from curvlab.losses import mse

DT = torch.float64


class AttentionBlock(nn.Module):
    """Self-attention through F.scaled_dot_product_attention (the CPU flash kernel by default) + LayerNorm."""

    def __init__(self, d: int = 4, heads: int = 2, n_out: int = 3):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_out)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        return self.head(self.norm(x + a)).mean(dim=1)


class TransformerClassifier(nn.Module):
    def __init__(self, d: int = 4, n_out: int = 3):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=6, dropout=0.1, batch_first=True)
        self.head = nn.Linear(d, n_out)

    def forward(self, x):
        return self.head(self.layer(x).mean(dim=1))


class TokenDataset(torch.utils.data.Dataset):
    """Token sequences as a language model's training set: each item its ids, as inputs and labels."""

    def __init__(self, ids):
        self.ids = ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class UnusedParam(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(4, 3)
        self.unused = nn.Linear(4, 2)

    def forward(self, x):
        return self.used(x)


@dataclass
class Case:
    name: str
    model: nn.Module
    loss_fn: Callable
    inputs: torch.Tensor
    targets: torch.Tensor
    bn_mode: str = "train"


def _classification(shape, n=24, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g, dtype=DT), torch.randint(0, classes, (n,), generator=g)


def _bn_cnn() -> nn.Module:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(), nn.Linear(32, 3)).to(DT)
    with torch.no_grad():  # non-trivial running statistics for eval mode
        model.train()
        for seed in range(3):
            model(torch.randn(8, 1, 6, 6, generator=torch.Generator().manual_seed(seed), dtype=DT) * 2 + 0.5)
    return model


def make_case(name: str) -> Case:
    torch.manual_seed(0)
    if name == "tanh_mlp_ce":
        return Case(
            name,
            nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT),
            F.cross_entropy,
            *_classification((4,)),
        )
    if name == "tanh_mlp_mse":
        x, _ = _classification((4,))
        y = torch.randn(24, 2, generator=torch.Generator().manual_seed(5), dtype=DT)
        return Case(name, nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)).to(DT), mse, x, y)
    if name == "layernorm_mlp":
        model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
        return Case(name, model, F.cross_entropy, *_classification((4,)))
    if name in ("bn_cnn_train", "bn_cnn_eval"):
        return Case(name, _bn_cnn(), F.cross_entropy, *_classification((1, 6, 6), n=16), bn_mode=name[-5:].strip("_"))
    if name == "attention":
        return Case(name, AttentionBlock().to(DT), F.cross_entropy, *_classification((3, 4), n=10))
    if name == "transformer_layer":
        return Case(name, TransformerClassifier().to(DT), F.cross_entropy, *_classification((3, 4), n=10))
    raise KeyError(name)


CASES = [
    "tanh_mlp_ce",
    "tanh_mlp_mse",
    "layernorm_mlp",
    "bn_cnn_train",
    "bn_cnn_eval",
    "attention",
    "transformer_layer",
]


def reference_function(case: Case, names=None, chunk: int | None = None):
    """F(flat) on a private copy of the model, in the measurement mode, chunk-weighted like definitions §1."""
    model = copy.deepcopy(case.model)
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train(case.bn_mode == "train")
            m.track_running_stats = case.bn_mode == "eval"  # batch statistics, no in-place update
    params = dict(model.named_parameters())
    names = list(names or params)
    shapes = [params[n].shape for n in names]
    sizes = [s.numel() for s in shapes]
    n = len(case.targets)
    step = chunk or n

    def f(flat):
        parts = dict(zip(names, (t.view(s) for t, s in zip(torch.split(flat, sizes), shapes))))
        total = 0.0
        for i in range(0, n, step):
            out = functional_call(model, parts, (case.inputs[i : i + step],))
            total = total + case.loss_fn(out, case.targets[i : i + step]) * len(case.targets[i : i + step])
        return total / n

    x0 = torch.cat([params[n].detach().reshape(-1) for n in names])
    return f, x0


def explicit_hessian(case: Case, names=None, chunk: int | None = None) -> torch.Tensor:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    f, x0 = reference_function(case, names, chunk)
    with sdpa_kernel([SDPBackend.MATH]):
        return torch.autograd.functional.hessian(f, x0)


def explicit_loss_and_grad(case: Case, names=None, chunk: int | None = None):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    f, x0 = reference_function(case, names, chunk)
    x0 = x0.clone().requires_grad_(True)
    with sdpa_kernel([SDPBackend.MATH]):
        loss = f(x0)
        (g,) = torch.autograd.grad(loss, x0)
    return float(loss.detach()), g
