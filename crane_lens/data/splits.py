"""Splits of user corpora: checking split names and holding out an eval split deterministically.

A user corpus often comes as one body of text per language (a folder of ``<lang>.txt`` files,
a JSON-lines file, a dataset saved without splits). Serving that same text as both ``train``
and ``eval`` would let the evaluation reuse the training text, so such a corpus is split here:

* **eval** holds ``round(10 % × n)`` (halves up, at least 1) of each language's ``n`` distinct
  texts; **train** holds the rest. A language with fewer than
  :data:`MIN_TEXTS_TO_HOLD_OUT` distinct texts is refused instead of split.
* The texts held out are the ones with the smallest salted SHA-256 of their identity: the
  alignment key when the record has one (so parallel languages hold out the same segments),
  otherwise the text itself. The choice depends on the text alone, not on file order, machine,
  Python's hash seed or the other languages loaded, and adding text moves few old texts.
* Texts are compared after NFKC normalisation, case folding and whitespace collapsing; every
  copy of a held-out text goes to eval, so no text is on both sides.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping

from crane_lens.data.build.text import dedup_key
from crane_lens.data.corpus import TextRecord
from crane_lens.errors import CorpusFormatError, EmptyCorpusError

log = logging.getLogger(__name__)

HELD_OUT_FRACTION = 0.1
"""Share of each language's distinct texts held out as eval when a corpus has no eval split."""
MIN_TEXTS_TO_HOLD_OUT = 10
"""Fewest distinct texts a language needs before part of it can be held out."""
HELD_OUT_SPLITS = ("train", "eval")
"""The splits a corpus without its own splits offers."""
_SALT = b"crane_lens held-out split v1\0"

_announced: set[str] = set()


def check_split(split: str, valid: Iterable[str], source: str) -> None:
    """Refuse a split name the source does not have, listing the ones it has.

    Example:
        >>> check_split("tset", ["train", "eval"], "my_corpus/")
        Traceback (most recent call last):
        ...
        crane_lens.errors.CorpusFormatError: my_corpus/ has no split 'tset'; its splits are: \
train, eval.
    """
    valid = list(valid)
    if split not in valid:
        raise CorpusFormatError(
            f"{source} has no split {split!r}; its splits are: {', '.join(valid)}."
        )


def n_held_out(n: int, fraction: float = HELD_OUT_FRACTION) -> int:
    """How many of ``n`` distinct texts are held out: ``fraction × n`` rounded half up, ≥ 1.

    Example:
        >>> [n_held_out(n) for n in (10, 14, 15, 25, 100)]
        [1, 1, 2, 3, 10]
    """
    return max(1, int(n * fraction + 0.5))


def _rank(identity: str) -> bytes:
    return hashlib.sha256(_SALT + identity.encode("utf-8")).digest()


def hold_out(
    records: Mapping[str, list[TextRecord]], source: str, *, unit: str = "text"
) -> dict[str, dict[str, list[TextRecord]]]:
    """Split each language's records into ``train`` and a held-out ``eval`` part.

    Args:
        records: ``lang -> records`` of a source without an eval split.
        source: The source as the user gave it (for the log line and errors).
        unit: What one record is (``"line"``, ``"paragraph"``...), for the refusal message.

    Returns:
        ``{"train": {lang: records}, "eval": {lang: records}}``, records in their input order.

    Raises:
        EmptyCorpusError: A language has fewer than :data:`MIN_TEXTS_TO_HOLD_OUT` distinct texts.

    Example:
        >>> rows = {"en": [TextRecord(f"sentence {i}") for i in range(20)]}
        >>> parts = hold_out(rows, "my_corpus/")
        >>> len(parts["train"]["en"]), len(parts["eval"]["en"])
        (18, 2)
        >>> parts == hold_out(rows, "my_corpus/")
        True
    """
    out: dict[str, dict[str, list[TextRecord]]] = {split: {} for split in HELD_OUT_SPLITS}
    for lang, rows in records.items():
        identity = [r.key if r.key is not None else dedup_key(r.text) for r in rows]
        distinct = sorted(set(identity), key=lambda x: (_rank(x), x))
        if len(distinct) < MIN_TEXTS_TO_HOLD_OUT:
            smaller = ", use unit='line'" if unit in ("paragraph", "file") else ""
            raise EmptyCorpusError(
                f"{source}: {lang!r} has {len(distinct)} distinct text(s) (one per {unit}); "
                f"holding out {HELD_OUT_FRACTION:.0%} as eval needs at least "
                f"{MIN_TEXTS_TO_HOLD_OUT}. Add text{smaller}, or give explicit splits (train/ "
                "and eval/ sub-folders, or a 'split' field in JSON lines)."
            )
        chosen = set(distinct[: n_held_out(len(distinct))])
        # Copies of a held-out text under another key go to eval too: none straddles the line.
        texts = {
            dedup_key(r.text) for r, ident in zip(rows, identity, strict=True) if ident in chosen
        }
        held = [
            ident in chosen or dedup_key(r.text) in texts
            for r, ident in zip(rows, identity, strict=True)
        ]
        out["eval"][lang] = [r for r, h in zip(rows, held, strict=True) if h]
        out["train"][lang] = [r for r, h in zip(rows, held, strict=True) if not h]
    if source not in _announced:
        _announced.add(source)
        log.info(
            "%s: no eval split; holding out %.0f %% of each language's text as eval "
            "(deterministic)",
            source,
            100 * HELD_OUT_FRACTION,
        )
    return out


def volumes(
    parts: Mapping[str, Mapping[str, list[TextRecord]]],
) -> dict[str, dict[str, dict[str, int]]]:
    """``split -> lang -> {"texts": n, "chars": n}`` of split records (for ``CorpusInfo``)."""
    return {
        split: {
            lang: {"texts": len(rows), "chars": sum(len(r.text) for r in rows)}
            for lang, rows in by_lang.items()
        }
        for split, by_lang in parts.items()
    }
