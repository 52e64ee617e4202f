"""Each neuron's top contexts: the ``k`` tokens of a language where it fires (or matters) most.

Neuron viewers show a neuron by the contexts that drive it. The statistics pass keeps, per
language, layer and neuron, the ``k`` activations largest in magnitude (``"activation"``,
``hook_post``, sign kept: in a gated MLP — GeGLU, SwiGLU — a neuron's output is signed, and a
language's most relevant neuron is often strongly *negative* on its text) and the ``k`` highest
CRANE relevances (``"relevance"``, ``h · ∂_LRP target / ∂h`` per token), each with where it
happened: ``index = block · seq_len + position`` in the language's token blocks
(BOS, position 0, is never a context: it carries no language). Memory is
``O(layers × neurons × k)`` per language, whatever the length of the corpus.

Ties are broken towards the earlier token: every candidate list is ordered by (rank key
descending, index ascending), so the top ``k`` of a union does not depend on the order in which
batches, checkpoints, shards or ranks are merged — two shards merged equal one pass, bitwise.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

TopKind = Literal["activation", "relevance"]
TOP_KINDS: tuple[TopKind, ...] = ("activation", "relevance")
BY_MAGNITUDE: dict[str, bool] = {"activation": True, "relevance": False}  # the rank key: |v| or v
MAX_TOP_CONTEXTS = 32
EMPTY_INDEX = -1  # a slot no token has filled yet (fewer than k tokens seen); value -inf


def check_top_contexts(k: int) -> int:
    """``k`` as an int in ``0 .. MAX_TOP_CONTEXTS`` (0: none kept), or a clear error."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_TOP_CONTEXTS:
        raise ValueError(
            f"top_contexts must be an integer from 0 (none) to {MAX_TOP_CONTEXTS}, not {k!r}: "
            "each one costs layers × neurons × languages × 2 kinds × 12 bytes."
        )
    return k


def empty_top(
    k: int, n_neurons: int, device: torch.device | str = "cpu"
) -> tuple[Float[Tensor, "k neuron"], Int[Tensor, "k neuron"]]:
    """A top list with no token in it: values ``-inf``, indices :data:`EMPTY_INDEX`."""
    values = torch.full((k, n_neurons), -torch.inf, device=device)
    return values, torch.full((k, n_neurons), EMPTY_INDEX, dtype=torch.long, device=device)


def _key(values: Tensor, index: Tensor, magnitude: bool) -> Tensor:
    """What ranks a candidate: its value or its magnitude; an empty slot ranks last."""
    return torch.where(index == EMPTY_INDEX, -torch.inf, values.abs() if magnitude else values)


def ordered(
    values: Float[Tensor, "... n neuron"], index: Int[Tensor, "... n neuron"], k: int,
    magnitude: bool = False,
) -> tuple[Float[Tensor, "... k neuron"], Int[Tensor, "... k neuron"]]:  # fmt: skip
    """The first ``k`` candidates along dim ``-2`` in (value — or ``|value|`` with
    ``magnitude`` — descending, index ascending) order.

    Two stable sorts: by index, then by the key — equal keys keep the index order.

    Example:
        >>> values = torch.tensor([[1.0], [3.0], [3.0], [2.0]])
        >>> index = torch.tensor([[9], [7], [4], [1]])
        >>> top, at = ordered(values, index, 2)
        >>> top[:, 0].tolist(), at[:, 0].tolist()
        ([3.0, 3.0], [4, 7])
    """
    by_index = index.argsort(dim=-2, stable=True)
    values, index = values.gather(-2, by_index), index.gather(-2, by_index)
    by_key = _key(values, index, magnitude).argsort(dim=-2, descending=True, stable=True)
    return values.gather(-2, by_key[..., :k, :]), index.gather(-2, by_key[..., :k, :])


def merge_top(
    a: tuple[Tensor, Tensor], b: tuple[Tensor, Tensor], k: int, magnitude: bool = False
) -> tuple[Float[Tensor, "... k neuron"], Int[Tensor, "... k neuron"]]:
    """The top ``k`` of the union of two top lists (any leading dimensions, e.g. layers)."""
    return ordered(torch.cat([a[0], b[0].to(a[0].device)], dim=-2),
                   torch.cat([a[1], b[1].to(a[1].device)], dim=-2), k, magnitude)  # fmt: skip


def batch_top(
    x: Float[Tensor, "row pos neuron"], first_block: int, seq_len: int, k: int,
    magnitude: bool = False,
) -> tuple[Float[Tensor, "k neuron"], Int[Tensor, "k neuron"]]:  # fmt: skip
    """The top ``k`` tokens of one batch (rows = blocks ``first_block, first_block + 1, ...``),
    BOS excluded, in the order of :func:`ordered`.

    The flattened rows are already in index order, so one stable sort by value suffices.

    Example:
        >>> x = torch.tensor([[[9.0], [1.0], [5.0]], [[9.0], [5.0], [2.0]]])  # 2 blocks × 3
        >>> top, at = batch_top(x, first_block=4, seq_len=3, k=2)
        >>> top[:, 0].tolist(), at[:, 0].tolist()  # block 4 pos 2, block 5 pos 1; BOS skipped
        ([5.0, 5.0], [14, 16])
    """
    rows, width, n = x.shape
    flat = x[:, 1:].reshape(-1, n).float()
    blocks = torch.arange(first_block, first_block + rows, device=x.device)
    index = (blocks[:, None] * seq_len + torch.arange(1, width, device=x.device)).reshape(-1)
    key = flat.abs() if magnitude else flat
    order = key.argsort(dim=0, descending=True, stable=True)[:k]
    return flat.gather(0, order), index[order]


def shift_blocks(index: Int[Tensor, ...], blocks: int, seq_len: int) -> Int[Tensor, ...]:
    """Indices of a shard's top list as if its blocks followed ``blocks`` earlier ones."""
    return torch.where(index == EMPTY_INDEX, index, index + blocks * seq_len)
