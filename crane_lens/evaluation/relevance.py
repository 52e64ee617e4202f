"""A relevance-based selectivity metric, in the spirit of CRANE's.

**Relevance share.** For a neuron set ``S_A`` (selected for language A) and an evaluated
language B, ``share(A, B) = Σ_{n ∈ S_A} R⁺_B(n) / Σ_n R⁺_B(n)``: the fraction of B's total
positive relevance (mean ``max(R, 0)`` per token, statistic ``crane_pos``) that A's neurons
carry. A language-specific set captures much of its own language's relevance and little of the
others'. **Relevance selectivity** of A is ``share(A, A) / mean_{B ≠ A} share(A, B)``.

Computed on statistics of *held-out* text, the metric does not simply restate the selection
(which used the training split); on the same statistics it would be circular for CRANE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from crane_lens.selection.neurons import LanguageNeurons
from crane_lens.stats.results import NeuronStats

if TYPE_CHECKING:
    import pandas as pd


def relevance_share(
    neurons: LanguageNeurons, stats: NeuronStats, statistic: str = "crane_pos"
) -> pd.DataFrame:
    """``share(A, B)`` for every set A (rows) and language B of ``stats`` (columns).

    Raises:
        NeuronSetMismatchError: The sets are for a model of another shape.
        KeyError: ``statistic`` was not computed.
    """
    import pandas as pd

    neurons.check_fits(stats.spec)
    scores = stats.scores(statistic).clamp_min(0)
    totals = scores.sum(dim=(1, 2))
    table = {}
    for a in neurons.langs:
        mask = neurons.mask(a)
        captured = (scores * mask).sum(dim=(1, 2))
        table[a] = (captured / totals.clamp_min(torch.finfo(totals.dtype).tiny)).tolist()
    frame = pd.DataFrame(table, index=stats.langs).T
    frame.index.name, frame.columns.name = "masked", "evaluated"
    return frame


def relevance_selectivity(
    neurons: LanguageNeurons, stats: NeuronStats, statistic: str = "crane_pos"
) -> pd.DataFrame:
    """Per set: ``own`` share, mean share of the ``others`` and their ``ratio``."""
    import pandas as pd

    share = relevance_share(neurons, stats, statistic)
    rows = []
    for a in neurons.langs:
        own = float(share.loc[a, a]) if a in share.columns else float("nan")
        rest = [float(share.loc[a, b]) for b in share.columns if b != a]
        others = sum(rest) / len(rest) if rest else float("nan")
        rows.append({"masked": a, "own_share": own, "others_share": others,
                     "ratio": own / others if others else float("nan")})  # fmt: skip
    return pd.DataFrame(rows).set_index("masked")
