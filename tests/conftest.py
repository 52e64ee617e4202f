"""Shared fixtures: a tiny tokenizer trained here, offline, and seeded randomness."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile
from pathlib import Path

# No hub: make `datasets`/`transformers` fail fast instead of retrying the network, and keep
# their caches out of the user's home.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
if "HF_HOME" not in os.environ:
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="crane_lens_hf_")
    atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)

import pytest
import torch

TRAIN_LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Con cáo nâu nhanh nhẹn nhảy qua con chó lười.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
] * 20


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)


def _train_tokenizer(folder: Path, *, with_bos: bool) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<s>", "</s>"] if with_bos else ["</s>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAIN_LINES, trainer)
    kwargs = {"eos_token": "</s>"}
    if with_bos:
        kwargs["bos_token"] = "<s>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    fast.save_pretrained(folder)
    return fast


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A 300-token byte-level BPE with BOS ``<s>`` and EOS ``</s>``."""
    return _train_tokenizer(tmp_path_factory.mktemp("tok"), with_bos=True)


@pytest.fixture(scope="session")
def tiny_checkpoints(
    tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: object
) -> dict[str, Path]:
    """Tiny random Llama, Qwen2, Mistral, Gemma2, GPT-2 and BLOOM checkpoints with a tokenizer."""
    from tests.tiny_models import save_tiny_checkpoints

    return save_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"), tiny_tokenizer)


@pytest.fixture(scope="session")
def tokenizer_without_bos(tmp_path_factory: pytest.TempPathFactory) -> object:
    return _train_tokenizer(tmp_path_factory.mktemp("tok_nobos"), with_bos=False)
