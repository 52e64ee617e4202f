"""Corpora from Hugging Face ``datasets``: hub datasets, local dataset folders, parquet/JSON files.

Two layouts cover the multilingual corpora people use:

* one configuration per language (FLORES+ ``"{flores}"`` → ``vie_Latn``; Wikipedia
  ``"20231101.{lang}"``): pass a ``config`` template and the languages;
* one dataset with a language column (``lang_field``) and a text column.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from crane_lens.data.corpus import Corpus, CorpusInfo, TextRecord
from crane_lens.data.languages import LANGUAGES, canonical_lang
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


def _config_for(template: str | Mapping[str, str], lang: str) -> str:
    if isinstance(template, Mapping):
        if lang not in template:
            raise MissingLanguageError(
                f"No configuration given for {lang!r}; the config mapping covers "
                f"{', '.join(sorted(template))}."
            )
        return template[lang]
    info = LANGUAGES[lang]
    return template.format(lang=lang, iso3=info.iso639_3, script=info.script, flores=info.flores)


def _load(
    name: str,
    config: str | None,
    split: str,
    streaming: bool,
    from_disk: bool,
    kwargs: dict[str, Any],
) -> tuple[Any, bool]:
    """The dataset's split, and whether it is a saved dataset without splits (all its text)."""
    import datasets

    try:
        if from_disk:
            dataset = datasets.load_from_disk(name)
            if isinstance(dataset, datasets.DatasetDict):
                check_split(split, list(dataset), name)
                return dataset[split], False
            check_split(split, HELD_OUT_SPLITS, name)
            return dataset, True
        return datasets.load_dataset(
            name, config, split=split, streaming=streaming, **kwargs
        ), False
    except CorpusFormatError:
        raise
    except (OSError, ValueError, KeyError) as exc:  # OSError covers not-found and no network
        where = f"{name!r}" + (f" (config {config!r})" if config else "")
        local = "" if Path(name).exists() else f" There is no local file or folder {name} either."
        raise CorpusFormatError(
            f"Cannot load the dataset {where}, split {split!r}: {str(exc).rstrip('.')}. "
            "Check the name, the config/split, and that the data is local or the hub is "
            "reachable (without a hub, download the dataset elsewhere and pass its local folder)."
            + local
        ) from exc


def _columns(dataset: Any) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is None and getattr(dataset, "features", None) is not None:
        names = list(dataset.features)
    return list(names or [])


def _require_fields(dataset: Any, fields: Iterable[str | None], where: str) -> None:
    columns = _columns(dataset)
    for name in fields:
        if name is not None and columns and name not in columns:
            raise CorpusFormatError(
                f"{where} has no field {name!r}; its fields are {', '.join(columns)}. "
                "Name the right one with text_field=, lang_field= or key_field=."
            )


def _records(
    rows: Iterable[Mapping[str, Any]], text_field: str, key_field: str | None, limit: int | None
) -> list[TextRecord]:
    out: list[TextRecord] = []
    for row in rows:
        text = str(row[text_field] or "").strip()
        if text:
            key = row.get(key_field) if key_field else None
            out.append(TextRecord(text, None if key is None else str(key)))
            if limit is not None and len(out) >= limit:
                break
    return out


def load_hf(
    name: str,
    langs: list[str] | None,
    split: str,
    *,
    config: str | Mapping[str, str] | None = None,
    lang_field: str | None = None,
    text_field: str = "text",
    key_field: str | None = None,
    max_texts_per_lang: int | None = None,
    streaming: bool = False,
    from_disk: bool = False,
    **load_kwargs: Any,
) -> Corpus:
    """Load a corpus through ``datasets``.

    Args:
        name: Hub id, local dataset folder, or builder name (``"parquet"``, ``"json"`` with
            ``data_files=``).
        langs: Languages to load. Required with a per-language ``config``.
        split: Dataset split.
        config: Per-language configuration: a template with ``{lang}``, ``{iso3}``, ``{script}``
            or ``{flores}`` placeholders, or a mapping language → config name. A plain string
            without placeholders names the one configuration of a ``lang_field`` dataset.
        lang_field: Column with the language of each row (single-configuration datasets).
        text_field: Column with the text.
        key_field: Optional column with an alignment key (FLORES+: ``"id"``).
        max_texts_per_lang: Stop after this many non-empty texts per language (use with
            ``streaming=True`` for very large corpora such as Wikipedia).
        streaming: Stream instead of downloading the whole split.
        from_disk: ``name`` is a folder written by ``Dataset.save_to_disk``.
        **load_kwargs: Passed to ``datasets.load_dataset`` (``data_files=``, ``revision=``...).
    """
    per_language = isinstance(config, Mapping) or (isinstance(config, str) and "{" in config)
    records: dict[str, list[TextRecord]] = {}
    if per_language:
        assert config is not None
        if not langs:
            raise CorpusFormatError(
                f"A per-language config ({config!r}) needs the languages: "
                "pass langs=['en', 'zh', ...]."
            )
        for lang in langs:
            cfg = _config_for(config, lang)
            dataset, _ = _load(name, cfg, split, streaming, False, load_kwargs)
            _require_fields(dataset, [text_field, key_field], f"Dataset {name!r} (config {cfg!r})")
            records[lang] = _records(dataset, text_field, key_field, max_texts_per_lang)
    else:
        if lang_field is None:
            local = "" if "/" in name else f" (there is no local folder or file {name!r} either)"
            raise CorpusFormatError(
                f"Hugging Face dataset {name!r}{local}: say how languages are told apart, either "
                "lang_field='lang' (a column of language codes) or config='<template with {lang} "
                "or {flores}>'."
            )
        single_config = config if isinstance(config, str) else None
        dataset, whole = _load(name, single_config, split, streaming, from_disk, load_kwargs)
        if whole:  # the held-out split must not depend on how much was read
            max_texts_per_lang = None
        _require_fields(dataset, [lang_field, text_field, key_field], f"Dataset {name!r}")
        wanted = set(langs) if langs else None
        unknown: set[str] = set()
        for row in dataset:
            code = str(row[lang_field])
            try:
                lang = canonical_lang(code)
            except UnknownLanguageError:
                unknown.add(code)
                continue
            if wanted is not None and lang not in wanted:
                continue
            bucket = records.setdefault(lang, [])
            if max_texts_per_lang is None or len(bucket) < max_texts_per_lang:
                bucket.extend(_records([row], text_field, key_field, None))
            elif wanted is not None and all(
                len(records.get(x, [])) >= max_texts_per_lang for x in wanted
            ):
                break  # every requested language is full: stop reading (a stream may be huge)
        if unknown:
            log.warning("skipped rows with unknown language codes: %s", ", ".join(sorted(unknown)))
        if not records:
            raise EmptyCorpusError(f"Dataset {name!r} split {split!r} has no rows with text.")
        missing = [lang for lang in langs or [] if lang not in records]
        if missing:
            raise MissingLanguageError(
                f"Dataset {name!r} has no rows for {', '.join(map(repr, missing))}. "
                f"Available: {', '.join(sorted(records))}."
            )
        records = {lang: records[lang] for lang in (langs or sorted(records))}
        if whole:
            parts = hold_out(records, name, unit="row")
            description = f"saved dataset, {HELD_OUT_FRACTION:.0%} held out as eval"
            return Corpus(
                parts[split], CorpusInfo(name, split, description, volumes=volumes(parts))
            )
    return Corpus(records, CorpusInfo(source=name, split=split, description="Hugging Face dataset"))
