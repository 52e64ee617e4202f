"""The settings of one run, :class:`RunConfig`, and the checks of their values.

The values are checked on construction (cheap: no file, model or corpus);
:meth:`RunConfig.validate` adds the checks against this machine (:mod:`crane_lens.runs.checks`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from crane_lens.errors import CraneLensError, ModelLoadError
from crane_lens.evaluation.ablation import EVAL_BATCH_ROWS
from crane_lens.intervention.hooks import MODES, Mode
from crane_lens.runs.checks import check_langs, check_model_source
from crane_lens.stats.methods import METHODS

PAPER_LANGS = ["en", "zh", "vi"]


def check_known_settings(cls: type, values: dict[str, Any], what: str) -> set[str]:
    """The field names of dataclass ``cls``; refuses saved ``values`` that name others.

    Raises:
        CraneLensError: A setting this crane_lens does not know (a newer one saved it).
    """
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CraneLensError(
            f"The saved {what} settings name {', '.join(unknown)}, which this crane_lens does "
            f"not know: a newer crane_lens wrote them. Upgrade crane_lens to read this {what}."
        )
    return known


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
        known = check_known_settings(cls, values, "run")
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
        check_model_source(self.model)
        check_langs(self.langs, self.corpus)
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
