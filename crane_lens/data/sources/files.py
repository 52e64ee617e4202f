"""Corpora from local files: a folder of ``<lang>.txt`` files, or JSON lines."""

from __future__ import annotations

import gzip
import json
import logging
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

from crane_lens.data.corpus import Corpus, CorpusInfo, TextRecord
from crane_lens.data.languages import canonical_lang
from crane_lens.errors import (
    CorpusFormatError,
    EmptyCorpusError,
    MissingLanguageError,
    UnknownLanguageError,
)

log = logging.getLogger(__name__)

TextUnit = Literal["line", "paragraph", "file"]
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.xz", ".ndjson")


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    if path.name.endswith(".xz"):
        return lzma.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _read(path: Path) -> str:
    try:
        with _open_text(path) as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise CorpusFormatError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}). Re-encode it as UTF-8."
        ) from exc
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise CorpusFormatError(
            f"Cannot read {path}: {exc}. Check the path and permissions."
        ) from exc


def _split_units(text: str, unit: TextUnit) -> list[str]:
    if unit == "line":
        parts = text.splitlines()
    elif unit == "paragraph":
        parts = [" ".join(p.split("\n")) for p in text.replace("\r\n", "\n").split("\n\n")]
    elif unit == "file":
        parts = [text]
    else:
        raise ValueError(f"unit must be 'line', 'paragraph' or 'file', not {unit!r}")
    return [p.strip() for p in parts if p.strip()]


def _lang_of_file(path: Path) -> str:
    stem = path.name.split(".", 1)[0]
    try:
        return canonical_lang(stem)
    except UnknownLanguageError as exc:
        raise CorpusFormatError(
            f"Cannot tell the language of {path}: files must be named <lang>.txt with an ISO "
            f"639-1 code or BCP-47 tag (en.txt, zh-Hans.txt, vie_Latn.txt). {exc}"
        ) from exc


def load_text_folder(folder: Path, langs: list[str] | None, split: str, unit: TextUnit) -> Corpus:
    """Load ``<lang>.txt`` files (optionally below ``<folder>/<split>/``).

    Args:
        folder: The folder. When it has a sub-folder named like ``split``, that one is read.
        langs: Languages to load, or ``None`` for every file.
        split: Split name (only used to pick the sub-folder).
        unit: What one text is: a ``"line"``, a blank-line separated ``"paragraph"``, or a whole
            ``"file"``.
    """
    root = folder / split if (folder / split).is_dir() else folder
    files: dict[str, list[Path]] = {}
    for path in sorted(root.glob("*.txt*")):
        files.setdefault(_lang_of_file(path), []).append(path)
    if not files:
        raise EmptyCorpusError(f"No <lang>.txt files in {root}. Add e.g. en.txt, zh.txt, vi.txt.")
    _check_langs(langs, list(files), str(root))
    records = {
        lang: [
            TextRecord(t, origin=p.name) for p in files[lang] for t in _split_units(_read(p), unit)
        ]
        for lang in (langs or list(files))
    }
    return Corpus(records, CorpusInfo(source=str(folder), split=split, description="text files"))


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    for number, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusFormatError(
                f"{path}, line {number}: not valid JSON ({exc.msg}). Each line must be one object "
                'such as {"lang": "en", "text": "..."}.'
            ) from exc
        if not isinstance(row, dict):
            raise CorpusFormatError(
                f"{path}, line {number}: expected a JSON object, got {row!r:.60}."
            )
        yield number, row


def load_jsonl(
    path: Path,
    langs: list[str] | None,
    split: str,
    *,
    lang_field: str = "lang",
    text_field: str = "text",
    key_field: str | None = "key",
) -> Corpus:
    """Load JSON lines with a language and a text field (optionally an alignment key).

    Args:
        path: ``.jsonl`` file (``.gz``/``.xz`` compressed files are read too).
        langs: Languages to keep, or ``None`` for all.
        split: Recorded in the corpus info; a JSONL file is one split.
        lang_field: Field holding the language code (any form :func:`canonical_lang` accepts).
        text_field: Field holding the text.
        key_field: Optional field holding an alignment key.
    """
    records: dict[str, list[TextRecord]] = {}
    for number, row in _iter_jsonl(path):
        for name in (lang_field, text_field):
            if name not in row:
                raise CorpusFormatError(
                    f"{path}, line {number}: no field {name!r} "
                    f"(fields: {', '.join(map(str, row))}). "
                    f"Pass lang_field=/text_field= to name the right ones."
                )
        try:
            lang = canonical_lang(str(row[lang_field]))
        except UnknownLanguageError as exc:
            raise CorpusFormatError(f"{path}, line {number}: {exc}") from exc
        text = str(row[text_field] or "").strip()
        if text:
            key = row.get(key_field) if key_field else None
            origin = row.get("origin")
            records.setdefault(lang, []).append(
                TextRecord(
                    text, None if key is None else str(key), None if origin is None else str(origin)
                )
            )
    if not records:
        raise EmptyCorpusError(f"{path} has no non-empty {text_field!r} values. Check the file.")
    _check_langs(langs, list(records), str(path))
    chosen = langs or list(records)
    return Corpus(
        {lang: records[lang] for lang in chosen},
        CorpusInfo(source=str(path), split=split, description="JSON lines"),
    )


def _check_langs(langs: list[str] | None, available: list[str], source: str) -> None:
    missing = [lang for lang in langs or [] if lang not in available]
    if missing:
        raise MissingLanguageError(
            f"{source} has no text for {', '.join(map(repr, missing))}. "
            f"Available: {', '.join(sorted(available))}."
        )
