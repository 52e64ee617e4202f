"""The run folder a report or figure export reads: checked before any work, with errors that say
what to do."""

from __future__ import annotations

import json
import os
from pathlib import Path

from crane_lens.errors import CraneLensError
from crane_lens.runs.layout import CONFIG_FILE


def check_run_folder(folder: str | os.PathLike[str]) -> Path:
    """Refuse a folder that holds no finished ``crane-lens run`` (reads one small JSON file).

    Args:
        folder: What the user passed, e.g. ``results/crane-tiny_en-zh-vi_1pct_zero``.

    Returns:
        The folder as a path.

    Raises:
        CraneLensError: It does not exist, is not a run folder, or holds an unfinished run.

    Example:
        >>> import tempfile
        >>> check_run_folder(tempfile.mkdtemp())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        crane_lens.errors.CraneLensError: ... is not a crane-lens run folder (no run_config.json)...
    """
    path = Path(folder)
    hint = "pass the folder `crane-lens run` wrote, e.g. results/<run-name>/"
    if not path.is_dir():
        raise CraneLensError(f"{path} is not a folder; {hint}.")
    config = path / CONFIG_FILE
    if not config.is_file():
        raise CraneLensError(f"{path} is not a crane-lens run folder (no {CONFIG_FILE}); {hint}.")
    try:
        complete = bool(json.loads(config.read_text(encoding="utf-8")).get("complete"))
    except (ValueError, AttributeError) as exc:
        raise CraneLensError(f"{config} is not readable JSON ({exc}); {hint}.") from None
    if not complete:
        raise CraneLensError(
            f"{path} holds an unfinished crane-lens run. Re-run the `crane-lens run` command that "
            "made it: it continues where it stopped and writes report.html at its end."
        )
    return path
