"""The three stages of a run, each saved into the run folder as soon as it is done and skipped
when it is already there: 1. neuron statistics, 2. selection (and the sets' stability),
3. ablation matrices. The statistics and the matrices also checkpoint within their stage.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

from crane_lens.evaluation.ablation import AblationMatrix, ablation_matrix
from crane_lens.intervention.hooks import intervention_values
from crane_lens.pipeline.ranks import on_main
from crane_lens.runs.config import RunConfig
from crane_lens.runs.layout import STABILITY_DIR, saved
from crane_lens.runs.result import RunResult, lape_budget
from crane_lens.selection.neurons import LanguageNeurons
from crane_lens.selection.select import select_language_neurons
from crane_lens.selection.stability import STABILITY_FILE, SelectionStability, selection_stability
from crane_lens.stats.results import META_FILE, NeuronStats

log = logging.getLogger(__name__)


def run_stages(
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
        if saved(path):
            neurons[method] = LanguageNeurons.load(path)
            continue
        # Every rank selects from the same statistics; rank 0 saves.
        top_rate = config.lape_top_rate if method == "lape" else None
        neurons[method] = select_language_neurons(stats, method, budget=config.budget,
                                                  top_rate=top_rate)  # fmt: skip
        on_main(functools.partial(_save_neurons, neurons[method], path), f"to write {path}")
    if "lape" in neurons:
        log.info("LAPE: %s", lape_budget(config, neurons["lape"]))
    stability = _stability(config, folder, stats)

    log.info("stage 3/3: ablation matrices (%s, %d random seeds)", config.mode,
             config.random_seeds)  # fmt: skip
    matrices = {}
    for method, sets in neurons.items():
        target = folder / "ablation" / method
        if saved(target / "matrix.json"):
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
        on_main(functools.partial(_save_matrix, matrices[method], target), f"to write {target}")
    return RunResult(folder, config, stats, neurons, matrices, eval_stats, stability=stability)


def _keeps_parts(folder: Path) -> bool:
    """Whether statistics in ``folder`` keep per-part sums: yes for new ones; statistics begun
    (or finished) by a crane_lens without them continue without, and the run reports no
    stability instead of refusing the folder."""
    from crane_lens.stats.engine import CHECKPOINT_META

    for name in (META_FILE, CHECKPOINT_META):
        if (folder / name).is_file():
            meta = json.loads((folder / name).read_text(encoding="utf-8"))
            return bool(meta.get("config", {}).get("parts", False))
    return True


def _stability(config: RunConfig, folder: Path, stats: NeuronStats) -> SelectionStability | None:
    """The sets' stability (saved in ``folder/stability``; ``None`` without per-part sums)."""
    target = folder / STABILITY_DIR
    if saved(target / STABILITY_FILE):
        return SelectionStability.load(target)
    if not stats.has_parts:
        log.info("no stability: these statistics have no per-part sums (an older crane_lens)")
        return None
    log.info("set stability: selecting on halves and on 1/16 … 1 of the text")
    stability = selection_stability(stats, config.methods, budget=config.budget,
                                    top_rate=config.lape_top_rate)  # fmt: skip
    on_main(functools.partial(stability.save, target), f"to write {target}")
    return stability


def _save_neurons(neurons: LanguageNeurons, path: Path) -> None:
    neurons.to_lape(path.with_suffix(".lape.pt"))
    neurons.save(path)


def _save_matrix(matrix: AblationMatrix, target: Path) -> None:
    matrix.save(target)
    (target / "ablation_checkpoint.json").unlink(missing_ok=True)
