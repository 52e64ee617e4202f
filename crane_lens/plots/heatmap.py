"""Layer × neuron heatmaps of a neuron statistic, one panel per language."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from crane_lens.stats.results import NeuronStats


def quantile(values: Float[Tensor, " *shape"], q: float) -> float:
    """The ``q`` quantile of the finite entries of ``values``, at any size.

    The exact linear interpolation between the two nearest ranks that ``torch.quantile(values,
    q)`` computes (which rounds its rank arithmetic to the values' dtype; here it is float64),
    without torch's limit of 2^24 elements (a 70B model's 2.3 M neurons × 8 languages exceed
    it). ``topk`` from the nearer end (``kthvalue`` in the middle) finds the two ranks.

    Args:
        values: Any floating tensor (flattened; NaN and ±inf are ignored).
        q: In [0, 1].

    Returns:
        The quantile (0.0 when no entry is finite).

    Example:
        >>> quantile(torch.tensor([4.0, 1.0, 3.0, 2.0, float("nan")]), 0.5)
        2.5
    """
    if not 0 <= q <= 1:
        raise ValueError(f"q must lie in [0, 1], got {q}.")
    flat = values.detach().flatten()
    flat = flat[torch.isfinite(flat)]
    n = flat.numel()
    if n == 0:
        return 0.0
    pos = q * (n - 1)
    lo = min(math.floor(pos), n - 1)
    hi = min(lo + 1, n - 1)
    if n - lo <= n // 64:  # a top tail: the n - lo largest, descending
        top = flat.topk(n - lo).values
        below, above = top[n - 1 - lo], top[n - 1 - hi]
    elif hi < n // 64:  # a bottom tail
        bottom = flat.topk(hi + 1, largest=False).values
        below, above = bottom[lo], bottom[hi]
    else:  # the middle: selection beats a partial sort of half the values
        below, above = flat.kthvalue(lo + 1).values, flat.kthvalue(hi + 1).values
    weight = torch.tensor(pos - lo, dtype=torch.float64)
    return float(torch.lerp(below.cpu().double(), above.cpu().double(), weight))


def neuron_heatmap(
    stats: NeuronStats,
    statistic: str = "crane",
    langs: Sequence[str] | None = None,
    *,
    symmetric: bool | None = None,
    height_per_lang: int = 170,
) -> go.Figure:
    """Heatmap of ``statistic`` over layers (rows) and neurons (columns), one panel per language.

    Args:
        stats: Results of :func:`crane_lens.compute_stats`.
        statistic: A method or statistic name (see :attr:`NeuronStats.statistics`).
        langs: Languages to show (default: all, in the results' order).
        symmetric: Diverging colour scale centred on 0 (default: when the values have both signs).
        height_per_lang: Figure height per panel, in pixels.

    Returns:
        A plotly figure; hover shows language, layer, neuron and value.

    Example:
        >>> import crane_lens as cl
        >>> stats = cl.compute_stats(cl.load_model("crane-tiny"),
        ...     cl.load_corpus("builtin", langs=["en", "zh"], split="eval"), ["crane"],
        ...     max_tokens_per_lang=512, progress=False)
        >>> fig = neuron_heatmap(stats, "crane")
        >>> len(fig.data)
        2
    """
    from plotly.subplots import make_subplots

    langs = list(langs) if langs is not None else stats.langs
    values = stats.scores(statistic)[[stats.langs.index(lang) for lang in langs]]
    if symmetric is None:
        symmetric = bool((values < 0).any() and (values > 0).any())
    bound = quantile(values.abs(), 0.999) or 1.0  # a few outliers must not wash out the map
    low = -bound if symmetric else quantile(values, 0.001)
    fig = make_subplots(rows=len(langs), cols=1, shared_xaxes=True, vertical_spacing=0.03,
                        subplot_titles=[f"{lang}" for lang in langs])  # fmt: skip
    layers = list(range(values.shape[1]))
    for row, lang in enumerate(langs):
        fig.add_heatmap(
            z=values[row].tolist(),
            y=layers,
            colorscale="RdBu_r" if symmetric else "Viridis",
            zmin=low,
            zmax=bound,
            coloraxis=None,
            showscale=row == 0,
            hovertemplate=f"{lang} · layer %{{y}} · neuron %{{x}}<br>{statistic} = %{{z:.4g}}"
            "<extra></extra>",
            row=row + 1,
            col=1,
        )
        fig.update_yaxes(title_text="layer", row=row + 1, col=1, dtick=1)
    fig.update_xaxes(title_text="neuron", row=len(langs), col=1)
    fig.update_layout(
        title=f"{statistic} per neuron — {stats.spec.name}",
        height=80 + height_per_lang * len(langs),
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
    )
    return fig
