"""Blocks where a rank may fail alone make no collective call (crane_lens.utils.distributed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import crane_lens as cl
from crane_lens.pipeline import ranks
from crane_lens.utils import distributed

COLLECTIVES: dict[str, Callable[[], Any]] = {
    "barrier": distributed.barrier,
    "all_reduce": lambda: distributed.all_reduce(torch.ones(2)),
    "all_gather_objects": lambda: distributed.all_gather_objects(1),
    "broadcast_object": lambda: distributed.broadcast_object(1),
}


@pytest.mark.parametrize("name", sorted(COLLECTIVES))
def test_every_collective_refuses_inside_a_local_block_even_for_one_process(name: str) -> None:
    COLLECTIVES[name]()  # outside: a no-op for one process
    with distributed.local_only("checking"), pytest.raises(RuntimeError, match=name):
        COLLECTIVES[name]()
    COLLECTIVES[name]()  # allowed again after the block


def test_the_outer_block_is_restored_after_a_nested_one() -> None:
    with distributed.local_only("outer"):
        with distributed.local_only("inner"):
            pass
        with pytest.raises(RuntimeError, match="while outer"):
            distributed.broadcast_object(0)
    assert distributed.broadcast_object(0) == 0


def test_the_run_checks_are_a_local_block() -> None:
    """pipeline.run's input checks (where one rank may refuse alone) run as a local block, so a
    collective call added to them fails every single-process run test, not only under torchrun
    after a 30-minute wait."""
    with (
        pytest.raises(RuntimeError, match="collective call"),
        ranks.all_ranks_agree("before the work started"),
    ):
        distributed.broadcast_object(0)


def test_ranks_that_chose_different_dtypes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """dtype auto on machines with and without native bfloat16: statistics in two dtypes cannot
    be summed, so every rank stops, naming a --dtype that works for all."""
    ranks.check_same_dtype("float32")  # one process: nothing to compare
    monkeypatch.setattr(distributed, "all_gather_objects", lambda value: ["bfloat16", value])
    with pytest.raises(cl.CraneLensError, match=r"rank 0: bfloat16, rank 1: float32.*--dtype bf"):
        ranks.check_same_dtype("float32")
    ranks.check_same_dtype("bfloat16")  # the same on every rank
