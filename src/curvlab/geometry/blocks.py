"""Per-block spectra: the top eigenvalues of the diagonal blocks of a curvature matrix, one block
per module (or per user-named group of parameters), all from the one operator of the whole model."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from curvlab.core.objective import Objective
from curvlab.core.params import select_parameters
from curvlab.errors import InputError, InputTypeError
from curvlab.geometry.transformer_blocks import transformer_blocks
from curvlab.linalg import EigResult, LinearOperator, eigs


def module_blocks(objective: Objective) -> dict[str, list[str]]:
    """{qualified module name: names of the selected parameters it owns directly}, in module order
    (``named_modules()``; the root module's name is ``""``). Modules owning none are left out."""
    selected = set(objective.names)
    blocks = {}
    for module_name, module in objective.model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        owned = [prefix + n for n, _ in module.named_parameters(recurse=False) if prefix + n in selected]
        if owned:
            blocks[module_name] = owned
    return blocks


def block_indices(objective: Objective, blocks: str | dict[str, Any] = "module") -> dict[str, Tensor]:
    """{block name: positions of its entries in the Objective's flat vectors}."""
    if blocks == "transformer":
        return transformer_blocks(objective)
    if isinstance(blocks, str):
        if blocks != "module":
            raise InputError(
                f"blocks: expected 'module', 'transformer' or a dict {{name: parameter selector}}, got {blocks!r}"
            )
        named = module_blocks(objective)
    elif isinstance(blocks, dict) and blocks:
        named = {
            name: [n for n, _ in select_parameters(objective.model, selector)] for name, selector in blocks.items()
        }
    else:
        raise InputTypeError(
            f"blocks: expected 'module' or a non-empty dict {{name: parameter selector}}, got {blocks!r}"
        )
    offsets, start = {}, 0
    for name, (_, parameter) in zip(objective.names, objective.parameters):  # whole parameters, also when sharded
        offsets[name] = (start, start + parameter.numel())
        start += parameter.numel()
    result = {}
    for block, names in named.items():
        missing = [n for n in names if n not in offsets]
        if missing:
            raise InputError(f"blocks: block {block!r} holds parameters the Objective does not measure: {missing}")
        index = torch.cat([torch.arange(*offsets[n]) for n in names])
        if objective.sharding is not None:
            index = objective.sharding.local_positions(index)
        result[block] = index.to(objective.space.device)
    return result


def diagonal_block(op: LinearOperator, index: Tensor) -> LinearOperator:
    """The diagonal block A[index, index] of a symmetric operator, as an operator of its own."""

    def product(v: Tensor) -> Tensor:
        padded = torch.zeros(op.dim, dtype=op.dtype, device=op.device)
        padded[index] = v
        return op(padded)[index]

    return op.derive(product, dim=index.numel(), name=f"{op.name} block")


def block_eigs(
    objective: Objective,
    blocks: str | dict[str, Any] = "module",
    k: int = 1,
    curvature: str = "hessian",
    tol: float = 1e-3,
    **eigs_options: Any,
) -> dict[str, EigResult]:
    """Top-``k`` eigenpairs of each diagonal block of the curvature at the current point.

    ``blocks="module"``: one block per module owning parameters directly, keyed by its qualified name
    from ``named_modules()``; ``blocks="transformer"``: the blockwise split of Wang et al. (2025) — embeddings,
    attention QK, attention VO, MLP, norms (and an untied head, anything else in "other"), from one call on a
    Hugging Face or PyTorch transformer (:mod:`curvlab.geometry.transformer_blocks`); or a dict {name: parameter
    selector (names, tensors or a predicate)}.
    ``curvature``: ``"hessian"``, ``"ggn"``, ``"fisher"`` (empirical) or ``"fisher_mc"``. Every block's
    products go through the one operator of the whole model, so the chunk graphs are built once.
    """
    op = objective.curvature(curvature)
    results = {}
    for name, index in block_indices(objective, blocks).items():
        block = diagonal_block(op, index)
        results[name] = eigs(block, k=min(k, block.size), tol=tol, **eigs_options)
    return results
