import pytest

from crane_lens.data.languages import LANGUAGES, canonical_lang, canonical_langs, language_info
from crane_lens.errors import UnknownLanguageError


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("zh-Hans", "zh"),
        ("zh_Hant_TW", "zh"),
        ("pt-BR", "pt"),
        ("en_US", "en"),
        ("eng", "en"),
        ("cmn", "zh"),
        ("arb", "ar"),
        ("vie_Latn", "vi"),
        ("zho_Hans", "zh"),
        ("in", "id"),  # legacy Java code for Indonesian
    ],
)
def test_canonical_lang_maps_common_forms(tag: str, expected: str) -> None:
    assert canonical_lang(tag) == expected


@pytest.mark.parametrize("bad", ["xx", "klingon", "", "e", "en--US", "123"])
def test_unknown_language_lists_known_codes(bad: str) -> None:
    with pytest.raises(UnknownLanguageError) as info:
        canonical_lang(bad)
    message = str(info.value)
    assert "'en'" in message or "en, " in message  # tells the user what to use instead


def test_unknown_language_message_lists_every_known_code() -> None:
    with pytest.raises(UnknownLanguageError, match="Known languages: af, ar, bg") as info:
        canonical_lang("xx")
    assert all(code in str(info.value) for code in LANGUAGES)


def test_canonical_langs_keeps_order_and_drops_repeats() -> None:
    assert canonical_langs("vi, zh-Hans,en,zh") == ["vi", "zh", "en"]
    assert canonical_langs(["pt-BR", "pt"]) == ["pt"]


def test_every_iso3_alias_round_trips() -> None:
    for code, info in LANGUAGES.items():
        assert canonical_lang(info.iso639_3) == code
        assert canonical_lang(info.flores) == code
    assert language_info("vie").flores == "vie_Latn"
