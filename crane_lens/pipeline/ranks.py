"""Data parallelism: every rank runs :func:`~crane_lens.pipeline.run` with the same settings;
rank 0 alone touches the run folder, and an error on any rank ends every rank (docs/scale.md).

Outside a process group every helper here is a plain local call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from crane_lens.errors import CraneLensError
from crane_lens.runs.config import RunConfig
from crane_lens.utils import distributed


@contextlib.contextmanager
def all_ranks_agree(what: str) -> Iterator[None]:
    """In a process group, let an error raised inside the block on any rank end every rank.

    Each rank runs the block, then the ranks exchange whether it failed (a collective call, so
    it also waits for the slowest rank): a rank that failed re-raises its error, the others
    raise :class:`CraneLensError` naming it, instead of waiting forever in the next collective
    call. Outside a group the block just runs.
    """
    if not distributed.active():
        with distributed.local_only(what):
            yield
        return
    error: Exception | None = None
    try:
        with distributed.local_only(what):  # no collective call where one rank may fail alone
            yield
    except Exception as exc:
        error = exc
    outcome = None if error is None else f"{type(error).__name__}: {error}"
    failed = [(r, x) for r, x in enumerate(distributed.all_gather_objects(outcome)) if x]
    if error is not None:
        raise error
    if failed:
        rank, message = failed[0]
        raise CraneLensError(f"rank {rank} failed {what}: {message}")


def settings_of_rank0(
    config: RunConfig, folder: Path, overwrite: bool, source: Path | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """This rank's settings of the call (the device aside) and rank 0's (a collective call:
    before the checks, never inside them)."""
    mine = {k: v for k, v in asdict(config).items() if k != "device"}
    mine |= {"folder": str(folder), "overwrite": overwrite, "stats_from": source and str(source)}
    return mine, distributed.broadcast_object(mine)


def check_same_call(mine: dict[str, Any], main: dict[str, Any]) -> None:
    """In a process group, refuse a rank whose settings (the device aside) differ from rank 0's:
    the ranks would not share the same work."""
    diff = sorted(k for k, v in mine.items() if main.get(k) != v)
    if diff:
        raise CraneLensError(
            f"The settings of rank {distributed.rank()} differ from rank 0's ({', '.join(diff)}); "
            "every rank must run the same command."
        )


def check_same_dtype(dtype: str | None) -> None:
    """In a process group, refuse ranks that computed ``"auto"`` into different dtypes (machines
    with and without native bfloat16): their statistics could not be summed. Every rank sees
    every rank's dtype, so all raise together."""
    chosen = distributed.all_gather_objects(dtype)
    if len(set(chosen)) > 1:
        ranks = ", ".join(f"rank {r}: {d}" for r, d in enumerate(chosen))
        raise CraneLensError(
            f"The ranks chose different dtypes ({ranks}): their machines differ. Pass one "
            f"--dtype to every rank (e.g. --dtype {chosen[0]})."
        )


def on_main(action: Callable[[], object], what: str) -> None:
    """Run ``action`` (a write into the run folder) on rank 0 only; in a process group every
    rank returns once it is done, and raises if it failed."""
    with all_ranks_agree(what):
        if distributed.is_main():
            action()


def saved_dir(folder: Path) -> bool:
    """Whether ``folder`` exists, as rank 0 sees it (every rank takes the same branch)."""
    return bool(distributed.broadcast_object(folder.exists()))
