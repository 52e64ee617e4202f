"""LAPE (Tang et al., ACL 2024): language activation probability entropy and its neuron sets.

The recipe and constants follow the official code (RUCAIBox/Language-Specific-Neurons):
activation probabilities are normalised over languages, the entropy of that distribution scores
each neuron, neurons whose probability exceeds the 95th-percentile threshold in no language are
excluded, the ``top_rate`` lowest-entropy neurons are kept, and each is assigned to every
language whose probability exceeds the same threshold.

:func:`lape_matched_count` is ours: the smallest number of kept neurons whose assignment gives
the languages a mean set size of at least ``k``, so that LAPE can be compared with methods that
select ``k`` neurons per language.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

TOP_RATE = 0.01
ACTIVATION_BAR_RATIO = 0.95


def lape_threshold(
    probs: Float[Tensor, "lang layer neuron"], ratio: float = ACTIVATION_BAR_RATIO
) -> float:
    """The ``ratio`` quantile of all probabilities (``kthvalue`` at ``round(ratio · N)``)."""
    flat = probs.flatten()
    return float(flat.kthvalue(round(flat.numel() * ratio)).values)


def lape_entropy(
    probs: Float[Tensor, "lang layer neuron"], ratio: float = ACTIVATION_BAR_RATIO
) -> Float[Tensor, "layer neuron"]:
    """LAPE entropy per neuron; ``+inf`` where no language's probability exceeds the threshold."""
    normed = probs / probs.sum(dim=0, keepdim=True)
    normed = torch.nan_to_num(normed, nan=0.0)
    entropy = -(normed * torch.log(normed)).nan_to_num(nan=0.0).sum(dim=0)
    entropy = entropy.masked_fill(~(probs > lape_threshold(probs, ratio)).any(dim=0), math.inf)
    return entropy


def lape_order(
    probs: Float[Tensor, "lang layer neuron"], ratio: float = ACTIVATION_BAR_RATIO
) -> Int[Tensor, " eligible"]:
    """Flat ``layer · d_mlp + neuron`` indices of the neurons with a finite entropy, lowest
    entropy first: the order in which LAPE keeps them. A stable sort: ties keep flat
    (layer, neuron) order, so the result is deterministic."""
    entropy = lape_entropy(probs, ratio).flatten()
    order = torch.sort(entropy, stable=True).indices
    return order[torch.isfinite(entropy[order])]


def lape_assignment(
    probs: Float[Tensor, "lang layer neuron"],
    kept: Int[Tensor, " kept"],
    ratio: float = ACTIVATION_BAR_RATIO,
) -> Bool[Tensor, "lang kept"]:
    """Which language each kept neuron (flat index) is assigned to: every language whose
    probability exceeds the threshold."""
    return probs.reshape(len(probs), -1)[:, kept] > lape_threshold(probs, ratio)


def lape_matched_count(
    probs: Float[Tensor, "lang layer neuron"],
    per_lang: float,
    ratio: float = ACTIVATION_BAR_RATIO,
) -> int:
    """The smallest number of kept neurons whose assignment gives a mean set size (over the
    languages of ``probs``) of at least ``per_lang``.

    Keeping one more neuron adds it to at least one language's set, so the total number of
    assignments grows strictly with the count: a binary search (``searchsorted``) of its
    cumulative sum over :func:`lape_order`, which is computed once. Returns the number of
    neurons with a finite entropy (all of them) when even those fall short, 0 when there is none.

    Example:
        >>> probs = torch.tensor([[[0.9, 0.8, 0.0, 0.1]], [[0.9, 0.0, 0.7, 0.1]]])
        >>> lape_matched_count(probs, 1, ratio=0.5)  # (0,1) → en; (0,2) → zh
        2
        >>> lape_matched_count(probs, 1.5, ratio=0.5)  # (0,0) → both as well
        3
    """
    order = lape_order(probs, ratio)
    if len(order) == 0:
        return 0
    assigned = lape_assignment(probs, order, ratio).sum(dim=0).cumsum(dim=0)
    needed = torch.tensor([per_lang * len(probs)], dtype=torch.float64)
    count = int(torch.searchsorted(assigned.double(), needed)) + 1  # first prefix sum ≥ needed
    return min(count, len(order))


def lape_neurons(
    probs: Float[Tensor, "lang layer neuron"],
    top_rate: float = TOP_RATE,
    ratio: float = ACTIVATION_BAR_RATIO,
    *,
    n_kept: int | None = None,
) -> list[list[Tensor]]:
    """LAPE's language-specific neurons, in its published format.

    Args:
        probs: Activation probability per language, layer and neuron.
        top_rate: Share of all (layer, neuron) pairs kept (lowest entropy first):
            ``round(top_rate × N)`` neurons in total.
        ratio: Quantile of the activation threshold used both to filter and to assign.
        n_kept: Number of neurons kept in total, instead of ``top_rate`` (e.g. from
            :func:`lape_matched_count`).

    Returns:
        For each language (in ``probs`` order), for each layer, the sorted neuron indices
        (``torch.long``) assigned to it. Neurons with an infinite entropy are never kept, so
        fewer than asked are kept when fewer have a finite one.
    """
    n_lang, n_layers, d_mlp = probs.shape
    if n_kept is None:
        n_kept = round(probs[0].numel() * top_rate)
    kept = lape_order(probs, ratio)[:n_kept]
    assigned = lape_assignment(probs, kept, ratio)
    out: list[list[Tensor]] = []
    for lang in range(n_lang):
        flat = kept[assigned[lang]]
        layers, neurons = flat // d_mlp, flat % d_mlp
        out.append([neurons[layers == layer].sort().values for layer in range(n_layers)])
    return out
