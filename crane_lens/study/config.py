"""What a study measures: the preset, the sizes, and the checks that run before any model work."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from crane_lens.errors import CraneLensError

Preset = Literal["paper", "full"]
PRESETS: dict[str, str] = {
    "paper": "English, Chinese and Vietnamese, the paper's languages, with its comparisons",
    "full": "every language of the corpus (17 in the built-in one), the same comparisons",
}
PAPER_LANGS = ["en", "zh", "vi"]
# One statistics pass computes all of them (one forward, one LRP and one ordinary backward).
STATS_METHODS = ["crane", "attribution", "grad_act", "lape", "kojima", "plnd"]
# The stages in the order they run: the paper's comparison first, then the cheaper checks, then
# the costly sweep (on a real LLM on CPUs each matrix costs about an hour), then CRANE's sets
# selected against the paper's three languages only.
STAGES = ["stats", "matrices", "causality", "benchmarks", "steering", "mean", "sweep", "pool",
          "transfer"]  # fmt: skip
# Whose sets the steering stage steers with: the paper's method, LAPE and Kojima et al.'s units
# (whose own recipe is steering), each against random sets of the same sizes.
STEER_METHODS = ["crane", "lape", "kojima"]
CONFIG_FILE = "study.json"


@dataclass
class StudyConfig:
    """Settings of one study (every field is a ``crane-lens study`` option).

    Attributes:
        model: Built-in name, installed name, local folder or hub id.
        preset: ``"paper"`` (en, zh, vi) or ``"full"`` (every language of the corpus).
        langs: Languages instead of the preset's.
        budget: Main budget: neurons per language, as a fraction of all MLP neurons.
        sweep: Further budgets of the budget sweep (CRANE and LAPE, no random sets).
        max_tokens_per_lang: Training tokens per language for the statistics.
        eval_tokens_per_lang: Held-out tokens per language for every ablation matrix.
        seq_len: Block length of the statistics.
        eval_seq_len: Held-out block length: the unit the intervals resample
            (``eval_tokens_per_lang / eval_seq_len`` blocks per language, at least 8 advised).
        batch_size: Blocks per statistics pass.
        eval_batch_size: Rows per ablation pass (a memory and speed knob only).
        random_seeds: Random control sets per language for CRANE and LAPE (the p-values).
        random_langs: Where random sets are evaluated: ``"all"`` languages or their ``"own"``
            (all the p-values need; ``None``: ``"all"`` for the paper preset, ``"own"`` for
            the full one, where ``"all"`` costs 4.5× as much with 17 languages).
        causal_layers: Layers whose sampled neurons are ablated one at a time (``None``: the
            first, middle and last layer).
        causal_neurons: Neurons sampled per causal layer.
        mc_items: Multiple-choice items per language (en, zh, vi).
        mc_origins: Corpus origins of the multiple-choice items (``None``: all).
        steer_strengths: Strengths ``s`` of the steering stage (``replace`` mode:
            ``h' = (1 − s)·h + s·v``, ``v`` the target's mean activation — Kojima's median for
            Kojima's sets; 1 fixes the set to ``v``, larger values push past it).
        steer_prompts: Held-out prompts per language of the steering stage.
        steer_random_seeds: Random control sets per target of the steering stage (a success
            rate against random sets needs fewer than a p-value against them).
        chat_model: A fine-tuned version of ``model``: the transfer stage masks the base
            model's sets in it (``None``: no transfer stage).
        dtype: Compute dtype (``"auto"``: :func:`crane_lens.load_model`'s choice).
        device: Device (default: CUDA if available, else CPU).
        stages: Stages to run, of :data:`STAGES` (the statistics always).
        sets: The sets whose matrices the study measures, by label
            (:data:`~crane_lens.study.stages.VARIANTS`; ``None``: all). CRANE and LAPE are always
            measured (the sweep, benchmarks and transfer use them); fewer sets, a shorter study.
            A study folder measures the union of every command's sets: a later ``--sets``
            adds matrices to a study and recomputes none.
    """

    model: str = "crane-tiny"
    preset: Preset = "paper"
    langs: list[str] | None = None
    budget: float = 0.01
    sweep: list[float] = field(default_factory=lambda: [0.003, 0.03])
    max_tokens_per_lang: int = 8192
    eval_tokens_per_lang: int = 2048
    seq_len: int = 128
    eval_seq_len: int = 128
    batch_size: int = 8
    eval_batch_size: int = 8
    random_seeds: int = 5
    random_langs: Literal["all", "own"] | None = None
    causal_layers: list[int] | None = None
    causal_neurons: int = 64
    mc_items: int = 60
    mc_origins: list[str] | None = None
    steer_strengths: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])
    steer_prompts: int = 16
    steer_random_seeds: int = 2
    chat_model: str | None = None
    dtype: str = "auto"
    device: str | None = None
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    sets: list[str] | None = None

    def __post_init__(self) -> None:
        if self.sets is not None:
            from crane_lens.study.stages import VARIANTS

            unknown = sorted(set(self.sets) - set(VARIANTS))
            if unknown:
                raise ValueError(f"Unknown sets {unknown}; choose from {', '.join(VARIANTS)}.")
            chosen = {"crane", "lape", *self.sets}  # one order: a study folder compares lists
            self.sets = [label for label in VARIANTS if label in chosen]
        self.sweep = sorted(set(self.sweep))
        self.steer_strengths = sorted({float(x) for x in self.steer_strengths})
        if not self.steer_strengths or min(self.steer_strengths) <= 0:
            raise ValueError(f"steer_strengths must be > 0, not {self.steer_strengths}.")
        if self.preset not in PRESETS:
            raise ValueError(f"preset={self.preset!r}: choose one of {', '.join(PRESETS)}.")
        unknown = sorted(set(self.stages) - set(STAGES))
        if unknown:
            raise ValueError(f"Unknown stages {unknown}; choose from {', '.join(STAGES)}.")
        if self.random_langs not in (None, "all", "own"):
            raise ValueError(f"random_langs={self.random_langs!r}: choose 'all' or 'own'.")
        for name in ("budget", *[f"sweep[{i}]" for i in range(len(self.sweep))]):
            value = self.budget if name == "budget" else self.sweep[int(name[6:-1])]
            if not (isinstance(value, float | int) and 0 < value < 1 and math.isfinite(value)):
                raise ValueError(f"{name} = {value!r}: a fraction of all MLP neurons, in (0, 1).")
        for name in ("max_tokens_per_lang", "eval_tokens_per_lang", "seq_len", "eval_seq_len",
                     "batch_size", "eval_batch_size", "causal_neurons", "mc_items",
                     "steer_prompts"):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)!r}.")
        if self.steer_random_seeds < 0:
            raise ValueError(f"steer_random_seeds must be ≥ 0, not {self.steer_random_seeds}.")
        if self.random_seeds < 1:
            raise ValueError("random_seeds must be at least 1: the p-values need random sets.")

    # -- derived ----------------------------------------------------------------------------
    def study_langs(self, corpus_langs: list[str]) -> list[str]:
        """The languages studied: ``langs``, else the preset's, of those the corpus has."""
        if self.langs:
            return list(self.langs)
        return list(PAPER_LANGS) if self.preset == "paper" else list(corpus_langs)

    def random_scope(self) -> Literal["all", "own"]:
        if self.random_langs is not None:
            return self.random_langs
        return "all" if self.preset == "paper" else "own"

    def run_config(self, langs: list[str]) -> Any:
        """The same settings as a :class:`~crane_lens.pipeline.RunConfig`: its value and machine
        checks are the study's too (one set of checks for ``run`` and ``study``)."""
        from crane_lens.runs import RunConfig

        return RunConfig(
            model=self.model, langs=langs, methods=["crane", "lape"], budget=self.budget,
            max_tokens_per_lang=self.max_tokens_per_lang,
            eval_tokens_per_lang=self.eval_tokens_per_lang, seq_len=self.seq_len,
            eval_seq_len=self.eval_seq_len, batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size, random_seeds=self.random_seeds,
            dtype=self.dtype, device=self.device,
        )  # fmt: skip

    def comparable(self) -> dict[str, Any]:
        """The settings that determine the results (what to run — stages and sets —, device
        and batch sizes aside)."""
        skip = ("stages", "sets", "device", "eval_batch_size")
        return {k: v for k, v in asdict(self).items() if k not in skip}

    def with_sets_of(self, saved: StudyConfig) -> StudyConfig:
        """These settings with the sets of ``saved`` added: what a study folder records, the
        union of every command's sets (``None``: all of them), so a later ``--sets`` extends
        it (each command measures only the sets it asks for)."""
        if self.sets is None or saved.sets is None:
            return replace(self, sets=None)
        return replace(self, sets=[*saved.sets, *self.sets])  # ordered and deduplicated

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StudyConfig:
        from crane_lens.runs.config import check_known_settings

        check_known_settings(cls, values, "study")
        return cls(**values)

    @classmethod
    def load(cls, folder: str | Path) -> StudyConfig:
        path = Path(folder) / CONFIG_FILE
        if not path.is_file():
            raise CraneLensError(f"{folder} holds no study ({CONFIG_FILE}).")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8"))["config"])
