"""A run's settings, results and folder: what :func:`crane_lens.pipeline.run` writes and the
report and figures read back.

It sits below ``plots``, ``report`` and ``pipeline`` (imports run pipeline → report → plots →
runs), so each of them can use these types without importing the one above it.

* :class:`RunConfig` (``config``) — the settings of a run, their values checked on construction;
  :mod:`~crane_lens.runs.checks` checks them against this machine (model, corpus, output).
* :class:`RunResult` (``result``) — everything a run produced, read back by
  :meth:`RunResult.load`; :func:`lape_budget` says which budget its LAPE selection used.
* ``layout`` — the run folder's files (:data:`CONFIG_FILE`, :data:`STABILITY_DIR`, ...).

``crane_lens.pipeline`` re-exports all of them.
"""

from crane_lens.runs.checks import (
    check_enough_text,
    check_langs,
    check_model_source,
    check_output,
    corpus_langs,
)
from crane_lens.runs.config import PAPER_LANGS, RunConfig
from crane_lens.runs.layout import CONFIG_FILE, STABILITY_DIR, read_config, write_config
from crane_lens.runs.result import RunResult, lape_budget

__all__ = [
    "CONFIG_FILE",
    "PAPER_LANGS",
    "STABILITY_DIR",
    "RunConfig",
    "RunResult",
    "check_enough_text",
    "check_langs",
    "check_model_source",
    "check_output",
    "corpus_langs",
    "lape_budget",
    "read_config",
    "write_config",
]
