"""Tiny random checkpoints of six architectures, saved with a tokenizer like a real model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

VOCAB = 320  # > the 300-token test tokenizer


def _configs() -> dict[str, object]:
    from transformers import (
        BloomConfig,
        Gemma2Config,
        GPT2Config,
        LlamaConfig,
        MistralConfig,
        Qwen2Config,
    )

    common = {"vocab_size": VOCAB, "bos_token_id": 0, "eos_token_id": 1}
    decoder = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}  # fmt: skip
    return {
        "llama": LlamaConfig(**common, **decoder),
        "qwen2": Qwen2Config(**common, **decoder),
        "mistral": MistralConfig(**common, **decoder),
        "gemma2": Gemma2Config(**common, **decoder, head_dim=16),
        "gpt2": GPT2Config(**common, n_embd=64, n_layer=2, n_head=4, n_positions=64),
        "bloom": BloomConfig(**common, hidden_size=64, n_layer=2, n_head=4),
    }


# How to reach each architecture's down projection in the Hugging Face model.
DOWN_PROJ: dict[str, Callable[[torch.nn.Module, int], torch.nn.Module]] = {
    "llama": lambda m, layer: m.model.layers[layer].mlp.down_proj,
    "qwen2": lambda m, layer: m.model.layers[layer].mlp.down_proj,
    "mistral": lambda m, layer: m.model.layers[layer].mlp.down_proj,
    "gemma2": lambda m, layer: m.model.layers[layer].mlp.down_proj,
    "gpt2": lambda m, layer: m.transformer.h[layer].mlp.c_proj,
    "bloom": lambda m, layer: m.transformer.h[layer].mlp.dense_4h_to_h,
}
ARCHITECTURES = list(DOWN_PROJ)


def save_tiny_checkpoints(root: Path, tokenizer: object) -> dict[str, Path]:
    """Save one tiny random model per architecture (seed 0) with ``tokenizer`` beside it."""
    from transformers import AutoModelForCausalLM

    out = {}
    for arch, config in _configs().items():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
        folder = root / arch
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
        out[arch] = folder
    return out


def save_tiny_gemma3(root: Path, tokenizer: object) -> Path:
    """A tiny random Gemma 3 (seed 0): QK-norm, four norms per layer, a scaled embedding,
    sliding-window and global layers. Its norm weights are drawn at random (Hugging Face starts
    them at 0, where Gemma's ``1 + w`` and Llama's ``w`` could not be told apart)."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(vocab_size=VOCAB, bos_token_id=0, eos_token_id=1, hidden_size=64,
                              intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                              sliding_window=8)  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.normal_(0.0, 0.3)
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)  # type: ignore[attr-defined]
    return root
