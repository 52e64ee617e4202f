"""Atomic file writes: a reader sees the old file or the whole new one, never half of one.

Every result crane_lens writes goes through :func:`atomic_path`: the data goes to a temporary file
beside the target (same file system, so the final rename is atomic), which replaces the target
only once it is complete and is removed if writing fails or is interrupted.

Example:
    >>> import tempfile, pathlib
    >>> from crane_lens.utils.io import write_json, write_text
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_json(folder / "a" / "result.json", {"en": 0.94})
    PosixPath('...result.json')
    >>> (folder / "a" / "result.json").read_text()
    '{\\n "en": 0.94\\n}\\n'
    >>> _ = write_text(folder / "summary.md", "# done")
    >>> sorted(p.name for p in folder.rglob("*"))
    ['a', 'result.json', 'summary.md']
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "remove_stale", "write_json", "write_text"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale(folder: Path, pattern: str) -> None:
    """Delete what killed writers left in ``folder``: entries matching ``pattern`` (a glob whose
    match ends in ``-PID`` or ``.PID.tmp``) whose process is gone."""
    for path in folder.glob(pattern):
        pid = path.name.removesuffix(".tmp").replace("-", ".").rsplit(".", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path``, on error it goes.

    The parent folder is created if needed. The temporary name carries the process id, so two
    processes writing the same target never share a half-written file, and one left by a killed
    process is removed by the next write of that target. The new file gets the usual (umask)
    permissions, not ``tempfile.mkstemp``'s owner-only ones.

    Args:
        path: The file to (re)place.

    Yields:
        The temporary file's path (not yet created).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent, f".{target.name}.*.tmp")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 1) -> Path:
    """Write ``data`` as UTF-8 JSON (non-ASCII kept readable) to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")
