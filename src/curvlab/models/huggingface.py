"""Hugging Face causal language models from their configs (``transformers.GPT2Config``, ``LlamaConfig``), built
small and untrained for experiments from a TOML config: ``[model] name = "gpt2"`` with ``n_layer``, ``n_embd``,
``n_head``; ``name = "llama"`` with ``num_hidden_layers``, ``hidden_size``, ``intermediate_size``,
``num_attention_heads``. The vocabulary and context length come from the data set. No weights are downloaded.

Built with eager attention and no dropout: PyTorch's fused attention kernels have no double backward on the CPU,
and curvature products need one (or ``hvp_engine="finite_difference"``). The model is wrapped so that it maps
token ids to logits, as curvlab's own ``transformer`` does, and its parameter names keep the Hugging Face ones,
so the Monitor's ``BlockSharpness(blocks="transformer")`` splits it as Wang et al. (2025) do."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from curvlab.errors import InputError


class LogitsOf(nn.Module):
    """A Hugging Face causal LM as ``tokens -> logits`` (batch, sequence, vocabulary)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor) -> Tensor:
        logits: Tensor = self.model(input_ids=tokens).logits
        return logits


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:
        raise InputError(
            "model: the Hugging Face models need the transformers package: pip install -c constraints.txt "
            "'curvlab[transformers]'"
        ) from err
    return transformers


def _config(cls: Any, settings: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """``cls(**settings, **overrides)`` with eager attention (twice differentiable on the CPU); an override that is
    not a field of the config class is refused (a Hugging Face config would keep a misspelt key silently)."""
    fields = cls().to_dict()
    unknown = sorted(key for key in overrides if key not in fields)
    if unknown:
        raise InputError(f"model: {cls.__name__} has no field {unknown}; see its documentation for the fields")
    config = cls(**{**settings, **overrides})
    config._attn_implementation = "eager"
    return config


def gpt2(vocab: int, context: int, n_layer: int = 2, n_embd: int = 64, n_head: int = 2, **overrides: Any) -> nn.Module:
    """An untrained GPT-2 (``GPT2LMHeadModel``, tied embeddings) of the given size for ``vocab`` tokens."""
    transformers = _transformers()
    settings: dict[str, Any] = {
        "vocab_size": vocab,
        "n_positions": context,
        "n_layer": n_layer,
        "n_embd": n_embd,
        "n_head": n_head,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "bos_token_id": None,  # GPT-2's 50256 lies outside a small vocabulary; the data sets have no special tokens
        "eos_token_id": None,
    }
    return LogitsOf(transformers.GPT2LMHeadModel(_config(transformers.GPT2Config, settings, overrides)))


def llama(
    vocab: int,
    context: int,
    num_hidden_layers: int = 2,
    hidden_size: int = 64,
    intermediate_size: int = 256,
    num_attention_heads: int = 2,
    **overrides: Any,
) -> nn.Module:
    """An untrained Llama-style model (``LlamaForCausalLM``: RMSNorm, rotary positions, SwiGLU) of the given size."""
    transformers = _transformers()
    settings: dict[str, Any] = {
        "vocab_size": vocab,
        "max_position_embeddings": context,
        "num_hidden_layers": num_hidden_layers,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_attention_heads,
        "attention_dropout": 0.0,
    }
    return LogitsOf(transformers.LlamaForCausalLM(_config(transformers.LlamaConfig, settings, overrides)))
