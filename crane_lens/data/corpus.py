"""The :class:`Corpus`: texts grouped by language, with their alignment keys and provenance."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crane_lens.data.languages import LANGUAGES, canonical_lang, canonical_langs
from crane_lens.errors import EmptyCorpusError, MissingLanguageError
from crane_lens.utils.io import atomic_path

if TYPE_CHECKING:
    import pandas as pd

    from crane_lens.data.tokens import TokenBlocks, TokenizerLike


@dataclass(frozen=True)
class TextRecord:
    """One text of a corpus.

    Attributes:
        text: The running text.
        key: Alignment key shared by the translations of the same segment in other languages
            (``None`` when the source has none). Parallel tasks join languages on it.
        origin: Sub-source of the text, e.g. ``"udhr"`` or ``"libreoffice-help"``.
    """

    text: str
    key: str | None = None
    origin: str | None = None


@dataclass(frozen=True)
class CorpusInfo:
    """Where a corpus came from.

    Attributes:
        source: ``"builtin"``, a path, or a dataset name.
        split: The split that was loaded.
        description: One line about the content.
        licence: Licence of the text, when known.
        volumes: Known volumes, ``split -> lang -> {"texts": n, "chars": n}``; for the built-in
            corpus every split is listed, whichever was loaded.
    """

    source: str
    split: str
    description: str = ""
    licence: str | None = None
    volumes: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)


class Corpus:
    """Texts per language (canonical language tags, see :func:`canonical_lang`), in a fixed order.

    Build one with :func:`crane_lens.load_corpus`. Indexing by a language returns its texts:

    Example:
        >>> import crane_lens as cl
        >>> corpus = cl.load_corpus("builtin", langs=["en", "vi"], split="eval")
        >>> corpus.langs
        ['en', 'vi']
        >>> corpus["vi"][0][:20] == corpus.records["vi"][0].text[:20]
        True
    """

    def __init__(self, records: dict[str, list[TextRecord]], info: CorpusInfo) -> None:
        for lang, rows in records.items():
            if lang != canonical_lang(lang):
                raise ValueError(f"corpus languages must be canonical tags, got {lang!r}")
            if not rows:
                raise EmptyCorpusError(
                    f"{info.source!r} has no texts for {lang!r} (split {info.split!r}). "
                    "Drop the language or point to a source that has text for it."
                )
        self.records = records
        self.info = info

    # ---------------------------------------------------------------- mapping interface
    @property
    def langs(self) -> list[str]:
        """The corpus' languages, in order."""
        return list(self.records)

    def __getitem__(self, lang: str) -> list[str]:
        return [r.text for r in self.records[self._require(lang)]]

    def __contains__(self, lang: object) -> bool:
        try:
            return isinstance(lang, str) and canonical_lang(lang) in self.records
        except ValueError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{lang}={len(rows)}" for lang, rows in self.records.items())
        return f"Corpus(source={self.info.source!r}, split={self.info.split!r}, texts: {sizes})"

    def _require(self, lang: str) -> str:
        canon = canonical_lang(lang)
        if canon not in self.records:
            raise MissingLanguageError(
                f"Language {lang!r} is not in this corpus ({self.info.source!r}, split "
                f"{self.info.split!r}). Available: {', '.join(self.langs)}."
            )
        return canon

    # ---------------------------------------------------------------- views
    def select(
        self, langs: str | Iterable[str] | None = None, *, origins: Iterable[str] | None = None
    ) -> Corpus:
        """A corpus restricted to some languages and/or origins.

        Args:
            langs: Languages to keep (in this order); ``None`` keeps all.
            origins: Record origins to keep, e.g. ``["udhr"]``; ``None`` keeps all.

        Raises:
            MissingLanguageError: A requested language is not in the corpus.
            EmptyCorpusError: A language has no record of the requested origins.
        """
        chosen = self.langs if langs is None else [self._require(x) for x in canonical_langs(langs)]
        keep = None if origins is None else set(origins)
        records = {
            lang: [r for r in self.records[lang] if keep is None or r.origin in keep]
            for lang in chosen
        }
        # Documented volumes no longer describe a corpus filtered by origin.
        info = self.info if keep is None else replace(self.info, volumes={})
        return Corpus(records, info)

    def n_chars(self, lang: str) -> int:
        """Number of characters of a language's texts."""
        return sum(len(r.text) for r in self.records[self._require(lang)])

    def parallel(self, langs: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows aligned across languages by key.

        Args:
            langs: Languages to align (default: all). Only keys present in every one are kept.

        Returns:
            A DataFrame indexed by alignment key with one text column per language, ordered by
            key.
        """
        import pandas as pd

        chosen = self.langs if langs is None else [self._require(x) for x in langs]
        by_lang = {
            lang: {r.key: r.text for r in self.records[lang] if r.key is not None}
            for lang in chosen
        }
        shared = set.intersection(*(set(rows) for rows in by_lang.values())) if by_lang else set()
        keys = sorted(shared)
        frame = pd.DataFrame(
            {lang: [by_lang[lang][k] for k in keys] for lang in chosen}, index=keys
        )
        frame.index.name = "key"
        return frame

    def to_dataframe(self) -> pd.DataFrame:
        """One row per text: columns ``lang``, ``key``, ``origin``, ``text``."""
        import pandas as pd

        rows = [
            {"lang": lang, "key": r.key, "origin": r.origin, "text": r.text}
            for lang, records in self.records.items()
            for r in records
        ]
        return pd.DataFrame(rows, columns=["lang", "key", "origin", "text"])

    # ---------------------------------------------------------------- reporting
    def summary(self) -> str:
        """A readable table of languages and volumes (every split the source documents)."""
        volumes = self.info.volumes or {
            self.info.split: {
                lang: {"texts": len(rows), "chars": sum(len(r.text) for r in rows)}
                for lang, rows in self.records.items()
            }
        }
        splits = list(volumes)
        names = {lang: LANGUAGES[lang].name for lang in self.langs}
        w_lang = max([4, *map(len, self.langs)]) + 1
        w_name = max([8, *map(len, names.values())]) + 2
        header = f"{'lang':<{w_lang}}{'language':<{w_name}}" + "".join(
            f"{split + ' texts':>13}{split + ' chars':>14}" for split in splits
        )
        lines = [
            f"Corpus {self.info.source!r}: {self.info.description}".rstrip(": "),
            f"licence: {self.info.licence or 'unknown'}; loaded split: {self.info.split!r}",
            "",
            header,
            "-" * len(header),
        ]
        for lang in self.langs:
            cells = "".join(
                f"{volumes[s].get(lang, {}).get('texts', 0):>13,}"
                f"{volumes[s].get(lang, {}).get('chars', 0):>14,}"
                for s in splits
            )
            lines.append(f"{lang:<{w_lang}}{names[lang]:<{w_name}}{cells}")
        lines.append("-" * len(header))
        totals = "".join(
            f"{sum(volumes[s].get(x, {}).get('texts', 0) for x in self.langs):>13,}"
            f"{sum(volumes[s].get(x, {}).get('chars', 0) for x in self.langs):>14,}"
            for s in splits
        )
        lines.append(f"{'all':<{w_lang}}{f'{len(self)} langs':<{w_name}}{totals}")
        return "\n".join(lines)

    # ---------------------------------------------------------------- conversion
    def to_token_blocks(
        self,
        tokenizer: TokenizerLike,
        seq_len: int = 128,
        max_tokens_per_lang: int | None = None,
        seed: int = 0,
        *,
        balance: bool = False,
        separator: Literal["eos+bos", "eos"] = "eos+bos",
    ) -> TokenBlocks:
        """Tokenise into fixed-length blocks per language; see :func:`make_token_blocks`."""
        from crane_lens.data.tokens import make_token_blocks

        return make_token_blocks(
            self,
            tokenizer,
            seq_len=seq_len,
            max_tokens_per_lang=max_tokens_per_lang,
            seed=seed,
            balance=balance,
            separator=separator,
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the corpus as JSON lines (``lang``, ``split``, ``key``, ``origin``, ``text``).

        The file is written atomically and loads back with ``load_corpus(path, split=...)``
        (the split it was loaded as: ``corpus.info.split``).
        """
        path = Path(path)
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
            for lang, records in self.records.items():
                for r in records:
                    row: dict[str, Any] = {"lang": lang, "split": self.info.split, "text": r.text}
                    if r.key is not None:
                        row["key"] = r.key
                    if r.origin is not None:
                        row["origin"] = r.origin
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path
