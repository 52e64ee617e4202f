"""The main job: statistics → selection → evaluation, written to ``results/<run-name>/``.

``crane-lens run`` calls :func:`run`. Every stage saves its result as soon as it is done and
skips work already saved, so re-running the same command after an interruption continues where
it stopped (the statistics and the ablation matrices also checkpoint *within* their stage). A
folder that holds a run of other settings is never overwritten silently. The folder's layout:
:mod:`crane_lens.runs.layout`.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from crane_lens.errors import CraneLensError
from crane_lens.pipeline.folder import (
    check_folder,
    check_stats_source,
    continued_dtype,
    copy_stats,
    device_and_dtype,
    prepare_folder,
    remove_if_unused,
    started_in,
)
from crane_lens.pipeline.ranks import (
    all_ranks_agree,
    check_same_call,
    check_same_dtype,
    on_main,
    saved_dir,
    settings_of_rank0,
)
from crane_lens.pipeline.stages import run_stages
from crane_lens.runs.checks import check_enough_text, check_output
from crane_lens.runs.config import RunConfig
from crane_lens.runs.layout import write_config
from crane_lens.runs.result import RunResult
from crane_lens.utils import distributed
from crane_lens.utils.io import atomic_path, write_text

log = logging.getLogger(__name__)


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
    mine, main = settings_of_rank0(config, folder, overwrite, source)
    started = started_in(folder, overwrite)
    # Every check of the input runs on every rank, before rank 0 changes anything on disk.
    with all_ranks_agree("before the work started"):
        check_same_call(mine, main)
        config.validate()  # every setting, before any model or corpus work
        check_output(folder)
        check_folder(folder, config, overwrite)
        if source is not None:
            if folder.resolve() in (source.resolve(), *source.resolve().parents):
                # --overwrite would delete the statistics before they are copied.
                raise CraneLensError(
                    f"--stats-from {source} is the run folder this run writes ({folder}); give "
                    "the new run another --name (or --out) and keep the old one as the source."
                )
            check_stats_source(source, config)
        # Text (the cheaper load), then the model, before the folder exists: bad input leaves
        # no folder behind.
        langs = config.langs
        train = load_corpus(config.corpus, langs=langs, split="train")
        held_out = load_corpus(config.corpus, langs=langs, split="eval")
        check_enough_text(config, {"train": train, "eval": held_out})  # tokenizer only
        dtype, why = continued_dtype(config, started)
        model = load_model(config.model, device=config.device, dtype=dtype)
    resolved = device_and_dtype(model) | ({"dtype_choice": why} if why else {})
    check_same_dtype(resolved.get("dtype"))

    created = overwrite or not saved_dir(folder)
    new_parents = [p for p in folder.absolute().parents if not p.exists()]  # mkdir makes them

    def prepare() -> None:
        prepare_folder(folder, config, overwrite, resolved)
        if source is not None:
            copy_stats(source, folder)

    on_main(prepare, f"to prepare {folder}")  # the other ranks wait for it
    try:
        result = run_stages(config, folder, model, train, held_out, progress)
        result.resolved = resolved
    except BaseException:
        if created and distributed.is_main():
            remove_if_unused(folder, new_parents)  # one with any result or checkpoint stays
        raise
    on_main(functools.partial(_finish, result), f"to write the tables of {folder}")
    return result


def _finish(result: RunResult) -> None:
    _write_tables(result)
    write_config(result.folder, result.config, complete=True, resolved=result.resolved)
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


def _write_tables(result: RunResult) -> None:
    tables = {"selectivity.csv": result.selectivity(), "jaccard.csv": result.jaccard()}
    if result.eval_stats is not None:
        tables["relevance_share.csv"] = result.relevance()
    for filename, table in tables.items():
        with atomic_path(result.folder / filename) as tmp:
            table.to_csv(tmp)
    write_text(result.folder / "summary.md", result.summary() + "\n")
