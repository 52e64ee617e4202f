"""Multiple-choice items and sets, and their JSON files."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crane_lens.data.languages import canonical_lang, canonical_langs
from crane_lens.errors import (
    CorpusFormatError,
    EmptyCorpusError,
    MissingLanguageError,
)
from crane_lens.utils.io import write_json

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


FORMAT = "crane_lens.multiple_choice"  # marker of files written by MultipleChoiceSet.save
FORMAT_VERSION = 1

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class MultipleChoiceItem:
    """One question with its candidate answers.

    Attributes:
        question: The context the choices are scored after (may be empty).
        choices: Candidate answers (at least two), scored *as written*: include the separating
            space (``" Paris"``) when the choice follows the question after a space.
        answer: Index of the right choice (0-based).
        key: Optional identifier (the built-in set: the alignment key of the source text,
            shared by the same item in every language).
    """

    question: str
    choices: list[str]
    answer: int
    key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.question, str):
            raise ValueError(f"question must be a string, not {type(self.question).__name__}.")
        if not isinstance(self.choices, (list, tuple)) or len(self.choices) < 2:
            raise ValueError(
                f"an item needs at least 2 choices, got {self.choices!r}; drop such items."
            )
        self.choices = list(self.choices)
        for choice in self.choices:
            if not isinstance(choice, str) or not choice.strip():
                raise ValueError(
                    f"every choice must be a non-blank string, got {choice!r} in {self.choices!r}."
                )
        if isinstance(self.answer, bool) or not isinstance(self.answer, int):
            raise ValueError(f"answer must be a 0-based int index, not {self.answer!r}.")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(
                f"answer {self.answer} is out of range for {len(self.choices)} choices "
                f"(0-based: 0..{len(self.choices) - 1})."
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "choices": list(self.choices),
            "answer": self.answer,
            "key": self.key,
        }


@dataclass
class MultipleChoiceSet:
    """Multiple-choice items per language.

    ``len(mc)`` is the number of items over all languages; ``mc["vi"]`` the items of one.

    Attributes:
        items: ``lang -> items``; language codes in any form :func:`canonical_lang` accepts
            (stored canonical).
        name: Name of the benchmark (carried into reports).
        meta: How the set was made (source, seed, settings); saved with it.
    """

    items: dict[str, list[MultipleChoiceItem]]
    name: str = "multiple-choice"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        canonical: dict[str, list[MultipleChoiceItem]] = {}
        for lang, rows in self.items.items():
            code = canonical_lang(lang)
            if code in canonical:
                raise ValueError(f"{lang!r} and another code both name {code!r}; merge them.")
            if not rows:
                raise EmptyCorpusError(
                    f"Multiple-choice set {self.name!r} has no items for {code!r}; drop the "
                    "language."
                )
            canonical[code] = list(rows)
        if not canonical:
            raise EmptyCorpusError(f"Multiple-choice set {self.name!r} has no items.")
        self.items = canonical

    @property
    def langs(self) -> list[str]:
        """Languages, in order."""
        return list(self.items)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.items.values())

    def __getitem__(self, lang: str) -> list[MultipleChoiceItem]:
        return self.items[self._require(lang)]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{lang}={len(rows)}" for lang, rows in self.items.items())
        return f"MultipleChoiceSet(name={self.name!r}, items: {sizes})"

    def _require(self, lang: str) -> str:
        code = canonical_lang(lang)
        if code not in self.items:
            raise MissingLanguageError(
                f"Multiple-choice set {self.name!r} has no {lang!r}; it has "
                f"{', '.join(self.langs)}."
            )
        return code

    def n_items(self, lang: str) -> int:
        return len(self[lang])

    def select(self, langs: str | Iterable[str]) -> MultipleChoiceSet:
        """The set restricted to some languages (in this order)."""
        chosen = [self._require(x) for x in canonical_langs(langs)]
        return MultipleChoiceSet({x: self.items[x] for x in chosen}, self.name, dict(self.meta))

    def to_dataframe(self) -> pd.DataFrame:
        """One row per item: ``lang``, ``item`` (index in its language), ``key``, ``question``,
        ``choices`` (list), ``answer``, ``answer_text``."""
        import pandas as pd

        rows = [
            {"lang": lang, "item": i, "key": it.key, "question": it.question,
             "choices": list(it.choices), "answer": it.answer,
             "answer_text": it.choices[it.answer]}
            for lang, items in self.items.items() for i, it in enumerate(items)
        ]  # fmt: skip
        columns = ["lang", "item", "key", "question", "choices", "answer", "answer_text"]
        return pd.DataFrame(rows, columns=columns)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the set as one JSON file, atomically (temporary file + ``os.replace``).

        It loads back with :meth:`load` or :func:`load_multiple_choice`.
        """
        data = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "meta": self.meta,
            "items": {lang: [it.to_dict() for it in rows] for lang, rows in self.items.items()},
        }
        return write_json(path, data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MultipleChoiceSet:
        """Read a set written by :meth:`save`.

        Raises:
            CorpusFormatError: The file is missing, not JSON, or not such a set.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorpusFormatError(
                f"Cannot read the multiple-choice set {path}: {exc}. Pass a file written by "
                "MultipleChoiceSet.save, or use load_multiple_choice for other formats."
            ) from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CorpusFormatError(
                f"{path} is not a file written by MultipleChoiceSet.save (no format "
                f"{FORMAT!r}); read other JSON with load_multiple_choice."
            )
        if data.get("version", 0) > FORMAT_VERSION:
            raise CorpusFormatError(
                f"{path} has format version {data['version']}, newer than this crane_lens "
                f"reads ({FORMAT_VERSION}); upgrade crane_lens."
            )
        try:
            items = {
                lang: [MultipleChoiceItem(**row) for row in rows]
                for lang, rows in data["items"].items()
            }
            return cls(items, str(data.get("name", "multiple-choice")), dict(data.get("meta", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorpusFormatError(f"{path}: invalid multiple-choice set ({exc}).") from exc


# -- scoring --------------------------------------------------------------------------------
