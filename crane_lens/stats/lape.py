"""LAPE (Tang et al., ACL 2024): language activation probability entropy and its neuron sets.

The recipe and constants follow the official code (RUCAIBox/Language-Specific-Neurons):
activation probabilities are normalised over languages, the entropy of that distribution scores
each neuron, neurons whose probability exceeds the 95th-percentile threshold in no language are
excluded, the ``top_rate`` lowest-entropy neurons are kept, and each is assigned to every
language whose probability exceeds the same threshold.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
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


def lape_neurons(
    probs: Float[Tensor, "lang layer neuron"],
    top_rate: float = TOP_RATE,
    ratio: float = ACTIVATION_BAR_RATIO,
) -> list[list[Tensor]]:
    """LAPE's language-specific neurons, in its published format.

    Args:
        probs: Activation probability per language, layer and neuron.
        top_rate: Share of all (layer, neuron) pairs kept (lowest entropy first).
        ratio: Quantile of the activation threshold used both to filter and to assign.

    Returns:
        For each language (in ``probs`` order), for each layer, the sorted neuron indices
        (``torch.long``) assigned to it.
    """
    n_lang, n_layers, d_mlp = probs.shape
    entropy = lape_entropy(probs, ratio).flatten()
    k = round(entropy.numel() * top_rate)
    # Stable sort: ties keep flat (layer, neuron) order, so the result is deterministic.
    kept = torch.sort(entropy, stable=True).indices[:k]
    kept = kept[torch.isfinite(entropy[kept])]
    assigned = probs.reshape(n_lang, -1)[:, kept] > lape_threshold(probs, ratio)
    out: list[list[Tensor]] = []
    for lang in range(n_lang):
        flat = kept[assigned[lang]]
        layers, neurons = flat // d_mlp, flat % d_mlp
        out.append([neurons[layers == layer].sort().values for layer in range(n_layers)])
    return out
