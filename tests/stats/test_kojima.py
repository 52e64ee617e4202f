from __future__ import annotations

import pytest
import torch

from crane_lens.stats import average_precision
from crane_lens.stats.kojima import KOJIMA_MAX_BLOCKS, average_precision_by_group, kept_blocks


def test_average_precision_by_hand() -> None:
    # Ranking by unit 0: +, -, +, -  → AP = (1/1 + 2/3) / 2; unit 1 ranks both positives last.
    responses = torch.tensor([[0.9, 0.1], [0.8, 0.9], [0.5, 0.2], [0.1, 0.8]])
    labels = torch.tensor([True, False, True, False])
    ap = average_precision(responses, labels)
    assert torch.allclose(ap, torch.tensor([(1 + 2 / 3) / 2, (1 / 3 + 2 / 4) / 2]))


def test_average_precision_by_group_by_hand() -> None:
    # Unit 0 ranks items 0, 1, 2, 3 (groups 0, 1, 0, 2). Unit 1 ranks item 3 first, then items
    # 0, 1, 2 tie: one threshold at rank 4, where every group's precision is its share so far.
    responses = torch.tensor([[0.9, 0.5], [0.8, 0.5], [0.5, 0.5], [0.1, 0.9]])
    ap = average_precision_by_group(responses, torch.tensor([0, 1, 0, 2]), 4)
    expected = torch.tensor([
        [(1 + 2 / 3) / 2, 2 / 4],  # group 0: ranks 1, 3 | both in the tie: 2 of 4
        [1 / 2, 1 / 4],  # group 1: rank 2 | in the tie: 1 of 4 (item order gave 1/3)
        [1 / 4, 1.0],  # group 2: rank 4 | rank 1
        [0.0, 0.0],  # group 3 has no items
    ])  # fmt: skip
    torch.testing.assert_close(ap, expected)


@pytest.mark.parametrize("max_elements", [1, 64, 2**24])
def test_average_precision_by_group_equals_per_label_ap_with_ties(max_elements: int) -> None:
    generator = torch.Generator().manual_seed(1)
    responses = torch.randint(0, 4, (60, 33), generator=generator).float()  # many ties
    groups = torch.randint(0, 4, (60,), generator=generator)
    groups[groups == 2] = 3  # one group without items
    got = average_precision_by_group(responses, groups, 5, max_elements=max_elements)
    expected = torch.stack([average_precision(responses, groups == g) for g in range(5)])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert got[2].eq(0).all() and got[4].eq(0).all()


def test_a_dead_neuron_scores_the_same_for_every_language() -> None:
    """A constant (or dead) unit detects nothing: each language scores its share of the items,
    whatever the order of the languages (item order gave the first language AP 1.0)."""
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    ap = average_precision_by_group(torch.zeros(6, 1), groups, 3)
    torch.testing.assert_close(ap, torch.full((3, 1), 2 / 6))
    flipped = average_precision_by_group(torch.zeros(6, 1), groups.flip(0), 3)
    torch.testing.assert_close(flipped, ap)


def test_average_precision_by_group_refuses_bad_groups() -> None:
    with pytest.raises(ValueError, match=r"groups must lie in \[0, 2\)"):
        average_precision_by_group(torch.zeros(3, 1), torch.tensor([0, 1, 2]), 2)


def test_kept_blocks_is_a_seeded_uniform_sample() -> None:
    assert kept_blocks(7, 7, seed=3).equal(torch.arange(7))  # small runs keep every block
    assert kept_blocks(0, KOJIMA_MAX_BLOCKS, seed=0).numel() == 0
    ids = kept_blocks(1000, 10, seed=5)
    assert ids.dtype == torch.int64 and len(ids) == 10 and len(ids.unique()) == 10
    assert bool((ids.diff() > 0).all()) and int(ids.min()) >= 0 and int(ids.max()) < 1000
    assert ids.equal(kept_blocks(1000, 10, seed=5))
    assert not ids.equal(kept_blocks(1000, 10, seed=6))
    # Uniform: over many seeds every block is kept about equally often (10 / 40 of the time).
    counts = torch.zeros(40)
    for seed in range(2000):
        counts[kept_blocks(40, 10, seed)] += 1
    assert counts.sum() == 20_000 and (counts - 500).abs().max() < 100
    with pytest.raises(ValueError, match="at least 1"):
        kept_blocks(5, 0, seed=0)
