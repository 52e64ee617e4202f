"""Language tags: any valid tag works, distinct languages and scripts stay distinct."""

from __future__ import annotations

from pathlib import Path

import pytest

import crane_lens as cl
from crane_lens.data.languages import (
    COMMON_LANGUAGES,
    LANGUAGES,
    canonical_lang,
    canonical_langs,
    language_info,
)
from crane_lens.data.sources.builtin import builtin_langs
from crane_lens.errors import UnknownLanguageError


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("en_US", "en"),  # region dropped
        ("pt-BR", "pt"),
        ("de-1996", "de"),  # variant dropped
        ("eng", "en"),  # ISO 639-3 of an ISO 639-1 language: the two-letter code
        ("vie_Latn", "vi"),  # FLORES-200
        ("in", "id"),  # deprecated codes replaced
        ("iw", "he"),
        # Languages the closed list refused.
        ("ceb", "ceb"),
        ("yo", "yo"),
        ("yor", "yo"),
        ("ast", "ast"),
        ("tl", "fil"),  # CLDR: Tagalog's tag is Filipino's
        ("tgl", "fil"),
        # Chinese: the usual script (Hans) is dropped, any other kept; Cantonese is not Mandarin.
        ("zh-Hans", "zh"),
        ("zho_Hans", "zh"),
        ("cmn", "zh"),  # macrolanguage member CLDR calls by the macrolanguage
        ("cmn_Hans", "zh"),  # FLORES+
        ("zh-Hant", "zh-Hant"),
        ("zho_Hant", "zh-Hant"),
        ("zh_Hant_TW", "zh-Hant"),
        ("zh-TW", "zh-Hant"),  # a region that implies a script keeps it
        ("yue", "yue"),
        ("yue_Hant", "yue"),
        ("yue-Hans", "yue-Hans"),
        ("zh-yue", "yue"),
        # Serbian: Cyrillic is usual, Latin kept.
        ("sr", "sr"),
        ("sr-Cyrl", "sr"),
        ("sr-Latn", "sr-Latn"),
        ("sr-ME", "sr-Latn"),
        ("arb", "ar"),
        ("arb_Latn", "ar-Latn"),
        ("arz", "arz"),  # Egyptian Arabic stays itself
        ("kor_Hang", "ko"),  # Hangul is Korean's usual script under another name
    ],
)
def test_canonical_lang(tag: str, expected: str) -> None:
    assert canonical_lang(tag) == expected


def test_distinct_languages_and_scripts_stay_distinct() -> None:
    tags = ["zh", "zh-Hant", "yue", "yue-Hans", "sr", "sr-Latn", "ar", "arz", "nb", "nn"]
    assert canonical_langs(tags) == tags
    assert canonical_langs("vi, zh-Hans,en,zh,cmn,zh-TW") == ["vi", "zh", "en", "zh-Hant"]
    assert canonical_langs(["pt-BR", "pt"]) == ["pt"]


@pytest.mark.parametrize("bad", ["xx", "xx-not-a-lang", "klingon", "", "e", "en--US", "123", "x1"])
def test_invalid_tags_are_refused_with_examples(bad: str) -> None:
    with pytest.raises(UnknownLanguageError) as info:
        canonical_lang(bad)
    message = str(info.value)
    assert repr(bad) in message and "'zh-Hant', 'yue', 'ceb'" in message  # what to use instead


def test_invalid_tag_says_which_part_is_wrong() -> None:
    with pytest.raises(UnknownLanguageError, match="'xx' is not an ISO 639 language code"):
        canonical_lang("xx-not-a-lang")
    with pytest.raises(UnknownLanguageError, match="'mul': it means multiple languages"):
        canonical_lang("mul")
    with pytest.raises(UnknownLanguageError, match="'und': it means undetermined"):
        canonical_lang("und")


def test_language_info_names_and_flores_codes() -> None:
    assert LANGUAGES["vi"].name == "Vietnamese" and language_info("vie").flores == "vie_Latn"
    assert language_info("zh-Hant").name == "Chinese (Traditional)"
    assert language_info("zh_Hant").flores == "zho_Hant"
    assert (language_info("yue").name, language_info("yue").flores) == ("Cantonese", "yue_Hant")
    assert (language_info("ceb").name, language_info("ceb").flores) == ("Cebuano", "ceb_Latn")
    assert language_info("sr-Latn").name == "Serbian (Latin)"
    assert language_info("ar").flores == "arb_Arab" and language_info("ko").flores == "kor_Hang"
    assert "ceb" in LANGUAGES and "zh-Hant" in LANGUAGES and "xx" not in LANGUAGES
    with pytest.raises(KeyError):
        LANGUAGES["xx"]


def test_common_languages_round_trip_through_their_codes() -> None:
    assert list(LANGUAGES) == list(COMMON_LANGUAGES) and len(LANGUAGES) == 45
    for code in LANGUAGES:
        info = LANGUAGES[code]
        assert info.code == code
        # FLORES-200 calls Norwegian by Bokmål ('nob'), which is its own tag, 'nb'.
        expected = "nb" if code == "no" else code
        assert canonical_lang(info.iso639_3) == expected
        assert canonical_lang(info.flores) == expected


def test_builtin_corpus_keeps_its_17_languages() -> None:
    langs = builtin_langs()
    assert len(langs) == 17 and all(canonical_lang(x) == x for x in langs)
    assert cl.load_corpus("builtin", langs="cmn,zh-Hans,zho_Hans", split="eval").langs == ["zh"]
    with pytest.raises(cl.MissingLanguageError, match="no 'zh-Hant'"):
        cl.load_corpus("builtin", langs="zh-Hant", split="eval")  # not merged into zh any more


def test_new_tags_in_a_user_folder(tmp_path: Path) -> None:
    files = {"ceb": "Maayong buntag", "yo": "E kaaro", "tl": "Magandang umaga",
             "ast": "Bonos díes", "yue": "早晨", "zh-Hant": "早安", "zh-Hans": "早上好"}  # fmt: skip
    for tag, text in files.items():
        lines = [f"{text} {i}" for i in range(10)]
        (tmp_path / f"{tag}.txt").write_text("\n".join(lines), encoding="utf-8")
    corpus = cl.load_corpus(tmp_path)
    assert corpus.langs == ["ast", "ceb", "fil", "yo", "yue", "zh", "zh-Hant"]  # file-name order
    assert corpus["yue"][0].startswith("早晨") and corpus["zh-Hant"][0].startswith("早安")
    assert cl.load_corpus(tmp_path, langs="tgl,cmn").langs == ["fil", "zh"]
    summary = corpus.summary()
    assert "Chinese (Traditional)" in summary and "Cantonese" in summary
