"""Stability of the selected sets: split-half agreement per method, convergence with more text."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from crane_lens.plots.matrix import page_layout, text_px
from crane_lens.plots.sweep import _COLOURS, _COUNT_TICKS

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from crane_lens.selection.stability import SelectionStability

CHANCE = "#555"  # the chance level's dashed lines


def _rgba(colour: str, alpha: float) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def _settings(stability: SelectionStability) -> str:
    config = stability.config
    if config.get("k") is not None:
        return f"{config['k']} neurons per language"
    budget = config.get("budget")
    return f"{100 * budget:g} % of the neurons per language" if budget else ""


def stability_figure(stability: SelectionStability, *, title: str | None = None) -> go.Figure:
    """Two panels: how much each method's sets agree between two disjoint halves of the text,
    and how fast they approach the sets selected on all of it.

    Left: the split-half Jaccard index of every language (one dot each, over a box of their
    quartiles), per method; the dashed line over each box is the chance level, the Jaccard
    index of random sets of the same sizes. Right: the median over languages (band: the
    quartiles) of the Jaccard index between the sets selected on a prefix of the text and on
    all of it, against the median tokens per language in the prefix (log axis); it reaches 1
    at all of the text by definition.

    Args:
        stability: From :func:`~crane_lens.selection.selection_stability`.
        title: Figure title (default names the model).

    Example:
        >>> from crane_lens.selection.stability import SelectionStability
        >>> rows = [{"kind": "split_half", "method": "crane", "lang": x, "fraction": 0.5,
        ...          "tokens_a": 500, "tokens_b": 500, "size_a": 41, "size_b": 41,
        ...          "jaccard": j, "chance": 0.005} for x, j in (("en", 0.6), ("vi", 0.4))]
        >>> rows += [{"kind": "convergence", "method": "crane", "lang": x, "fraction": f,
        ...           "tokens_a": int(1000 * f), "tokens_b": 1000, "size_a": 41, "size_b": 41,
        ...           "jaccard": f, "chance": 0.005} for x in ("en", "vi") for f in (0.5, 1.0)]
        >>> fig = stability_figure(SelectionStability("toy", ["crane"], ["en", "vi"], rows, 4096))
        >>> [t.name for t in fig.data]
        ['crane', 'crane', 'CRANE', 'chance: random sets of the same sizes']
    """
    from plotly.subplots import make_subplots

    if not stability.methods or not stability.rows:
        raise ValueError("stability_figure needs a SelectionStability with at least one method.")
    from crane_lens.selection.stability import method_label

    halves = stability.to_dataframe()
    halves = halves[halves["kind"] == "split_half"]
    curves = stability.convergence()
    summary = stability.summary()
    fig = make_subplots(
        # Six methods need the room for their labels side by side.
        rows=1, cols=2, column_widths=[0.42, 0.58] if len(stability.methods) <= 4 else [0.5, 0.5],
        horizontal_spacing=0.11,
        subplot_titles=("two disjoint halves of the text: Jaccard index of the sets",
                        "more text: Jaccard index with the sets from all of it"),
    )  # fmt: skip
    # Category labels carry the median, so no number has to sit on the dots.
    labels = {m: f"{method_label(m)}<br>{summary.loc[m, 'median']:.2f}"
              for m in stability.methods}  # fmt: skip
    for i, method in enumerate(stability.methods):
        colour = _COLOURS[i % len(_COLOURS)]
        rows = halves[halves["method"] == method]
        fig.add_box(
            x=[labels[method]] * len(rows), y=rows["jaccard"].tolist(), name=method,
            legendgroup=method, showlegend=False, boxpoints="all", jitter=0.5, pointpos=0,
            marker={"color": colour, "size": 7, "opacity": 0.85},
            line={"color": colour, "width": 1.5}, fillcolor=_rgba(colour, 0.12),
            customdata=list(zip(rows["lang"], rows["size_a"], rows["size_b"], strict=True)),
            hovertemplate=f"{method_label(method)} · %{{customdata[0]}}: Jaccard %{{y:.3f}}<br>"
                          "sets of %{customdata[1]} and %{customdata[2]} neurons<extra></extra>",
            row=1, col=1,
        )  # fmt: skip
        chance = float(rows["chance"].median())
        fig.add_shape(type="line", x0=i - 0.42, x1=i + 0.42, y0=chance, y1=chance,
                      xref="x", yref="y", line={"color": CHANCE, "width": 1.5, "dash": "dash"})  # fmt: skip
        per_fraction = curves[curves["method"] == method].groupby("fraction")
        x = per_fraction["tokens"].median()
        low, mid, high = (per_fraction["jaccard"].quantile(q) for q in (0.25, 0.5, 0.75))
        band_x = x.tolist() + x.tolist()[::-1]
        fig.add_scatter(
            x=band_x, y=high.tolist() + low.tolist()[::-1], fill="toself", mode="lines",
            line={"width": 0}, fillcolor=_rgba(colour, 0.15), hoverinfo="skip",
            legendgroup=method, showlegend=False, name=method, row=1, col=2,
        )  # fmt: skip
        fig.add_scatter(
            x=x.tolist(), y=mid.tolist(), mode="lines+markers", name=method_label(method),
            legendgroup=method, line={"color": colour, "width": 2.2},
            marker={"color": colour, "size": 7},
            customdata=[[_fraction(f), lo, hi] for f, lo, hi in
                        zip(x.index, low.tolist(), high.tolist(), strict=True)],
            hovertemplate=f"{method_label(method)} · %{{customdata[0]}} of the text "
                          "(%{x:,.0f} tokens per language)<br>median Jaccard %{y:.3f} "
                          "(quartiles %{customdata[1]:.2f}–%{customdata[2]:.2f})<extra></extra>",
            row=1, col=2,
        )  # fmt: skip
    chance_all = float(curves["chance"].median())
    fig.add_scatter(x=[None], y=[None], mode="lines", name="chance: random sets of the same sizes",
                    line={"color": CHANCE, "width": 1.5, "dash": "dash"}, row=1, col=2)  # fmt: skip
    fig.add_hline(y=chance_all, line={"color": CHANCE, "width": 1.5, "dash": "dash"}, row=1, col=2)
    # Ticks at the prefixes themselves (tokens and fraction) when every method has the same
    # tokens there (one statistics object: always); 1-2-5 ticks otherwise.
    points = curves.groupby("fraction")["tokens"].median()
    if curves.groupby("fraction")["tokens"].nunique().max() == 1 or len(stability.langs) == 1:
        tickvals = points.tolist()
        ticktext = [f"{t:,.0f}<br>{_fraction(f)}" for f, t in points.items()]
    else:
        tokens = curves["tokens"]
        tickvals = [t for t in _COUNT_TICKS if tokens.min() / 2 <= t <= tokens.max() * 2]
        ticktext = [f"{t:,}" for t in tickvals]
    # Horizontal labels even for six methods: rotated ones read badly and push the plot up.
    fig.update_xaxes(type="category", title_text="method (median)", tickangle=0,
                     tickfont={"size": 12 if len(stability.methods) <= 4 else 11}, row=1, col=1)  # fmt: skip
    fig.update_xaxes(type="log", title_text="tokens per language (and share of the text)",
                     tickvals=tickvals, ticktext=ticktext, row=1, col=2)  # fmt: skip
    fig.update_yaxes(title_text="Jaccard index |A ∩ B| / |A ∪ B|", range=[-0.02, 1.02], dtick=0.2,
                     row=1, col=1)  # fmt: skip
    fig.update_yaxes(title_text="median Jaccard index with the full-data set",
                     range=[-0.02, 1.02], dtick=0.2, row=1, col=2)  # fmt: skip
    fig.update_annotations(font={"size": 13})
    n_langs = len(stability.langs)
    title = title or f"How stable are the selected neuron sets? — {stability.model}"
    settings = _settings(stability)
    subtitle = (
        f"{n_langs} language{'s' if n_langs != 1 else ''}{f', {settings}' if settings else ''}"
        ". Dots: languages; dashed: chance (random sets of the same sizes); band: quartiles."
    )
    legend_px = max(text_px(t.name, 12) for t in fig.data if t.showlegend is not False)
    left, right, top, bottom = 70, 60 + legend_px, 110, 80
    plot_w = min(1100 - left - right, max(640, 150 * len(stability.methods) + 420))
    return page_layout(
        fig, title, subtitle, (plot_w, 430), (left, right, top, bottom),
        legend={"x": 1.02, "xanchor": "left", "y": 1.0, "yanchor": "top"},
    )  # fmt: skip


def _fraction(fraction: float) -> str:
    return "all" if math.isclose(fraction, 1) else f"1/{round(1 / fraction)}"
