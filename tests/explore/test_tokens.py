"""Display units without a model: a tiny byte-fallback tokenizer (as Gemma's) built here."""

from __future__ import annotations

import re
import unicodedata
from html import unescape
from html.parser import HTMLParser
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from crane_lens.explore.tokens import (
    TokenGroup,
    coloured_tokens,
    display_groups,
    groups_from_pieces,
    readable_tokens,
    sum_groups,
    visible_text,
)

ZERO_WIDTH = {"Cc", "Cf", "Mn", "Me", "Zl", "Zp"}


@pytest.fixture(scope="module")
def byte_fallback() -> Any:
    """SentencePiece-style BPE with byte fallback: 好 and ' a' are pieces, all else is bytes.

    Like Gemma's: a run of byte pieces decodes as one, and turns into one '�' per byte unless
    the whole run is valid UTF-8.
    """
    vocab = {"<unk>": 0, "<bos>": 1} | {f"<0x{b:02X}>": 2 + b for b in range(256)}
    for piece in ["▁", "a", "b", "▁a", "好"]:
        vocab[piece] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("▁", "a")], byte_fallback=True,
                               unk_token="<unk>"))  # fmt: skip
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", unk_token="<unk>")


def encode(tokenizer: Any, text: str) -> list[int]:
    return [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]


def test_the_tokenizer_splits_characters_into_byte_pieces(byte_fallback: Any) -> None:
    ids = encode(byte_fallback, "你好")
    assert byte_fallback.convert_ids_to_tokens(ids) == ["<bos>", "<0xE4>", "<0xBD>", "<0xA0>", "好"]
    assert byte_fallback.decode(ids[1:2]) == "\ufffd"
    assert byte_fallback.decode(ids[1:3]) == "\ufffd\ufffd"  # a run of bytes: '�' per byte


@pytest.mark.parametrize(
    "text", ["你好 a龘", "龘靐齉 a", "a\nb 😀 ab", "a\u200bb", "Việt", "x\ufffdy", "👍🏽好"]
)
def test_units_cover_the_tokens_and_concatenate_to_the_text(byte_fallback: Any, text: str) -> None:
    ids = encode(byte_fallback, text)
    groups = display_groups(byte_fallback, ids)
    assert groups[0] == TokenGroup("<bos>", 0, 1)
    assert [g.start for g in groups[1:]] == [g.stop for g in groups[:-1]]
    assert groups[-1].stop == len(ids) and all(g.n_tokens >= 1 for g in groups)
    assert "".join(g.text for g in groups[1:]) == text
    # Each unit is whole characters: no '�' that the text does not have.
    assert sum(g.text.count("\ufffd") for g in groups) == text.count("\ufffd")
    # ... and the shortest such run: every unit of several pieces is one character here.
    assert all(len(g.text) == 1 for g in groups if g.n_tokens > 1)
    assert all(g.label and not set(map(unicodedata.category, g.label)) <= ZERO_WIDTH
               for g in groups)  # fmt: skip
    pieces = readable_tokens(byte_fallback, ids)
    assert len(pieces) == len(ids) and "".join(pieces[1:]) == text
    assert groups_from_pieces(pieces)[1:] == [g for g in groups[1:] if g.text]


def test_rare_characters_are_one_unit_of_three_byte_pieces(byte_fallback: Any) -> None:
    groups = display_groups(byte_fallback, encode(byte_fallback, "龘靐 a"))
    assert [(g.text, g.n_tokens) for g in groups] == [("<bos>", 1), ("龘", 3), ("靐", 3), (" a", 1)]


def test_bytes_that_never_form_a_character_end_their_unit(byte_fallback: Any) -> None:
    first_byte = encode(byte_fallback, "你")[1]  # <0xE4> alone, then ' a': invalid UTF-8
    ids = [byte_fallback.bos_token_id, first_byte, *encode(byte_fallback, " a好")[1:]]
    groups = display_groups(byte_fallback, ids)
    assert [g.text for g in groups] == ["<bos>", "\ufffd", " a", "好"]


def test_byte_level_bpe_groups_too() -> None:
    """A GPT-2-style byte-level BPE (lossy decoding per invalid sequence, not per byte)."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<bos>": 0} | {piece: i + 1 for i, piece in enumerate(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>")
    ids = encode(hf, "你好\ufffd a")
    assert len(ids) == 1 + 3 + 3 + 3 + 2  # every byte a piece (U+FFFD is bytes EF BF BD)
    groups = display_groups(hf, ids)
    assert [g.text for g in groups] == ["<bos>", "你", "好", "\ufffd", " ", "a"]


def test_sum_groups_sums_rows_of_each_unit() -> None:
    groups = [TokenGroup("<bos>", 0, 1), TokenGroup("你", 1, 3), TokenGroup(" a", 3, 4)]
    values = torch.arange(24.0).reshape(4, 2, 3)
    summed = sum_groups(values, groups)
    torch.testing.assert_close(summed, torch.stack([values[0], values[1] + values[2], values[3]]))
    torch.testing.assert_close(summed.sum(0), values.sum(0))
    predicted = sum_groups(values[1:], groups, offset=1)  # values[i] belongs to token i + 1
    torch.testing.assert_close(predicted, torch.stack([values[1] + values[2], values[3]]))
    assert sum_groups(values[:0], groups).shape == (0, 2, 3)


@pytest.mark.parametrize(
    ("text", "shown"),
    [("你", "你"), (" cat", " cat"), ("\n", "↵"), ("a\tb", "a⇥b"), ("  ", "␣␣"), ("", "∅"),
     ("\u200b", "⟨U+200B⟩"), ("\ufeff", "⟨U+FEFF⟩"), ("\u0301", "◌\u0301"), ("<bos>", "<bos>")],
)  # fmt: skip
def test_visible_text_is_never_empty_or_invisible(text: str, shown: str) -> None:
    assert visible_text(text) == shown


class Spans(HTMLParser):
    """(text, alpha of the background) of each coloured span."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.spans: list[tuple[str, float]] = []
        self._alpha: float | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        style = dict(attrs).get("style") or ""
        if tag == "span" and (match := re.search(r"rgba\([\d,]+,([\d.]+)\)", style)):
            self._alpha = float(match[1])
            self.spans.append(("", self._alpha))

    def handle_data(self, data: str) -> None:
        if self._alpha is not None:
            self.spans[-1] = (self.spans[-1][0] + data, self._alpha)

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._alpha = None


def coloured_spans(page: str) -> list[tuple[str, float]]:
    parser = Spans()
    parser.feed(page)
    return parser.spans


def invisible(text: str) -> bool:
    """Empty, whitespace only, or only characters that take no room (U+200B, marks, ...)."""
    text = unescape(text)
    return not text.strip() or all(unicodedata.category(c) in ZERO_WIDTH for c in text)


def test_coloured_tokens_never_colours_an_invisible_span() -> None:
    pieces = ["", "你", "\n", "\u200b", " ", "a"]
    page = coloured_tokens(pieces, [28.8, 2.7, 1.0, 3.0, 4.0, 0.0], "t", "nats")
    spans = coloured_spans(page)
    assert [text for text, _ in spans] == ["∅", "你", "↵", "⟨U+200B⟩", "␣", "a"]
    assert spans[0][1] == 1.0 and spans[-1][1] == 0.0
    assert not [text for text, alpha in spans if alpha > 0 and invisible(text)]
    assert invisible("\u200b") and invisible("") and not invisible("你")  # the check itself
