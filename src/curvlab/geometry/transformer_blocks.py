"""The blockwise split of a transformer's parameters that Wang et al. (2025, "The Sharpness Disparity Principle
in Transformers") measure: embeddings, attention query–key, attention value–output, MLP, normalisation layers
(and the output head when it is not tied to the embeddings). Works from parameter and module names on Hugging
Face and plain PyTorch transformers; GPT-2's fused query-key-value projection is split by its columns."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from curvlab.core.objective import Objective
from curvlab.errors import InputError

EMBEDDINGS, QK, VO, MLP, NORMS, HEAD, OTHER = (
    "embeddings",
    "attention QK",
    "attention VO",
    "MLP",
    "norms",
    "head",
    "other",
)
WANG_ORDER = (EMBEDDINGS, QK, MLP, VO, NORMS)  # ascending sharpness, as Wang et al. find: Emb ≪ QK < FFN < VO ≪ Norm
QK_NAMES = {"q_proj", "k_proj", "query", "key", "q", "k", "wq", "wk", "q_lin", "k_lin"}
VO_NAMES = {"v_proj", "o_proj", "value", "out_proj", "c_proj", "dense", "v", "o", "wv", "wo", "v_lin", "out_lin"}
FUSED_GPT2 = "c_attn"  # transformers' Conv1D: weight (in, 3·d), bias (3·d), columns [Q | K | V]
FUSED_OTHER = {"qkv_proj", "qkv", "wqkv", "query_key_value", "in_proj"}
MLP_SEGMENTS = {"mlp", "feed_forward", "ffn", "feedforward"}
MLP_NAMES = {"c_fc", "fc1", "fc2", "gate_proj", "up_proj", "down_proj", "w1", "w2", "w3", "linear1", "linear2"}
HEAD_NAMES = {"lm_head", "embed_out", "head"}


def transformer_blocks(objective: Objective) -> dict[str, Tensor]:
    """{block: positions in the Objective's flat vectors} for the blockwise split (empty blocks left out; a sharded
    Objective's blocks are cut from the whole parameters, then kept to this rank's part of them)."""
    modules = dict(objective.model.named_modules())
    positions: dict[str, list[Tensor]] = {}
    start = 0
    for name, (_, parameter) in zip(objective.names, objective.parameters):
        shape = parameter.shape  # the whole parameter's shape, also when this rank holds a shard of it
        flat = torch.arange(start, start + shape.numel())
        start += shape.numel()
        module_name, _, leaf = name.rpartition(".")
        for block, part in _split(name, modules.get(module_name), module_name, leaf, flat.view(shape)):
            positions.setdefault(block, []).append(part.reshape(-1))
    whole = {block: torch.cat(parts) for block, parts in positions.items()}
    if objective.sharding is not None:
        whole = {block: objective.sharding.local_positions(index) for block, index in whole.items()}
    return {block: index.to(objective.space.device) for block, index in whole.items()}


def _split(name: str, module: nn.Module | None, module_name: str, leaf: str, flat: Tensor) -> list[tuple[str, Tensor]]:
    segments = module_name.lower().split(".")
    last = segments[-1] if segments else ""
    if isinstance(module, nn.Embedding):
        return [(EMBEDDINGS, flat)]
    if isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower() or last.startswith("ln"):
        return [(NORMS, flat)]
    if isinstance(module, nn.MultiheadAttention) and leaf.startswith("in_proj"):
        return _thirds(flat, dim=0)  # rows [Q; K; V]
    if any("attn" in s or "attention" in s for s in segments):
        if last == FUSED_GPT2:
            return _thirds(flat, dim=-1)
        if last in FUSED_OTHER:
            raise InputError(
                f"blocks='transformer': {name} fuses query, key and value in a layout this split cannot tell apart; "
                "give blocks as a dict {name: parameter selector}"
            )
        if last in QK_NAMES:
            return [(QK, flat)]
        if last in VO_NAMES:
            return [(VO, flat)]
    if any(s in MLP_SEGMENTS for s in segments) or last in MLP_NAMES:
        return [(MLP, flat)]
    if last in HEAD_NAMES:
        return [(HEAD, flat)]
    return [(OTHER, flat)]


def _thirds(flat: Tensor, dim: int) -> list[tuple[str, Tensor]]:
    """A fused [Q | K | V] parameter along ``dim``: query and key to QK, value to VO."""
    d = flat.shape[dim] // 3
    qk, v = flat.narrow(dim, 0, 2 * d), flat.narrow(dim, 2 * d, flat.shape[dim] - 2 * d)
    return [(QK, qk), (VO, v)]


def wang_agreement(values: Mapping[str, float]) -> tuple[int, int]:
    """(pairs in Wang et al.'s order, pairs compared): of every two blocks of ``WANG_ORDER`` with a finite value in
    ``values``, whether the one Wang et al. find sharper is sharper here."""
    present = [block for block in WANG_ORDER if block in values and math.isfinite(values[block])]
    pairs = list(itertools.combinations(present, 2))  # (lower, higher) in Wang et al.'s order
    return sum(values[low] < values[high] for low, high in pairs), len(pairs)
