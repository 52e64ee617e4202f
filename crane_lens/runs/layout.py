"""The layout of a run folder, ``results/<run-name>/``, and its settings file.

:func:`crane_lens.pipeline.run` writes it; :meth:`~crane_lens.runs.RunResult.load`, the report
and the figure export read it::

    run_config.json          settings, package versions, and which stages are complete
    stats/                   NeuronStats of the training split (stats.safetensors + stats.json)
    eval_stats/              CRANE relevance on the held-out split (for the relevance metric)
    neurons/<method>.json    LanguageNeurons (+ <method>.lape.pt, LAPE's torch format)
    stability/               SelectionStability of every method's sets
    steering/<method>-<mode>/  SteeringMatrix of ``crane-lens steer`` (steering.json)
    contexts/                top contexts of ``crane-lens neurons`` (NeuronStats), when the
                             statistics kept none
    neuron_pages/            ``crane-lens neurons``: index.html and one card per neuron
    ablation/<method>/       AblationMatrix: matrix.json, delta.csv, relative.csv, ...
    selectivity.csv          every method's selectivity table, one row per (method, language)
    relevance_share.csv      relevance-based metric per (method, language)
    jaccard.csv              overlap of the methods' sets, per language
    summary.md               what ``crane-lens run`` prints
    report.html              the self-contained HTML report (``crane-lens report``), written last
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crane_lens.utils import distributed
from crane_lens.utils.io import write_json

if TYPE_CHECKING:
    from crane_lens.runs.config import RunConfig

CONFIG_FILE = "run_config.json"
STABILITY_DIR = "stability"
STEERING_DIR = "steering"
NEURON_PAGES_DIR = "neuron_pages"


def read_config(folder: Path) -> dict[str, Any] | None:
    """The settings file of ``folder`` as saved (``None`` where there is none)."""
    path = folder / CONFIG_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_config(
    folder: Path, config: RunConfig, complete: bool, resolved: dict[str, str] | None = None
) -> None:
    """Write the settings file: ``config``, whether every stage is ``complete``, the package
    versions, and what the run computes on (``resolved``: device, dtype and why)."""
    from crane_lens.stats.engine import _versions

    data = {"config": asdict(config), "complete": complete, "versions": _versions()}
    if resolved:
        data["resolved"] = resolved
    write_json(folder / CONFIG_FILE, data)


def saved(path: Path) -> bool:
    """Whether ``path`` exists, as rank 0 (its writer) sees it: every rank takes the same
    branch, even while rank 0 writes the file (a collective call in a process group)."""
    return bool(distributed.broadcast_object(path.is_file()))
