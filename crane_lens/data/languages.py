"""Language tags: one canonical tag per language (and script), for any language.

Every public function of crane_lens takes language tags in any standard form and returns
canonical ones. :func:`canonical_lang` accepts any valid BCP-47 tag, ISO 639-1 or ISO 639-3
code, and FLORES-200 code (``"vie_Latn"``), and returns the shortest standard tag of its
language and script, through ``langcodes`` (CLDR data):

* **Language**: the shortest ISO 639 code (``"eng"`` → ``"en"``), deprecated codes replaced
  (``"iw"`` → ``"he"``, ``"in"`` → ``"id"``, ``"tl"`` → ``"fil"``, ``"sh"`` → ``"sr-Latn"``).
  An individual language of a macrolanguage maps to the macrolanguage only where CLDR says the
  macrolanguage is its usual name: ``"cmn"`` → ``"zh"``, ``"arb"`` → ``"ar"``, ``"pes"`` →
  ``"fa"``, ``"zsm"`` → ``"ms"``, ``"swh"`` → ``"sw"``, ``"lvs"`` → ``"lv"``. Other members
  stay distinct languages: ``"yue"`` (Cantonese), ``"wuu"``, ``"nan"``, ``"arz"`` (Egyptian
  Arabic), ``"nb"`` and ``"nn"`` (``"no"`` is Norwegian without saying which).
* **Script**: kept when it is not the language's usual one (CLDR likely subtags), dropped when
  it is: ``"zh-Hant"``, ``"sr-Latn"``, ``"yue-Hans"``, ``"ar-Latn"`` stay; ``"zh-Hans"`` →
  ``"zh"``, ``"sr-Cyrl"`` → ``"sr"``, ``"yue-Hant"`` → ``"yue"``, ``"kor_Hang"`` → ``"ko"``. A
  region that implies a script keeps it (``"zh-TW"`` → ``"zh-Hant"``, ``"sr-ME"`` →
  ``"sr-Latn"``). For a language CLDR has no usual script for, a script given is kept.
* **Region, variants, extensions** are dropped: ``"pt-BR"`` → ``"pt"``, ``"en_US"`` → ``"en"``.
  The analyses group text by language and script; regional variants are one language.

Tags that name no language (``"und"``, ``"mul"``, ``"zxx"``, ``"mis"``) and invalid tags
(``"xx-not-a-lang"``) are refused. The built-in corpus keeps its 17 two-letter codes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache

import langcodes
from langcodes.data_dicts import LIKELY_SUBTAGS

from crane_lens.errors import UnknownLanguageError


@dataclass(frozen=True)
class LanguageInfo:
    """Facts about one language.

    Attributes:
        code: Canonical tag (``"vi"``, ``"zh-Hant"``, ``"yue"``, ``"ceb"``).
        name: English name from CLDR (``language_data``), e.g. ``"Chinese (Traditional)"``.
        iso639_3: ISO 639-3 code; for a macrolanguage the individual language FLORES-200 uses
            (``"arb"`` for ``"ar"``).
        script: ISO 15924 script: the tag's own, else the language's usual one (FLORES-200's
            choice where it differs from CLDR's), ``"Zzzz"`` where unknown.
    """

    code: str
    name: str
    iso639_3: str
    script: str

    @property
    def flores(self) -> str:
        """FLORES-200 / FLORES+ configuration name, e.g. ``"vie_Latn"``."""
        return f"{self.iso639_3}_{self.script}"


# Tags that are valid but name no single language.
_NOT_A_LANGUAGE = {"und": "undetermined", "mul": "multiple languages", "zxx": "no linguistic "
                   "content", "mis": "uncoded languages"}  # fmt: skip
# Scripts that are the usual one under another name (Korean in Hangul only is still Korean).
_SAME_SCRIPT = {("ko", "Hang")}
# FLORES-200 names these macrolanguages by an individual language, and Korean's script Hang.
_FLORES_ISO3 = {
    "ar": "arb", "az": "azj", "fa": "pes", "fil": "tgl", "ku": "kmr", "lv": "lvs", "mg": "plt",
    "mn": "khk", "ms": "zsm", "ne": "npi", "no": "nob", "om": "gaz", "or": "ory", "ps": "pbt",
    "qu": "quy", "sq": "als", "sw": "swh", "uz": "uzn", "yi": "ydd",
}  # fmt: skip
_FLORES_SCRIPT = {"ko": "Hang"}
_EXAMPLES = "'en', 'zh-Hant', 'yue', 'ceb', 'sr-Latn', or FLORES' 'vie_Latn'"


def _usual_script(language: str, territory: str | None = None) -> str | None:
    """CLDR's likely script of a language (in a territory), ``None`` where CLDR has none."""
    for key in ([f"{language}-{territory}"] if territory else []) + [language]:
        if key in LIKELY_SUBTAGS:
            return str(langcodes.Language.get(LIKELY_SUBTAGS[key]).script)
    return None


def _refuse(code: object, why: str | None = None) -> UnknownLanguageError:
    problem = f"Unknown language {code!r}: {why}" if why else f"{code!r} is not a language tag"
    return UnknownLanguageError(
        f"{problem}. Use a BCP-47 tag or an ISO 639-1/639-3 code, such as {_EXAMPLES}."
    )


@lru_cache(maxsize=4096)  # corpora call this once per row
def _canonical(code: str) -> str:
    primary = re.split(r"[-_]", code, maxsplit=1)[0]
    if not (primary.isascii() and primary.isalpha()):
        raise _refuse(code)
    try:
        given = langcodes.Language.get(code)
        tag = langcodes.Language.get(langcodes.standardize_tag(code, macro=True))
    except ValueError:  # LanguageTagError: malformed
        raise _refuse(code) from None
    special = given.language or "und"  # langcodes parses 'und' as no language
    if special in _NOT_A_LANGUAGE:
        raise _refuse(code, f"it means {_NOT_A_LANGUAGE[special]}, not one language")
    if not given.is_valid() or not tag.language:
        language = given.language
        if language and not langcodes.Language.make(language=language).is_valid():
            raise _refuse(code, f"{language!r} is not an ISO 639 language code")
        raise _refuse(code, "it has a subtag that is not registered")
    script = tag.script or _usual_script(tag.language, tag.territory)
    usual = _usual_script(tag.language)
    if script is None or script == usual or (tag.language, script) in _SAME_SCRIPT:
        return str(tag.language)
    return f"{tag.language}-{script}"


def canonical_lang(code: str) -> str:
    """The canonical tag of a language tag: its language and, when unusual, its script.

    Args:
        code: A BCP-47 tag, an ISO 639-1/639-3 code or a FLORES-200 code, any case, ``-`` or
            ``_``.

    Returns:
        The shortest standard tag of the language and script (see the module docstring).

    Raises:
        UnknownLanguageError: The tag is malformed, not registered, or names no language.

    Example:
        >>> canonical_lang("pt-BR"), canonical_lang("zho_Hans"), canonical_lang("VI")
        ('pt', 'zh', 'vi')
        >>> canonical_lang("zh-TW"), canonical_lang("yue"), canonical_lang("cmn")
        ('zh-Hant', 'yue', 'zh')
    """
    if not isinstance(code, str) or not code.strip():
        raise _refuse(code)
    return _canonical(code.strip())


def canonical_langs(codes: str | Iterable[str]) -> list[str]:
    """Canonicalise several codes, keeping their order and dropping repeats.

    Args:
        codes: One code, a comma-separated string of codes, or an iterable of codes.

    Returns:
        Canonical codes in first-seen order.

    Example:
        >>> canonical_langs("vi, zh-Hans,en,zh,zh-Hant")
        ['vi', 'zh', 'en', 'zh-Hant']
    """
    if isinstance(codes, str):
        codes = [c for c in codes.split(",") if c.strip()]
    out: list[str] = []
    for code in codes:
        canon = canonical_lang(code)
        if canon not in out:
            out.append(canon)
    return out


@cache
def _info(code: str) -> LanguageInfo:
    tag = langcodes.Language.get(code)
    language = str(tag.language)
    script = tag.script or _FLORES_SCRIPT.get(language) or _usual_script(language) or "Zzzz"
    iso3 = _FLORES_ISO3.get(language) or langcodes.Language.get(language).to_alpha3()
    return LanguageInfo(code, tag.display_name(), iso3, script)


def language_info(code: str) -> LanguageInfo:
    """The :class:`LanguageInfo` of a language given in any accepted form.

    Example:
        >>> language_info("zh_Hant")
        LanguageInfo(code='zh-Hant', name='Chinese (Traditional)', iso639_3='zho', script='Hant')
        >>> language_info("arb").flores, language_info("ceb").name
        ('arb_Arab', 'Cebuano')
    """
    return _info(canonical_lang(code))


def language_name(code: str) -> str:
    """The language's English name, or ``code`` itself where it names no language crane_lens
    knows (for labels, which must never fail).

    Example:
        >>> language_name("vi"), language_name("xx")
        ('Vietnamese', 'xx')
    """
    try:
        return language_info(code).name
    except Exception:  # any code still gets a label
        return code


class LanguageTable(Mapping[str, LanguageInfo]):
    """:class:`LanguageInfo` by tag, for every language (the type of :data:`LANGUAGES`).

    Looking up or testing membership accepts any valid tag (``LANGUAGES["yue"]``,
    ``"ceb" in LANGUAGES``); iterating lists the common languages of :data:`COMMON_LANGUAGES`
    (the languages crane_lens named before it accepted every tag), not every language.
    """

    def __getitem__(self, code: str) -> LanguageInfo:
        try:
            return language_info(code)
        except UnknownLanguageError as exc:
            raise KeyError(code) from exc

    def __contains__(self, code: object) -> bool:
        try:
            return isinstance(code, str) and bool(canonical_lang(code))
        except UnknownLanguageError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(COMMON_LANGUAGES)

    def __len__(self) -> int:
        return len(COMMON_LANGUAGES)


COMMON_LANGUAGES: tuple[str, ...] = (
    "af", "ar", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr",
    "he", "hi", "hr", "hu", "id", "it", "ja", "ko", "lt", "lv", "ms", "nl", "no", "pl", "pt", "ro",
    "ru", "sk", "sl", "sr", "sv", "sw", "ta", "th", "tr", "uk", "ur", "vi", "zh",
)  # fmt: skip
"""Common languages (what iterating :data:`LANGUAGES` lists); any valid tag works anyway."""

LANGUAGES: Mapping[str, LanguageInfo] = LanguageTable()
"""Facts about any language by tag: ``LANGUAGES["vi"].name == "Vietnamese"``."""
