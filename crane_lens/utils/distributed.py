"""Data parallelism on ``torch.distributed``: which share of the work a process takes, and how
the shares are combined.

Outside an initialised process group every helper is a no-op for a world of one process, so the
same code runs single-process and under ``torchrun``. Inside one, :func:`shard` gives each rank a
deterministic share of a work list (round robin), float32 sums are all-reduced (NCCL moves them
through the rank's GPU, gloo reduces CPU tensors), small Python objects are gathered, and only
rank 0 writes files (:func:`is_main`).

Example:
    >>> world_size(), rank(), is_main()
    (1, 0, True)
    >>> shard(list("abcde"))
    ['a', 'b', 'c', 'd', 'e']
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

log = logging.getLogger(__name__)
T = TypeVar("T")

# Set while each rank runs code that may fail on some ranks only (see :func:`local_only`).
_local_block: str | None = None


@contextlib.contextmanager
def local_only(what: str) -> Iterator[None]:
    """A block that must make no collective call, in one process as in a group.

    Code that may raise on one rank alone (checks of the input, loading a model) must not call a
    collective: the ranks that did not raise would wait in it for the one that did, until the
    backend's timeout (30 minutes for gloo). Inside this block every collective helper of this
    module raises :class:`RuntimeError` instead, even for one process, so the mistake shows in
    any single-process test.

    Example:
        >>> with local_only("checking the input"):  # doctest: +ELLIPSIS
        ...     broadcast_object(1)
        Traceback (most recent call last):
        ...
        RuntimeError: a collective call (broadcast_object) while checking the input, where a ...
    """
    global _local_block
    outer, _local_block = _local_block, what
    try:
        yield
    finally:
        _local_block = outer


def _collective(name: str) -> None:
    if _local_block is not None:
        raise RuntimeError(
            f"a collective call ({name}) while {_local_block}, where a rank may fail alone; "
            "make it before or after that block"
        )


def active() -> bool:
    """Whether this process belongs to an initialised group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0 — the only process that writes results and checkpoints."""
    return rank() == 0


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every ``world_size()``-th item, starting at ``rank()``."""
    return list(items[rank() :: world_size()])


def n_rounds(n_items: int) -> int:
    """Steps every rank takes over a sharded list of ``n_items`` (ranks with no item in the last
    step still take it, so collective calls line up)."""
    return -(-n_items // world_size())


def barrier() -> None:
    _collective("barrier")
    if active():
        dist.barrier()


def _reduce_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(tensor: Tensor, op: str = "sum") -> Tensor:
    """``tensor`` reduced over all ranks (``op``: ``"sum"``, ``"min"`` or ``"max"``), on the
    tensor's own device and dtype. A no-op for one process."""
    _collective("all_reduce")
    if not active():
        return tensor
    reduce_op = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op]
    work = tensor.to(_reduce_device()).contiguous()
    if work is tensor:  # never reduce the caller's tensor in place
        work = tensor.clone()
    dist.all_reduce(work, op=reduce_op)
    return work.to(tensor.device)


def all_gather_objects(value: T) -> list[T]:
    """Every rank's ``value`` (picklable), in rank order; ``[value]`` for one process."""
    _collective("all_gather_objects")
    if not active():
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value: T) -> T:
    """Rank 0's ``value`` on every rank."""
    _collective("broadcast_object")
    if not active():
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def decided_by_main(decide: Callable[[], T]) -> T:
    """``decide()`` run on rank 0 alone; its result — or the error it raised — on every rank.

    For decisions read from the file system (resume from a checkpoint, reuse a finished
    result): ranks may see different files (node-local output folders, NFS attribute caches),
    and ranks that decide differently get different work lists and wait in different
    collective calls. One process: ``decide()``.

    Example:
        >>> decided_by_main(lambda: 3)
        3
    """
    if not active():
        return decide()
    outcome: tuple[bool, Any] = (True, None)
    if is_main():
        try:
            outcome = (True, decide())
        except Exception as exc:  # raised on every rank below
            outcome = (False, exc)
    ok, value = broadcast_object(outcome)
    if not ok:
        raise value
    return value


def init_from_env(device: str | None = None) -> bool:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    The backend is NCCL when this rank computes on CUDA (each rank on ``cuda:LOCAL_RANK``),
    else gloo. Returns whether a group of several processes is active. Safe to call twice.

    Args:
        device: The device the run asked for (``None``: CUDA when available).
    """
    if active() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return active()
    cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    log.info("rank %d of %d (%s)", rank(), world_size(), dist.get_backend())
    return True
