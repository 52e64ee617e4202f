"""Where a method's language-specific neurons are: per layer, per language, exclusive or shared."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crane_lens.plots.matrix import colorbar, colorbar_px, page_layout, size_range

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from crane_lens.selection.neurons import LanguageNeurons

# Oranges, apart from the heatmap's blues. Dark: in one language's set only; light: in several.
EXCLUSIVE, SHARED = "#d94801", "#fdbe85"


def count_tables(neurons: LanguageNeurons) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three tables :func:`neuron_counts` draws, from ``neurons.overlap_counts()``.

    Returns:
        ``(per_cell, per_lang, per_layer)``: selected neurons as a layer × language table;
        exclusive and shared neurons per language; and per layer, summed over languages.

    Example:
        >>> import torch
        >>> from crane_lens.selection.neurons import LanguageNeurons
        >>> n = LanguageNeurons(2, 4, {"en": torch.tensor([[0, 1], [1, 2]]),
        ...                            "zh": torch.tensor([[1, 2], [1, 3]])})
        >>> cells, langs, layers = count_tables(n)
        >>> cells.to_dict("list"), langs.to_dict("list"), layers.to_dict("list")
        ({'en': [1, 1], 'zh': [0, 2]}, {'exclusive': [1, 1], 'shared': [1, 1]}, \
{'exclusive': [1, 1], 'shared': [0, 2]})
    """
    table = neurons.overlap_counts()
    layers = table[table["layer"] != "all"].astype({"layer": int})
    cells = layers.pivot(index="layer", columns="lang", values="selected")[neurons.langs]
    per_lang = table[table["layer"] == "all"].set_index("lang")[["exclusive", "shared"]]
    per_layer = layers.groupby("layer")[["exclusive", "shared"]].sum()
    cells.columns.name = per_lang.index.name = None
    return cells, per_lang.loc[neurons.langs], per_layer


def neuron_counts(neurons: LanguageNeurons, *, title: str | None = None) -> go.Figure:
    """Language-specific neurons per layer and language, and how many are exclusive or shared.

    The centre is a layer × language heatmap of set sizes (numbers in the cells); above it,
    each language's set split into exclusive neurons (no other language's set holds them) and
    shared ones; to its right, the same split per layer, summed over languages (a neuron shared
    by k languages counts k times there). Readable from 3 languages × 4 layers to 17 × 32.

    Args:
        neurons: The sets of one method.
        title: Figure title (default: method and model).

    Example:
        >>> import torch
        >>> from crane_lens.selection.neurons import LanguageNeurons
        >>> n = LanguageNeurons(2, 4, {"en": torch.tensor([[0, 1], [1, 2]]),
        ...                            "zh": torch.tensor([[1, 2], [1, 3]])}, method="crane")
        >>> fig = neuron_counts(n)
        >>> fig.data[0].z.tolist(), [t.name for t in fig.data[1:3]]
        ([[1, 0], [1, 2]], ['exclusive', 'shared'])
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    cells, per_lang, per_layer = count_tables(neurons)
    n_langs, n_layers = len(neurons.langs), neurons.n_layers
    cell_w = max(30, min(72, 560 // max(n_langs, 1)))
    cell_h = max(14, min(40, 440 // max(n_layers, 1)))
    heat_w, heat_h, side_w, top_h, gap = cell_w * n_langs, cell_h * n_layers, 170, 150, 24
    plot_w, plot_h = heat_w + gap + side_w, top_h + gap + heat_h
    fig = make_subplots(
        rows=2, cols=2, shared_xaxes="columns", shared_yaxes="rows",
        column_widths=[heat_w, side_w], row_heights=[top_h, heat_h],
        horizontal_spacing=gap / plot_w, vertical_spacing=gap / plot_h,
    )  # fmt: skip
    z = cells.to_numpy()
    text_size = 12 if cell_h >= 22 and cell_w >= 40 else 10 if cell_h >= 16 else 9
    unit = "neurons"
    fig.add_trace(go.Heatmap(
        z=z, x=neurons.langs, y=list(cells.index), text=z, texttemplate="%{text}",
        textfont={"size": text_size}, colorscale="Blues", zmin=0, xgap=1, ygap=1,
        colorbar=colorbar("selected", unit, len=min(1.0, 320 / plot_h), y=0, yanchor="bottom",
                          x=1.0, xanchor="left", xpad=12),
        hovertemplate="%{x} · layer %{y}: %{z} selected<extra></extra>",
    ), row=2, col=1)  # fmt: skip
    for kind, colour in (("exclusive", EXCLUSIVE), ("shared", SHARED)):
        fig.add_bar(x=neurons.langs, y=per_lang[kind].tolist(), name=kind, marker_color=colour,
                    legendgroup=kind, row=1, col=1,
                    hovertemplate="%{x}: %{y} " + kind + "<extra></extra>")  # fmt: skip
    for kind, colour in (("exclusive", EXCLUSIVE), ("shared", SHARED)):
        fig.add_bar(y=list(per_layer.index), x=per_layer[kind].tolist(), name=kind,
                    orientation="h", marker_color=colour, legendgroup=kind, showlegend=False,
                    row=2, col=2,
                    hovertemplate="layer %{y}: %{x} " + kind + " (all languages)<extra></extra>")  # fmt: skip
    fig.update_layout(barmode="stack", bargap=0.15)
    fig.update_xaxes(tickangle=0, showgrid=False, row=2, col=1, title_text="language",
                     type="category")  # fmt: skip
    fig.update_xaxes(showticklabels=False, row=1, col=1, type="category")
    fig.update_yaxes(title_text="layer", row=2, col=1, dtick=1 if cell_h >= 16 else 2,
                     showgrid=False)  # fmt: skip
    fig.update_yaxes(title_text="neurons per language", row=1, col=1, rangemode="tozero")
    fig.update_xaxes(title_text="per layer, all languages", row=2, col=2, rangemode="tozero",
                     nticks=4)  # fmt: skip
    fig.update_yaxes(showticklabels=False, row=2, col=2)
    size = size_range(neurons.count(lang) for lang in neurons.langs)
    model = f" — {neurons.model}" if neurons.model else ""
    title = title or f"{neurons.method or 'Selected'} neurons per layer and language{model}"
    subtitle = (f"{size} neurons per language ({neurons.n_layers} layers × {neurons.d_mlp:,}); "
                "exclusive: no other language's set holds the neuron; shared: several do")  # fmt: skip
    left, right, top, bottom = 70, colorbar_px("selected", unit) + 10, 110, 60
    return page_layout(
        fig, title, subtitle, (plot_w, plot_h), (left, right, top, bottom),
        # the legend fills the free corner above the per-layer bars
        legend={"x": (heat_w + gap) / plot_w, "xanchor": "left", "y": 1.0, "yanchor": "top",
                "title": {"text": "neurons"}},
    )  # fmt: skip
