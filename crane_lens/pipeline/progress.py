"""What an interrupted run saved, in words (``crane-lens run`` reports it on Ctrl-C)."""

from __future__ import annotations

import os
from pathlib import Path


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
