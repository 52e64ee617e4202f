"""Checks of a run's settings against this machine, before any model or corpus work.

:meth:`RunConfig.validate <crane_lens.runs.RunConfig.validate>` runs the first two (the model
and the corpus's languages), :func:`crane_lens.pipeline.run` all of them: each refuses bad input
with a message that says what to do, loading no model weights.

* :func:`check_model_source` — the model is a built-in or installed name, a folder, or a hub id.
* :func:`check_langs` (with :func:`corpus_langs`) — the corpus has text for every language.
* :func:`check_enough_text` — every language has one block of ``seq_len`` tokens per split.
* :func:`check_output` — the run folder can be created or written.
"""

from __future__ import annotations

import difflib
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crane_lens.errors import (
    CraneLensError,
    MissingLanguageError,
    ModelLoadError,
    OutputExistsError,
)

if TYPE_CHECKING:
    from crane_lens.runs.config import RunConfig

log = logging.getLogger(__name__)


def corpus_langs(source: str) -> list[str] | None:
    """The languages of a corpus source, read without loading or tokenising its text.

    The built-in corpus's list, or the file names of a folder of ``<lang>.txt`` files (its
    ``train``/``eval`` sub-folders included); ``None`` where only loading tells (JSON lines,
    Hugging Face datasets).

    Raises:
        CorpusFormatError: ``source`` looks like a path that does not exist, or a file name
            is no language tag.

    Example:
        >>> {"en", "zh", "vi"} <= set(corpus_langs("builtin"))
        True
    """
    from crane_lens.data.sources import _detect_format, builtin_langs
    from crane_lens.data.sources.files import _lang_of_file

    kind = _detect_format(source)
    if kind == "builtin":
        return builtin_langs()
    if kind != "text":
        return None
    root = Path(source)
    files = [p for folder in (root, root / "train", root / "eval") for p in folder.glob("*.txt*")]
    return list(dict.fromkeys(_lang_of_file(p) for p in sorted(files)))


def check_langs(langs: list[str], corpus: str) -> None:
    """Refuse a language tag crane_lens does not know, or one the corpus ``corpus`` has no text
    for (where its languages are known without loading it: :func:`corpus_langs`).

    ``langs`` are compared in their canonical spelling (``"en"``, not ``"eng"``), as
    :class:`~crane_lens.runs.RunConfig` keeps them.

    Raises:
        UnknownLanguageError: A tag that is no known language; the message names the
            accepted forms.
        MissingLanguageError: The corpus has no text for some of ``langs``.

    Example:
        >>> check_langs(["en", "vi"], "builtin")
        >>> check_langs(["en", "tlh"], "builtin")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        crane_lens.errors.MissingLanguageError: The corpus 'builtin' has no text for 'tlh'; ...
    """
    from crane_lens.data import canonical_lang

    for lang in langs:
        canonical_lang(lang)  # UnknownLanguageError names the accepted forms
    available = corpus_langs(corpus)
    missing = [lang for lang in langs if available is not None and lang not in available]
    if missing:
        raise MissingLanguageError(
            f"The corpus {corpus!r} has no text for {', '.join(map(repr, missing))}; it has "
            f"{', '.join(available or [])}. Choose --langs among them (or 'all')."
        )


def _load_tokenizer(model: str) -> Any:
    """The tokenizer :func:`crane_lens.load_model` gives the model, without its weights: the
    same files, the same BOS/EOS set-up (TransformerLens's ``setup_tokenizer``)."""
    from transformer_lens.model_bridge.sources.transformers import setup_tokenizer
    from transformers import AutoTokenizer

    from crane_lens.model.loader import _resolve_source

    target, _ = _resolve_source(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(target, add_bos_token=True)
    except ValueError:  # no BOS to add (as the bridge does: load it as it is)
        tokenizer = AutoTokenizer.from_pretrained(target)
    return setup_tokenizer(tokenizer)


def check_enough_text(config: RunConfig, splits: dict[str, Any]) -> None:
    """Refuse a corpus split with less text for a language than one block of ``seq_len``.

    Both statistics passes (``train``, and ``eval`` for the held-out relevance) cut each
    language's texts into blocks of ``seq_len`` tokens as :func:`make_token_blocks` does, and
    keep whole blocks only; the ablation matrices read the eval text as a stream of
    ``eval_seq_len`` blocks and keep a last partial one, so they need no more. Counted with the
    model's tokenizer alone (no weights), and only up to one block per language and split: a
    large corpus costs a few small tokenizer calls. A tokenizer that cannot be loaded here is
    left to :func:`crane_lens.load_model` to report.

    Args:
        config: The run's settings (``model``, ``langs``, ``seq_len``, ``seed`` and ``corpus``,
            named in the message, are read).
        splits: The loaded corpora by split name, e.g. ``{"train": train, "eval": held_out}``.

    Raises:
        EmptyCorpusError: Some language has less than one block of text in a split.

    Example:
        >>> from crane_lens.data import load_corpus
        >>> from crane_lens.runs import RunConfig
        >>> config = RunConfig(langs=["en"], seq_len=16)
        >>> check_enough_text(config, {"eval": load_corpus("builtin", langs=["en"], split="eval")})
    """
    from crane_lens.data.tokens import block_stream_length
    from crane_lens.errors import EmptyCorpusError

    try:
        tokenizer = _load_tokenizer(config.model)
    except Exception as exc:  # any failure here is load_model's to report, with its message
        log.debug("no early corpus size check: the tokenizer did not load (%s)", exc)
        return
    needed = config.seq_len - 1  # every block is BOS + seq_len - 1 stream tokens
    short = []
    for split, corpus in splits.items():
        for lang in config.langs:
            found = block_stream_length(corpus, tokenizer, lang, seed=config.seed, up_to=needed)
            if found < needed:
                short.append((split, lang, found))
    if not short:
        return
    where = "; ".join(f"{lang!r} has {n} tokens in split {split!r}" for split, lang, n in short)
    fits = min(found for *_, found in short) + 1
    raise EmptyCorpusError(
        f"The corpus {config.corpus!r} has too little text for one block of seq_len "
        f"{config.seq_len} tokens (BOS + {needed} tokens of text and separators, counted with "
        f"{config.model}'s tokenizer): {where}. Add text there, or lower seq_len (--seq-len), "
        f"the block length of the statistics, to {fits} or less."
    )


def check_model_source(model: str) -> None:
    """Refuse a model that cannot load here, at once and without loading it.

    ``model`` must be a built-in or installed crane_lens model, a folder with a
    ``config.json`` (as ``save_pretrained`` writes), or a hub id (in the local hub cache when
    the hub is offline, ``HF_HUB_OFFLINE``). A name close to a known one is refused with a
    "did you mean".

    Raises:
        ModelLoadError: A missing or incomplete folder, an uninstalled or misspelt name, or a
            hub id not cached while the hub is offline.

    Example:
        >>> check_model_source("crane-tiny")
        >>> check_model_source("crane-tinny")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        crane_lens.errors.ModelLoadError: Unknown model 'crane-tinny': did you mean 'crane-tiny'?...
    """
    from crane_lens.model.installable import INSTALLABLE_MODELS
    from crane_lens.model.loader import BUILTIN_MODELS, _check_local_folder, _resolve_source

    target, local = _resolve_source(model)  # a built-in or installable name not installed
    if local:
        _check_local_folder(Path(target), has_tokenizer_arg=False)
        return
    known = [*BUILTIN_MODELS, *INSTALLABLE_MODELS]
    close = difflib.get_close_matches(model, known, n=1, cutoff=0.8)
    if close and "/" not in model:
        raise ModelLoadError(
            f"Unknown model {model!r}: did you mean {close[0]!r}? (crane-lens models list shows "
            "the built-in and installable models; a folder or hub id works too.)"
        )
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE and not isinstance(
        try_to_load_from_cache(model, "config.json"), str
    ):
        raise ModelLoadError(
            f"{model!r} is neither a crane_lens model ({', '.join(known)}), a folder, nor in the "
            "local hub cache, and the hub is offline (HF_HUB_OFFLINE). Pass a folder written by "
            "save_pretrained, or download the model where a hub is reachable."
        )


def check_output(folder: Path) -> None:
    """Refuse a run folder that cannot be created or written (nothing is created).

    Raises:
        OutputExistsError: ``folder`` is a file.
        CraneLensError: Its nearest existing parent is not a writable folder.
    """
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"{folder} is a file, not a folder; choose another --name/--out.")
    existing = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):  # the one sure test (read-only mounts, /proc)
            pass
    except OSError as exc:
        raise CraneLensError(
            f"Cannot write the run folder {folder}: {existing} is not a writable folder "
            f"({exc.strerror or exc}). Choose another --out."
        ) from exc
