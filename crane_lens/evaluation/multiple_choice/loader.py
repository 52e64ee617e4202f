"""Users' own multiple-choice sets through ``datasets``."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crane_lens.data.languages import canonical_lang, canonical_langs
from crane_lens.errors import (
    CorpusFormatError,
    MissingLanguageError,
    UnknownLanguageError,
)
from crane_lens.evaluation.multiple_choice.sets import FORMAT, MultipleChoiceItem, MultipleChoiceSet

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


AnswerFormat = Literal["auto", "index", "letter", "text"]

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv",
                  ".tsv": "csv"}  # fmt: skip
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")
_SAVED_DATASET_FILES = ("dataset_info.json", "dataset_dict.json")  # Dataset.save_to_disk


def _file_builder(source: str) -> str | None:
    name = source.lower()
    for suffix in _COMPRESSION:
        name = name.removesuffix(suffix)
    return _FILE_BUILDERS.get(Path(name).suffix)


def _is_saved_set(path: Path) -> bool:
    """A JSON file written by :meth:`MultipleChoiceSet.save` (its ``format`` comes first)."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    with path.open(encoding="utf-8", errors="replace") as f:
        return FORMAT in f.read(200)


def _load_rows(source: str, split: str, kwargs: dict[str, Any]) -> Any:
    import datasets

    path = Path(source).expanduser()
    builder = _file_builder(source) if path.is_file() else None
    if builder is None and _file_builder(source) is not None and not path.exists():
        raise CorpusFormatError(f"No such file: {source}.")
    if builder is not None:
        kwargs = {**kwargs, "data_files": {split: str(path)}}
        if path.name.lower().removesuffix(".gz").endswith(".tsv"):
            kwargs.setdefault("sep", "\t")
        name = builder
    else:
        name = source
        files = kwargs.get("data_files")
        if files is not None and not isinstance(files, Mapping):
            kwargs = {**kwargs, "data_files": {split: files}}  # so that split= names them
    if builder is not None and path.stat().st_size == 0:
        raise CorpusFormatError(f"{source} is empty; it should hold one question per row.")
    # StopIteration: what `datasets` lets escape on a JSON file without records.
    errors: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, StopIteration)
    errors += (getattr(getattr(datasets, "exceptions", None), "DatasetGenerationError", OSError),)
    saved = path.is_dir() and any((path / f).exists() for f in _SAVED_DATASET_FILES)
    try:
        if saved:
            loaded = datasets.load_from_disk(str(path))
            return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        return datasets.load_dataset(name, split=split, **kwargs)
    except errors as exc:
        raise CorpusFormatError(
            f"Cannot load the multiple-choice data {source!r}, split {split!r}: "
            f"{str(exc).rstrip('.')}. Check the path or name and the split; without a hub, "
            "pass a local .jsonl/.json/.parquet/.csv file or a dataset folder."
        ) from exc


def _answer_index(value: Any, choices: list[str], answer_format: AnswerFormat) -> int:
    """0-based index of the right choice from an int, a digit string, a letter or the text."""
    n = len(choices)
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # numpy scalars
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or value is None:
        raise ValueError(f"answer {value!r} is not an index, a letter or a choice's text")
    readings: dict[str, int] = {}
    if isinstance(value, int):
        if answer_format in ("auto", "index"):
            readings["index"] = value
    elif isinstance(value, str):
        text = value.strip()
        if answer_format in ("auto", "index") and text.isdigit():
            readings["index"] = int(text)
        if answer_format in ("auto", "letter") and len(text) == 1 and text in _LETTERS:
            readings["letter"] = _LETTERS.index(text)
        if answer_format in ("auto", "text"):
            matches = [i for i, c in enumerate(choices) if c.strip() == text]
            if len(matches) > 1:
                raise ValueError(f"answer {value!r} matches several choices {choices!r}")
            if matches:
                readings["text"] = matches[0]
    if not readings:
        expected = {
            "auto": "an index 0..{n1}, a letter A..{last}, or one choice's exact text",
            "index": "an index 0..{n1}", "letter": "a letter A..{last}",
            "text": "one choice's exact text",
        }[answer_format].format(n1=n - 1, last=_LETTERS[min(n, 26) - 1])  # fmt: skip
        raise ValueError(f"answer {value!r} is not {expected} (choices: {choices!r})")
    if len(set(readings.values())) > 1:
        raise ValueError(
            f"answer {value!r} is ambiguous: "
            + ", ".join(f"as {how} it is choice {i}" for how, i in readings.items())
            + "; pass answer_format='index', 'letter' or 'text'"
        )
    index = next(iter(readings.values()))
    if not 0 <= index < n:
        raise ValueError(f"answer {value!r} is out of range for {n} choices (0-based indices)")
    return index


def _choices_of(row: Mapping[str, Any], choices_field: str | Sequence[str]) -> list[str]:
    if isinstance(choices_field, str):
        value = row[choices_field]
        if isinstance(value, str):  # a JSON list, as CSV files hold lists
            try:
                value = json.loads(value)
            except ValueError:
                value = None
            if not isinstance(value, list):
                raise ValueError(
                    f"field {choices_field!r} holds a string that is not a JSON list; give "
                    "one column per choice with choices_field=['A', 'B', 'C', 'D']"
                )
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"field {choices_field!r} must hold a list, not {value!r}")
        values = list(value)
    else:
        values = [row[name] for name in choices_field]
        while values and (values[-1] is None or values[-1] == ""):
            values.pop()  # fewer choices in this row than columns
    return ["" if v is None else str(v) for v in values]


def load_multiple_choice(
    source: str | os.PathLike[str],
    *,
    langs: str | Iterable[str] | None = None,
    lang: str | None = None,
    lang_field: str = "lang",
    question_field: str = "question",
    choices_field: str | Sequence[str] = "choices",
    answer_field: str = "answer",
    key_field: str | None = None,
    answer_format: AnswerFormat = "auto",
    choice_prefix: str = " ",
    split: str = "test",
    config: str | None = None,
    set_name: str | None = None,
    **dataset_kwargs: Any,
) -> MultipleChoiceSet:
    """Load a multiple-choice set from a file or a Hugging Face dataset.

    Args:
        source: A local ``.jsonl``/``.json``/``.parquet``/``.csv``/``.tsv`` file (optionally
            compressed; read with the matching ``datasets`` builder, ``split`` then only names
            it), a file written by :meth:`MultipleChoiceSet.save`, a folder written by
            ``Dataset.save_to_disk``, a hub id, or a builder name (``"json"``) with
            ``data_files=``.
        langs: Keep only these languages (per-row languages).
        lang: The language of every row; then ``lang_field`` is not read.
        lang_field: Column with each row's language code (any form :func:`canonical_lang`
            accepts); rows with unknown codes are skipped with a warning.
        question_field: Column with the question (context).
        choices_field: Column with the list of choices (a JSON list in CSV files), or several
            columns, one per choice (``["A", "B", "C", "D"]``; trailing empty ones dropped).
        answer_field: Column with the right answer: a 0-based index (int or digit string), a
            letter ``"A"``, ``"B"``... or the exact text of the right choice.
        key_field: Optional column with an item identifier (e.g. shared by translations).
        answer_format: ``"auto"`` (any of the above; an answer that reads differently as a
            letter and as a text is an error) or ``"index"``, ``"letter"``, ``"text"``.
        choice_prefix: Prepended to every choice that does not start with whitespace: the
            separator between question and answer (``"Answer:" + " Paris"``); pass ``""`` for
            languages written without spaces.
        split: Dataset split.
        config: Dataset configuration (``datasets.load_dataset``'s ``name``), e.g. a subject.
        set_name: Name of the set (default: the file name or dataset id).
        **dataset_kwargs: Passed to ``datasets.load_dataset`` (``data_files=``, ``revision=``...).

    Raises:
        CorpusFormatError: Unreadable source, a missing field, a row with fewer than 2 choices,
            a blank choice, an unreadable or out-of-range answer, or no items at all.
        UnknownLanguageError: ``lang`` is not a known language.
        MissingLanguageError: A language of ``langs`` has no rows.

    Example:
        >>> import json, tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "capitals.jsonl"
        >>> _ = path.write_text(json.dumps({"question": "The capital of France is",
        ...     "choices": ["Paris", "Rome"], "answer": "A"}) + "\\n")
        >>> mc = load_multiple_choice(path, lang="en")
        >>> mc["en"][0].choices, mc["en"][0].answer
        ([' Paris', ' Rome'], 0)
    """
    source = os.fspath(source)
    if _is_saved_set(Path(source).expanduser()):
        loaded = MultipleChoiceSet.load(Path(source).expanduser())
        return loaded if langs is None else loaded.select(langs)
    fixed = None if lang is None else canonical_lang(lang)
    wanted = None if langs is None else canonical_langs(langs)
    kwargs = dict(dataset_kwargs) if config is None else {**dataset_kwargs, "name": config}
    dataset = _load_rows(source, split, kwargs)
    columns = list(getattr(dataset, "column_names", None) or [])
    needed = [question_field, answer_field]
    needed += [choices_field] if isinstance(choices_field, str) else list(choices_field)
    needed += [] if fixed is not None else [lang_field]
    needed += [] if key_field is None else [key_field]
    missing = [f for f in needed if f not in columns]
    if missing:
        hint = " or give every row's language with lang='en'" if lang_field in missing else ""
        raise CorpusFormatError(
            f"{source!r} (split {split!r}) has no field {', '.join(map(repr, missing))}; its "
            f"fields are {', '.join(columns)}. Name the right ones with question_field=, "
            f"choices_field=, answer_field=, lang_field={hint}."
        )
    items: dict[str, list[MultipleChoiceItem]] = {}
    unknown: Counter[str] = Counter()
    present: set[str] = set()  # languages of the rows, wanted or not
    duplicates = 0
    for number, row in enumerate(dataset):
        if fixed is not None:
            code = fixed
        else:
            try:
                code = canonical_lang(str(row[lang_field]))
            except UnknownLanguageError:
                unknown[str(row[lang_field])] += 1
                continue
        present.add(code)
        if wanted is not None and code not in wanted:
            continue
        try:
            raw = _choices_of(row, choices_field)
            answer = _answer_index(row[answer_field], raw, answer_format)
            choices = [c if c[:1].isspace() else choice_prefix + c for c in raw]
            question = row[question_field]
            item = MultipleChoiceItem(
                "" if question is None else str(question),
                choices,
                answer,
                None if key_field is None or row[key_field] is None else str(row[key_field]),
            )
        except ValueError as exc:
            raise CorpusFormatError(
                f"{source!r}, row {number}: {str(exc).rstrip('.')}. Fix or drop the row."
            ) from exc
        duplicates += len(set(raw)) < len(raw)
        items.setdefault(code, []).append(item)
    if unknown:
        log.warning(
            "skipped rows with unknown language codes: %s",
            ", ".join(f"{code!r} ({n})" for code, n in unknown.most_common()),
        )
    if duplicates:
        log.warning("%d items of %r have two identical choices.", duplicates, source)
    absent = [x for x in wanted or [] if x not in items]
    if absent and present:
        raise MissingLanguageError(
            f"{source!r} has no rows in {', '.join(map(repr, absent))}; it has "
            f"{', '.join(sorted(present))}."
        )
    if not items:
        raise CorpusFormatError(
            f"{source!r} (split {split!r}) has no usable rows. Check the split, the "
            "lang/lang_field settings (unknown language codes are skipped) and the content."
        )
    order = wanted or list(items)
    meta = {"source": source, "split": split, "config": config, "choice_prefix": choice_prefix}
    return MultipleChoiceSet(
        {x: items[x] for x in order}, set_name or Path(source).name or source, meta
    )
