"""`crane-lens figures` without a browser at hand: what it checks first, what it tells kaleido,
and that a failed export leaves no half-written file."""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import pytest

import crane_lens.report.export as export
import crane_lens.utils.install as install
from crane_lens.cli import main
from crane_lens.plots.run import NamedFigure


@pytest.fixture
def finished(tmp_path: Path) -> Path:
    """A folder that passes the run-folder check but holds nothing to load: any attempt to
    load it would fail with another error, so a clean exporter error proves the check ran first."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run_config.json").write_text(json.dumps({"complete": True}))
    return folder


def test_no_kaleido_says_what_to_install(finished: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "kaleido", None)  # import kaleido → ImportError
    monkeypatch.setattr(install, "install_source", lambda: None)  # as from the registry
    assert main(["figures", str(finished)]) == 2
    assert "pip install 'crane_lens[figures]'" in capsys.readouterr().err
    assert not (finished / "figures").exists()


def test_a_checkout_is_told_the_editable_command(finished: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """This test suite runs from a source checkout (an editable install): the registry name
    would install another copy, `pip install -e '.[figures]'` adds the extra to this one."""
    root = Path(install.__file__).resolve().parents[2]
    assert install.install_source() == (root, True)
    monkeypatch.chdir(root)
    assert install.install_command() == "pip install -e '.[figures]'"
    monkeypatch.setitem(sys.modules, "kaleido", None)
    assert main(["figures", str(finished)]) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[figures]'" in err and "'crane_lens[figures]'" not in err
    monkeypatch.chdir(finished)  # elsewhere: the checkout's path instead of "."
    assert install.install_command() == f"pip install -e {shlex.quote(f'{root}[figures]')}"


class FakeDist:
    """An installed distribution that only has a direct_url.json (PEP 610), or none."""

    def __init__(self, direct_url: dict[str, Any] | None) -> None:
        self.text = None if direct_url is None else json.dumps(direct_url)

    def read_text(self, name: str) -> str | None:
        return self.text if name == "direct_url.json" else None


def test_install_source_reads_direct_url_json(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    root = Path(install.__file__).resolve().parents[2]
    editable = {"url": root.as_uri(), "dir_info": {"editable": True}}
    assert install.install_source([FakeDist(None), FakeDist(editable)]) == (root, True)
    # `pip install /some/folder` (not editable): that folder, without -e.
    local = {"url": (tmp_path / "my checkout").as_uri(), "dir_info": {}}
    assert install.install_source([FakeDist(local)]) == (tmp_path / "my checkout", False)
    # A wheel, an archive or a VCS URL, or a stale editable install of another checkout: not a
    # folder to install from; without a checkout beside the package, the registry's name.
    monkeypatch.setattr(install, "_package_root", lambda: tmp_path)
    other = {"url": (tmp_path / "elsewhere").as_uri(), "dir_info": {"editable": True}}
    wheel = {"url": "file:///tmp/crane_lens-0.2.0-py3-none-any.whl", "archive_info": {}}
    vcs = {"url": "https://github.com/x/crane_lens", "vcs_info": {"vcs": "git"}}
    dists = [FakeDist(other), FakeDist(wheel), FakeDist(vcs), FakeDist(None)]
    assert install.install_source(dists) is None
    monkeypatch.setattr(install, "install_source", lambda: None)
    assert install.install_command("figures") == "pip install 'crane_lens[figures]'"
    monkeypatch.setattr(install, "install_source", lambda: (tmp_path / "my checkout", False))
    monkeypatch.chdir(tmp_path)
    assert install.install_command() == f"pip install '{tmp_path}/my checkout[figures]'"


def test_no_browser_says_what_to_install(finished: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setattr(export, "find_browser", lambda: None)
    assert main(["figures", str(finished), "--format", "png,pdf"]) == 2
    err = capsys.readouterr().err
    assert "apt install chromium" in err and "BROWSER_PATH" in err and "never downloads" in err
    assert not (finished / "figures").exists()


def test_browser_path_must_be_an_executable(finished: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chrome"))
    assert export.find_browser() is None
    assert main(["figures", str(finished)]) == 2
    assert f"BROWSER_PATH={tmp_path / 'no-such-chrome'} is not an executable" in capsys.readouterr().err  # fmt: skip
    fake = tmp_path / "chrome"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("BROWSER_PATH", str(fake))
    assert export.find_browser() == str(fake)


def test_bad_format_and_unfinished_run_are_refused_first(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["figures", str(tmp_path), "--format", "png,tiff"]) == 2
    assert "Unknown figure format 'tiff'" in capsys.readouterr().err
    assert main(["figures", str(tmp_path)]) == 2
    assert "not a crane-lens run folder" in capsys.readouterr().err


def figures() -> list[NamedFigure]:
    return [NamedFigure(name, name, go.Figure(go.Bar(y=[1, 2]))) for name in ("a", "b")]


def test_one_offline_session_for_every_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []

    def fake_write(jobs: list[dict[str, Any]], *, kopts: dict[str, Any], cancel_on_error: bool) -> None:  # fmt: skip
        assert cancel_on_error
        calls.append((jobs, kopts))
        for job in jobs:
            Path(job["path"]).write_bytes(job["opts"]["format"].encode())

    import kaleido

    monkeypatch.setattr(kaleido, "write_fig_from_object_sync", fake_write)
    files = export.export_figures(figures(), tmp_path / "out", ["png", "svg"], scale=3, browser="/x/chrome")  # fmt: skip
    assert [f.name for f in files] == ["a.png", "a.svg", "b.png", "b.svg"]
    assert [f.read_bytes() for f in files] == [b"png", b"svg", b"png", b"svg"]
    ((jobs, kopts),) = calls  # one browser session
    assert [j["opts"] for j in jobs] == [{"format": f, "scale": 3} for f in ("png", "svg") * 2]
    # The given browser; plotly.js from the installed plotly package; no MathJax from a CDN.
    assert kopts["path"] == "/x/chrome" and kopts["mathjax"] is False
    assert kopts["plotlyjs"].startswith("file://") and os.path.isfile(kopts["plotlyjs"][7:])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f.name for f in files]


def test_a_failed_export_keeps_the_old_files(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"old")

    def half_then_crash(jobs: list[dict[str, Any]], **kwargs: Any) -> None:
        Path(jobs[0]["path"]).write_bytes(b"new")
        raise RuntimeError("browser crashed")

    import kaleido

    monkeypatch.setattr(kaleido, "write_fig_from_object_sync", half_then_crash)
    with pytest.raises(RuntimeError, match="browser crashed"):
        export.export_figures(figures(), out, ["png"], browser="/x/chrome")
    assert [p.name for p in out.iterdir()] == ["a.png"]  # no b.png, no temporary files
    assert (out / "a.png").read_bytes() == b"old"
