"""Atomic writes: the old file survives a failed write, and nothing is left beside it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from crane_lens.utils.io import atomic_path, write_json, write_text


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"version": 2, "half', encoding="utf-8")
        raise RuntimeError("interrupted")
    assert json.loads(target.read_text(encoding="utf-8")) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_write_creates_folders_keeps_unicode_and_usual_permissions(tmp_path: Path) -> None:
    target = write_json(tmp_path / "a" / "b" / "langs.json", {"zh": "中文"})
    assert "中文" in target.read_text(encoding="utf-8")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    write_text(target, "replaced")
    assert target.read_text(encoding="utf-8") == "replaced"
    assert sorted(p.name for p in target.parent.iterdir()) == ["langs.json"]


def test_a_killed_writers_temporary_goes_with_the_next_write(tmp_path: Path) -> None:
    gone_pid = _pid_of_a_finished_process()
    left = tmp_path / f".result.json.{gone_pid}.tmp"
    left.write_text('{"half', encoding="utf-8")
    alive = tmp_path / f".result.json.{os.getppid()}.tmp"  # a live process: may be writing
    alive.write_text("busy", encoding="utf-8")
    write_json(tmp_path / "result.json", {"done": True})
    assert not left.exists() and alive.exists()


def _pid_of_a_finished_process() -> int:
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
