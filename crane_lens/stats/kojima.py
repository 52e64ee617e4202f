"""Average precision of neuron responses as detectors of a language (Kojima et al., 2024)."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def average_precision(
    responses: Float[Tensor, "item *unit"],  # noqa: F821, UP037 (a jaxtyping shape)
    labels: Bool[Tensor, " item"],
) -> Float[Tensor, "*unit"]:
    """AP of each unit's response as a score for ``labels`` (positives ranked first is best).

    Ties are broken by item order (a stable sort), as in a plain ranked-list computation.

    Args:
        responses: One response per item (e.g. per sentence) and unit.
        labels: Which items are positives.

    Returns:
        Average precision per unit, in [0, 1] (NaN-free; 0 when there are no positives).
    """
    n_pos = int(labels.sum())
    if n_pos == 0:
        return torch.zeros(responses.shape[1:])
    flat = responses.reshape(len(responses), -1).float()
    order = torch.sort(flat, dim=0, descending=True, stable=True).indices
    hits = labels[order].float()  # item × unit, in rank order
    precision = hits.cumsum(0) / torch.arange(1, len(flat) + 1).unsqueeze(1)
    ap = (precision * hits).sum(0) / n_pos
    return ap.reshape(responses.shape[1:])
