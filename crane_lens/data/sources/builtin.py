"""The embedded corpus shipped inside the package (built by ``scripts/build_corpus.py``)."""

from __future__ import annotations

import json
import lzma
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from crane_lens.data.corpus import Corpus, CorpusInfo, TextRecord
from crane_lens.data.splits import check_split
from crane_lens.errors import CorpusFormatError, MissingLanguageError

BUILTIN_SPLITS = ("train", "eval")


def builtin_dir() -> Path:
    """Folder of the embedded corpus files inside the installed package."""
    return Path(str(resources.files("crane_lens.data") / "builtin"))


@cache
def builtin_provenance() -> dict[str, Any]:
    """The embedded corpus' ``PROVENANCE.json`` (sources, volumes, sha256 of every file)."""
    path = builtin_dir() / "PROVENANCE.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise CorpusFormatError(
            f"The embedded corpus is missing or damaged ({path}: {exc}). Reinstall crane_lens, "
            "or rebuild it with `python scripts/build_corpus.py`."
        ) from exc


def builtin_langs() -> list[str]:
    """Languages of the embedded corpus."""
    return list(builtin_provenance()["languages"])


def _read_split(split: str, lang: str) -> list[TextRecord]:
    path = builtin_dir() / split / f"{lang}.jsonl.xz"
    records = []
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            records.append(TextRecord(row["text"], row.get("key"), row.get("origin")))
    return records


def load_builtin(langs: list[str] | None, split: str) -> Corpus:
    """Load the embedded corpus.

    Args:
        langs: Canonical language codes, or ``None`` for all.
        split: ``"train"`` or ``"eval"``.
    """
    provenance = builtin_provenance()
    check_split(split, BUILTIN_SPLITS, "The built-in corpus")
    available = builtin_langs()
    chosen = available if langs is None else langs
    missing = [lang for lang in chosen if lang not in available]
    if missing:
        raise MissingLanguageError(
            f"The built-in corpus has no {', '.join(map(repr, missing))}. "
            f"Available: {', '.join(available)}. Bring your own text for other languages "
            "(a folder of <lang>.txt files, a JSONL file or a Hugging Face dataset)."
        )
    return Corpus(
        {lang: _read_split(split, lang) for lang in chosen},
        CorpusInfo(
            source="builtin",
            split=split,
            description=str(provenance.get("description", "")),
            licence=provenance.get("licence"),
            volumes={s: dict(provenance["counts"][s]) for s in BUILTIN_SPLITS},
        ),
    )
