"""Reproduction as one command: every measurement of the paper for one model, resumable.

``crane-lens study --model NAME --preset paper|full`` (or :func:`study`) runs the statistics of
every method, the ablation matrices with random control sets and intervals, the budget sweep,
zero- vs mean-ablation, the LRP variants, exact single-neuron causality, benchmarks under masking,
CRANE's sets selected against three languages or all, and (with a chat model) base → chat
transfer, each stage saved in its own folder as soon as it is done; ``--write-docs PAGE`` fills
a results page from whatever is finished (:func:`~crane_lens.study.page.write_page`), and
:func:`~crane_lens.study.figures.study_figures` draws the same figures in a notebook.
"""

import sys
import types
from typing import Any

from crane_lens.study.config import PRESETS, STAGES, StudyConfig
from crane_lens.study.figures import study_figures
from crane_lens.study.page import write_page
from crane_lens.study.run import StudyResult, default_folder, study

__all__ = ["PRESETS", "STAGES", "StudyConfig", "StudyResult", "default_folder", "study",
           "study_figures", "write_page"]  # fmt: skip


class _CallableModule(types.ModuleType):
    """``crane_lens.study`` is this package and ``cl.study(...)`` the function: importing a
    submodule sets the package as ``crane_lens.study``, over the function, so calling the
    package calls :func:`study`."""

    def __call__(self, *args: Any, **kwargs: Any) -> StudyResult:
        return study(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
