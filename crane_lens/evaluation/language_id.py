"""Which language is a (generated) text in? Script rules first, character n-grams for the rest.

Two stages, no model and no download:

1. **Script.** Every letter (and combining mark) is assigned to a script by its Unicode block
   and weighted (a Han, kana or Hangul character counts as 3 letters: it carries about a
   syllable or a word). A non-Latin script carrying at least a fifth of the weight wins —
   Latin product names and code are common inside other scripts (``"LibreOffice Impress
   使用说明"`` is Chinese), the reverse is rare; otherwise the text is Latin. Kana among the CJK
   characters (at least 5% of them) → Japanese, even with kanji; Han without kana → Chinese
   (Japanese if Chinese is not a candidate); Hangul → Korean; Cyrillic → Russian; Arabic →
   Arabic; Devanagari → Hindi. In general: the languages of the identifier whose
   :attr:`~crane_lens.data.languages.LanguageInfo.script` is the text's script.
2. **Character n-grams.** When several languages share the script (the eleven Latin-script
   languages of the embedded corpus: en de es fr id it nl pl pt tr vi), a multinomial naive
   Bayes over character 1-, 2- and 3-grams (lower-cased letters, words padded with spaces,
   add-k smoothing, uniform prior) picks among them.

Text without letters (empty, digits, punctuation), or whose dominant script belongs to none of
the candidate languages (e.g. Greek for the default identifier), is unidentifiable: ``None``.

The default identifier (:func:`default_identifier`, used by :func:`identify_language`) is trained
on the first 100,000 characters of each Latin-script language of the embedded *train* split;
building it takes about 0.5 s (2-core CPU; the whole train split would take ~2 s just to
decompress, and 200,000 or 400,000 characters per language score within ±0.005 of 100,000) and
it is cached per process; a prediction takes ~0.1 ms. Accuracy on the
held-out embedded *eval* split, texts of at least 20 characters (``tests/evaluation/
test_language_id.py`` asserts floors just below these):

* hi ja ko ru zh (script rules): 1.000; ar 0.996 (two Serbian alphabet samples in Arabic UI
  text); de es fr id it nl pl pt tr vi (n-grams): 0.986–1.000, es the lowest (confused with pt);
* en: 0.979 — the misses are short UI strings such as ``"OpenDocument Drawing"`` or
  ``"Kurdish, Southern (Iran)"``; on the help and UDHR texts it is ≥ 0.99.

Japanese written without any kana (short kanji-only titles) is labelled Chinese: the script
alone cannot tell them apart.
"""

from __future__ import annotations

import bisect
import json
import logging
import lzma
import math
import operator
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from crane_lens.data.languages import LANGUAGES, canonical_lang, canonical_langs

if TYPE_CHECKING:
    from crane_lens.data.corpus import Corpus

log = logging.getLogger(__name__)

DEFAULT_MAX_CHARS_PER_LANG = 100_000
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


def _normalise(text: str) -> str:
    """Lower-cased letters, one space between words and around the text (word boundaries)."""
    words = _NON_LETTERS.sub(" ", unicodedata.normalize("NFC", text).lower()).split()
    return " " + " ".join(words) + " " if words else ""


def _ngrams(text: str) -> list[str]:
    """1-, 2- and 3-grams of a normalised text, without the bare space unigram."""
    bigrams = list(map(operator.add, text, text[1:]))
    trigrams = list(map(operator.add, bigrams, text[2:]))
    return [c for c in text if c != " "] + bigrams + trigrams


class LanguageIdentifier:
    """Script rules plus a character n-gram naive Bayes for languages that share a script.

    Build one with :meth:`from_corpus` or :meth:`from_texts`, or use :func:`default_identifier`
    (the 17 languages of the embedded corpus).

    Attributes:
        langs: Languages it can answer, canonical codes in a fixed order.
        ngram_langs: Languages that have an n-gram profile (they share a script with another
            language of ``langs``).
        smoothing: The ``k`` of add-k smoothing.

    Example:
        >>> lid = default_identifier()
        >>> lid.predict("Tôi yêu tiếng Việt"), lid.predict("Ich habe einen Hund"), lid.predict("...")
        ('vi', 'de', None)
    """

    def __init__(
        self,
        langs: Sequence[str],
        ngram_langs: Sequence[str],
        counts: Mapping[str, Mapping[str, int]],
        *,
        smoothing: float = 0.5,
    ) -> None:
        self.langs = canonical_langs(langs)
        self.ngram_langs = canonical_langs(ngram_langs) if ngram_langs else []
        self.smoothing = smoothing
        vocab = sorted(set().union(*(counts[lang] for lang in self.ngram_langs)))
        self._index = {gram: i for i, gram in enumerate(vocab)}
        order = np.array([len(g) for g in vocab], dtype=np.int64)
        n_orders = 3
        # logp[g, l] = log((c_l(g) + k) / (N_l,n + k (V_n + 1))); unseen n-grams: log(k / ...).
        self._logp = np.zeros((len(vocab), len(self.ngram_langs)))
        self._unseen = np.zeros((n_orders + 1, len(self.ngram_langs)))
        vocab_size = np.bincount(order, minlength=n_orders + 1)
        for j, lang in enumerate(self.ngram_langs):
            raw = np.array([counts[lang].get(g, 0) for g in vocab], dtype=np.float64)
            totals = np.bincount(order, weights=raw, minlength=n_orders + 1)
            denominator = np.log(totals + smoothing * (vocab_size + 1))
            self._logp[:, j] = np.log(raw + smoothing) - denominator[order]
            self._unseen[:, j] = math.log(smoothing) - denominator
        self._unseen[0] = 0.0

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_texts(
        cls,
        texts: Mapping[str, Iterable[str]],
        *,
        max_chars_per_lang: int | None = DEFAULT_MAX_CHARS_PER_LANG,
        smoothing: float = 0.5,
    ) -> LanguageIdentifier:
        """Train on texts per language.

        Only languages that share their script with another one get an n-gram profile; the
        others are identified by script alone and their texts are not read.

        Args:
            texts: ``lang -> texts`` (codes in any form :func:`canonical_lang` accepts).
            max_chars_per_lang: Train on at most this many characters per language (the first
                texts); ``None`` reads everything.
            smoothing: ``k`` of add-k smoothing.
        """
        by_lang = {canonical_lang(lang): rows for lang, rows in texts.items()}
        scripts = Counter(LANGUAGES[lang].script for lang in by_lang)
        ngram_langs = [lang for lang in by_lang if scripts[LANGUAGES[lang].script] > 1]
        counts: dict[str, Counter[str]] = {}
        for lang in ngram_langs:
            counts[lang] = Counter()
            budget = math.inf if max_chars_per_lang is None else max_chars_per_lang
            for text in by_lang[lang]:
                if budget <= 0:
                    break
                text = text[: int(min(budget, len(text)))]
                budget -= len(text)
                counts[lang].update(_ngrams(_normalise(text)))
        return cls(list(by_lang), ngram_langs, counts, smoothing=smoothing)

    @classmethod
    def from_corpus(
        cls,
        corpus: Corpus,
        *,
        max_chars_per_lang: int | None = DEFAULT_MAX_CHARS_PER_LANG,
        smoothing: float = 0.5,
    ) -> LanguageIdentifier:
        """Train on a corpus' languages (see :meth:`from_texts`).

        Example:
            >>> import crane_lens as cl
            >>> corpus = cl.load_corpus("builtin", langs=["en", "fr", "zh"], split="eval")
            >>> lid = LanguageIdentifier.from_corpus(corpus)
            >>> lid.ngram_langs, lid.predict("le chat est sur la table"), lid.predict("我的猫")
            (['en', 'fr'], 'fr', 'zh')
        """
        return cls.from_texts(
            {lang: corpus[lang] for lang in corpus.langs},
            max_chars_per_lang=max_chars_per_lang,
            smoothing=smoothing,
        )

    # -- prediction -------------------------------------------------------------------------
    def _script_langs(self, script: str | None, allowed: list[str]) -> list[str]:
        if script is None or script == "Other":
            return []
        if script == "Hani":  # Han without kana: Chinese; Japanese can be written in kanji only
            chinese = [x for x in allowed if LANGUAGES[x].script in ("Hans", "Hant")]
            return chinese or [x for x in allowed if LANGUAGES[x].script == "Jpan"]
        return [x for x in allowed if LANGUAGES[x].script == script]

    def scores(self, text: str, candidates: Iterable[str] | None = None) -> dict[str, float]:
        """Posterior probability of each language the text's script allows.

        Args:
            text: Any text.
            candidates: Restrict the answer to these languages (default: all of ``langs``).

        Returns:
            ``lang -> probability`` over the candidates written in the text's dominant script,
            summing to 1 (naive Bayes posteriors are overconfident: read them as a ranking);
            ``{lang: 1.0}`` when the script decides alone; ``{}`` when nothing fits.
        """
        allowed = self.langs if candidates is None else self._check(candidates)
        options = self._script_langs(detect_script(text), allowed)
        if len(options) <= 1:
            return dict.fromkeys(options, 1.0)
        modelled = [x for x in options if x in self.ngram_langs]
        if not modelled:  # several languages of this script but no profile: cannot choose
            return dict.fromkeys(options, 1.0 / len(options))
        loglik = self._loglik(_normalise(text), [self.ngram_langs.index(x) for x in modelled])
        posterior = np.exp(loglik - loglik.max())
        posterior /= posterior.sum()
        return {lang: float(p) for lang, p in zip(modelled, posterior, strict=True)}

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

    def _loglik(self, normalised: str, columns: list[int]) -> np.ndarray:
        rows: list[int] = []
        unseen = np.zeros(4, dtype=np.int64)
        for gram in _ngrams(normalised):
            i = self._index.get(gram)
            if i is None:
                unseen[len(gram)] += 1
            else:
                rows.append(i)
        seen = self._logp[np.asarray(rows, dtype=np.int64)][:, columns].sum(axis=0)
        return np.asarray(seen + unseen @ self._unseen[:, columns])

    def _check(self, candidates: Iterable[str]) -> list[str]:
        wanted = canonical_langs(candidates)
        return [x for x in wanted if x in self.langs]

    def __repr__(self) -> str:
        return (
            f"LanguageIdentifier(langs={self.langs}, ngram_langs={self.ngram_langs}, "
            f"{len(self._index)} n-grams)"
        )


def _builtin_train_texts(lang: str, max_chars: int) -> list[str]:
    """The first ``max_chars`` characters of a language's embedded train split, read lazily.

    Streams the compressed file and stops early (decompressing a whole split costs ~2 s).
    """
    from crane_lens.data.sources.builtin import builtin_dir

    texts: list[str] = []
    n_chars = 0
    with lzma.open(builtin_dir() / "train" / f"{lang}.jsonl.xz", "rt", encoding="utf-8") as f:
        for line in f:
            if n_chars >= max_chars:
                break
            text = json.loads(line)["text"]
            texts.append(text)
            n_chars += len(text)
    return texts


@cache
def default_identifier() -> LanguageIdentifier:
    """The identifier of the embedded corpus' 17 languages, trained on its train split.

    Latin-script languages get n-gram profiles from their first 100,000 training characters;
    built once per process (about 0.5 s).
    """
    from crane_lens.data.sources.builtin import builtin_langs

    start = time.perf_counter()
    langs = builtin_langs()
    scripts = Counter(LANGUAGES[lang].script for lang in langs)
    texts = {
        lang: _builtin_train_texts(lang, DEFAULT_MAX_CHARS_PER_LANG)
        if scripts[LANGUAGES[lang].script] > 1
        else []
        for lang in langs
    }
    identifier = LanguageIdentifier.from_texts(texts)
    log.info("built %r in %.2f s", identifier, time.perf_counter() - start)
    return identifier


def identify_language(text: str, candidates: Iterable[str] | None = None) -> str | None:
    """Language of ``text`` by :func:`default_identifier`, or ``None`` when unidentifiable.

    Args:
        text: Any text.
        candidates: Restrict the answer to these languages.

    Example:
        >>> identify_language("これは日本語です"), identify_language("한국어"), identify_language("123")
        ('ja', 'ko', None)
        >>> identify_language("Привет, мир", candidates=["en", "de"]) is None  # Cyrillic
        True
    """
    return default_identifier().predict(text, candidates)
