"""Token blocks: exact content, determinism, caps, balance and bad tokenizers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

import crane_lens as cl
from crane_lens.data.corpus import Corpus, CorpusInfo, TextRecord

TEXTS = {
    "en": [f"Sentence number {i} is about the quick brown fox." for i in range(60)],
    "vi": [f"Câu số {i} nói về con cáo nâu nhanh nhẹn." for i in range(40)],
}


def _corpus(texts: dict[str, list[str]] = TEXTS) -> Corpus:
    return Corpus(
        {lang: [TextRecord(t) for t in rows] for lang, rows in texts.items()},
        CorpusInfo(source="test", split="train"),
    )


def _reference_stream(texts: list[str], tokenizer, seed: int, lang: str) -> list[int]:  # type: ignore[no-untyped-def]
    """Independent oracle: shuffle, tokenize one text at a time, each followed by EOS + BOS."""
    order = list(range(len(texts)))
    random.Random(f"{seed}:{lang}").shuffle(order)
    ids: list[int] = []
    for i in order:
        ids += [*tokenizer.encode(texts[i], add_special_tokens=False), tokenizer.eos_token_id,
                tokenizer.bos_token_id]  # fmt: skip
    return ids


def test_blocks_are_bos_plus_consecutive_token_chunks(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    blocks = _corpus().to_token_blocks(tiny_tokenizer, seq_len=16, seed=3)
    for lang in TEXTS:
        t = blocks[lang]
        assert t.dtype == torch.long and t.shape[1] == 16
        assert (t[:, 0] == tiny_tokenizer.bos_token_id).all()
        stream = _reference_stream(TEXTS[lang], tiny_tokenizer, seed=3, lang=lang)
        assert t.shape[0] == len(stream) // 15
        assert t[:, 1:].reshape(-1).tolist() == stream[: t.shape[0] * 15]


def test_deterministic_for_a_seed_and_seed_sensitive(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    a = _corpus().to_token_blocks(tiny_tokenizer, seq_len=16, seed=1)
    b = _corpus().to_token_blocks(tiny_tokenizer, seq_len=16, seed=1)
    c = _corpus().to_token_blocks(tiny_tokenizer, seq_len=16, seed=2)
    assert all(torch.equal(a[lang], b[lang]) for lang in TEXTS)
    assert not torch.equal(a["en"], c["en"])


def test_capped_run_equals_prefix_of_uncapped_run(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    full = _corpus().to_token_blocks(tiny_tokenizer, seq_len=16, seed=0)
    capped = _corpus().to_token_blocks(
        tiny_tokenizer, seq_len=16, seed=0, max_tokens_per_lang=16 * 5 + 7
    )
    for lang in TEXTS:
        assert capped[lang].shape[0] == 5
        assert torch.equal(capped[lang], full[lang][:5])
        assert capped.n_tokens(lang) == 80


def test_balance_gives_every_language_the_same_number_of_blocks(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    unbalanced = _corpus().to_token_blocks(tiny_tokenizer, seq_len=16)
    assert unbalanced["en"].shape[0] > unbalanced["vi"].shape[0]
    balanced = _corpus().to_token_blocks(tiny_tokenizer, seq_len=16, balance=True)
    assert balanced["en"].shape[0] == balanced["vi"].shape[0] == unbalanced["vi"].shape[0]
    assert torch.equal(balanced["en"], unbalanced["en"][: balanced["en"].shape[0]])


def test_tokenizer_without_bos_is_refused(tokenizer_without_bos) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(cl.TokenizerError, match="no BOS token.*bos_token"):
        _corpus().to_token_blocks(tokenizer_without_bos, seq_len=16)


def test_too_little_text(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(cl.EmptyCorpusError, match="'vi' has only .* tokens"):
        _corpus({"en": TEXTS["en"], "vi": ["ngắn"]}).to_token_blocks(tiny_tokenizer, seq_len=64)


def test_bad_arguments(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="seq_len"):
        _corpus().to_token_blocks(tiny_tokenizer, seq_len=1)
    with pytest.raises(ValueError, match="below one block"):
        _corpus().to_token_blocks(tiny_tokenizer, seq_len=16, max_tokens_per_lang=8)


def test_save_load_round_trip(tiny_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    blocks = _corpus().to_token_blocks(tiny_tokenizer, seq_len=16, seed=5)
    loaded = cl.TokenBlocks.load(blocks.save(tmp_path / "blocks"))
    assert loaded.langs == blocks.langs and loaded.seed == 5 and loaded.seq_len == 16
    assert all(torch.equal(loaded[lang], blocks[lang]) for lang in blocks)


@pytest.mark.integration
def test_builtin_corpus_to_blocks(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    corpus = cl.load_corpus("builtin", langs=["en", "zh", "vi"], split="eval")
    blocks = corpus.to_token_blocks(
        tiny_tokenizer, seq_len=64, max_tokens_per_lang=64 * 20, balance=True
    )
    assert {lang: tuple(t.shape) for lang, t in blocks.blocks.items()} == {
        "en": (20, 64),
        "zh": (20, 64),
        "vi": (20, 64),
    }


def test_eos_only_separator_and_bad_separator(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    blocks = _corpus().to_token_blocks(tiny_tokenizer, seq_len=16, seed=3, separator="eos")
    stream = _reference_stream(TEXTS["en"], tiny_tokenizer, seed=3, lang="en")
    without_bos = [t for t in stream if t != tiny_tokenizer.bos_token_id]
    assert blocks["en"][:, 1:].reshape(-1).tolist() == without_bos[: blocks["en"].shape[0] * 15]
    with pytest.raises(ValueError, match="separator"):
        _corpus().to_token_blocks(tiny_tokenizer, seq_len=16, separator="bos")  # type: ignore[arg-type]
