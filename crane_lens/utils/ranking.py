"""Rank statistics used to compare neuron scores (no SciPy dependency)."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def _ranks(x: Tensor) -> Tensor:
    """Average ranks (ties share the mean of their positions), 0-based, float64."""
    x = x.flatten().double()
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    values, inverse = torch.unique(x, return_inverse=True)
    sums = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(values), dtype=torch.float64).index_add_(
        0, inverse, torch.ones_like(x)
    )
    return (sums / counts)[inverse]


def spearman(a: Float[Tensor, " n"], b: Float[Tensor, " n"]) -> float:
    """Spearman rank correlation of two equally shaped tensors (flattened).

    Example:
        >>> import torch
        >>> round(spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 15.0])), 6)
        0.5
    """
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))
