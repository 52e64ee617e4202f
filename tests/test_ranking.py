from __future__ import annotations

import math

import torch

from crane_lens.utils.ranking import spearman


def test_spearman_uses_average_ranks_for_ties() -> None:
    # ranks (0.5, 0.5, 2) vs (0, 1, 2): centred dot 1.5 / (sqrt(1.5) · sqrt(2)) = sqrt(3)/2
    rho = spearman(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0]))
    assert math.isclose(rho, math.sqrt(3) / 2, rel_tol=1e-12)
    assert math.isclose(spearman(torch.arange(5.0), -(torch.arange(5.0) ** 3)), -1.0)
