"""Average precision of neuron responses as detectors of a language (Kojima et al., 2024).

The ``kojima`` method needs one response per *block* (the block's mean activation) per neuron.
Keeping every block of a large corpus does not scale (an 8B model has 458 752 neurons: 1.8 MB per
block), so the engine keeps at most :data:`KOJIMA_MAX_BLOCKS` blocks per language, a uniformly
random sample chosen by :func:`kept_blocks`, and :func:`average_precision_by_group` scores every
language from one sort per neuron, a chunk of neurons at a time.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

KOJIMA_MAX_BLOCKS = 256
"""Per language, at most this many blocks' responses are kept (all of them when a language has
fewer, so small runs are exact)."""

SORT_ELEMENTS = 2**24
"""Items × units sorted at once by :func:`average_precision_by_group` (bounds its memory)."""


def kept_blocks(n_blocks: int, max_blocks: int, seed: int) -> Int[Tensor, " kept"]:
    """Which of a language's ``n_blocks`` blocks ``kojima`` keeps: a uniformly random subset.

    Deterministic for a given ``seed``, sorted, and ``range(n_blocks)`` itself when
    ``n_blocks <= max_blocks``.

    Args:
        n_blocks: Blocks of the language.
        max_blocks: How many to keep at most (e.g. :data:`KOJIMA_MAX_BLOCKS`).
        seed: Seed of the sample (the same seed gives the same blocks).

    Returns:
        Ascending int64 block indices, ``min(n_blocks, max_blocks)`` of them.

    Example:
        >>> kept_blocks(5, 256, seed=0).tolist()
        [0, 1, 2, 3, 4]
        >>> ids = kept_blocks(1000, 4, seed=0)
        >>> len(ids), bool((ids.diff() > 0).all()), ids.equal(kept_blocks(1000, 4, seed=0))
        (4, True, True)
    """
    if max_blocks < 1:
        raise ValueError(f"max_blocks must be at least 1, got {max_blocks}.")
    if n_blocks <= max_blocks:
        return torch.arange(n_blocks)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n_blocks, generator=generator)[:max_blocks].sort().values


def _block_ends(values: Tensor) -> Tensor:
    """For values sorted along dim 0, the index of the last entry equal to each entry (the end
    of its tied block)."""
    n = len(values)
    index = torch.arange(n).view(-1, *([1] * (values.dim() - 1))).expand_as(values)
    is_end = torch.ones_like(values, dtype=torch.bool)
    is_end[:-1] = values[1:] != values[:-1]
    last = torch.where(is_end, index, torch.full_like(index, n))
    return last.flip(0).cummin(0).values.flip(0)


def average_precision(
    responses: Float[Tensor, "item *unit"],  # noqa: F821, UP037 (a jaxtyping shape)
    labels: Bool[Tensor, " item"],
) -> Float[Tensor, "*unit"]:
    """AP of each unit's response as a score for ``labels`` (positives ranked first is best).

    Equal responses form one threshold, as in scikit-learn's ``average_precision_score``:
    every positive of a tied block gets the precision of the whole block, so the result does
    not depend on the order of the items (a constant unit scores the positives' share for every
    label). This is the plain reference; :func:`average_precision_by_group` computes it for
    many labels at once in bounded memory.

    Args:
        responses: One response per item (e.g. per sentence) and unit.
        labels: Which items are positives.

    Returns:
        Average precision per unit, in [0, 1] (NaN-free; 0 when there are no positives).

    Example:
        >>> responses = torch.tensor([[0.9], [0.8], [0.5]])
        >>> ap = average_precision(responses, torch.tensor([True, False, True]))
        >>> [round(x, 4) for x in ap.tolist()]  # (1/1 + 2/3) / 2
        [0.8333]
        >>> ap = average_precision(torch.ones(3, 1), torch.tensor([True, False, True]))
        >>> [round(x, 4) for x in ap.tolist()]  # one threshold: precision 2/3
        [0.6667]
    """
    n_pos = int(labels.sum())
    if n_pos == 0:
        return torch.zeros(responses.shape[1:])
    flat = responses.reshape(len(responses), -1).float()
    values, order = torch.sort(flat, dim=0, descending=True, stable=True)
    hits = labels[order].double()  # item × unit, in rank order
    ends = _block_ends(values)
    precision = hits.cumsum(0).gather(0, ends) / (ends + 1).double()  # at each block's end
    ap = (precision * hits).sum(0) / n_pos
    return ap.float().reshape(responses.shape[1:])


def average_precision_by_group(
    responses: Float[Tensor, "item unit"],
    groups: Int[Tensor, " item"],
    n_groups: int,
    *,
    max_elements: int = SORT_ELEMENTS,
) -> Float[Tensor, "group unit"]:
    """AP of each unit's response as a detector of each group (the group's items positive).

    Equals :func:`average_precision` with ``labels = groups == g`` for every ``g``, ties
    included (a tied block is one threshold), from one sort per unit. Units are processed in
    chunks of ``max_elements // n_items``, so memory stays a small multiple of
    ``max_elements`` whatever the number of units.

    If the items of group ``g`` sit at 0-based ranks ``p_1 < … < p_n`` of a unit's ranking, a
    second, stable sort of the ranked group labels lists every group's ranks in order. Without
    ties the precision at the ``j``-th of them is ``j / (p_j + 1)``; with ties each of them gets
    the precision at the end ``e`` of its tied block, ``J / (e + 1)``, where ``J`` counts ``g``'s
    items up to ``e`` — the ``j`` of the last of ``g``'s items in that block.

    Args:
        responses: One response per item and unit.
        groups: The group of each item, in ``[0, n_groups)``.
        n_groups: Number of groups (a group without items gets AP 0).
        max_elements: Items × units sorted at once.

    Returns:
        Float32 average precision per group and unit, in [0, 1].

    Example:
        >>> responses = torch.tensor([[0.9], [0.8], [0.5]])
        >>> ap = average_precision_by_group(responses, torch.tensor([0, 1, 0]), 2)
        >>> [round(x, 4) for x in ap.flatten().tolist()]  # group 0: (1/1 + 2/3) / 2; group 1: 1/2
        [0.8333, 0.5]
    """
    n_items, n_units = responses.shape
    if groups.shape != (n_items,):
        raise ValueError(f"groups has shape {tuple(groups.shape)}, expected ({n_items},).")
    groups = groups.long()
    if n_items and not 0 <= int(groups.min()) <= int(groups.max()) < n_groups:
        raise ValueError(f"groups must lie in [0, {n_groups}), got {groups.unique().tolist()}.")
    counts = torch.bincount(groups, minlength=n_groups)
    out = torch.zeros(n_groups, n_units)
    if n_items == 0:
        return out
    # After the second sort, row i holds the i-th ranked item of group sorted_groups[i]; its
    # position j within the group is the same for every unit.
    sorted_groups = groups.sort().values
    starts = counts.cumsum(0) - counts
    j = (torch.arange(n_items) - starts[sorted_groups] + 1).double().unsqueeze(1)
    chunk = max(1, max_elements // n_items)
    for start in range(0, n_units, chunk):
        part = responses[:, start : start + chunk].float()
        values, order = torch.sort(part, dim=0, descending=True, stable=True)
        ranks = torch.sort(groups[order], dim=0, stable=True).indices  # 0-based, grouped
        del order
        ends = _block_ends(values).gather(0, ranks)  # end of each entry's tied block
        del values, ranks
        # Runs of one group within one tied block: each takes the j of its last entry.
        key = sorted_groups.unsqueeze(1) * n_items + ends
        last = j.expand_as(ends).gather(0, _block_ends(key))
        precision = last / (ends + 1).double()
        sums = torch.zeros(n_groups, part.shape[1], dtype=torch.float64)
        sums.index_add_(0, sorted_groups, precision)
        out[:, start : start + chunk] = (sums / counts.clamp(min=1).unsqueeze(1)).float()
    return out
