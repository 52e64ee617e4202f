from __future__ import annotations

import torch

from crane_lens.stats import average_precision


def test_average_precision_by_hand() -> None:
    # Ranking by unit 0: +, -, +, -  → AP = (1/1 + 2/3) / 2; unit 1 ranks both positives last.
    responses = torch.tensor([[0.9, 0.1], [0.8, 0.9], [0.5, 0.2], [0.1, 0.8]])
    labels = torch.tensor([True, False, True, False])
    ap = average_precision(responses, labels)
    assert torch.allclose(ap, torch.tensor([(1 + 2 / 3) / 2, (1 / 3 + 2 / 4) / 2]))
