"""The built-in benchmark: true continuation among same-language distractors."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from crane_lens.errors import (
    EmptyCorpusError,
)
from crane_lens.evaluation.multiple_choice.sets import MultipleChoiceItem, MultipleChoiceSet

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


UNSPACED = frozenset({"zh", "ja", "th"})  # written without spaces between words
MIN_WORDS, MAX_WORDS, MIN_SIDE_WORDS = 6, 120, 3  # spaced languages, per text / per side
MIN_CHARS, MAX_CHARS, MIN_SIDE_CHARS = 12, 300, 6  # unspaced languages
_BREAK_AFTER = frozenset("，、。；：！？,.;:!?）)」』】》")


def split_text(text: str, lang: str, context_fraction: float = 0.5) -> tuple[str, str] | None:
    """Split a text into a context and its continuation, or ``None`` when it is too short/long.

    Spaced languages: whitespace is collapsed, the cut is the word boundary closest to
    ``context_fraction`` of the characters, with at least 3 words on either side, and the
    continuation keeps the space (``"... the properties", " of a control ..."``). Unspaced
    languages (zh, ja, th): the cut is just after punctuation or whitespace when there is such
    a place within a quarter of the text from the target, else at the target character; at
    least 6 characters on either side.
    """
    if lang in UNSPACED:
        text = text.strip()
        n = len(text)
        if not MIN_CHARS <= n <= MAX_CHARS:
            return None
        target = context_fraction * n
        cuts = range(MIN_SIDE_CHARS, n - MIN_SIDE_CHARS + 1)
        natural = [
            i for i in cuts
            if abs(i - target) <= n / 4
            and (text[i - 1] in _BREAK_AFTER or text[i - 1].isspace() or text[i].isspace())
        ]  # fmt: skip
        cut = min(natural or cuts, key=lambda i: (abs(i - target), i))
        context, continuation = text[:cut].rstrip(), text[cut:]
        if continuation[:1].isspace():
            continuation = " " + continuation.lstrip()
        return context, continuation
    words = text.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    target = context_fraction * len(" ".join(words))
    offsets = [0]
    for word in words:
        offsets.append(offsets[-1] + len(word) + 1)  # offsets[i] - 1: space before word i
    best = min(
        range(MIN_SIDE_WORDS, len(words) - MIN_SIDE_WORDS + 1),
        key=lambda i: (abs(offsets[i] - 1 - target), i),
    )
    return " ".join(words[:best]), " " + " ".join(words[best:])


def _warn_if_few_shared(eligible: dict[str, set[str]], shared: set[str]) -> None:
    """Name the languages whose texts limit the shared keys (greedily, while that pays)."""
    kept, dropped = dict(eligible), []
    count = len(shared)
    while len(kept) > 1:
        without = {
            lang: len(set.intersection(*(keys for other, keys in kept.items() if other != lang)))
            for lang in kept
        }
        lang = max(without, key=lambda x: (without[x], x))
        if without[lang] < 1.5 * count or without[lang] - count < 20:
            break
        dropped.append(lang)
        del kept[lang]
        count = without[lang]
    if dropped:
        log.warning(
            "Only %d texts are shared by all requested languages; without %s there would be %d "
            "(the embedded eval split lacks most of their texts).",
            len(shared), ", ".join(dropped), count,
        )  # fmt: skip


def builtin_multiple_choice(
    langs: str | Iterable[str] | None = None,
    *,
    n_choices: int = 4,
    max_items_per_lang: int | None = None,
    seed: int = 0,
    origins: Iterable[str] | None = None,
    context_fraction: float = 0.5,
) -> MultipleChoiceSet:
    """The built-in "true continuation" benchmark, parallel across languages.

    See the module docstring for the task and the length control.

    Args:
        langs: Languages (default: the 17 of the embedded corpus, which share only the 49
            UDHR items, out of crane-tiny's domain). Only texts all of them have make items, so
            fewer languages can mean more items: without ``ar`` and ``hi``, 467.
        n_choices: Candidates per item (the true continuation and ``n_choices - 1`` others).
        max_items_per_lang: Keep a seeded random sample of this many items.
        seed: Seed of the item sample, the distractors and the answer positions.
        origins: Restrict to record origins, e.g. ``["udhr"]`` (out of crane-tiny's training
            domain) or ``["libreoffice-help"]``.
        context_fraction: Share of each text's characters given as context.

    Returns:
        The same items (keys, distractor keys, answer positions) in every language; the answer
        positions are balanced over ``0 .. n_choices - 1``.

    Raises:
        UnknownLanguageError, MissingLanguageError: A language that is unknown or not in the
            embedded corpus.
        EmptyCorpusError: Fewer shared texts than ``n_choices``.
    """
    from crane_lens.data.sources import load_corpus

    if n_choices < 2:
        raise ValueError(f"n_choices must be at least 2, not {n_choices}.")
    if not 0 < context_fraction < 1:
        raise ValueError(f"context_fraction must be in (0, 1), not {context_fraction}.")
    if max_items_per_lang is not None and max_items_per_lang < 1:
        raise ValueError(f"max_items_per_lang must be positive, not {max_items_per_lang}.")
    corpus = load_corpus("builtin", langs=langs, split="eval", origins=origins)
    splits: dict[str, dict[str, tuple[str, str]]] = {}
    origin: dict[str, str | None] = {}
    for lang in corpus.langs:
        splits[lang] = {}
        for record in corpus.records[lang]:
            if record.key is not None:
                origin.setdefault(record.key, record.origin)
                parts = split_text(record.text, lang, context_fraction)
                if parts is not None:
                    splits[lang][record.key] = parts
    eligible = {lang: set(rows) for lang, rows in splits.items()}
    shared = set.intersection(*eligible.values())
    _warn_if_few_shared(eligible, shared)
    keys, seen = [], set()
    for key in sorted(shared):  # the same text under two keys would make two identical items
        versions = tuple(splits[lang][key] for lang in corpus.langs)
        if versions not in seen:
            seen.add(versions)
            keys.append(key)
    if len(keys) < n_choices:
        raise EmptyCorpusError(
            f"Only {len(keys)} texts of usable length are shared by {', '.join(corpus.langs)}; "
            f"{n_choices} choices need at least {n_choices}. Request fewer languages or choices."
        )
    # Continuation length of a key: mean over languages of the log character count.
    size = {
        k: sum(math.log(len(splits[x][k][1])) for x in corpus.langs) / len(corpus.langs)
        for k in keys
    }
    rng = random.Random(seed)
    chosen = keys
    if max_items_per_lang is not None and max_items_per_lang < len(keys):
        chosen = sorted(rng.sample(keys, max_items_per_lang))
    positions = [i % n_choices for i in range(len(chosen))]
    rng.shuffle(positions)
    pool_size = 3 * (n_choices - 1)
    items: dict[str, list[MultipleChoiceItem]] = {lang: [] for lang in corpus.langs}
    skipped = 0
    by_origin: dict[str | None, list[str]] = {}
    for key in keys:
        by_origin.setdefault(origin[key], []).append(key)
    for key, answer in zip(chosen, positions, strict=True):
        # Distractors of the same origin (help text for help text, UDHR for UDHR) when there
        # are enough: otherwise the domain alone would give the answer away.
        same = by_origin[origin[key]]
        candidates = same if len(same) >= n_choices else keys
        nearest = sorted(
            (k for k in candidates if k != key), key=lambda k: (abs(size[k] - size[key]), k)
        )
        pool = nearest[:pool_size]
        rng.shuffle(pool)
        taken = {lang: {splits[lang][key][1].strip()} for lang in corpus.langs}
        distractors: list[str] = []
        for candidate in [*pool, *nearest[pool_size:]]:
            texts = {lang: splits[lang][candidate][1].strip() for lang in corpus.langs}
            if any(
                texts[x] in taken[x] or splits[x][candidate][0] == splits[x][key][0]
                for x in corpus.langs
            ):
                continue  # a duplicate choice, or a text with the same context: also "true"
            distractors.append(candidate)
            for lang in corpus.langs:
                taken[lang].add(texts[lang])
            if len(distractors) == n_choices - 1:
                break
        if len(distractors) < n_choices - 1:
            skipped += 1
            continue
        order = [*distractors[:answer], key, *distractors[answer:]]
        for lang in corpus.langs:
            choices = [splits[lang][k][1] for k in order]
            items[lang].append(MultipleChoiceItem(splits[lang][key][0], choices, answer, key))
    if skipped:
        log.warning("%d items were dropped: not enough distinct distractors.", skipped)
    meta = {
        "source": "builtin", "split": "eval", "task": "true continuation",
        "langs": corpus.langs, "n_choices": n_choices, "seed": seed,
        "max_items_per_lang": max_items_per_lang, "context_fraction": context_fraction,
        "origins": None if origins is None else list(origins),
    }  # fmt: skip
    log.info("built-in multiple choice: %d items per language", len(items[corpus.langs[0]]))
    return MultipleChoiceSet(items, name="builtin-continuation", meta=meta)


# -- users' sets ----------------------------------------------------------------------------
