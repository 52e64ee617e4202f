"""Language codes: one canonical ISO 639-1 code per language.

Every public function of crane_lens takes and returns canonical two-letter ISO 639-1 codes
(``"en"``, ``"zh"``, ``"vi"``). :func:`canonical_lang` accepts the forms users actually have at
hand and maps them onto those codes:

* BCP-47 tags with script or region subtags (``"zh-Hans"``, ``"pt-BR"``, ``"en_US"``);
* ISO 639-3 codes, including the individual codes of macrolanguages that corpora use
  (``"eng"``, ``"cmn"`` → ``"zh"``, ``"arb"`` → ``"ar"``);
* FLORES-200 codes (``"eng_Latn"``, ``"zho_Hans"``).

Script and region are dropped on purpose: the neuron analyses group text by language, and a
corpus that mixes ``zh-Hans`` with ``zh-Hant`` is still one language to the model's tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from crane_lens.errors import UnknownLanguageError


@dataclass(frozen=True)
class LanguageInfo:
    """Facts about one language.

    Attributes:
        code: Canonical ISO 639-1 code.
        name: English name.
        iso639_3: ISO 639-3 code (for macrolanguages, the code FLORES-200 uses).
        script: ISO 15924 script of the usual written form (FLORES-200's choice).
    """

    code: str
    name: str
    iso639_3: str
    script: str

    @property
    def flores(self) -> str:
        """FLORES-200 / FLORES+ configuration name, e.g. ``"vie_Latn"``."""
        return f"{self.iso639_3}_{self.script}"


_TABLE: tuple[LanguageInfo, ...] = (
    LanguageInfo("af", "Afrikaans", "afr", "Latn"),
    LanguageInfo("ar", "Arabic", "arb", "Arab"),
    LanguageInfo("bg", "Bulgarian", "bul", "Cyrl"),
    LanguageInfo("bn", "Bengali", "ben", "Beng"),
    LanguageInfo("ca", "Catalan", "cat", "Latn"),
    LanguageInfo("cs", "Czech", "ces", "Latn"),
    LanguageInfo("da", "Danish", "dan", "Latn"),
    LanguageInfo("de", "German", "deu", "Latn"),
    LanguageInfo("el", "Greek", "ell", "Grek"),
    LanguageInfo("en", "English", "eng", "Latn"),
    LanguageInfo("es", "Spanish", "spa", "Latn"),
    LanguageInfo("et", "Estonian", "est", "Latn"),
    LanguageInfo("eu", "Basque", "eus", "Latn"),
    LanguageInfo("fa", "Persian", "pes", "Arab"),
    LanguageInfo("fi", "Finnish", "fin", "Latn"),
    LanguageInfo("fr", "French", "fra", "Latn"),
    LanguageInfo("he", "Hebrew", "heb", "Hebr"),
    LanguageInfo("hi", "Hindi", "hin", "Deva"),
    LanguageInfo("hr", "Croatian", "hrv", "Latn"),
    LanguageInfo("hu", "Hungarian", "hun", "Latn"),
    LanguageInfo("id", "Indonesian", "ind", "Latn"),
    LanguageInfo("it", "Italian", "ita", "Latn"),
    LanguageInfo("ja", "Japanese", "jpn", "Jpan"),
    LanguageInfo("ko", "Korean", "kor", "Hang"),
    LanguageInfo("lt", "Lithuanian", "lit", "Latn"),
    LanguageInfo("lv", "Latvian", "lvs", "Latn"),
    LanguageInfo("ms", "Malay", "zsm", "Latn"),
    LanguageInfo("nl", "Dutch", "nld", "Latn"),
    LanguageInfo("no", "Norwegian", "nob", "Latn"),
    LanguageInfo("pl", "Polish", "pol", "Latn"),
    LanguageInfo("pt", "Portuguese", "por", "Latn"),
    LanguageInfo("ro", "Romanian", "ron", "Latn"),
    LanguageInfo("ru", "Russian", "rus", "Cyrl"),
    LanguageInfo("sk", "Slovak", "slk", "Latn"),
    LanguageInfo("sl", "Slovenian", "slv", "Latn"),
    LanguageInfo("sr", "Serbian", "srp", "Cyrl"),
    LanguageInfo("sv", "Swedish", "swe", "Latn"),
    LanguageInfo("sw", "Swahili", "swh", "Latn"),
    LanguageInfo("ta", "Tamil", "tam", "Taml"),
    LanguageInfo("th", "Thai", "tha", "Thai"),
    LanguageInfo("tr", "Turkish", "tur", "Latn"),
    LanguageInfo("uk", "Ukrainian", "ukr", "Cyrl"),
    LanguageInfo("ur", "Urdu", "urd", "Arab"),
    LanguageInfo("vi", "Vietnamese", "vie", "Latn"),
    LanguageInfo("zh", "Chinese", "zho", "Hans"),
)

LANGUAGES: dict[str, LanguageInfo] = {info.code: info for info in _TABLE}

# ISO 639-3 → 639-1, plus the individual codes of macrolanguages that corpora label text with.
_ALIASES: dict[str, str] = {info.iso639_3: info.code for info in _TABLE}
_ALIASES.update(
    {
        # ISO 639-2/B bibliographic codes and macrolanguage members.
        "ger": "de", "fre": "fr", "dut": "nl", "chi": "zh", "cze": "cs", "gre": "el",
        "per": "fa", "rum": "ro", "slo": "sk", "baq": "eu", "may": "ms",
        "cmn": "zh", "yue": "zh", "arb": "ar", "ara": "ar", "fas": "fa", "pes": "fa",
        "msa": "ms", "zsm": "ms", "nob": "no", "nor": "no", "lav": "lv", "lvs": "lv",
        "swa": "sw", "swh": "sw", "est": "et", "ekk": "et", "zho": "zh",
        # Legacy ISO 639-1 codes still found in data (Java locales, old corpora).
        "iw": "he", "in": "id", "nb": "no",
    }
)  # fmt: skip

_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")


def canonical_lang(code: str) -> str:
    """Map a language tag to its canonical ISO 639-1 code.

    Args:
        code: An ISO 639-1/639-3 code, a BCP-47 tag or a FLORES-200 code.

    Returns:
        The two-letter code, e.g. ``"zh"`` for ``"zh-Hans"``, ``"cmn"`` or ``"zho_Hans"``.

    Raises:
        UnknownLanguageError: The tag is malformed or its language is not in crane_lens' table.

    Example:
        >>> canonical_lang("pt-BR"), canonical_lang("zho_Hans"), canonical_lang("VI")
        ('pt', 'zh', 'vi')
    """
    if not isinstance(code, str) or not _TAG.match(code.strip()):
        raise UnknownLanguageError(
            f"{code!r} is not a language tag. Use an ISO 639-1 code such as 'en', 'zh' or 'vi' "
            f"(BCP-47 tags like 'zh-Hans' and FLORES codes like 'vie_Latn' are accepted too)."
        )
    primary = re.split(r"[-_]", code.strip())[0].lower()
    if primary in LANGUAGES:
        return primary
    if primary in _ALIASES:
        return _ALIASES[primary]
    raise UnknownLanguageError(
        f"Unknown language {code!r}. Known languages: {', '.join(sorted(LANGUAGES))}. "
        f"Use one of these ISO 639-1 codes (or a BCP-47/ISO 639-3 form of one)."
    )


def canonical_langs(codes: str | Iterable[str]) -> list[str]:
    """Canonicalise several codes, keeping their order and dropping repeats.

    Args:
        codes: One code, a comma-separated string of codes, or an iterable of codes.

    Returns:
        Canonical codes in first-seen order.
    """
    if isinstance(codes, str):
        codes = [c for c in codes.split(",") if c.strip()]
    out: list[str] = []
    for code in codes:
        canon = canonical_lang(code)
        if canon not in out:
            out.append(canon)
    return out


def language_info(code: str) -> LanguageInfo:
    """Return the :class:`LanguageInfo` of a language given in any accepted form."""
    return LANGUAGES[canonical_lang(code)]
