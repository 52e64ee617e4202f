"""The main job: statistics → selection → evaluation, written to ``results/<run-name>/``.

``crane-lens run`` calls :func:`run`. Every stage saves its result as soon as it is done and
skips work already saved, so re-running the same command after an interruption continues where
it stopped (the statistics and the ablation matrices also checkpoint *within* their stage). A
folder that holds a run of other settings is never overwritten silently.

Under ``torchrun`` (or inside any initialised ``torch.distributed`` group) every process runs
:func:`run` with the same settings: the statistics and the ablation matrices are shared out
between the ranks, every rank ends with the same result, and rank 0 alone writes the folder
(docs/scale.md).

Layout of a run folder::

    run_config.json          settings, package versions, and which stages are complete
    stats/                   NeuronStats of the training split (stats.safetensors + stats.json)
    eval_stats/              CRANE relevance on the held-out split (for the relevance metric)
    neurons/<method>.json    LanguageNeurons (+ <method>.lape.pt, LAPE's torch format)
    ablation/<method>/       AblationMatrix: matrix.json, delta.csv, relative.csv, ...
    selectivity.csv          every method's selectivity table, one row per (method, language)
    relevance_share.csv      relevance-based metric per (method, language)
    jaccard.csv              overlap of the methods' sets, per language
    summary.md               what ``crane-lens run`` prints
    report.html              the self-contained HTML report (``crane-lens report``), written last
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from crane_lens.errors import (
    CraneLensError,
    MissingLanguageError,
    ModelLoadError,
    OutputExistsError,
)
from crane_lens.evaluation.ablation import EVAL_BATCH_ROWS, AblationMatrix, ablation_matrix
from crane_lens.evaluation.relevance import relevance_selectivity
from crane_lens.intervention.hooks import MODES, Mode, intervention_values
from crane_lens.selection.neurons import LanguageNeurons
from crane_lens.selection.select import select_language_neurons
from crane_lens.selection.stability import STABILITY_FILE, SelectionStability, selection_stability
from crane_lens.stats.methods import METHODS
from crane_lens.stats.results import META_FILE, NeuronStats
from crane_lens.utils import distributed
from crane_lens.utils.io import atomic_path, write_json, write_text

log = logging.getLogger(__name__)

CONFIG_FILE = "run_config.json"
PAPER_LANGS = ["en", "zh", "vi"]


@dataclass
class RunConfig:
    """Settings of one run (every field is a ``crane-lens run`` option).

    Attributes:
        model: Built-in name, local folder or hub id.
        langs: Languages to analyse.
        methods: Selection methods compared (the random control is always added).
        budget: Neurons per language, as a fraction of all MLP neurons.
        mode: Intervention used in the ablation matrix (``zero``, ``mean``, ``fixed``).
        corpus: Corpus source; statistics use its ``train`` split, evaluation its ``eval`` split.
        max_tokens_per_lang: Training tokens per language for the statistics.
        eval_tokens_per_lang: Held-out tokens per language for the ablation matrix.
        seq_len: Block length of the statistics.
        eval_seq_len: Block length of the evaluation stream.
        batch_size: Blocks per forward pass of the statistics.
        eval_batch_size: Rows per forward pass of the ablation matrix (``None``: 8; the runner
            never materialises ``[rows, pos, vocab]`` logits, so the vocabulary does not limit
            it). A memory knob only: results do not depend on it.
        random_seeds: Random control sets per language.
        target: CRANE's target (``logit`` or ``logprob``).
        seed: Seed of the text order.
        device: Device (default: CUDA if available, else CPU; under ``torchrun``,
            ``crane-lens run`` gives each rank its own GPU, ``cuda:LOCAL_RANK``).
        dtype: Compute dtype: ``"auto"`` (default: float32 on a CPU without native bfloat16,
            where bfloat16 is 4–70× slower, otherwise the checkpoint's own;
            :func:`crane_lens.load_model`), ``"checkpoint"``, ``"float32"``, ``"bfloat16"`` or
            ``"float16"``. A run continued with ``"auto"`` keeps the dtype it started in.
        factor: Multiplier of the chosen neurons for ``mode="scale"`` (required there, and only
            there): ``0`` is zero ablation, ``0.5`` halves them, ``2`` doubles them.
        lape_top_rate: LAPE's budget as its published ``top_rate``: the fraction of all MLP
            neurons kept *in total* (``0.01`` is the published recipe), each kept neuron
            assigned to every language whose activation probability passes the bar. ``None``
            (default): sets matched to the other methods' size — the smallest total whose
            assignment gives a mean set size of at least ``budget`` per language.

    Every value is checked on construction; :meth:`validate` also checks them against this
    machine (the model, the corpus's languages, dtype and device) without loading anything.
    """

    model: str = "crane-tiny"
    langs: list[str] = field(default_factory=lambda: list(PAPER_LANGS))
    methods: list[str] = field(default_factory=lambda: ["crane", "lape"])
    budget: float = 0.01
    mode: Mode = "zero"
    corpus: str = "builtin"
    max_tokens_per_lang: int = 16384
    eval_tokens_per_lang: int = 4096
    seq_len: int = 128
    eval_seq_len: int = 256
    batch_size: int = 8
    eval_batch_size: int | None = None
    random_seeds: int = 5
    target: str = "logit"
    seed: int = 0
    device: str | None = None
    dtype: str = "auto"

    factor: float | None = None
    lape_top_rate: float | None = None

    def __post_init__(self) -> None:
        from crane_lens.data import canonical_lang

        # One spelling per language ('eng' -> 'en', 'zh-TW' -> 'zh-Hant'): corpus files, run
        # names and saved results all use it. Repeats stay, for _check_values to name.
        self.langs = [canonical_lang(lang) for lang in self.langs]
        # One spelling per dtype too ('bf16' -> 'bfloat16', None -> 'auto'): runs compare and
        # continue by it.
        self.dtype = _canonical_dtype(self.dtype)
        _check_values(self)

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> RunConfig:
        """The settings a run folder saved, as they were: not checked again, because an older
        crane_lens accepted values this one refuses, and its finished runs must still load.

        Raises:
            CraneLensError: A setting this crane_lens does not know (a newer one saved it).

        Example:
            >>> RunConfig.from_saved({"budget": 0.5, "langs": ["en", "zh", "vi"]}).budget
            0.5
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CraneLensError(
                f"The saved run settings name {', '.join(unknown)}, which this crane_lens does "
                "not know: a newer crane_lens wrote them. Upgrade crane_lens to read this run."
            )
        config = cls.__new__(cls)
        defaults = cls()
        for name in known:
            value = values[name] if name in values else getattr(defaults, name)
            setattr(config, name, copy.deepcopy(value))
        if "dtype" in values and values["dtype"] is None:
            config.dtype = "checkpoint"  # what an unset dtype meant before "auto"
        config.dtype = _canonical_dtype(config.dtype)
        return config

    def validate(self) -> None:
        """Check every setting, against this machine too, before any model or corpus work.

        The values (:class:`RunConfig` checks them on construction too), then without loading
        or tokenising anything: the model is a built-in or installed name, a folder with a
        ``config.json``, or a hub id (in the local hub cache when the hub is offline); the
        languages are known and the corpus has text for them (built-in corpus, folder of
        ``<lang>.txt`` files); dtype and device exist here. :func:`run` calls it first.

        Raises:
            ValueError: A setting out of range (budget, counts, mode...).
            CraneLensError: A model, corpus, language, dtype or device this machine lacks.

        Example:
            >>> RunConfig(langs=["en", "vi"]).validate()
            >>> RunConfig(model="no/such/folder").validate()
            Traceback (most recent call last):
            ...
            crane_lens.errors.ModelLoadError: No such model folder: ...
        """
        _check_values(self)
        _check_model_source(self.model)
        _check_langs(self.langs, self.corpus)
        from crane_lens.model.dtype import parse_dtype
        from crane_lens.model.loader import resolve_device

        parse_dtype(self.dtype)
        resolve_device(self.device)

    @property
    def name(self) -> str:
        """Default run name: model, languages, budget and mode."""
        model = Path(self.model).name or self.model
        langs = "-".join(self.langs) if len(self.langs) <= 4 else f"{len(self.langs)}langs"
        mode = f"scale{self.factor:g}" if self.mode == "scale" else self.mode
        lape = "" if self.lape_top_rate is None else f"_lape{self.lape_top_rate:g}"
        return f"{model}_{langs}_{self.budget * 100:g}pct_{mode}{lape}"

    def stats_methods(self) -> list[str]:
        needed = [m for m in self.methods if m != "crane"]
        return ["crane", *needed]  # crane's pass also feeds the relevance metric

    def comparable(self) -> dict[str, Any]:
        """The settings that determine the results (device and dtype aside)."""
        return {k: v for k, v in asdict(self).items() if k not in ("device", "eval_batch_size")}

    def eval_rows(self) -> int:
        """Rows per ablation pass: ``eval_batch_size``, or :data:`EVAL_BATCH_ROWS`."""
        return self.eval_batch_size if self.eval_batch_size is not None else EVAL_BATCH_ROWS


# -- checks of a RunConfig: values on construction, this machine in validate() ------------------

# The ``crane-lens run`` option of each setting, named in messages (API users know the field).
_OPTIONS = {"max_tokens_per_lang": "--max-tokens", "eval_tokens_per_lang": "--eval-tokens",
            "eval_batch_size": "--eval-batch-size", "random_seeds": "--random-seeds",
            "seq_len": "--seq-len", "eval_seq_len": "--eval-seq-len", "batch_size": "--batch-size",
            "seed": "--seed", "budget": "--budget", "lape_top_rate": "--lape-top-rate",
            "factor": "--factor"}  # fmt: skip


def _setting(name: str) -> str:
    option = _OPTIONS.get(name)
    return f"{name} ({option})" if option else name


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _canonical_dtype(dtype: object) -> Any:
    """``"bfloat16"`` for ``"bf16"``/``"BF16"``/``torch.bfloat16``, ``"auto"`` for ``None``; a
    value :func:`~crane_lens.model.dtype.parse_dtype` refuses stays as it is, for
    :meth:`RunConfig.validate` to refuse with its message."""
    from crane_lens.model.dtype import dtype_name, parse_dtype

    try:
        parsed = parse_dtype(dtype)  # type: ignore[arg-type]
    except ModelLoadError:
        return dtype
    return parsed if isinstance(parsed, str) else dtype_name(parsed)


def _check_fraction(name: str, value: object, example: str) -> None:
    if not _is_number(value) or not 0 < value <= 1:  # type: ignore[operator]
        raise ValueError(
            f"{_setting(name)} must be a fraction of all MLP neurons in (0, 1], e.g. {example}; "
            f"got {value!r}."
        )


def _check_values(config: RunConfig) -> None:
    """The checks that need nothing but the settings (cheap: no file, model or corpus)."""
    unknown = [m for m in config.methods if m not in METHODS or m == "ablation"]
    if unknown or not config.methods:
        raise ValueError(
            f"Unknown selection methods {unknown or config.methods}; choose from "
            f"{sorted(m for m in METHODS if m != 'ablation')} (random is always included)."
        )
    if len(set(config.methods)) < len(config.methods):
        raise ValueError(f"methods lists a method twice: {config.methods}.")
    if not config.langs or len(set(config.langs)) < len(config.langs):
        raise ValueError(f"langs must name at least one language, each once; got {config.langs}.")
    _check_fraction("budget", config.budget, "0.01 for 1 % per language")
    if config.lape_top_rate is not None:
        _check_fraction("lape_top_rate", config.lape_top_rate, "0.01, the published recipe")
        if "lape" not in config.methods:
            raise ValueError("lape_top_rate (--lape-top-rate) sets LAPE's budget: add 'lape' to "
                             f"methods (now {','.join(config.methods)}), or leave it unset.")  # fmt: skip
    if config.mode not in MODES:
        raise ValueError(f"Unknown intervention mode {config.mode!r}; choose from {MODES}.")
    if config.mode == "fixed" and "kojima" not in config.methods:
        raise ValueError("mode='fixed' uses Kojima's medians: add 'kojima' to methods.")
    if config.mode == "scale" and not _is_number(config.factor):
        raise ValueError(
            f"mode='scale' multiplies the chosen neurons by factor (--factor): give a finite "
            f"number (0 = zero ablation, 0.5 halves, 2 doubles); got {config.factor!r}."
        )
    if config.mode != "scale" and config.factor is not None:
        raise ValueError(f"factor (--factor) is the multiplier of mode='scale'; mode is "
                         f"{config.mode!r}. Pass mode='scale' or leave factor unset.")  # fmt: skip
    if config.target not in ("logit", "logprob"):
        raise ValueError(f"target must be 'logit' or 'logprob', not {config.target!r}.")
    positive = ["max_tokens_per_lang", "eval_tokens_per_lang", "batch_size"] + (
        [] if config.eval_batch_size is None else ["eval_batch_size"])  # fmt: skip
    lows = [*((n, 1) for n in positive), ("seq_len", 2), ("eval_seq_len", 2), ("random_seeds", 0),
            ("seed", 0)]  # fmt: skip
    for name, low in lows:  # a block is BOS plus at least one token
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            what = {0: "a whole number >= 0", 1: "a positive whole number"}.get(
                low, f"a whole number >= {low}")  # fmt: skip
            raise ValueError(f"{_setting(name)} must be {what}, not {value!r}.")
    # Both statistics passes cut blocks of seq_len and keep whole blocks only.
    for name in ("max_tokens_per_lang", "eval_tokens_per_lang"):
        if getattr(config, name) < config.seq_len:
            raise ValueError(
                f"{_setting(name)} is {getattr(config, name)}, below one block of seq_len "
                f"(--seq-len) {config.seq_len} tokens: raise it, or lower seq_len."
            )


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


def _check_langs(langs: list[str], corpus: str) -> None:
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


def _check_enough_text(config: RunConfig, splits: dict[str, Any]) -> None:
    """Refuse a corpus split with less text for a language than one block of ``seq_len``.

    Both statistics passes (``train``, and ``eval`` for the held-out relevance) cut each
    language's texts into blocks of ``seq_len`` tokens as :func:`make_token_blocks` does, and
    keep whole blocks only; the ablation matrices read the eval text as a stream of
    ``eval_seq_len`` blocks and keep a last partial one, so they need no more. Counted with the
    model's tokenizer alone (no weights), and only up to one block per language and split: a
    large corpus costs a few small tokenizer calls. A tokenizer that cannot be loaded here is
    left to :func:`crane_lens.load_model` to report.

    Raises:
        EmptyCorpusError: Some language has less than one block of text in a split.
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


def _check_model_source(model: str) -> None:
    """A missing folder, an uninstalled or misspelt model fails here, at once (no loading)."""
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


def _check_output(folder: Path) -> None:
    """The run folder can be created or written (checked before anything is created)."""
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


STABILITY_DIR = "stability"


@dataclass
class RunResult:
    """Everything a run produced (also what :meth:`load` reads back from its folder)."""

    folder: Path
    config: RunConfig
    stats: NeuronStats
    neurons: dict[str, LanguageNeurons]
    matrices: dict[str, AblationMatrix]
    eval_stats: NeuronStats | None = None
    resolved: dict[str, str] = field(default_factory=dict)
    """What the run computed on: ``device``, ``dtype`` and ``dtype_choice`` (the dtype, what was
    asked and why); empty for runs saved before crane_lens recorded it."""
    report: Path | None = None
    """The report.html this call of :func:`run` wrote (on rank 0); ``None`` where writing it
    failed (the error was logged), on other ranks, and for a result read by :meth:`load`."""
    stability: SelectionStability | None = None
    """How much each method's sets depend on the training text (split halves, nested
    fractions; :func:`crane_lens.selection_stability`); ``None`` where the statistics have no
    per-part sums (a run begun by an older crane_lens)."""

    def selectivity(self) -> Any:
        """Every method's selectivity table stacked (index: method, masked language)."""
        import pandas as pd

        return pd.concat({m: x.selectivity() for m, x in self.matrices.items()}, names=["method"])

    def relevance(self) -> Any:
        """Relevance-based selectivity per method and language (held-out CRANE relevance)."""
        import pandas as pd

        if self.eval_stats is None:
            raise CraneLensError("This run has no held-out relevance statistics.")
        return pd.concat({m: relevance_selectivity(n, self.eval_stats)
                          for m, n in self.neurons.items()}, names=["method"])  # fmt: skip

    def jaccard(self) -> Any:
        """Per language, Jaccard overlap between every pair of methods' sets."""
        import pandas as pd

        rows = []
        names = list(self.neurons)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                table = self.neurons[a].jaccard(self.neurons[b])
                rows += [{"method_a": a, "method_b": b, "lang": lang,
                          "jaccard": float(table.loc[lang, lang])}
                         for lang in self.neurons[a].langs if lang in table.columns]  # fmt: skip
        return pd.DataFrame(rows, columns=["method_a", "method_b", "lang", "jaccard"])

    def summary(self) -> str:
        """A readable report: per method and language, set size, ΔNLL and selectivity with
        intervals and p-values, the conclusions and caveats of the HTML report, the matrices."""
        from crane_lens.report.findings import method_conclusion, ranking, run_warnings

        lines = [f"# crane-lens run: {self.folder.name or self.config.name}", "",
                 f"model {self.stats.spec.name} ({self.stats.spec.n_layers} layers × "
                 f"{self.stats.spec.d_mlp} neurons); languages {', '.join(self.config.langs)}; "
                 f"budget {self.config.budget:g} per language; intervention {self.config.mode}"
                 f"{'' if self.config.factor is None else f' × {self.config.factor:g}'}; "
                 f"{self.config.random_seeds} random control seeds.", "",
                 "ΔNLL = NLL with the set masked − unmasked NLL (nats/token), held-out text.", "",
                 "## Selectivity", ""]  # fmt: skip
        if "lape" in self.neurons:
            lines[4:4] = [f"LAPE budget: {lape_budget(self.config, self.neurons['lape'])}.", ""]
        table = self.selectivity().reset_index()

        def with_interval(key: str, digits: int = 3) -> list[str]:
            return [f"{v:.{digits}f}" + (f" [{lo:.{digits}f}, {hi:.{digits}f}]"
                                         if math.isfinite(lo) and math.isfinite(hi) else "")
                    for v, lo, hi in zip(table[key], table[f"{key}_low"], table[f"{key}_high"],
                                         strict=True)]  # fmt: skip

        has_intervals = bool(table["own_low"].notna().any())
        ci = " [95 % CI]" if has_intervals else ""
        table[f"own{ci}"], table[f"index{ci}"] = with_interval("own"), with_interval("index", 2)
        columns = ["method", "masked", "n_neurons", f"own{ci}", "others", "ratio", f"index{ci}"]
        if "random_own" in table:
            table["random (mean ± std)"] = [f"{m:.3f} ± {s:.3f}" for m, s in
                                            zip(table.random_own, table.random_own_std, strict=True)]  # fmt: skip
            columns += ["random (mean ± std)", "vs_random", "p_value"]
        lines += [table[columns].to_markdown(index=False, floatfmt=".3f"), ""]
        lines += [
            "## Conclusions",
            "",
            *(f"- {method_conclusion(m)}" for m in self.matrices.values()),
        ]
        if line := ranking(self.matrices):
            lines += [f"- {line}"]
        warnings = run_warnings(self.matrices)
        lines += ["", *(["## Caveats", "", *(f"- {w}" for w in warnings), ""] if warnings else [])]
        if self.stability is not None:
            lines += ["## How stable are these sets", "",
                      *(f"- {line}" for line in self.stability.describe().splitlines()), ""]  # fmt: skip
        for method, matrix in self.matrices.items():
            lines += [f"## ΔNLL matrix, {method} (rows: masked set, columns: evaluated)", "",
                      matrix.delta().to_markdown(floatfmt=".3f"), ""]  # fmt: skip
        if self.eval_stats is not None:
            lines += ["## Relevance share (held-out CRANE relevance captured by each set)", "",
                      self.relevance().reset_index().to_markdown(index=False, floatfmt=".3f"), ""]  # fmt: skip
        counts = [n.overlap_counts().query("layer == 'all'").assign(method=m)
                  for m, n in self.neurons.items()]  # fmt: skip
        if counts:
            import pandas as pd

            frame = pd.concat(counts)[["method", "lang", "selected", "exclusive", "shared"]]
            lines += ["## Exclusive and shared neurons", "",
                      frame.to_markdown(index=False), ""]  # fmt: skip
        lines += [f"Results: {self.folder}"]
        return "\n".join(lines)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> RunResult:
        """Read a finished run folder.

        Raises:
            CraneLensError: The folder holds no complete run.
        """
        folder = Path(folder)
        meta = _read_config(folder)
        if meta is None or not meta.get("complete"):
            raise CraneLensError(
                f"{folder} holds no complete crane-lens run; re-run the command that made it "
                "to finish it."
            )
        config = RunConfig.from_saved(meta["config"])
        eval_dir = folder / "eval_stats"
        return cls(
            folder, config, NeuronStats.load(folder / "stats"),
            {m: LanguageNeurons.load(folder / "neurons" / f"{m}.json") for m in config.methods},
            {m: AblationMatrix.load(folder / "ablation" / m) for m in config.methods},
            NeuronStats.load(eval_dir) if (eval_dir / "stats.json").is_file() else None,
            dict(meta.get("resolved") or {}),
            stability=SelectionStability.load(folder / STABILITY_DIR)
            if _saved(folder / STABILITY_DIR / STABILITY_FILE) else None,
        )  # fmt: skip


def _read_config(folder: Path) -> dict[str, Any] | None:
    path = folder / CONFIG_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _write_config(
    folder: Path, config: RunConfig, complete: bool, resolved: dict[str, str] | None = None
) -> None:
    from crane_lens.stats.engine import _versions

    data = {"config": asdict(config), "complete": complete, "versions": _versions()}
    if resolved:
        data["resolved"] = resolved
    write_json(folder / CONFIG_FILE, data)


def _resolved(model: Any) -> dict[str, str]:
    """What a run computes on, for its settings file and report: device and dtype, and why."""
    from crane_lens.model import dtype_choice, get_spec
    from crane_lens.model.dtype import dtype_name

    choice = dtype_choice(model)
    return {"device": get_spec(model).device, "dtype": dtype_name(choice.dtype),
            "dtype_choice": choice.describe()}  # fmt: skip


def _started_in(folder: Path, overwrite: bool) -> dict[str, Any]:
    """What the run in ``folder`` recorded that it computes on (device, dtype, why), as rank 0
    reads it; ``{}`` for a new, replaced or unreadable folder (:func:`_check_folder` says what is
    wrong with an unreadable one). A collective call: before the checks, never inside them."""
    started: dict[str, Any] = {}
    if not overwrite and distributed.is_main():
        with contextlib.suppress(Exception):  # refused with its reason by _check_folder
            started = dict((_read_config(folder) or {}).get("resolved") or {})
    return distributed.broadcast_object(started)  # rank 0's folder decides


def _continued_dtype(config: RunConfig, started: dict[str, Any]) -> tuple[str, str | None]:
    """The dtype to load, and the reason recorded when the run started: a run continued with
    ``"auto"`` keeps the dtype it started in (``started``, from :func:`_started_in`; its
    statistics refuse to mix dtypes), even on another machine; otherwise
    ``(config.dtype, None)``."""
    if config.dtype != "auto" or not started.get("dtype"):
        return config.dtype, None
    log.info("continuing in %s, the dtype this run started in (--dtype auto)", started["dtype"])
    return str(started["dtype"]), started.get("dtype_choice")


def _check_folder(folder: Path, config: RunConfig, overwrite: bool) -> None:
    """Refuse a folder of another run (read-only: before the model is loaded)."""
    if overwrite:
        return
    saved = _read_config(folder)
    if saved is not None:
        old = RunConfig.from_saved(saved["config"]).comparable()
        diff = sorted(k for k, v in config.comparable().items() if old.get(k) != v)
        if diff:
            hint = f" (that run's: --dtype {old['dtype']})" if diff == ["dtype"] else ""
            raise OutputExistsError(
                f"{folder} holds a run with other settings ({', '.join(diff)} differ{hint}). "
                "Choose another --name/--out, or pass --overwrite to replace it."
            )
        log.info("continuing the run in %s", folder)
    elif folder.exists() and any(folder.iterdir()):
        raise OutputExistsError(
            f"{folder} exists and is not a crane-lens run folder; choose another --name/--out."
        )


# The settings that determine stage 1 (statistics); a run may reuse another's stage 1 when these
# and the statistics methods are equal.
STATS_SETTINGS = ("model", "langs", "corpus", "max_tokens_per_lang", "eval_tokens_per_lang",
                  "seq_len", "batch_size", "seed", "target", "dtype")  # fmt: skip


def _check_stats_source(source: Path, config: RunConfig) -> None:
    """Refuse ``--stats-from`` a folder whose statistics this run would not compute alike."""
    meta = _read_config(source)
    finished = all((source / sub / "stats.json").is_file() for sub in ("stats", "eval_stats"))
    if meta is None or not finished:
        raise CraneLensError(
            f"{source} holds no finished statistics of a crane-lens run (stats/ and eval_stats/); "
            "pass the folder of a run whose first stage completed."
        )
    old = RunConfig.from_saved(meta["config"])
    diff = [k for k in STATS_SETTINGS if getattr(old, k) != getattr(config, k)]
    if old.stats_methods() != config.stats_methods():
        diff.append(f"methods ({','.join(old.methods)} there)")
    if diff:
        raise CraneLensError(
            f"The statistics in {source} were computed with other settings ({', '.join(diff)} "
            "differ); reuse needs the same ones. Match them, or drop --stats-from to compute "
            "new statistics."
        )


def _copy_stats(source: Path, folder: Path) -> None:
    for sub in ("stats", "eval_stats"):
        if (folder / sub / "stats.json").is_file():
            continue
        tmp = folder / f"{sub}.copying"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(folder / sub, ignore_errors=True)  # a checkpoint of its own: superseded
        shutil.copytree(source / sub, tmp)
        os.replace(tmp, folder / sub)
    log.info("reusing the statistics of %s", source)


def _prepare_folder(
    folder: Path, config: RunConfig, overwrite: bool, resolved: dict[str, str]
) -> None:
    if overwrite and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_config(folder, config, complete=False, resolved=resolved)


# -- data parallelism: every rank runs this module; rank 0 alone touches the run folder ---------


@contextlib.contextmanager
def _all_ranks_agree(what: str) -> Iterator[None]:
    """In a process group, let an error raised inside the block on any rank end every rank.

    Each rank runs the block, then the ranks exchange whether it failed (a collective call, so
    it also waits for the slowest rank): a rank that failed re-raises its error, the others
    raise :class:`CraneLensError` naming it, instead of waiting forever in the next collective
    call. Outside a group the block just runs.
    """
    if not distributed.active():
        with distributed.local_only(what):
            yield
        return
    error: Exception | None = None
    try:
        with distributed.local_only(what):  # no collective call where one rank may fail alone
            yield
    except Exception as exc:
        error = exc
    outcome = None if error is None else f"{type(error).__name__}: {error}"
    failed = [(r, x) for r, x in enumerate(distributed.all_gather_objects(outcome)) if x]
    if error is not None:
        raise error
    if failed:
        rank, message = failed[0]
        raise CraneLensError(f"rank {rank} failed {what}: {message}")


def _settings_of_rank0(
    config: RunConfig, folder: Path, overwrite: bool, source: Path | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """This rank's settings of the call (the device aside) and rank 0's (a collective call:
    before the checks, never inside them)."""
    mine = {k: v for k, v in asdict(config).items() if k != "device"}
    mine |= {"folder": str(folder), "overwrite": overwrite, "stats_from": source and str(source)}
    return mine, distributed.broadcast_object(mine)


def _check_same_call(mine: dict[str, Any], main: dict[str, Any]) -> None:
    """In a process group, refuse a rank whose settings (the device aside) differ from rank 0's:
    the ranks would not share the same work."""
    diff = sorted(k for k, v in mine.items() if main.get(k) != v)
    if diff:
        raise CraneLensError(
            f"The settings of rank {distributed.rank()} differ from rank 0's ({', '.join(diff)}); "
            "every rank must run the same command."
        )


def _check_same_dtype(dtype: str | None) -> None:
    """In a process group, refuse ranks that computed ``"auto"`` into different dtypes (machines
    with and without native bfloat16): their statistics could not be summed. Every rank sees
    every rank's dtype, so all raise together."""
    chosen = distributed.all_gather_objects(dtype)
    if len(set(chosen)) > 1:
        ranks = ", ".join(f"rank {r}: {d}" for r, d in enumerate(chosen))
        raise CraneLensError(
            f"The ranks chose different dtypes ({ranks}): their machines differ. Pass one "
            f"--dtype to every rank (e.g. --dtype {chosen[0]})."
        )


def _on_main(action: Callable[[], object], what: str) -> None:
    """Run ``action`` (a write into the run folder) on rank 0 only; in a process group every
    rank returns once it is done, and raises if it failed."""
    with _all_ranks_agree(what):
        if distributed.is_main():
            action()


def _saved(path: Path) -> bool:
    """Whether ``path`` exists, as rank 0 (its writer) sees it: every rank takes the same
    branch, even while rank 0 writes the file."""
    return bool(distributed.broadcast_object(path.is_file()))


def _save_neurons(neurons: LanguageNeurons, path: Path) -> None:
    neurons.to_lape(path.with_suffix(".lape.pt"))
    neurons.save(path)


def _save_matrix(matrix: AblationMatrix, target: Path) -> None:
    matrix.save(target)
    (target / "ablation_checkpoint.json").unlink(missing_ok=True)


def _finish(result: RunResult) -> None:
    _write_tables(result)
    _write_config(result.folder, result.config, complete=True, resolved=result.resolved)
    result.report = _write_report(result)


def _write_report(result: RunResult) -> Path | None:
    """Write report.html, after the results it shows are safe on disk; its path, or ``None``.

    A failure is logged as an error and the run still succeeds: the report is a view of the
    tables and folders already written, and ``crane-lens report`` rebuilds it from them.
    """
    try:
        from crane_lens.report import write_report

        return Path(write_report(result))
    except Exception as exc:
        log.debug("report failure", exc_info=True)
        log.error(
            "could not write %s (%s: %s); the results are complete. Retry with `crane-lens "
            "report %s` (-v shows the traceback).", result.folder / "report.html",
            type(exc).__name__, exc, result.folder,
        )  # fmt: skip
        return None


def run(
    config: RunConfig | None = None,
    *,
    out: str | os.PathLike[str] = "results",
    name: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    stats_from: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run (or continue) the whole pipeline and write ``<out>/<name>/``.

    Inside an initialised ``torch.distributed`` group (e.g. under ``torchrun``) every rank calls
    this with the same arguments: the statistics and the ablation matrices are computed data
    parallel, every rank returns the same :class:`RunResult`, and rank 0 alone creates, checks
    and writes the run folder (which must be on a file system every rank reads). Bad input is
    refused on every rank before any work starts.

    Args:
        config: Settings (default: the embedded default — crane-tiny, en/zh/vi, CRANE and
            LAPE, 1 %).
        out: Parent folder of run folders.
        name: Run folder name (default: :attr:`RunConfig.name`).
        overwrite: Replace a folder that holds a run of other settings.
        progress: Progress bars.
        stats_from: Folder of an earlier run whose statistics (stage 1) this run reuses: same
            model, languages, corpus, token budgets, block length, batch size, seed, target,
            dtype and methods; selection budget, intervention mode, random seeds and
            evaluation rows may differ. Stage 1 is the expensive one on a real LLM.

    Every setting is checked first (:meth:`RunConfig.validate`, and that ``out`` can be
    written), before any model or corpus work. Then the text is loaded and counted with the
    model's tokenizer alone (no weights): every language needs one block of ``seq_len`` tokens
    in each split, or the run stops there. The folder is created after the model and the text
    are loaded, and removed again when the run fails or is interrupted before it saved
    anything (a folder with a result or checkpoint, or one this call continues, is kept).

    Raises:
        ValueError: A setting out of range (see :meth:`RunConfig.validate`).
        EmptyCorpusError: A language has less than one block of ``seq_len`` tokens of text in
            the ``train`` or ``eval`` split.
        OutputExistsError: The folder holds a different run and ``overwrite`` is false.
        CraneLensError: A model, corpus, language, dtype or device this machine lacks; an
            ``out`` that cannot be written; ``stats_from`` holds no finished statistics, or
            other settings; in a process group, another rank failed before the work or while
            rank 0 wrote.
    """
    from crane_lens.data import load_corpus
    from crane_lens.model import load_model

    config = config or RunConfig()
    folder = Path(out) / (name or config.name)
    source = Path(stats_from) if stats_from is not None else None
    # What rank 0 sees, shared first: inside the checks below a rank may fail alone, and a
    # collective call there would leave the others waiting for it.
    mine, main = _settings_of_rank0(config, folder, overwrite, source)
    started = _started_in(folder, overwrite)
    # Every check of the input runs on every rank, before rank 0 changes anything on disk.
    with _all_ranks_agree("before the work started"):
        _check_same_call(mine, main)
        config.validate()  # every setting, before any model or corpus work
        _check_output(folder)
        _check_folder(folder, config, overwrite)
        if source is not None:
            if folder.resolve() in (source.resolve(), *source.resolve().parents):
                # --overwrite would delete the statistics before they are copied.
                raise CraneLensError(
                    f"--stats-from {source} is the run folder this run writes ({folder}); give "
                    "the new run another --name (or --out) and keep the old one as the source."
                )
            _check_stats_source(source, config)
        # Text (the cheaper load), then the model, before the folder exists: bad input leaves
        # no folder behind.
        langs = config.langs
        train = load_corpus(config.corpus, langs=langs, split="train")
        held_out = load_corpus(config.corpus, langs=langs, split="eval")
        _check_enough_text(config, {"train": train, "eval": held_out})  # tokenizer only
        dtype, why = _continued_dtype(config, started)
        model = load_model(config.model, device=config.device, dtype=dtype)
    resolved = _resolved(model) | ({"dtype_choice": why} if why else {})
    _check_same_dtype(resolved.get("dtype"))

    created = overwrite or not _saved_dir(folder)
    new_parents = [p for p in folder.absolute().parents if not p.exists()]  # mkdir makes them

    def prepare() -> None:
        _prepare_folder(folder, config, overwrite, resolved)
        if source is not None:
            _copy_stats(source, folder)

    _on_main(prepare, f"to prepare {folder}")  # the other ranks wait for it
    try:
        result = _stages(config, folder, model, train, held_out, progress)
        result.resolved = resolved
    except BaseException:
        if created and distributed.is_main():
            _remove_if_unused(folder, new_parents)  # one with any result or checkpoint stays
        raise
    _on_main(functools.partial(_finish, result), f"to write the tables of {folder}")
    return result


def lape_budget(config: RunConfig, neurons: LanguageNeurons) -> str:
    """Which budget a run's LAPE selection used, in words (logged, and in the summary).

    Example:
        >>> import torch
        >>> sets = LanguageNeurons(4, 1024, {"en": torch.zeros(0, 2)}, method="lape", config={
        ...     "budget_semantics": "matched mean set size per language", "k": 41,
        ...     "top_rate": 69 / 4096, "n_kept_total": 69, "mean_set_size": 41.33})
        >>> lape_budget(RunConfig(), sets)  # doctest: +NORMALIZE_WHITESPACE
        'mean set size 41.3 per language, matched to k = 41 (1 % per language): the smallest
        total whose assignment reaches it, 69 of the 4096 MLP neurons (top_rate 0.0168); the
        published recipe keeps 1 % in total: --lape-top-rate 0.01'
    """
    recorded = neurons.config
    n_neurons = neurons.n_layers * neurons.d_mlp
    rate = float(recorded.get("top_rate", config.lape_top_rate or float("nan")))
    n_kept = recorded.get("n_kept_total", round(rate * n_neurons))
    kept = f"{n_kept} of the {n_neurons} MLP neurons"
    mean = recorded.get("mean_set_size")
    if recorded.get("budget_semantics") == "matched mean set size per language":
        k = recorded["k"]
        how = ("the smallest total whose assignment reaches it" if mean >= k else
               "short of k even with every neuron LAPE deems eligible")  # fmt: skip
        return (
            f"mean set size {mean:.1f} per language, matched to k = {k} "
            f"({config.budget * 100:g} % per language): {how}, {kept} (top_rate {rate:.3g}); "
            "the published recipe keeps 1 % in total: --lape-top-rate 0.01"
        )
    if config.lape_top_rate is None:  # selected by an older crane_lens: k × languages in total
        return (
            f"top_rate {rate:.3g} = {config.budget * 100:g} % per language × "
            f"{len(config.langs)} languages ({kept} in total, an older crane_lens's reading: "
            "the sets average more than k where neurons are shared; the published recipe keeps "
            "1 % in total: --lape-top-rate 0.01)"
        )
    published = "the published recipe's budget" if rate == 0.01 else "the published recipe: 0.01"
    mean_text = "" if mean is None else f"; mean set size {mean:.1f} per language"
    return (
        f"top_rate {rate:g} in total, LAPE's own budget ({published}; {kept} in total, each "
        f"assigned to every language whose activation probability passes the bar{mean_text})"
    )


def _saved_dir(folder: Path) -> bool:
    """Whether ``folder`` exists, as rank 0 sees it (every rank takes the same branch)."""
    return bool(distributed.broadcast_object(folder.exists()))


def _remove_if_unused(folder: Path, new_parents: Sequence[Path] = ()) -> None:
    """Remove a run folder this call created when nothing but its settings file is in it, and
    the parent folders it created for it (``new_parents``, nearest first) while they are empty.
    """
    files = [p for p in folder.rglob("*") if not p.is_dir()] if folder.is_dir() else []
    if all(p == folder / CONFIG_FILE for p in files):
        shutil.rmtree(folder, ignore_errors=True)
        for parent in new_parents:
            try:
                parent.rmdir()  # only when empty: another run may have started there meanwhile
            except OSError:
                break


def saved_progress(folder: str | os.PathLike[str]) -> str:
    """What a run folder holds, in words: which stages are saved whole or in part.

    What an interrupted ``crane-lens run`` reports (re-running the command continues from it).

    Example:
        >>> saved_progress("no/such/folder")
        'nothing'
    """
    folder = Path(folder)
    parts = []
    for sub, what in (("stats", "the statistics"), ("eval_stats", "the held-out statistics")):
        if (folder / sub / "stats.json").is_file():
            parts.append(what)
        elif any((folder / sub).glob("checkpoint*")):
            parts.append(f"part of {what} (checkpoint)")
    sets = sorted(p.stem for p in (folder / "neurons").glob("*.json"))
    if sets:
        parts.append(f"the neuron sets of {', '.join(sets)}")
    done = sorted(p.parent.name for p in (folder / "ablation").glob("*/matrix.json"))
    if done:
        parts.append(f"the ablation matrices of {', '.join(done)}")
    part = sorted(p.parent.name for p in (folder / "ablation").glob("*/ablation_checkpoint.json")
                  if not (p.parent / "matrix.json").is_file())  # fmt: skip
    if part:
        parts.append(f"part of the ablation matrices of {', '.join(part)} (checkpoint)")
    return "; ".join(parts) or "nothing"


def _stages(
    config: RunConfig, folder: Path, model: Any, train: Any, held_out: Any, progress: bool
) -> RunResult:
    """Stages 1-3 into ``folder`` (each skips what is saved there)."""
    from crane_lens.stats import compute_stats

    langs = config.langs
    log.info("stage 1/3: neuron statistics (%s)", ", ".join(config.stats_methods()))
    stats = compute_stats(
        model, train, config.stats_methods(), seq_len=config.seq_len,
        batch_size=config.batch_size, max_tokens_per_lang=config.max_tokens_per_lang,
        seed=config.seed, target=config.target,  # type: ignore[arg-type]
        parts=_keeps_parts(folder / "stats"),
        output_dir=folder / "stats", checkpoint_every=4, progress=progress,
    )  # fmt: skip
    eval_stats = compute_stats(  # relevance shares only: no stability, so no per-part sums
        model, held_out, ["crane"], seq_len=config.seq_len, batch_size=config.batch_size,
        max_tokens_per_lang=config.eval_tokens_per_lang, seed=config.seed,
        target=config.target,  # type: ignore[arg-type]
        parts=False, output_dir=folder / "eval_stats", progress=progress,
    )  # fmt: skip

    log.info("stage 2/3: selection (%s, budget %g)", ", ".join(config.methods), config.budget)
    neurons = {}
    for method in config.methods:
        path = folder / "neurons" / f"{method}.json"
        if _saved(path):
            neurons[method] = LanguageNeurons.load(path)
            continue
        # Every rank selects from the same statistics; rank 0 saves.
        top_rate = config.lape_top_rate if method == "lape" else None
        neurons[method] = select_language_neurons(stats, method, budget=config.budget,
                                                  top_rate=top_rate)  # fmt: skip
        _on_main(functools.partial(_save_neurons, neurons[method], path), f"to write {path}")
    if "lape" in neurons:
        log.info("LAPE: %s", lape_budget(config, neurons["lape"]))
    stability = _stability(config, folder, stats)

    log.info("stage 3/3: ablation matrices (%s, %d random seeds)", config.mode,
             config.random_seeds)  # fmt: skip
    matrices = {}
    for method, sets in neurons.items():
        target = folder / "ablation" / method
        if _saved(target / "matrix.json"):
            matrices[method] = AblationMatrix.load(target)
            continue
        values: Any = None
        if config.mode == "mean":
            values = intervention_values(stats, "mean")
        elif config.mode == "fixed":
            values = {lang: intervention_values(stats, "fixed", lang) for lang in langs}
        matrices[method] = ablation_matrix(
            model, held_out, sets, mode=config.mode, values=values,
            factor=config.factor or 0.0, langs=langs,
            random_seeds=config.random_seeds, seq_len=config.eval_seq_len,
            max_tokens_per_lang=config.eval_tokens_per_lang,
            max_batch_rows=config.eval_rows(),
            checkpoint_dir=target, progress=progress,
        )  # fmt: skip
        _on_main(functools.partial(_save_matrix, matrices[method], target), f"to write {target}")
    return RunResult(folder, config, stats, neurons, matrices, eval_stats, stability=stability)


def _keeps_parts(folder: Path) -> bool:
    """Whether statistics in ``folder`` keep per-part sums: yes for new ones; statistics begun
    (or finished) by a crane_lens without them continue without, and the run reports no
    stability instead of refusing the folder."""
    from crane_lens.stats.engine import CHECKPOINT_META

    for name in (META_FILE, CHECKPOINT_META):
        if (folder / name).is_file():
            saved = json.loads((folder / name).read_text(encoding="utf-8"))
            return bool(saved.get("config", {}).get("parts", False))
    return True


def _stability(config: RunConfig, folder: Path, stats: NeuronStats) -> SelectionStability | None:
    """The sets' stability (saved in ``folder/stability``; ``None`` without per-part sums)."""
    target = folder / STABILITY_DIR
    if _saved(target / STABILITY_FILE):
        return SelectionStability.load(target)
    if not stats.has_parts:
        log.info("no stability: these statistics have no per-part sums (an older crane_lens)")
        return None
    log.info("set stability: selecting on halves and on 1/16 … 1 of the text")
    stability = selection_stability(stats, config.methods, budget=config.budget,
                                    top_rate=config.lape_top_rate)  # fmt: skip
    _on_main(functools.partial(stability.save, target), f"to write {target}")
    return stability


def _write_tables(result: RunResult) -> None:
    tables = {"selectivity.csv": result.selectivity(), "jaccard.csv": result.jaccard()}
    if result.eval_stats is not None:
        tables["relevance_share.csv"] = result.relevance()
    for filename, table in tables.items():
        with atomic_path(result.folder / filename) as tmp:
            table.to_csv(tmp)
    write_text(result.folder / "summary.md", result.summary() + "\n")
