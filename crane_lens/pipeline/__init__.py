"""The main job: statistics → selection → evaluation, written to ``results/<run-name>/``.

``crane-lens run`` calls :func:`run`. Every stage saves its result as soon as it is done and
skips work already saved, so re-running the same command after an interruption continues where
it stopped (the statistics and the ablation matrices also checkpoint *within* their stage). A
folder that holds a run of other settings is never overwritten silently.

Under ``torchrun`` (or inside any initialised ``torch.distributed`` group) every process runs
:func:`run` with the same settings: the statistics and the ablation matrices are shared out
between the ranks, every rank ends with the same result, and rank 0 alone writes the folder
(docs/scale.md).

One job per module:

* ``job`` — :func:`run`: check, load, prepare the folder, run the stages, write the tables.
* ``stages`` — the three stages (statistics, selection, ablation matrices), each resumable.
* ``folder`` — the run folder: continue, refuse, replace, reuse another run's statistics.
* ``ranks`` — data parallelism: rank 0 writes, an error on any rank ends every rank.
* ``progress`` — :func:`saved_progress`, what an interrupted run saved.
* ``steer`` — :func:`steer_run` (``crane-lens steer``): steering with a finished run's sets.
* ``neuron_pages`` — :func:`neuron_pages` (``crane-lens neurons``): a page per selected neuron.

The settings, the result and the folder's layout live one layer down, in :mod:`crane_lens.runs`
(the report and the figures read them without importing the pipeline); they are re-exported
here: :class:`RunConfig`, :class:`RunResult`, :func:`lape_budget`, the checks against this
machine (:func:`check_model_source`, :func:`check_langs`, :func:`corpus_langs`,
:func:`check_enough_text`, :func:`check_output`) and the folder's file names.
"""

from crane_lens.pipeline.folder import STATS_SETTINGS
from crane_lens.pipeline.job import run
from crane_lens.pipeline.neuron_pages import neuron_pages
from crane_lens.pipeline.progress import saved_progress
from crane_lens.pipeline.steer import steer_run, steering_folder
from crane_lens.runs import (
    CONFIG_FILE,
    PAPER_LANGS,
    STABILITY_DIR,
    RunConfig,
    RunResult,
    check_enough_text,
    check_langs,
    check_model_source,
    check_output,
    corpus_langs,
    lape_budget,
)

__all__ = [
    "CONFIG_FILE",
    "PAPER_LANGS",
    "STABILITY_DIR",
    "STATS_SETTINGS",
    "RunConfig",
    "RunResult",
    "check_enough_text",
    "check_langs",
    "check_model_source",
    "check_output",
    "corpus_langs",
    "lape_budget",
    "neuron_pages",
    "run",
    "saved_progress",
    "steer_run",
    "steering_folder",
]
