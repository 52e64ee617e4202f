"""The run folder a run writes: continue it (in the dtype it started in), refuse one of other
settings, replace it (``--overwrite``), reuse another run's statistics (``--stats-from``), and
remove it again when a run fails before it saved anything. Its files:
:mod:`crane_lens.runs.layout`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crane_lens.errors import CraneLensError, OutputExistsError
from crane_lens.runs.config import RunConfig
from crane_lens.runs.layout import CONFIG_FILE, read_config, write_config
from crane_lens.utils import distributed

log = logging.getLogger(__name__)


def device_and_dtype(model: Any) -> dict[str, str]:
    """What a run computes on, for its settings file and report: device and dtype, and why."""
    from crane_lens.model import dtype_choice, get_spec
    from crane_lens.model.dtype import dtype_name

    choice = dtype_choice(model)
    return {"device": get_spec(model).device, "dtype": dtype_name(choice.dtype),
            "dtype_choice": choice.describe()}  # fmt: skip


def started_in(folder: Path, overwrite: bool) -> dict[str, Any]:
    """What the run in ``folder`` recorded that it computes on (device, dtype, why), as rank 0
    reads it; ``{}`` for a new, replaced or unreadable folder (:func:`check_folder` says what is
    wrong with an unreadable one). A collective call: before the checks, never inside them."""
    started: dict[str, Any] = {}
    if not overwrite and distributed.is_main():
        with contextlib.suppress(Exception):  # refused with its reason by check_folder
            started = dict((read_config(folder) or {}).get("resolved") or {})
    return distributed.broadcast_object(started)  # rank 0's folder decides


def continued_dtype(config: RunConfig, started: dict[str, Any]) -> tuple[str, str | None]:
    """The dtype to load, and the reason recorded when the run started: a run continued with
    ``"auto"`` keeps the dtype it started in (``started``, from :func:`started_in`; its
    statistics refuse to mix dtypes), even on another machine; otherwise
    ``(config.dtype, None)``."""
    if config.dtype != "auto" or not started.get("dtype"):
        return config.dtype, None
    log.info("continuing in %s, the dtype this run started in (--dtype auto)", started["dtype"])
    return str(started["dtype"]), started.get("dtype_choice")


def check_folder(folder: Path, config: RunConfig, overwrite: bool) -> None:
    """Refuse a folder of another run (read-only: before the model is loaded)."""
    if overwrite:
        return
    saved = read_config(folder)
    if saved is not None:
        old = RunConfig.from_saved(saved["config"]).comparable()
        diff = sorted(k for k, v in config.comparable().items() if old.get(k) != v)
        if diff:
            hint = f" (that run's: --dtype {old['dtype']})" if diff == ["dtype"] else ""
            raise OutputExistsError(
                f"{folder} holds a run with other settings ({', '.join(diff)} differ{hint}). "
                "Choose another --name/--out, or pass --overwrite to replace it."
            )
        log.info("continuing the run in %s", folder)
    elif folder.exists() and any(folder.iterdir()):
        raise OutputExistsError(
            f"{folder} exists and is not a crane-lens run folder; choose another --name/--out."
        )


# The settings that determine stage 1 (statistics); a run may reuse another's stage 1 when these
# and the statistics methods are equal.
STATS_SETTINGS = ("model", "langs", "corpus", "max_tokens_per_lang", "eval_tokens_per_lang",
                  "seq_len", "batch_size", "seed", "target", "dtype")  # fmt: skip


def check_stats_source(source: Path, config: RunConfig) -> None:
    """Refuse ``--stats-from`` a folder whose statistics this run would not compute alike."""
    meta = read_config(source)
    finished = all((source / sub / "stats.json").is_file() for sub in ("stats", "eval_stats"))
    if meta is None or not finished:
        raise CraneLensError(
            f"{source} holds no finished statistics of a crane-lens run (stats/ and eval_stats/); "
            "pass the folder of a run whose first stage completed."
        )
    old = RunConfig.from_saved(meta["config"])
    diff = [k for k in STATS_SETTINGS if getattr(old, k) != getattr(config, k)]
    if old.stats_methods() != config.stats_methods():
        diff.append(f"methods ({','.join(old.methods)} there)")
    if diff:
        raise CraneLensError(
            f"The statistics in {source} were computed with other settings ({', '.join(diff)} "
            "differ); reuse needs the same ones. Match them, or drop --stats-from to compute "
            "new statistics."
        )


def copy_stats(source: Path, folder: Path) -> None:
    for sub in ("stats", "eval_stats"):
        if (folder / sub / "stats.json").is_file():
            continue
        tmp = folder / f"{sub}.copying"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(folder / sub, ignore_errors=True)  # a checkpoint of its own: superseded
        shutil.copytree(source / sub, tmp)
        os.replace(tmp, folder / sub)
    log.info("reusing the statistics of %s", source)


def prepare_folder(
    folder: Path, config: RunConfig, overwrite: bool, resolved: dict[str, str]
) -> None:
    if overwrite and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_config(folder, config, complete=False, resolved=resolved)


def remove_if_unused(folder: Path, new_parents: Sequence[Path] = ()) -> None:
    """Remove a run folder this call created when nothing but its settings file is in it, and
    the parent folders it created for it (``new_parents``, nearest first) while they are empty.
    """
    files = [p for p in folder.rglob("*") if not p.is_dir()] if folder.is_dir() else []
    if all(p == folder / CONFIG_FILE for p in files):
        shutil.rmtree(folder, ignore_errors=True)
        for parent in new_parents:
            try:
                parent.rmdir()  # only when empty: another run may have started there meanwhile
            except OSError:
                break
