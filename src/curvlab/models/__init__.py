"""Small twice-differentiable models behind one registry: ``build_model(name, dataset, **options)``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from curvlab.core.lm_head import FusedHeadLoss
from curvlab.errors import InputError
from curvlab.models import huggingface
from curvlab.models.linear import linear
from curvlab.models.mlp import ACTIVATIONS, mlp
from curvlab.models.transformer import SIZES, CausalLM, transformer_lm
from curvlab.models.vision import SmallResNet, lenet
from curvlab.registry import Registry


def _features(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _out(dataset: Any) -> int:
    if dataset.task == "regression":
        return dataset.y_train.shape[1] if dataset.y_train.dim() > 1 else 1
    return dataset.n_classes


def _image(dataset: Any) -> tuple[int, int]:
    shape = dataset.input_shape
    if len(shape) != 3:
        raise InputError(f"model: an image model needs (C, H, W) inputs, {dataset.name} has {shape}")
    return shape[0], shape[-1]


BUILDERS: Registry[Callable[..., nn.Module]] = Registry("model", "model")
BUILDERS.add(
    "linear", lambda ds, bias=True: linear(_features(ds.input_shape), _out(ds), bias), "linear / logistic regression"
)
BUILDERS.add(
    "mlp",
    lambda ds, width=128, depth=2, activation="tanh", layernorm=False: mlp(
        _features(ds.input_shape), [width] * depth, _out(ds), activation, layernorm
    ),
    "MLP (width, depth, activation, optional LayerNorm)",
)
BUILDERS.add(
    "lenet",
    lambda ds, activation="tanh": lenet(*_image(ds)[:1], _image(ds)[1], _out(ds), activation),
    "LeNet-5-like CNN",
)
BUILDERS.add(
    "resnet",
    lambda ds, width=16, blocks=1, norm="layer": SmallResNet(_image(ds)[0], _out(ds), width, blocks, norm),
    "small ResNet, no BatchNorm (norm: none, layer, group)",
)
BUILDERS.add(
    "transformer",
    lambda ds, size="tutorial", dropout=0.0: transformer_lm(ds.n_classes, ds.input_shape[0], size, dropout),
    "causal transformer LM (size: tutorial 2×200, nanolm 6×128, tiny)",
)

BUILDERS.add(
    "gpt2",
    lambda ds, n_layer=2, n_embd=64, n_head=2, **config: huggingface.gpt2(
        ds.n_classes, ds.input_shape[0], n_layer, n_embd, n_head, **config
    ),
    "Hugging Face GPT-2 from its config, untrained (n_layer, n_embd, n_head, any GPT2Config field)",
)
BUILDERS.add(
    "llama",
    lambda ds, num_hidden_layers=2, hidden_size=64, intermediate_size=256, num_attention_heads=2, **config: (
        huggingface.llama(
            ds.n_classes,
            ds.input_shape[0],
            num_hidden_layers,
            hidden_size,
            intermediate_size,
            num_attention_heads,
            **config,
        )
    ),
    "Hugging Face Llama from its config, untrained (num_hidden_layers, hidden_size, ..., any LlamaConfig field)",
)


def build_model(name: str, dataset: Any, init_scale: float = 1.0, seed: int = 0, **options: Any) -> nn.Module:
    """Build a registered model for ``dataset``, seeded; ``init_scale`` multiplies every initial
    parameter (Gilmer et al. 2021 scales initialisations to move the initial sharpness)."""
    if not init_scale > 0:
        raise InputError(f"init_scale: expected a positive number, got {init_scale!r}")
    torch.manual_seed(seed)
    try:
        model = BUILDERS[name](dataset, **options)
    except TypeError as err:
        raise InputError(f"model: bad option for {name!r}: {err}") from err
    if init_scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(init_scale)
    return model


__all__ = [
    "ACTIVATIONS",
    "BUILDERS",
    "CausalLM",
    "FusedHeadLoss",
    "SIZES",
    "SmallResNet",
    "build_model",
    "lenet",
    "linear",
    "mlp",
    "transformer_lm",
]
