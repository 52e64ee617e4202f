"""Which language is a (generated) text in? Unicode script first, then py3langid.

Two stages, offline, no training:

1. **Script.** Every letter (and combining mark) is assigned to a script by its Unicode block
   and weighted (a Han, kana or Hangul character counts as 3 letters: it carries about a
   syllable or a word). A non-Latin script carrying at least a fifth of the weight wins —
   Latin product names and code are common inside other scripts (``"LibreOffice Impress
   使用说明"`` is Chinese), the reverse is rare; otherwise the text is Latin. Kana among the CJK
   characters (at least 5% of them) make it Japanese. Only the candidate languages written in
   that script remain (Han without kana: Chinese and Japanese; kana: Japanese; Hangul: Korean).
   Text without letters (empty, digits, punctuation), or in a script none of the candidates is
   written in (Greek when asking among the 17 built-in languages), is unidentifiable: ``None``.
2. **py3langid.** When several candidates remain, [py3langid](https://pypi.org/project/py3langid/)
   (a maintained, faster fork of langid.py: a naive Bayes over byte n-grams, 139 languages in
   0.4; the model ships in its 4.6 MB wheel) picks among them. Restricting it
   to the candidates is exact: a naive Bayes' best class among a subset is the subset's best.

:func:`default_identifier` asks among the 17 languages of the embedded corpus; a
:class:`LanguageIdentifier` can ask among any languages py3langid knows
(:func:`supported_languages`; ``yue``, ``tl``, ``sw``…). Codes go through
:func:`~crane_lens.data.languages.canonical_lang`; py3langid's labels are ISO 639-1 where one
exists (``zh`` for Chinese in either script, ``ja``, ``ko``, ``hi``), mapped via the language
subtag (:func:`langid_label`).

This replaced a hand-written character n-gram model trained on the embedded help text:
``benchmarks/bench_language_id.py`` compares them with lingua on all 17 languages' held-out
text, its first 50 and 20 characters and model generations (``docs/language-id.md``: equal or
better on held-out text, e.g. 0.979 vs 0.972 mean accuracy on 20 characters; the same on
gemma-3-270m's generations but for one degenerate text in 340). Loading py3langid's model takes
0.4 s once per process (shared by every identifier); ~14,000 texts/s on one CPU core.
"""

from __future__ import annotations

import bisect
import copy
import logging
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from crane_lens.data.languages import canonical_lang, canonical_langs

if TYPE_CHECKING:
    from py3langid.langid import LanguageIdentifier as Langid

log = logging.getLogger(__name__)

KANA_MIN_SHARE = 0.05  # kana among CJK characters that make a text Japanese
OTHER_SCRIPT_MIN_SHARE = 0.2  # weight share with which a non-Latin script beats Latin

# Unicode blocks → script (ISO 15924; "Hani" is Han, "Kana" kana, both resolved below).
_BLOCKS: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x024F, "Latn"), (0x0250, 0x02AF, "Latn"), (0x0300, 0x036F, "Latn"),
    (0x0370, 0x03FF, "Grek"), (0x0400, 0x052F, "Cyrl"), (0x0590, 0x05FF, "Hebr"),
    (0x0600, 0x06FF, "Arab"), (0x0750, 0x077F, "Arab"), (0x0870, 0x08FF, "Arab"),
    (0x0900, 0x097F, "Deva"), (0x0980, 0x09FF, "Beng"), (0x0B80, 0x0BFF, "Taml"),
    (0x0E00, 0x0E7F, "Thai"), (0x1100, 0x11FF, "Hang"), (0x1C80, 0x1C8F, "Cyrl"),
    (0x1E00, 0x1EFF, "Latn"), (0x1F00, 0x1FFF, "Grek"), (0x2C60, 0x2C7F, "Latn"),
    (0x2DE0, 0x2DFF, "Cyrl"), (0x2E80, 0x2FDF, "Hani"), (0x3005, 0x3007, "Hani"),
    (0x3021, 0x3029, "Hani"), (0x3038, 0x303B, "Hani"), (0x3040, 0x30FF, "Kana"),
    (0x3130, 0x318F, "Hang"), (0x31F0, 0x31FF, "Kana"), (0x3400, 0x4DBF, "Hani"),
    (0x4E00, 0x9FFF, "Hani"), (0xA640, 0xA69F, "Cyrl"), (0xA720, 0xA7FF, "Latn"),
    (0xA8E0, 0xA8FF, "Deva"), (0xA960, 0xA97F, "Hang"), (0xAB30, 0xAB6F, "Latn"),
    (0xAC00, 0xD7FF, "Hang"), (0xF900, 0xFAFF, "Hani"), (0xFB1D, 0xFB4F, "Hebr"),
    (0xFB50, 0xFDFF, "Arab"), (0xFE70, 0xFEFF, "Arab"), (0xFF21, 0xFF5A, "Latn"),
    (0xFF66, 0xFF9F, "Kana"), (0xFFA0, 0xFFDC, "Hang"), (0x1B000, 0x1B16F, "Kana"),
    (0x20000, 0x3FFFF, "Hani"),
)  # fmt: skip
_STARTS = [start for start, _, _ in _BLOCKS]
_WEIGHT = {"Hani": 3.0, "Kana": 3.0, "Hang": 3.0}  # a CJK character ≈ a syllable or word

# Everything but letters and combining marks (Latin and Indic) becomes a word break.
_NON_LETTERS = re.compile(r"(?:[^\w\u0300-\u036F\u0900-\u0DFF\u0E00-\u0E7F]|[\d_])+")


def _script_of(char: str) -> str | None:
    code = ord(char)
    i = bisect.bisect_right(_STARTS, code) - 1
    if i >= 0 and code <= _BLOCKS[i][1]:
        return _BLOCKS[i][2]
    return None


def script_counts(text: str) -> dict[str, int]:
    """Letters and combining marks per script (``"Hani"`` Han, ``"Kana"`` kana, ``"Other"``).

    Example:
        >>> script_counts("日本語のテキスト, ok 42")
        {'Hani': 3, 'Kana': 5, 'Latn': 2}
    """
    counts: Counter[str] = Counter()
    for char in unicodedata.normalize("NFC", text):
        if unicodedata.category(char)[0] in "LM":
            counts[_script_of(char) or "Other"] += 1
    return dict(counts)


def detect_script(text: str) -> str | None:
    """The text's dominant script as an ISO 15924 code, or ``None`` without letters.

    CJK is resolved here: ``"Jpan"`` when kana make up at least 5% of the Han + kana
    characters, else ``"Hani"`` (Han only). Scripts outside the block table give ``"Other"``.

    Example:
        >>> detect_script("漢字とかな"), detect_script("汉字"), detect_script("Привет"), detect_script("42!")
        ('Jpan', 'Hani', 'Cyrl', None)
    """
    counts = script_counts(text)
    if not counts:
        return None
    cjk = counts.pop("Hani", 0) + counts.get("Kana", 0)
    kana = counts.pop("Kana", 0)
    if cjk:
        counts["Jpan" if kana >= max(1.0, KANA_MIN_SHARE * cjk) else "Hani"] = cjk
    weight = {s: n * _WEIGHT.get("Hani" if s == "Jpan" else s, 1.0) for s, n in counts.items()}
    # Latin words (product names, code, loanwords) are common inside text in other scripts, so
    # another script wins as soon as it carries a fifth of the weight.
    others = {s: w for s, w in weight.items() if s != "Latn"}
    if others:
        best = max(others, key=lambda s: (others[s], s != "Other"))
        if others[best] >= OTHER_SCRIPT_MIN_SHARE * sum(weight.values()):
            return best
    return "Latn"


_KNOWN_SCRIPTS = {script for _, _, script in _BLOCKS} - {"Kana"} | {"Jpan"}
# The scripts detect_script reports for text in a language written in script X (ISO 15924,
# from langcodes): Chinese and Japanese can both be written in Han alone.
_TEXT_SCRIPTS = {"Hans": {"Hani"}, "Hant": {"Hani"}, "Hani": {"Hani"}, "Jpan": {"Jpan", "Hani"},
                 "Kore": {"Hang"}, "Hang": {"Hang"}}  # fmt: skip


# Our codes → py3langid's labels where they differ: its older code for Filipino, and the
# macrolanguage for a member language that it labels by the macrolanguage.
_LABEL_ALIASES = {"fil": "tl", "nb": "no", "cmn": "zh", "arb": "ar", "pes": "fa", "swh": "sw",
                  "zsm": "ms", "ekk": "et", "lvs": "lv", "uzn": "uz"}  # fmt: skip


@cache
def _langid_model() -> Langid:
    """py3langid's full model with normalised probabilities, loaded once per process."""
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as Langid

    start = time.perf_counter()
    model = Langid.from_model_file(MODEL_FILE, norm_probs=True)
    log.info("loaded py3langid's model in %.2f s", time.perf_counter() - start)
    return model


def supported_languages() -> list[str]:
    """py3langid's labels (ISO 639-1 where one exists, else ISO 639-3), sorted.

    Example:
        >>> {"en", "zh", "ja", "ko", "hi", "yue", "tl"} <= set(supported_languages())
        True
    """
    return sorted(x for x in _langid_model().labels if x != "zxx")  # zxx: "no language"


def langid_label(lang: str) -> str:
    """py3langid's label of a language given in any form :func:`canonical_lang` accepts.

    The language subtag, normalised by ``langcodes`` (``"zho_Hant"`` → ``"zh"``); ``"fil"`` →
    ``"tl"`` (py3langid's older code); ``"nb"`` → ``"no"`` (it labels the macrolanguage).
    py3langid does not tell scripts or regions apart.

    Raises:
        UnknownLanguageError: The language is not one py3langid knows.

    Example:
        >>> langid_label("zh-Hant"), langid_label("jpn"), langid_label("ko-KR"), langid_label("hi")
        ('zh', 'ja', 'ko', 'hi')
    """
    import langcodes

    from crane_lens.errors import UnknownLanguageError

    canon = canonical_lang(lang)
    labels = set(_langid_model().labels) - {"zxx"}
    subtag = langcodes.Language.get(canon).language or canon
    for label in (subtag, _LABEL_ALIASES.get(subtag, subtag), re.split(r"[-_]", canon)[0]):
        if label in labels:
            return label
    raise UnknownLanguageError(
        f"The language identifier (py3langid) does not know {lang!r}; it knows "
        f"{', '.join(supported_languages())}."
    )


def _text_scripts(lang: str) -> set[str]:
    """The :func:`detect_script` answers of text written in ``lang``."""
    import langcodes

    script = langcodes.Language.get(canonical_lang(lang)).maximize().script or "Latn"
    scripts = _TEXT_SCRIPTS.get(script, {script})
    return scripts if scripts & _KNOWN_SCRIPTS else {"Other"}


class LanguageIdentifier:
    """Script rules plus py3langid, asking among a fixed set of languages.

    Args:
        langs: The languages it may answer (any form :func:`canonical_lang` accepts; each must
            be one py3langid knows, and no two may share a py3langid label, e.g. ``zh`` and
            ``zh-Hant``, which it cannot tell apart).

    Attributes:
        langs: Canonical codes, in the order given.

    Example:
        >>> lid = default_identifier()
        >>> lid.predict("Tôi yêu tiếng Việt"), lid.predict("Ich habe einen Hund"), lid.predict("...")
        ('vi', 'de', None)
        >>> LanguageIdentifier(["uk", "ru"]).predict("Доброго ранку, як справи?")
        'uk'
    """

    def __init__(self, langs: Sequence[str]) -> None:
        self.langs = canonical_langs(langs)
        if not self.langs:
            raise ValueError("A LanguageIdentifier needs at least one language.")
        self._label = {lang: langid_label(lang) for lang in self.langs}
        shared = [x for x in self.langs if list(self._label.values()).count(self._label[x]) > 1]
        if shared:
            raise ValueError(
                f"py3langid cannot tell {', '.join(shared)} apart (one label "
                f"{self._label[shared[0]]!r}); keep one of them."
            )
        self._scripts = {lang: _text_scripts(lang) for lang in self.langs}
        self._model: Any = copy.copy(_langid_model())  # set_languages re-binds, never mutates
        self._model.set_languages(list(self._label.values()))

    def scores(self, text: str, candidates: Iterable[str] | None = None) -> dict[str, float]:
        """Probability of each candidate written in the text's dominant script.

        Args:
            text: Any text.
            candidates: Restrict the answer to these languages (default: all of ``langs``;
                languages outside ``langs`` are ignored).

        Returns:
            ``lang -> probability`` over the candidates written in the text's script, summing
            to 1 (py3langid's naive Bayes posteriors, renormalised over them: read them as a
            ranking); ``{lang: 1.0}`` when the script decides alone; ``{}`` when nothing fits.
        """
        allowed = self.langs if candidates is None else self._check(candidates)
        script = detect_script(text)
        options = [x for x in allowed if script is not None and script in self._scripts[x]]
        if len(options) <= 1:
            return dict.fromkeys(options, 1.0)
        by_label = dict(self._model.rank(text))
        total = sum(by_label[self._label[x]] for x in options)
        if total <= 0:  # no byte n-gram known at all: no preference
            return dict.fromkeys(options, 1.0 / len(options))
        return {x: by_label[self._label[x]] / total for x in options}

    def predict(self, text: str, candidates: Iterable[str] | None = None) -> str | None:
        """The most likely language of ``text`` among ``candidates``, or ``None``.

        ``None``: no letters, or a dominant script that none of the candidates is written in.
        """
        scores = self.scores(text, candidates)
        return max(scores, key=lambda lang: scores[lang]) if scores else None

    def predict_many(
        self, texts: Iterable[str], candidates: Iterable[str] | None = None
    ) -> list[str | None]:
        """:meth:`predict` for each text."""
        allowed = None if candidates is None else self._check(candidates)
        return [self.predict(text, allowed) for text in texts]

    def _check(self, candidates: Iterable[str]) -> list[str]:
        wanted = canonical_langs(candidates)
        return [x for x in wanted if x in self.langs]

    def __repr__(self) -> str:
        return f"LanguageIdentifier(langs={self.langs}, model='py3langid')"


@cache
def default_identifier() -> LanguageIdentifier:
    """The identifier of the embedded corpus' 17 languages (cached per process)."""
    from crane_lens.data.sources.builtin import builtin_langs

    return LanguageIdentifier(builtin_langs())


def identifier_for(langs: Iterable[str]) -> LanguageIdentifier:
    """An identifier that can answer ``langs`` and, besides, the embedded corpus' languages.

    The generation check uses it for prompts in languages outside the 17: a continuation can
    then be recognised as its prompt's language, or as one of the others. Built once per set of
    languages. A built-in language that py3langid cannot tell from one of ``langs`` (``zh``
    beside ``zh-Hant``) is left out.

    Raises:
        UnknownLanguageError: One of ``langs`` is a language py3langid does not know.

    Example:
        >>> identifier_for(["sw"]).langs[:3], identifier_for(["en"]) is default_identifier()
        (['sw', 'ar', 'de'], True)
    """
    return _identifier_for(tuple(canonical_langs(langs)))


@cache
def _identifier_for(langs: tuple[str, ...]) -> LanguageIdentifier:
    default = default_identifier()
    if set(langs) <= set(default.langs):
        return default
    labels = {langid_label(lang) for lang in langs}
    return LanguageIdentifier(
        [*langs, *(x for x in default.langs if default._label[x] not in labels)]
    )


def identify_language(text: str, candidates: Iterable[str] | None = None) -> str | None:
    """Language of ``text``, or ``None`` when unidentifiable.

    Args:
        text: Any text.
        candidates: The languages to choose among (default: the 17 of the embedded corpus,
            :func:`default_identifier`); any languages py3langid knows.

    Example:
        >>> identify_language("これは日本語です"), identify_language("한국어"), identify_language("123")
        ('ja', 'ko', None)
        >>> identify_language("Привет, мир", candidates=["en", "de"]) is None  # Cyrillic
        True
        >>> identify_language("Habari ya asubuhi, rafiki yangu", candidates=["sw", "en", "id"])
        'sw'
    """
    if candidates is None:
        return default_identifier().predict(text)
    wanted = canonical_langs(candidates)
    return identifier_for(wanted).predict(text, wanted)
