"""The GPU tier (``pytest -m gpu tests/gpu``; ``benchmarks/gpu_check.sh`` runs it on a GPU machine).

Without CUDA every test in this folder is reported as skipped: collection still imports the
modules (so a broken import shows up on every machine), but nothing touches a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=f"needs CUDA (torch {torch.__version__} sees no GPU)")
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)
