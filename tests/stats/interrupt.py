"""Interrupting the statistics engine after a given number of work items (Ctrl-C mid-run)."""

from __future__ import annotations

from typing import Any

import pytest

from crane_lens.stats import engine as engine_module


def interrupt_after(monkeypatch: pytest.MonkeyPatch, n_items: int) -> list[Any]:
    """Make the engine raise ``KeyboardInterrupt`` before its work item ``n_items + 1``.

    Returns:
        The work items that ran, in order (filled as the run goes).
    """
    real_run, ran = engine_module._Engine.run, []

    def run_then_interrupt(self, item):  # type: ignore[no-untyped-def]
        if len(ran) == n_items:
            raise KeyboardInterrupt
        ran.append(item)
        real_run(self, item)

    run_then_interrupt.__wrapped__ = real_run  # type: ignore[attr-defined]
    monkeypatch.setattr(engine_module._Engine, "run", run_then_interrupt)
    return ran


def record_items(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Lift :func:`interrupt_after`; returns the work items the next runs perform."""
    current = engine_module._Engine.run
    real_run, ran = getattr(current, "__wrapped__", current), []
    monkeypatch.setattr(engine_module._Engine, "run",
                        lambda self, item: (ran.append(item), real_run(self, item)))  # fmt: skip
    return ran
