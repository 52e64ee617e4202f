"""A small finished crane-tiny run shared by the report tests, and the browser they drive."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Small and fast: a few seconds per stage on a CPU.
RUN_ARGS = ["run", "--max-tokens", "1024", "--eval-tokens", "512", "--eval-seq-len", "64",
            "--random-seeds", "2", "-q"]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a finished 3-language crane-tiny run (crane and LAPE), report included."""
    from crane_lens.cli import main

    out = tmp_path_factory.mktemp("report_runs")
    assert main([*RUN_ARGS, "--out", str(out), "--name", "run"]) == 0
    return out / "run"


@pytest.fixture(scope="session")
def browser() -> str:
    """A Chromium-based browser; without one the test is skipped, unless CRANE_LENS_BROWSER=1
    (CI) makes that a failure."""
    from crane_lens.report import find_browser

    path = find_browser()
    if path is None:
        message = "no Chromium-based browser (apt install chromium, or set BROWSER_PATH)"
        if os.environ.get("CRANE_LENS_BROWSER") == "1":
            pytest.fail(f"CRANE_LENS_BROWSER=1 but {message}")
        pytest.skip(message)
    return path
