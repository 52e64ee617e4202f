"""Rank statistics used to compare neuron scores, computed by SciPy.

Thin tensor wrappers around :func:`scipy.stats.rankdata` and :func:`scipy.stats.spearmanr`
(``tests/test_ranking.py`` checks them against SciPy on random data with ties and NaNs). SciPy is
imported on first use, so importing :mod:`crane_lens` stays fast.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor


def _numpy(x: Tensor) -> np.ndarray:
    return torch.as_tensor(x).detach().flatten().double().cpu().numpy()


def ranks(x: Float[Tensor, "*shape"]) -> Float[Tensor, " n"]:
    """0-based average ranks of the flattened ``x`` (ties share the mean of their positions).

    ``scipy.stats.rankdata(x, method="average") - 1``; any NaN makes every rank NaN (SciPy's
    ``nan_policy="propagate"``): drop NaNs first if they should not count.

    Args:
        x: Values of any shape (flattened in row-major order).

    Returns:
        Float64 ranks in ``[0, n - 1]``, one per element.

    Example:
        >>> ranks(torch.tensor([30.0, 10.0, 20.0, 10.0])).tolist()
        [3.0, 0.5, 2.0, 0.5]
    """
    from scipy.stats import rankdata

    return torch.from_numpy(rankdata(_numpy(x), method="average") - 1.0)


def spearman(a: Float[Tensor, "*shape"], b: Float[Tensor, "*shape"]) -> float:
    """Spearman rank correlation of two equally sized tensors (flattened), ties averaged.

    ``scipy.stats.spearmanr(a, b).statistic``. NaN when either input holds a NaN (SciPy's
    ``nan_policy="propagate"``) or is constant (no ranking to correlate; SciPy's
    ``ConstantInputWarning`` is silenced: the NaN says it).

    Args:
        a: First values.
        b: Second values, as many as ``a``.

    Returns:
        ρ in [-1, 1], or NaN as described.

    Example:
        >>> import torch
        >>> round(spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 15.0])), 6)
        0.5
    """
    from scipy.stats import spearmanr

    x, y = _numpy(a), _numpy(b)
    if len(x) != len(y):
        raise ValueError(f"spearman needs equally many values, got {len(x)} and {len(y)}.")
    if len(x) < 2 or np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ConstantInputWarning subclasses it
        return float(spearmanr(x, y).statistic)
