"""Text normalisation and the quality checks used when the embedded corpus is built."""

from __future__ import annotations

import re
import unicodedata

# Characters that carry no text but break de-duplication (soft hyphen, zero-width marks, BOM).
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))
_SPACE = re.compile(r"\s+")
_DIGITS = re.compile(r"\d+")

# Unicode ranges of the scripts whose presence proves a segment was translated.
_SCRIPT_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "Hans": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF)),
    "Jpan": ((0x3040, 0x30FF), (0x4E00, 0x9FFF), (0x31F0, 0x31FF)),
    "Hang": ((0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F)),
    "Cyrl": ((0x0400, 0x04FF),),
    "Deva": ((0x0900, 0x097F),),
    "Arab": ((0x0600, 0x06FF), (0x0750, 0x077F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
}


def normalize_text(text: str) -> str:
    """NFC-normalise, drop invisible characters and collapse whitespace to single spaces.

    Running text is stored one segment per row; line breaks inside a help paragraph are layout,
    not content, so they become spaces.
    """
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    return _SPACE.sub(" ", text).strip()


def dedup_key(text: str) -> str:
    """The form two texts must share to count as duplicates (NFKC, case-folded, spaces collapsed).

    Stricter than equality so that texts differing only in case, width or spacing cannot sit on
    both sides of the train/eval boundary.
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def letter_count(text: str) -> int:
    """Number of alphabetic characters (any script)."""
    return sum(ch.isalpha() for ch in text)


def script_share(text: str, script: str) -> float:
    """Share of the letters of ``text`` that belong to ``script`` (1.0 for Latin-script checks).

    Latin-script languages cannot be told from English by script, so they return 1.0 and rely
    on the equality check in :func:`is_translated`.
    """
    ranges = _SCRIPT_RANGES.get(script)
    if ranges is None:
        return 1.0
    letters = [ord(ch) for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    inside = sum(any(lo <= cp <= hi for lo, hi in ranges) for cp in letters)
    return inside / len(letters)


def is_translated(text: str, english: str, script: str, min_script_share: float = 0.1) -> bool:
    """Whether ``text`` is a translation rather than the English source left in place.

    Args:
        text: The segment in the target language.
        english: The English source of the same segment.
        script: ISO 15924 script of the target language.
        min_script_share: Minimum share of letters in the target script for non-Latin scripts.
            Help text keeps product and menu names in English, and one CJK character weighs
            as much as one Latin letter, so the bar is low; untranslated text scores 0.
    """
    if text == english:
        return False
    return script_share(text, script) >= min_script_share


def numbers_match(text: str, english: str) -> bool:
    """Whether both segments contain the same multiset of digit runs.

    Reused paragraph ids in the help sources pair a translation with the wrong English
    paragraph; differing numbers are the cheapest reliable symptom.
    """
    # int() reads every Unicode digit, so Arabic-Indic or full-width numerals compare equal.
    return sorted(int(d) for d in _DIGITS.findall(text)) == sorted(
        int(d) for d in _DIGITS.findall(english)
    )


def length_ratio(text: str, english: str) -> float:
    """Character-length ratio of a translation to its English source."""
    return len(text) / max(len(english), 1)
