"""Layer × rank heatmaps of a neuron statistic, one panel per language.

A model has up to 32 × 14 336 neurons per language: far more than a figure can draw or a reader
can see. Within each layer the neurons are sorted by value and binned into at most ``columns``
bins, so a panel shows how each layer's values fall off from its best neuron, and where a
selected set sits in that ranking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from crane_lens.plots.matrix import DIVERGING, PAGE_WIDTH, colorbar, colorbar_px, page_layout

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from crane_lens.selection.neurons import LanguageNeurons
    from crane_lens.stats.results import NeuronStats

Reduce = Literal["max", "mean"]


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


def rank_edges(n: int, columns: int, *, log: bool = True) -> Int[Tensor, " edge"]:
    """Bin edges over ranks ``0 … n`` (bin ``k`` holds ranks ``edges[k]`` to ``edges[k+1] − 1``).

    At most ``columns`` bins. ``log``: geometric widths, one neuron per bin at the top ranks (where
    the few language-specific neurons are) and wide bins in the long tail; otherwise equal widths
    of ``ceil(n / columns)``.

    Example:
        >>> rank_edges(10, 4, log=False).tolist()
        [0, 3, 6, 9, 10]
        >>> rank_edges(1000, 8).tolist()
        [0, 1, 5, 12, 31, 74, 177, 421, 1000]
    """
    if n < 1 or columns < 1:
        raise ValueError(f"Need at least one neuron and one column, got {n} and {columns}.")
    if not log or n <= columns:
        size = math.ceil(n / columns)
        return torch.tensor([*range(0, n, size), n])
    # Geometric in rank + 1 (rank 0 is the best neuron): n + 1 = (n + 1) ** (k / columns) at k = columns.
    steps = torch.arange(columns + 1, dtype=torch.float64) / columns
    edges = torch.round((n + 1.0) ** steps - 1).long()
    edges = torch.maximum(edges, torch.arange(columns + 1))  # at least one neuron per bin...
    return torch.unique(edges.clamp_max(n))  # ...and ≤ columns bins


def rank_bins(
    values: Float[Tensor, "*batch neuron"], edges: Int[Tensor, " edge"], reduce: Reduce = "max"
) -> tuple[Float[Tensor, "*batch bin"], Int[Tensor, "*batch neuron"], Int[Tensor, "*batch bin"]]:
    """Sort the last dimension descending and reduce each rank bin to one value.

    Args:
        values: E.g. one language's ``[layer, neuron]`` scores (NaN ranks last).
        edges: Bin edges over ranks, from :func:`rank_edges`.
        reduce: ``"max"`` (each bin's best neuron) or ``"mean"``.

    Returns:
        ``(binned, rank, top)``: the value of each bin, the rank of every neuron (0 = largest)
        and the index of each bin's best neuron.

    Example:
        >>> binned, rank, top = rank_bins(torch.tensor([[1.0, 5.0, 3.0, 4.0]]), torch.tensor([0, 1, 4]))
        >>> binned.tolist(), rank.tolist(), top.tolist()
        ([[5.0, 4.0]], [[3, 0, 2, 1]], [[1, 3]])
        >>> rank_bins(torch.tensor([1.0, 5.0, 3.0, 4.0]), torch.tensor([0, 1, 3, 4]), "mean")[0]
        tensor([5.0000, 3.5000, 1.0000])
    """
    key = torch.where(values.isnan(), -torch.inf, values)
    order = key.sort(dim=-1, descending=True, stable=True).indices
    ordered = values.gather(-1, order)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(values.shape[-1]).expand_as(order).contiguous())
    start, stop = edges[:-1], edges[1:]
    if reduce == "max":
        binned = ordered[..., start]
    elif reduce == "mean":  # cumulative sums: one pass for any number of bins, NaN left out
        finite = ~ordered.isnan()
        pad = torch.zeros(*ordered.shape[:-1], 1, dtype=torch.float64)
        total = torch.cat([pad, ordered.double().nan_to_num(0.0).cumsum(-1)], dim=-1)
        count = torch.cat([pad, finite.double().cumsum(-1)], dim=-1)
        binned = (total[..., stop] - total[..., start]) / (count[..., stop] - count[..., start])
        binned = binned.to(values.dtype)
    else:
        raise ValueError(f"reduce must be 'max' or 'mean', not {reduce!r}.")
    return binned, rank, order[..., start]


def selected_per_bin(
    mask: Bool[Tensor, "layer neuron"],
    rank: Int[Tensor, "layer neuron"],
    edges: Int[Tensor, " edge"],
) -> Int[Tensor, "layer bin"]:
    """How many neurons of ``mask`` fall into each rank bin of each layer.

    Example:
        >>> mask = torch.tensor([[True, True, False, False]])
        >>> selected_per_bin(mask, torch.tensor([[3, 0, 2, 1]]), torch.tensor([0, 1, 4])).tolist()
        [[1, 1]]
    """
    bins = torch.bucketize(rank, edges[1:-1], right=True)
    n_bins = len(edges) - 1
    flat = (torch.arange(len(mask)).unsqueeze(1) * n_bins + bins)[mask]
    return torch.bincount(flat, minlength=len(mask) * n_bins).reshape(len(mask), n_bins)


def _values(
    stats: NeuronStats, statistic: str, specificity: bool
) -> tuple[Float[Tensor, "lang layer neuron"], str, str, str]:
    """The values to draw, the colour bar's name and unit, and a subtitle that defines them."""
    from crane_lens.selection.select import specificity_scores
    from crane_lens.stats.methods import METHODS, STATISTICS, primary_statistic

    name = primary_statistic(statistic) if statistic in METHODS else statistic
    values = stats.scores(statistic)
    description = STATISTICS[name].description if name in STATISTICS else name
    if not specificity:
        return values, name, description, f"{name}: {description}"
    # The selection rule's own definition, scaled so that 1 = an average neuron's |share|.
    n = stats.spec.n_layers * stats.spec.d_mlp
    scaled = specificity_scores(values, "max")[1] * n
    subtitle = (f"specificity = R̃ − its max over the other {len(stats.langs) - 1} languages (the "
                f"selection rule), R̃ = {name} / the language's total |{name}|; "
                "1 = an average neuron's share")  # fmt: skip
    return scaled, f"{name} specificity", "× mean share", subtitle


def _colour(
    binned: Float[Tensor, "lang layer bin"],
    values: Float[Tensor, "lang layer neuron"],
    symmetric: bool,
    scale: float | None,
) -> tuple[Float[Tensor, "lang layer bin"], dict[str, Any]]:
    """The colour values and the colour axis (its ticks labelled in the values' units).

    Signed values get a diverging scale centred on 0 on a signed log, ``sign(v)·log10(1 +
    |v|/scale)``: a layer's few top neurons are tens to hundreds of times stronger than the
    typical one (``scale``, default the mean |value|), and a linear map would show them alone.
    """
    if not symmetric:  # e.g. probabilities: linear, sequential, the 0.5 % tails clipped
        low, high = quantile(binned, 0.005), quantile(binned, 0.995)
        return binned, {"colorscale": "Viridis", "cmin": low, "cmax": high if high > low else low + 1,
                        "tickvals": None, "ticktext": None}  # fmt: skip
    scale = scale or float(values.abs().mean()) or 1.0

    def signed_log(v: Tensor) -> Tensor:
        return v.sign() * torch.log10(1 + v.abs() / scale)

    bound = quantile(binned.abs(), 0.995) or scale
    top = float(signed_log(torch.tensor(bound)))
    ticks, at = [0.0], [0.0]
    for tick in (m * 10.0**k for k in range(math.floor(math.log10(scale)) - 1,
                 math.floor(math.log10(bound)) + 1) for m in (1, 2, 5)):  # fmt: skip
        position = float(signed_log(torch.tensor(tick)))
        if tick <= bound and position - at[-1] >= top / 6:  # close ticks would overlap
            ticks.append(tick)
            at.append(position)
    return signed_log(binned), {
        "colorscale": DIVERGING, "cmin": -top, "cmax": top, "cmid": 0,
        "tickvals": [s * p for p in at[1:] for s in (1, -1)] + [0.0],
        "ticktext": [f"{s * t:g}".replace("-", "−") for t in ticks[1:] for s in (1, -1)] + ["0"],
    }  # fmt: skip


def _grid(n_panels: int, n_layers: int) -> tuple[int, int, int, int]:
    cols = 1 if n_panels <= 3 else 2 if n_panels <= 8 else 3
    rows = math.ceil(n_panels / cols)
    panel_w = {1: 760, 2: 520, 3: 390}[cols]
    panel_h = max(90, min(240, 9 * n_layers))
    return rows, cols, panel_w, panel_h


def _ticks(n: int) -> tuple[list[float], list[str]]:
    ticks = [t for e in range(7) for t in (10**e, 3 * 10**e) if t <= n]
    return ticks, [f"{t // 1000}k" if t >= 1000 else str(t) for t in ticks]


def _marks(counts: Int[Tensor, "layer bin"], x_edges: list[float], lang: str) -> list[go.Scatter]:
    """Per layer, a black line over the rank bins that hold selected neurons, and the layer's
    count at its right end (customdata: ``[layer, count]``)."""
    import plotly.graph_objects as go

    xs: list[float | None] = []
    ys: list[int | None] = []
    ends, labels = [], []
    for layer, row in enumerate(counts.tolist()):
        hit = [b for b, c in enumerate(row) if c]
        for b in hit:
            if b - 1 not in hit:  # a run of consecutive bins starts: one segment per run
                xs += [x_edges[b]]
                ys += [layer]
            if b + 1 not in hit:
                xs += [x_edges[b + 1], None]
                ys += [layer, None]
        if hit:
            ends.append((x_edges[hit[-1] + 1], layer))
            labels.append(sum(row))
    hover = f"{lang} · layer %{{y}}: %{{customdata[1]}} selected<extra></extra>"
    return [
        go.Scatter(x=xs, y=ys, mode="lines", line={"color": "black", "width": 2},
                   hoverinfo="skip", showlegend=False),
        go.Scatter(x=[x for x, _ in ends], y=[y for _, y in ends], mode="text",
                   text=[f" {n}" for n in labels], textposition="middle right",
                   textfont={"size": 10, "color": "black", "shadow": "0 0 3px white"},
                   cliponaxis=False, showlegend=False,
                   customdata=[[y, n] for (_, y), n in zip(ends, labels, strict=True)],
                   hovertemplate=hover),
    ]  # fmt: skip


def neuron_heatmap(
    stats: NeuronStats,
    statistic: str = "crane",
    langs: Sequence[str] | None = None,
    *,
    neurons: LanguageNeurons | None = None,
    specificity: bool = False,
    columns: int = 128,
    reduce: Reduce = "max",
    log_ranks: bool = True,
    symmetric: bool | None = None,
    title: str | None = None,
) -> go.Figure:
    """Each layer's neurons ranked by ``statistic`` (or its language specificity), one panel per
    language; a selected set's neurons marked where they rank.

    Within each layer the neurons are sorted by value, best first, and the ranks binned into at
    most ``columns`` bins (geometric widths with ``log_ranks``: single neurons at the top ranks,
    wide bins in the tail), so a panel draws at most ``layers × columns`` cells at any model size.
    Raw relevance ranks the same general-purpose neurons first in every language; with
    ``specificity`` the panels show what the selection rule ranks by: how much more a neuron
    matters for this language than for any other.

    Args:
        stats: Results of :func:`crane_lens.compute_stats`.
        statistic: A method or statistic name (see :attr:`NeuronStats.statistics`).
        langs: Languages to show (default: those of ``neurons``, else all of ``stats``).
        neurons: A selected set to mark: black dots on the bins its neurons fall in (larger:
            more of the bin selected); hover gives the per-layer count.
        specificity: Show :func:`~crane_lens.selection.specificity_scores` (against the max over
            all of ``stats``' other languages) instead of the raw values.
        columns: Most bins per layer.
        reduce: What a bin shows: ``"max"`` (its best neuron) or ``"mean"``.
        log_ranks: Geometric rank bins on a log axis (else equal bins, linear axis).
        symmetric: Diverging colour scale centred on 0 (default: when the values have both
            signs).
        title: Figure title.

    Returns:
        A plotly figure: per language a heatmap (and, with ``neurons``, a scatter of the marks).

    Example:
        >>> from crane_lens.model.spec import NEURON_HOOK, ModelSpec
        >>> from crane_lens.stats.results import NeuronStats
        >>> stats = NeuronStats(ModelSpec("toy", "Toy", 2, 8, 300, True, "float32", "cpu",
        ...                               NEURON_HOOK, 10), ("crane",))
        >>> for i, lang in enumerate(["en", "zh"]):
        ...     rel = torch.linspace(-1, 1, 600).reshape(2, 300).roll(100 * i, -1)
        ...     stats.sums[lang], stats.n_tokens[lang] = {"rel_sum": rel}, 1
        >>> fig = neuron_heatmap(stats, "crane", columns=16)
        >>> [len(trace.z[0]) for trace in fig.data], float(fig.data[0].customdata[1][0])
        ([16, 16], 1.0)
    """
    from plotly.subplots import make_subplots

    langs = list(langs if langs is not None else neurons.langs if neurons else stats.langs)
    values, name, unit, subtitle = _values(stats, statistic, specificity)
    values = values[[stats.langs.index(lang) for lang in langs]]
    n_layers, d_mlp = values.shape[1:]
    edges = rank_edges(d_mlp, columns, log=log_ranks)
    binned, rank, _ = rank_bins(values, edges, reduce)
    if symmetric is None:
        symmetric = bool((values < 0).any() and (values > 0).any())
    z, colour = _colour(binned, values, symmetric, 1.0 if specificity else None)
    ticks = colour.pop("tickvals"), colour.pop("ticktext")
    rows, cols, panel_w, panel_h = _grid(len(langs), n_layers)
    gap_w, gap_h = 56, 84
    unit += "<br>signed log scale" if symmetric else ""
    left, right, bottom_px = 70, colorbar_px(name, unit), 60
    # Narrower panels where the columns would not fit a page (the report's content column).
    panel_w = min(panel_w, int((PAGE_WIDTH - left - right - (cols - 1) * gap_w) // cols))
    plot_w, plot_h = cols * panel_w + (cols - 1) * gap_w, rows * panel_h + (rows - 1) * gap_h
    sizes = (edges[1:] - edges[:-1]).tolist()
    titles = [lang if neurons is None else f"{lang} · {neurons.count(lang):,} selected"
              for lang in langs]  # fmt: skip
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, shared_xaxes="all",
                        horizontal_spacing=gap_w / plot_w if cols > 1 else 0.0,
                        vertical_spacing=gap_h / plot_h if rows > 1 else 0.0)  # fmt: skip
    # x: ranks counted from 1; a bin's edges at ±0.5 so that each rank sits inside its bin.
    x_edges = (edges.double() + 0.5).tolist()
    for i, lang in enumerate(langs):
        row, col = i // cols + 1, i % cols + 1
        fig.add_heatmap(
            # numpy arrays: plotly stores them as compact typed arrays in the HTML
            z=z[i].numpy(), x=x_edges, y=list(range(n_layers)), customdata=binned[i].numpy(),
            coloraxis="coloraxis", row=row, col=col,
            hovertemplate=f"{lang} · layer %{{y}} · rank ≈ %{{x:.0f}}<br>{name} = "
            "%{customdata:.4g}<extra></extra>",
        )  # fmt: skip
        if neurons is not None and lang in neurons.langs:
            counts = selected_per_bin(neurons.mask(lang), rank[i], edges)
            for trace in _marks(counts, x_edges, lang):
                fig.add_trace(trace, row=row, col=col)
    binning = "one neuron per bin at the top, wider below" if log_ranks else \
        f"bins of {sizes[0]:,}"  # fmt: skip
    ranked_by = f"{name}" if not specificity else "specificity"
    tickvals, ticktext = _ticks(d_mlp)
    fig.update_xaxes(type="log" if log_ranks else "linear", range=None, showgrid=False,
                     tickvals=tickvals if log_ranks else None,
                     ticktext=ticktext if log_ranks else None, ticks="outside")  # fmt: skip
    if log_ranks:
        fig.update_xaxes(range=[math.log10(x_edges[0]), math.log10(x_edges[-1])])
    else:
        fig.update_xaxes(range=[x_edges[0], x_edges[-1]])
    for c in range(1, cols + 1):
        bottom = max(r for r in range(1, rows + 1) if (r - 1) * cols + c <= len(langs))
        fig.update_xaxes(title_text=f"rank within layer by {ranked_by} ({binning}; "
                         f"{reduce} per bin)" if cols == 1 else "rank within layer",
                         showticklabels=True, row=bottom, col=c)  # fmt: skip
    fig.update_yaxes(
        dtick=max(1, math.ceil(n_layers / 6)), showgrid=False, range=[-0.5, n_layers - 0.5]
    )
    fig.update_yaxes(title_text="layer", col=1)
    fig.update_annotations(font={"size": 13})
    if cols > 1:
        subtitle += f"<br>x: rank within each layer by {ranked_by} ({binning}; {reduce} per bin)"
    if neurons is not None:
        subtitle += (f"<br>black lines: the ranks of the {neurons.method or 'selected'} set's "
                     "neurons; number: how many of them the layer holds")  # fmt: skip
    title = title or f"{name}: each layer's neurons ranked by value — {stats.spec.name}"
    top_px = 64 + 16 * (subtitle.count("<br>") + 1) + 44
    return page_layout(
        fig, title, subtitle, (plot_w, plot_h), (left, right, top_px, bottom_px),
        coloraxis={**colour, "colorbar": colorbar(
            name, unit, len=min(1.0, 360 / plot_h),
            y=1, yanchor="top", tickvals=ticks[0], ticktext=ticks[1],
        )},
    )  # fmt: skip
