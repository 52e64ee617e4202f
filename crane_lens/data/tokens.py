"""Fixed-length token blocks per language: the input every statistic of crane_lens runs on."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
from jaxtyping import Int
from torch import Tensor

from crane_lens.errors import EmptyCorpusError, TokenizerError

if TYPE_CHECKING:
    from crane_lens.data.corpus import Corpus

_TOKENIZE_CHUNK = 512  # texts per tokenizer call: big enough for the fast tokenizer's batching


class TokenizerLike(Protocol):
    """What crane_lens needs of a tokenizer (any Hugging Face tokenizer qualifies)."""

    bos_token_id: int | None
    eos_token_id: int | None

    def __call__(self, text: list[str], *, add_special_tokens: bool = ...) -> Any: ...


@dataclass
class TokenBlocks:
    """Token blocks per language, each row ``[BOS, t1, ..., t_{seq_len-1}]``.

    Attributes:
        blocks: Language → ``Int[Tensor, "block pos"]`` (``torch.long``).
        seq_len: Length of every block, BOS included.
        bos_token_id: The BOS id that starts every block.
        seed: Seed of the text order the blocks were cut from.
    """

    blocks: dict[str, Int[Tensor, "block pos"]]
    seq_len: int
    bos_token_id: int
    seed: int

    @property
    def langs(self) -> list[str]:
        return list(self.blocks)

    def __getitem__(self, lang: str) -> Int[Tensor, "block pos"]:
        return self.blocks[lang]

    def __iter__(self) -> Iterator[str]:
        return iter(self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def n_tokens(self, lang: str) -> int:
        """Tokens of a language, BOS included."""
        return self.blocks[lang].numel()

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``blocks.safetensors`` and ``blocks.json`` into ``directory``."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "blocks.safetensors.tmp"
        save_file({lang: t.contiguous() for lang, t in self.blocks.items()}, str(tmp))
        tmp.replace(out / "blocks.safetensors")
        meta = {"seq_len": self.seq_len, "bos_token_id": self.bos_token_id, "seed": self.seed,
                "langs": self.langs}  # fmt: skip
        (out / "blocks.json.tmp").write_text(json.dumps(meta, indent=1))
        (out / "blocks.json.tmp").replace(out / "blocks.json")
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TokenBlocks:
        """Read blocks written by :meth:`save`."""
        from safetensors.torch import load_file

        src = Path(directory)
        meta = json.loads((src / "blocks.json").read_text())
        tensors = load_file(str(src / "blocks.safetensors"))
        return cls({lang: tensors[lang] for lang in meta["langs"]}, meta["seq_len"],
                   meta["bos_token_id"], meta["seed"])  # fmt: skip


def _token_stream(
    texts: Sequence[str],
    order: list[int],
    tokenizer: TokenizerLike,
    separator: list[int],
    needed: int | None,
    chunk: int = _TOKENIZE_CHUNK,
) -> list[int]:
    """Concatenate token ids of texts in ``order``, each followed by ``separator``, stopping
    once ``needed`` is met (``chunk`` texts per tokenizer call; the result's first ``needed``
    ids do not depend on it)."""
    ids: list[int] = []
    for start in range(0, len(order), chunk):
        batch = [texts[i] for i in order[start : start + chunk]]
        for seq in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            ids.extend(seq)
            ids.extend(separator)
        if needed is not None and len(ids) >= needed:
            break
    return ids


def _separator_ids(tokenizer: TokenizerLike, separator: Literal["eos+bos", "eos"]) -> list[int]:
    """What follows each text in the stream: EOS + BOS, or EOS alone (BOS when there is no EOS)."""
    if separator not in ("eos+bos", "eos"):
        raise ValueError(f"separator must be 'eos+bos' or 'eos', not {separator!r}.")
    bos = getattr(tokenizer, "bos_token_id", None)
    eos = getattr(tokenizer, "eos_token_id", None)
    return [
        t for t in (eos, bos if separator == "eos+bos" or eos is None else None) if t is not None
    ]


def _text_order(n_texts: int, seed: int, lang: str) -> list[int]:
    """The order a language's texts are streamed in: shuffled by a generator seeded by
    ``(seed, lang)``."""
    order = list(range(n_texts))
    random.Random(f"{seed}:{lang}").shuffle(order)
    return order


def block_stream_length(
    corpus: Corpus,
    tokenizer: TokenizerLike,
    lang: str,
    *,
    seed: int = 0,
    separator: Literal["eos+bos", "eos"] = "eos+bos",
    up_to: int | None = None,
) -> int:
    """Length of the token stream :func:`make_token_blocks` cuts ``lang``'s blocks from.

    The same texts in the same order, the same separators: ``make_token_blocks(..., seq_len)``
    makes ``length // (seq_len - 1)`` blocks of ``lang`` (before any cap), so one block needs a
    length of at least ``seq_len - 1``. With ``up_to`` the count stops once it is reached
    (tokenising a few texts at a time), so a large corpus costs a few small tokenizer calls.

    Args:
        corpus: Source texts.
        tokenizer: The tokenizer :func:`make_token_blocks` would be given.
        lang: A language of ``corpus``.
        seed: Seed of the text order.
        separator: As :func:`make_token_blocks`.
        up_to: Stop counting at this length (the result is then ``>= up_to``); ``None``: the
            whole stream.

    Returns:
        The number of stream tokens, separators included, BOS of the blocks excluded; exact
        when below ``up_to``.

    Example:
        >>> from crane_lens.data.corpus import Corpus, CorpusInfo, TextRecord
        >>> class Chars:  # one token per character; BOS 0, EOS 1
        ...     bos_token_id, eos_token_id = 0, 1
        ...     def __call__(self, text, *, add_special_tokens=True):
        ...         return {"input_ids": [[ord(c) for c in t] for t in text]}
        >>> corpus = Corpus({"en": [TextRecord("abc"), TextRecord("de")]}, CorpusInfo("x", "eval"))
        >>> block_stream_length(corpus, Chars(), "en")  # 5 characters + 2 × (EOS, BOS)
        9
    """
    texts = corpus[lang]
    order = _text_order(len(texts), seed, lang)
    after = _separator_ids(tokenizer, separator)
    # Few texts per call while counting up to a bound: a corpus of long documents costs little.
    chunk = _TOKENIZE_CHUNK if up_to is None else 32
    return len(_token_stream(texts, order, tokenizer, after, up_to, chunk))


def make_token_blocks(
    corpus: Corpus,
    tokenizer: TokenizerLike,
    seq_len: int = 128,
    max_tokens_per_lang: int | None = None,
    seed: int = 0,
    *,
    balance: bool = False,
    separator: Literal["eos+bos", "eos"] = "eos+bos",
) -> TokenBlocks:
    """Cut each language's texts into blocks of ``seq_len`` tokens that start with BOS.

    Texts are shuffled with a per-language generator seeded by ``(seed, lang)``, tokenised
    without special tokens, each followed by EOS + BOS (BOS alone when the tokenizer has no EOS)
    — the packing of pre-training data, so every text starts after BOS as it does when the
    model is prompted — and cut into consecutive chunks of ``seq_len - 1`` tokens; BOS is prepended to every chunk and the last
    partial chunk is dropped. The result depends only on the corpus, tokenizer and seed.

    Args:
        corpus: Source texts.
        tokenizer: A tokenizer with a BOS token (e.g. ``AutoTokenizer.from_pretrained(...)``).
        seq_len: Tokens per block, BOS included (>= 2).
        max_tokens_per_lang: Cap on tokens per language (rounded down to whole blocks).
        seed: Seed of the text order.
        balance: Give every language the same number of blocks (the smallest language's).
        separator: What follows each text: ``"eos+bos"`` (default) or ``"eos"`` alone (the
            demo models' phase-1 training data).

    Returns:
        :class:`TokenBlocks` with ``Int[Tensor, "block pos"]`` per language.

    Raises:
        TokenizerError: The tokenizer has no BOS token.
        EmptyCorpusError: A language has too little text for one block.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2 (BOS plus one token), got {seq_len}.")
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise TokenizerError(
            "The tokenizer has no BOS token, but every block starts with one (the position "
            "neuron statistics are anchored to). Set one, e.g. tokenizer.bos_token = "
            "tokenizer.eos_token, or add a '<s>' special token."
        )
    max_blocks = None
    if max_tokens_per_lang is not None:
        max_blocks = max_tokens_per_lang // seq_len
        if max_blocks < 1:
            raise ValueError(
                f"max_tokens_per_lang={max_tokens_per_lang} is below one block of {seq_len} tokens."
            )
    after = _separator_ids(tokenizer, separator)
    blocks: dict[str, Tensor] = {}
    for lang in corpus.langs:
        texts = corpus[lang]
        order = _text_order(len(texts), seed, lang)
        needed = None if max_blocks is None else max_blocks * (seq_len - 1)
        ids = _token_stream(texts, order, tokenizer, after, needed)
        n_blocks = len(ids) // (seq_len - 1)
        if max_blocks is not None:
            n_blocks = min(n_blocks, max_blocks)
        if n_blocks == 0:
            raise EmptyCorpusError(
                f"{lang!r} has only {len(ids)} tokens, fewer than one block of {seq_len}. "
                "Lower seq_len or add text for this language."
            )
        body = torch.tensor(ids[: n_blocks * (seq_len - 1)], dtype=torch.long).view(
            n_blocks, seq_len - 1
        )
        blocks[lang] = torch.cat([torch.full((n_blocks, 1), bos, dtype=torch.long), body], dim=1)
    if balance:
        smallest = min(t.shape[0] for t in blocks.values())
        blocks = {lang: t[:smallest] for lang, t in blocks.items()}
    return TokenBlocks(blocks, seq_len, int(bos), seed)
