"""Held-out eval splits of user corpora, and split names."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

import crane_lens as cl
from crane_lens.data.build.text import dedup_key
from crane_lens.data.corpus import TextRecord
from crane_lens.data.splits import HELD_OUT_FRACTION, MIN_TEXTS_TO_HOLD_OUT, hold_out

EN = [f"This is English sentence number {i}, about topic {i % 7}." for i in range(100)]
VI = [f"Đây là câu tiếng Việt số {i}." for i in range(37)]


def _write(folder: Path, lines: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for lang, rows in lines.items():
        (folder / f"{lang}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def _both(folder: Path, **kwargs: object) -> tuple[cl.Corpus, cl.Corpus]:
    return (
        cl.load_corpus(folder, split="train", **kwargs),  # type: ignore[arg-type]
        cl.load_corpus(folder, split="eval", **kwargs),  # type: ignore[arg-type]
    )


def test_held_out_split_is_disjoint_and_of_the_documented_size(tmp_path: Path) -> None:
    train, held_out = _both(_write(tmp_path, {"en": EN, "vi": VI}))
    assert HELD_OUT_FRACTION == 0.1
    for lang, lines, n_eval in (("en", EN, 10), ("vi", VI, 4)):  # round(3.7) = 4
        assert len(held_out[lang]) == n_eval
        assert len(train[lang]) == len(lines) - n_eval
        assert not set(train[lang]) & set(held_out[lang])  # never train text as eval
        assert sorted(train[lang] + held_out[lang]) == sorted(lines)  # nothing lost
    assert "10% held out as eval" in train.info.description
    # The summary shows both parts, whichever was loaded.
    assert train.info.volumes["eval"]["en"]["texts"] == 10
    assert train.info.volumes["train"]["vi"]["texts"] == 33


def test_held_out_split_is_deterministic(tmp_path: Path) -> None:
    first = _both(_write(tmp_path / "a", {"en": EN, "vi": VI}))
    again = _both(tmp_path / "a")
    # A re-created folder: other path, other line order, other languages loaded alongside.
    shuffled = EN.copy()
    random.Random(1).shuffle(shuffled)
    other = _both(_write(tmp_path / "b", {"en": shuffled}))
    assert first[1]["en"] == again[1]["en"] and first[0]["vi"] == again[0]["vi"]
    assert set(other[1]["en"]) == set(first[1]["en"])
    # Pinned: a change of the rule (salt, hash, rounding) must be deliberate.
    assert sorted(EN.index(t) for t in first[1]["en"]) == [1, 18, 29, 30, 34, 40, 68, 69, 73, 91]


def test_held_out_split_keeps_copies_on_one_side(tmp_path: Path) -> None:
    # Case and spacing variants of one sentence count as the same text.
    lines = [*EN[:30], *(EN[i].upper() for i in range(30)), *(f" {t}  " for t in EN[:30])]
    train, held_out = _both(_write(tmp_path, {"en": lines}))
    assert len({dedup_key(t) for t in held_out["en"]}) == 3  # 10 % of 30 distinct texts
    assert not {dedup_key(t) for t in train["en"]} & {dedup_key(t) for t in held_out["en"]}
    assert len(train["en"]) + len(held_out["en"]) == 90


def test_held_out_split_by_key_keeps_languages_parallel(tmp_path: Path) -> None:
    rows = [{"lang": "en", "key": f"k{i}", "text": t} for i, t in enumerate(EN[:37])]
    rows += [{"lang": "vi", "key": f"k{i}", "text": t} for i, t in enumerate(VI)]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    train, held_out = _both(path)
    assert list(held_out.parallel().index) == sorted(
        r.key for r in held_out.records["en"] if r.key is not None
    )
    assert len(held_out.parallel()) == 4 and train.parallel().shape == (33, 2)


def test_too_little_text_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, {"en": EN, "vi": VI[: MIN_TEXTS_TO_HOLD_OUT - 1]})
    with pytest.raises(cl.EmptyCorpusError, match=r"'vi' has 9 distinct text\(s\)") as info:
        cl.load_corpus(tmp_path, split="eval")
    assert "at least 10" in str(info.value) and "eval/" in str(info.value)
    with pytest.raises(cl.EmptyCorpusError, match="use unit='line'"):
        cl.load_corpus(tmp_path, langs="en", unit="file")  # one text per file
    assert len(cl.load_corpus(tmp_path, langs="en")["en"]) == 90  # the other language is fine


def test_held_out_split_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write(tmp_path, {"en": EN})
    with caplog.at_level(logging.INFO, logger="crane_lens.data.splits"):
        _both(tmp_path)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        f"{tmp_path}: no eval split; holding out 10 % of each language's text as eval "
        "(deterministic)"
    ]


def test_a_lone_train_folder_is_held_out_too(tmp_path: Path) -> None:
    _write(tmp_path / "train", {"en": EN})
    train, held_out = _both(tmp_path)
    assert len(train["en"]) == 90 and len(held_out["en"]) == 10


@pytest.mark.parametrize("layout", ["flat", "folders", "jsonl", "builtin"])
def test_unknown_split_is_refused(tmp_path: Path, layout: str) -> None:
    if layout == "flat":
        source, valid = str(_write(tmp_path, {"en": EN})), "train, eval"
    elif layout == "folders":
        _write(tmp_path / "train", {"en": EN})
        _write(tmp_path / "test", {"en": EN[:3]})
        source, valid = str(tmp_path), "test, train"
    elif layout == "jsonl":
        source, valid = str(tmp_path / "c.jsonl"), "train, eval"
        Path(source).write_text("\n".join(json.dumps({"lang": "en", "text": t}) for t in EN))
    else:
        source, valid = "builtin", "train, eval"
    with pytest.raises(cl.CorpusFormatError, match=f"no split 'tset'.*: {valid}"):
        cl.load_corpus(source, split="tset")


def test_explicit_folders_without_eval_say_so(tmp_path: Path) -> None:
    _write(tmp_path / "train", {"en": EN})
    _write(tmp_path / "test", {"en": EN[:3]})
    assert cl.load_corpus(tmp_path, split="test")["en"] == EN[:3]
    with pytest.raises(cl.CorpusFormatError, match="no split 'eval'; its splits are: test, train"):
        cl.load_corpus(tmp_path, split="eval")


def test_mixed_layout_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, {"en": EN})
    _write(tmp_path / "eval", {"en": EN[:3]})
    with pytest.raises(cl.CorpusFormatError, match="both <lang>.txt files and split folders"):
        cl.load_corpus(tmp_path)


def test_jsonl_split_field_and_mixed_rows(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    rows = [{"lang": "en", "text": "a", "split": "train"}, {"lang": "en", "text": "b"}]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with pytest.raises(cl.CorpusFormatError, match="line 2: some rows have a 'split' field"):
        cl.load_corpus(path)


def test_hold_out_identity_prefers_the_key() -> None:
    # Same key, different texts: one identity, held out together.
    rows = {"en": [TextRecord(f"t{i}", key=f"k{i // 2}") for i in range(40)]}
    parts = hold_out(rows, "x")
    keys = {r.key for r in parts["eval"]["en"]}
    assert len(keys) == 2 and len(parts["eval"]["en"]) == 4
    assert not keys & {r.key for r in parts["train"]["en"]}
