"""``load_corpus``: one call for every corpus source crane_lens reads."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from crane_lens.data.corpus import Corpus
from crane_lens.data.languages import canonical_langs
from crane_lens.data.sources.builtin import builtin_langs, load_builtin
from crane_lens.data.sources.files import (
    JSONL_SUFFIXES,
    WHAT_TO_PASS,
    TextUnit,
    load_jsonl,
    load_text_folder,
)
from crane_lens.data.sources.huggingface import load_hf
from crane_lens.errors import CorpusFormatError, UnknownLanguageError

SourceFormat = Literal["auto", "builtin", "text", "jsonl", "hf"]

__all__ = ["builtin_langs", "load_corpus"]


def _is_saved_dataset(path: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    return (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()


def _detect_format(source: str) -> SourceFormat:
    if source == "builtin":
        return "builtin"
    path = Path(source)
    if path.is_file():
        if path.name.endswith(JSONL_SUFFIXES):
            return "jsonl"
        raise CorpusFormatError(
            f"{source} is a file crane_lens cannot read as a corpus: use JSON lines (.jsonl) with "
            "lang/text fields, a folder of <lang>.txt files, or format='hf' with "
            "data_files= for parquet/CSV."
        )
    if path.is_dir():
        if _is_saved_dataset(path):
            return "hf"
        if any(path.glob("*.txt*")) or any(path.glob("*/*.txt*")):
            return "text"
        return "hf"  # a local dataset repository (parquet/JSON files, README configs)
    # Hub ids look like 'name' or 'owner/name'; anything else that names no file is a typo.
    folder_like = source.endswith(("/", os.sep)) or source.startswith((".", "/", "~"))
    if folder_like or source.count("/") > 1 or path.suffix:
        what = "file" if path.suffix and not source.endswith(("/", os.sep)) else "folder"
        raise CorpusFormatError(f"no such {what}: {source} ({WHAT_TO_PASS})")
    return "hf"


def load_corpus(
    source: str | os.PathLike[str] = "builtin",
    langs: str | Iterable[str] | None = None,
    split: str = "train",
    *,
    format: SourceFormat = "auto",
    origins: Iterable[str] | None = None,
    max_texts_per_lang: int | None = None,
    text_field: str = "text",
    lang_field: str | None = None,
    key_field: str | None = None,
    config: str | Mapping[str, str] | None = None,
    unit: TextUnit = "line",
    streaming: bool = False,
    **hf_kwargs: Any,
) -> Corpus:
    """Load multilingual text as a :class:`~crane_lens.data.corpus.Corpus`.

    Args:
        source: ``"builtin"`` (the embedded corpus, default); a folder of ``<lang>.txt`` files;
            a JSON-lines file; or a Hugging Face dataset (hub id, local dataset folder, or a
            builder name such as ``"parquet"`` with ``data_files=``).
        langs: Languages to load (codes in any form :func:`canonical_lang` accepts, or a
            comma-separated string); ``None`` loads every language of the source.
        split: ``"train"`` or ``"eval"`` for the embedded corpus; a folder's split sub-folder
            (``<source>/<split>/<lang>.txt``) or a JSON-lines ``split`` value; the dataset
            split otherwise. A folder, JSON-lines file or saved dataset without an eval split
            offers ``"train"`` and ``"eval"``, the eval part held out deterministically
            (:mod:`crane_lens.data.splits`, 10 % of each language). Other names are refused.
        format: Force the source type instead of detecting it.
        origins: Keep only records of these origins (embedded corpus: ``"libreoffice-help"``,
            ``"libreoffice-ui"``, ``"udhr"``).
        max_texts_per_lang: Keep at most this many texts per language (the first ones).
        text_field: Text column/field (JSONL and datasets).
        lang_field: Language column/field (JSONL default ``"lang"``; datasets with one config).
        key_field: Alignment-key column/field (JSONL default ``"key"``; FLORES+: ``"id"``).
        config: Dataset configuration: per-language template (``"{flores}"``,
            ``"20231101.{lang}"``) or mapping, or one config name.
        unit: For text files: one text per ``"line"``, per blank-line ``"paragraph"``, or per
            ``"file"``.
        streaming: Stream a dataset (with ``max_texts_per_lang``) instead of downloading it.
        **hf_kwargs: Passed to ``datasets.load_dataset`` (``data_files=``, ``revision=``...).

    Returns:
        The corpus, languages in the requested order.

    Raises:
        UnknownLanguageError: A code that is no language (the message lists known ones).
        MissingLanguageError: A language the source lacks (the message lists available ones).
        EmptyCorpusError: A language or source with no non-empty text.
        CorpusFormatError: A file or dataset that cannot be read as configured, a path that
            does not exist, or a split the source does not have.

    Example:
        >>> import crane_lens as cl
        >>> corpus = cl.load_corpus("builtin", langs="en,zh-Hans,vi", split="eval")
        >>> corpus.langs
        ['en', 'zh', 'vi']
    """
    source = os.fspath(source)
    kind = _detect_format(source) if format == "auto" else format
    try:
        wanted = None if langs is None else canonical_langs(langs)
    except UnknownLanguageError as exc:
        if kind != "builtin":
            raise
        raise UnknownLanguageError(
            f"{exc} The built-in corpus has: {', '.join(builtin_langs())}."
        ) from None
    if kind == "builtin":
        corpus = load_builtin(wanted, split)
    elif kind == "text":
        corpus = load_text_folder(source, wanted, split, unit)
    elif kind == "jsonl":
        corpus = load_jsonl(
            source,
            wanted,
            split,
            lang_field=lang_field or "lang",
            text_field=text_field,
            key_field=key_field or "key",
        )
    elif kind == "hf":
        corpus = load_hf(
            source,
            wanted,
            split,
            config=config,
            lang_field=lang_field,
            text_field=text_field,
            key_field=key_field,
            max_texts_per_lang=max_texts_per_lang,
            streaming=streaming,
            from_disk=_is_saved_dataset(Path(source)),
            **hf_kwargs,
        )
    else:
        raise CorpusFormatError(
            f"format must be one of auto, builtin, text, jsonl, hf; not {format!r}."
        )
    if origins is not None:
        corpus = corpus.select(origins=origins)
    if max_texts_per_lang is not None:
        truncated = {lang: rows[:max_texts_per_lang] for lang, rows in corpus.records.items()}
        corpus = Corpus(truncated, replace(corpus.info, volumes={}))
    return corpus
