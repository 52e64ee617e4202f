"""Corpora from local files: a folder of ``<lang>.txt`` files, or JSON lines."""

from __future__ import annotations

import gzip
import json
import logging
import lzma
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

from crane_lens.data.corpus import Corpus, CorpusInfo, TextRecord
from crane_lens.data.languages import canonical_lang
from crane_lens.data.splits import (
    HELD_OUT_FRACTION,
    HELD_OUT_SPLITS,
    check_split,
    hold_out,
    volumes,
)
from crane_lens.errors import (
    CorpusFormatError,
    EmptyCorpusError,
    MissingLanguageError,
    UnknownLanguageError,
)

log = logging.getLogger(__name__)

TextUnit = Literal["line", "paragraph", "file"]
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.xz", ".ndjson")
WHAT_TO_PASS = (
    "pass 'builtin', a folder of <lang>.txt files, a .jsonl file, or a Hugging Face dataset "
    "id such as 'openlanguagedata/flores_plus'"
)


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


def _has_text_files(folder: Path) -> bool:
    return any(folder.glob("*.txt*"))


def _text_layout(name: str) -> tuple[dict[str, Path], Path | None]:
    """The explicit split folders, or the one folder to hold eval text out of.

    Returns ``({split: folder}, None)`` for ``<folder>/<split>/<lang>.txt`` with an ``eval``
    split (or any splits other than ``train`` alone), ``({}, root)`` otherwise.
    """
    folder = Path(name)
    if not folder.is_dir():
        raise CorpusFormatError(f"no such folder: {name} ({WHAT_TO_PASS})")
    subfolders = {d.name: d for d in sorted(folder.iterdir()) if d.is_dir() and _has_text_files(d)}
    top = _has_text_files(folder)
    if top and subfolders:
        raise CorpusFormatError(
            f"{name} has both <lang>.txt files and split folders "
            f"({', '.join(f'{name}/' for name in subfolders)}): move the top-level files into "
            "train/ (and held-out text into eval/), or remove the split folders."
        )
    if set(subfolders) == {"train"}:
        return {}, subfolders["train"]
    if subfolders:
        return subfolders, None
    if top:
        return {}, folder
    raise EmptyCorpusError(
        f"No <lang>.txt files in {name}. Add e.g. en.txt, zh.txt, vi.txt (or train/ and "
        "eval/ sub-folders of them)."
    )


def _read_lang_files(
    root: Path, langs: list[str] | None, unit: TextUnit, where: str, shown: str
) -> dict[str, list[TextRecord]]:
    files: dict[str, list[Path]] = {}
    for path in sorted(root.glob("*.txt*")):
        files.setdefault(_lang_of_file(path), []).append(path)
    _check_langs(langs, list(files), shown)
    records = {}
    for lang in langs or list(files):
        rows = [
            TextRecord(t, origin=p.name) for p in files[lang] for t in _split_units(_read(p), unit)
        ]
        if not rows:
            names = ", ".join(str(p) for p in files[lang])
            raise EmptyCorpusError(
                f"{names}{where} has no text for {lang!r} (only blank lines). Add text, remove "
                f"the file, or leave {lang!r} out of langs."
            )
        records[lang] = rows
    return records


def load_text_folder(
    folder: str | os.PathLike[str], langs: list[str] | None, split: str, unit: TextUnit
) -> Corpus:
    """Load ``<lang>.txt`` files, from ``<folder>/<split>/`` when the folder has split folders.

    Without an ``eval`` folder (``<folder>/<lang>.txt``, or ``<folder>/train/<lang>.txt`` alone)
    the splits are ``train`` and ``eval``, the latter held out of the text as
    :func:`~crane_lens.data.splits.hold_out` describes.

    Args:
        folder: The folder.
        langs: Languages to load, or ``None`` for every file.
        split: Split name: a sub-folder's name, or ``"train"``/``"eval"`` without sub-folders.
        unit: What one text is: a ``"line"``, a blank-line separated ``"paragraph"``, or a whole
            ``"file"``.

    Raises:
        CorpusFormatError: No such folder, or a split the folder does not have.
        EmptyCorpusError: No ``<lang>.txt`` files, a language with no text, or too little text
            to hold out an eval part.
    """
    name = os.fspath(folder)  # as the user wrote it, for messages
    explicit, root = _text_layout(name)
    if root is None:
        check_split(split, explicit, name)
        shown = str(explicit[split])
        records = _read_lang_files(explicit[split], langs, unit, f" (split {split!r})", shown)
        return Corpus(records, CorpusInfo(name, split, description="text files"))
    check_split(split, HELD_OUT_SPLITS, name)
    shown = name if root == Path(name) else str(root)
    parts = hold_out(_read_lang_files(root, langs, unit, "", shown), name, unit=unit)
    description = f"text files, {HELD_OUT_FRACTION:.0%} held out as eval"
    return Corpus(parts[split], CorpusInfo(name, split, description, volumes=volumes(parts)))


def _iter_jsonl(path: Path, name: str) -> Iterator[tuple[int, dict[str, object]]]:
    for number, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusFormatError(
                f"{name}, line {number}: not valid JSON ({exc.msg}). Each line must be one object "
                'such as {"lang": "en", "text": "..."}.'
            ) from exc
        if not isinstance(row, dict):
            raise CorpusFormatError(
                f"{name}, line {number}: expected a JSON object, got {row!r:.60}."
            )
        yield number, row


def load_jsonl(
    path: str | os.PathLike[str],
    langs: list[str] | None,
    split: str,
    *,
    lang_field: str = "lang",
    text_field: str = "text",
    key_field: str | None = "key",
) -> Corpus:
    """Load JSON lines with a language and a text field (optionally a key, origin and split).

    Rows with a ``"split"`` field are that split's rows (``Corpus.save`` writes one); a file
    whose rows have none is one body of text, split into ``train`` and a held-out ``eval`` as
    :func:`~crane_lens.data.splits.hold_out` describes.

    Args:
        path: ``.jsonl`` file (``.gz``/``.xz`` compressed files are read too).
        langs: Languages to keep, or ``None`` for all.
        split: The split to load.
        lang_field: Field holding the language code (any form :func:`canonical_lang` accepts).
        text_field: Field holding the text.
        key_field: Optional field holding an alignment key.
    """
    name = os.fspath(path)  # as the user wrote it, for messages
    by_split: dict[str | None, dict[str, list[TextRecord]]] = {}
    for number, row in _iter_jsonl(Path(path), name):
        for field in (lang_field, text_field):
            if field not in row:
                raise CorpusFormatError(
                    f"{name}, line {number}: no field {field!r} "
                    f"(fields: {', '.join(map(str, row))}). "
                    f"Pass lang_field=/text_field= to name the right ones."
                )
        try:
            lang = canonical_lang(str(row[lang_field]))
        except UnknownLanguageError as exc:
            raise CorpusFormatError(f"{name}, line {number}: {exc}") from exc
        row_split = None if row.get("split") is None else str(row["split"])
        if by_split and (row_split is None) != (None in by_split):
            raise CorpusFormatError(
                f"{name}, line {number}: some rows have a 'split' field and some do not; give "
                "every row one, or none (then 10 % of each language is held out as eval)."
            )
        text = str(row[text_field] or "").strip()
        records = by_split.setdefault(row_split, {})
        if text:
            key = row.get(key_field) if key_field else None
            origin = row.get("origin")
            records.setdefault(lang, []).append(
                TextRecord(
                    text, None if key is None else str(key), None if origin is None else str(origin)
                )
            )
    if not any(by_split.values()):
        raise EmptyCorpusError(f"{name} has no non-empty {text_field!r} values. Check the file.")
    if None in by_split:
        check_split(split, HELD_OUT_SPLITS, name)
        _check_langs(langs, list(by_split[None]), name)
        chosen = {lang: by_split[None][lang] for lang in langs or list(by_split[None])}
        parts = hold_out(chosen, name, unit="row")
        info = CorpusInfo(
            name, split, f"JSON lines, {HELD_OUT_FRACTION:.0%} held out as eval",
            volumes=volumes(parts),
        )  # fmt: skip
        return Corpus(parts[split], info)
    check_split(split, [str(name) for name in by_split], name)
    records = by_split[split]
    _check_langs(langs, list(records), f"{name} (split {split!r})")
    chosen = {lang: records[lang] for lang in langs or list(records)}
    return Corpus(chosen, CorpusInfo(source=name, split=split, description="JSON lines"))


def _check_langs(langs: list[str] | None, available: list[str], source: str) -> None:
    missing = [lang for lang in langs or [] if lang not in available]
    if missing:
        raise MissingLanguageError(
            f"{source} has no text for {', '.join(map(repr, missing))}. "
            f"Available: {', '.join(sorted(available))}."
        )
