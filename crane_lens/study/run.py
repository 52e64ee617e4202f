"""``study``: the paper's measurements for one model, resumable, into one folder."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crane_lens.errors import CraneLensError, OutputExistsError
from crane_lens.study.config import CONFIG_FILE, STAGES, StudyConfig
from crane_lens.study.stages import STATISTICS, NotFinished, Study
from crane_lens.utils.io import write_json

log = logging.getLogger(__name__)

# What a study folder holds; any other entry means the folder is not a study's.
_ENTRIES = {CONFIG_FILE, "neurons", "matrices", "stability", "causality.json", "steering",
            "benchmarks.json", "stats_chat", *(s.folder for s in STATISTICS.values())}  # fmt: skip


def default_folder(config: StudyConfig) -> Path:
    """``$CRANE_LENS_HOME/studies/<model>-<preset>``: outside any work tree, so that a later
    session on the same machine continues it."""
    from crane_lens.model.installable import crane_lens_home

    return crane_lens_home() / "studies" / f"{Path(config.model).name}-{config.preset}"


@dataclass
class StudyResult:
    """What a study has finished (a stage still running elsewhere is missing or partial).

    Attributes:
        folder: The study folder.
        config: Its settings.
        langs: The languages studied.
        parts: Stage name -> its result: ``stats`` (statistics key -> NeuronStats),
            ``matrices`` (variant label -> AblationMatrix), ``sweep`` (budget -> label ->
            matrix), ``mean`` (label -> mean-ablation matrix), ``stability``
            (SelectionStability), ``causality``, ``benchmarks``, ``transfer`` (dicts).
        missing: Stages that are not finished.
    """

    folder: Path
    config: StudyConfig
    langs: list[str]
    parts: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    study: Study | None = field(default=None, repr=False)

    @property
    def matrices(self) -> dict[str, Any]:
        return dict(self.parts.get("matrices", {}))

    def neurons(self, label: str = "crane", budget: float | None = None) -> Any:
        """A variant's sets (:data:`~crane_lens.study.stages.VARIANTS`) at ``budget``."""
        assert self.study is not None
        return self.study.neurons(label, budget)

    def stats(self, key: str = "main") -> Any:
        assert self.study is not None
        return self.study.stats(key)

    def summary(self) -> Any:
        """One row per measured variant: set size, own / others ΔNLL and index with their 95 %
        intervals, random sets and the p-value (:meth:`AblationMatrix.summary`)."""
        import pandas as pd

        rows = {}
        for label, matrix in self.matrices.items():
            sel = matrix.selectivity()
            rows[label] = matrix.summary() | {
                "p_max": float(sel["p_value"].max()) if "p_value" in sel else float("nan")
            }
        return pd.DataFrame(rows).T

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> StudyResult:
        """Read what the study in ``folder`` has finished, computing nothing expensive."""
        path = Path(folder)
        # Every stage, not only those the last command ran: the page shows all that is done.
        read = Study(StudyConfig.load(path), path, compute=False, progress=False)
        return _collect(read, list(STAGES))


def _collect(study: Study, stages: list[str] | None = None) -> StudyResult:
    """Run (or, read-only, read) ``stages`` of ``study``; unfinished ones are ``missing``."""
    result = StudyResult(study.folder, study.config, study.langs, study=study)
    calls = {"stats": study.statistics, "matrices": study.matrices, "sweep": study.sweep,
             "mean": study.mean_ablation, "pool": study.pool, "causality": study.causality,
             "benchmarks": study.benchmarks, "steering": study.steering,
             "transfer": study.transfer}  # fmt: skip
    for stage in stages if stages is not None else study.config.stages:
        start = time.perf_counter()
        try:
            result.parts[stage] = calls[stage]()
            if stage == "stats" and (stability := study.stability()) is not None:
                result.parts["stability"] = stability
        except NotFinished as missing:
            log.debug("not finished: %s", missing)
            result.missing.append(stage)
            continue
        if stage in study.incomplete:  # read-only: some of its matrices are not finished
            result.missing.append(stage)
            continue
        if study.compute:
            log.info("stage %s done (%.0f s in this process)", stage, time.perf_counter() - start)
    return result


def _check_folder(folder: Path, config: StudyConfig) -> None:
    """Refuse a folder of another study, or one that holds something else."""
    saved = folder / CONFIG_FILE
    if saved.is_file():
        old = StudyConfig.load(folder).comparable()
        differ = sorted(k for k, v in config.comparable().items() if old.get(k) != v)
        if differ:
            raise OutputExistsError(
                f"{folder} holds a study with other settings ({', '.join(differ)} differ). "
                "Choose another --out, or delete that folder to start over."
            )
        log.info("continuing the study in %s", folder)
    elif folder.exists() and not set(os.listdir(folder)) <= _ENTRIES:
        raise OutputExistsError(f"{folder} exists and is not a study folder; choose another --out.")


def study(
    config: StudyConfig, out: str | os.PathLike[str] | None = None, *, progress: bool = True
) -> StudyResult:
    """Measure everything the paper measures for one model, into one resumable folder.

    Stages (``config.stages``), each saved as soon as it is done, re-runs skipping finished
    work: ``stats`` (all methods' statistics in one pass on the training text, then CRANE with
    the log-probability target and with lxt's full CP-LRP; the stability of every method's
    sets from the per-part sums), ``matrices`` (every variant's ablation matrix at the main
    budget, CRANE and both LAPE budgets with random control sets), ``sweep`` (CRANE and LAPE
    at the other budgets), ``mean`` (mean- instead of zero-ablation), ``causality`` (exact
    single-neuron ablations against every score), ``benchmarks`` (multiple-choice accuracy and
    the language of greedy continuations under masking), ``steering`` (prompts steered into
    each other language with CRANE's, LAPE's and Kojima's sets), ``pool`` (CRANE's sets of the
    paper's languages selected against those only, against all), ``transfer`` (the base model's sets in
    ``chat_model``). Every setting is checked before any model is loaded.

    Args:
        config: The settings.
        out: The study folder (default :func:`default_folder`).
        progress: Show progress bars.

    Returns:
        A :class:`StudyResult` of every stage run.

    Raises:
        ValueError: A setting out of range.
        CraneLensError: A model, language or dtype this machine lacks, or too little text.
        OutputExistsError: ``out`` holds a study of other settings, or something else.

    Example:
        >>> import crane_lens as cl, tempfile
        >>> config = cl.StudyConfig(model="crane-tiny", max_tokens_per_lang=512,
        ...     eval_tokens_per_lang=320, eval_seq_len=64, random_seeds=2, sweep=[0.03],
        ...     causal_neurons=4, mc_items=4, stages=["stats", "matrices"])
        >>> result = cl.study(config, tempfile.mkdtemp(), progress=False)
        >>> sorted(result.matrices)[:3]
        ['attribution', 'attribution (specificity)', 'crane']
    """
    folder = Path(out) if out is not None else default_folder(config)
    from crane_lens.data import load_corpus
    from crane_lens.runs import check_enough_text, check_model_source, corpus_langs

    langs = config.study_langs(corpus_langs("builtin") or [])
    as_run = config.run_config(langs)
    as_run.validate()  # the values, the model, the languages, dtype and device: run's checks
    if config.chat_model is not None:
        check_model_source(config.chat_model)
    splits = {
        split: load_corpus("builtin", split=split, langs=langs) for split in ("train", "eval")
    }
    check_enough_text(as_run, splits)  # tokenizer only
    if "benchmarks" in config.stages and config.mc_origins:  # a typo would surface hours later
        from crane_lens.evaluation.multiple_choice import builtin_multiple_choice

        benchmark_langs = [x for x in ("en", "zh", "vi") if x in langs] or langs[:3]
        try:
            builtin_multiple_choice(benchmark_langs, origins=config.mc_origins,
                                    max_items_per_lang=1)  # fmt: skip
        except CraneLensError as exc:
            raise CraneLensError(
                f"--mc-origins {','.join(config.mc_origins)}: no multiple-choice items ({exc}). "
                "Check the origin names (docs/data.md lists them) or drop the option."
            ) from exc
    _check_folder(folder, config)
    # The folder records every set measured so far (its page shows them all); this command
    # measures the sets it asks for.
    recorded = (
        config.with_sets_of(StudyConfig.load(folder))
        if (folder / CONFIG_FILE).is_file()
        else config
    )

    new = not folder.exists() or not any(folder.iterdir())
    folder.mkdir(parents=True, exist_ok=True)
    from crane_lens.stats.engine import _versions

    saved = folder / CONFIG_FILE
    # The dtype the study computes in stays (Study.model records it on the first load).
    kept = {k: v for k, v in (json.loads(saved.read_text("utf-8")) if saved.is_file() else {}).items()
            if k == "dtype"}  # fmt: skip
    write_json(saved, {"config": recorded.to_dict(), "versions": _versions()} | kept)
    try:
        result = _collect(Study(config, folder, progress=progress))
    except BaseException:
        if new and set(os.listdir(folder)) <= {CONFIG_FILE}:  # nothing computed: leave no trace
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if result.missing:  # only read-only studies leave stages missing
        raise CraneLensError(f"stages not finished: {', '.join(result.missing)}")
    return result


__all__ = ["STAGES", "StudyConfig", "StudyResult", "default_folder", "study"]
