"""Jaccard overlap of selected neuron sets: between languages, and between methods."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from crane_lens.plots.matrix import TEMPLATE, colorbar, colorbar_px, text_px, wrap

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from crane_lens.selection.neurons import LanguageNeurons

CELL = 46  # px per heatmap cell: room for "0.53" at 12 px
TITLE_SIZE, SUBTITLE_SIZE = 17, 12  # as matrix.page_layout's
UNIT = "|A ∩ B| / |A ∪ B|"
DIAGONAL = "#e4e4e4"  # neutral grey of the diagonal's set sizes: outside the Blues scale


def finish(
    fig: go.Figure, *, title: str, subtitle: str, width: float, plot_height: float,
    left: float = 70, right: float = 20, bottom: float = 60, header: float = 0,
) -> go.Figure:  # fmt: skip
    """Size ``fig`` to its content: ``plot_height`` px of plotting area below a left-aligned
    title and subtitle, with the house style of :func:`crane_lens.plots.matrix.page_layout`.

    Unlike ``page_layout``, which widens a figure to its longest title line, this wraps the
    title and subtitle to ``width`` (the content's): a narrow figure keeps its width and a
    title never runs past the edge. ``header``: px kept free above the plotting area (for the
    first row's subplot titles).
    """
    width = math.ceil(width)
    title, subtitle = wrap(title, width - 30, TITLE_SIZE), wrap(subtitle, width - 30)
    top = 40 + 24 * (title.count("<br>") + 1) + 17 * (subtitle.count("<br>") + 1) + header
    height = math.ceil(top + plot_height + bottom)
    fig.update_layout(
        template=TEMPLATE, font={"size": 13}, width=width, height=height,
        margin={"l": left, "r": right, "t": top, "b": bottom},
        title={"text": title, "font": {"size": TITLE_SIZE}, "x": 0.01, "xanchor": "left",
               "yref": "container", "y": 1 - 18 / height, "yanchor": "top",
               "subtitle": {"text": subtitle, "font": {"size": SUBTITLE_SIZE}}},
    )  # fmt: skip
    return fig


def cell_label(value: float) -> str:
    """A Jaccard index as a cell shows it: two decimals with a leading zero, exact zeros and
    ones as "0" and "1", tiny values "<0.01" rather than "0.00".

    Example:
        >>> [cell_label(v) for v in (0.0, 0.003, 0.456, 1.0, float("nan"))]
        ['0', '<0.01', '0.46', '1', '']
    """
    if math.isnan(value):
        return ""
    if value in (0.0, 1.0):
        return f"{value:.0f}"
    return "<0.01" if value < 0.005 else f"{value:.2f}"


def size_label(count: int) -> str:
    """A set size as a diagonal cell shows it, marked as a count ("n=") so that it never reads
    as a Jaccard index; thousands compacted to fit a cell.

    Example:
        >>> [size_label(n) for n in (41, 4587, 45875)]
        ['n=41', 'n=4,587', 'n=46k']
    """
    return f"n={count:,}" if count < 10_000 else f"n={count / 1000:.0f}k"


def _heatmap(
    z: list[list[float]], x: list[str], y: list[str], *, title: str, subtitle: str,
    x_title: str, y_title: str, diagonal: list[int] | None = None,
    diagonal_what: str = "neurons in the set",
) -> go.Figure:  # fmt: skip
    """Cells labelled with their values, a sequential scale from 0 to the largest value.

    ``diagonal`` (a square table only): the set sizes, drawn as "n=41" on neutral grey over the
    diagonal instead of its trivial Jaccard of 1, which would otherwise set the colour scale.
    """
    import plotly.graph_objects as go

    shown = [[math.nan if diagonal is not None and i == j else v for j, v in enumerate(row)]
             for i, row in enumerate(z)]  # fmt: skip
    finite = [v for row in shown for v in row if not math.isnan(v)]
    # From 0 (no overlap), so a colour means the same overlap in every figure up to the top;
    # a top of at least 0.1 keeps overlaps of 0.02 from looking dark, and disjoint sets get 0–1.
    top = max(finite, default=0.0)
    high = 1.0 if top == 0 else max(top, 0.1)
    cell = max(CELL, min(100, 300 // max(len(x), len(y))))  # small tables: bigger cells
    fig = go.Figure(go.Heatmap(
        z=shown, x=x, y=y, text=[[cell_label(v) for v in row] for row in shown],
        texttemplate="%{text}", textfont={"size": 12}, colorscale="Blues", zmin=0.0, zmax=high,
        # Tick labels below their ticks: the scale ends at the largest value, often a round
        # tick (0.1, 1), whose label would otherwise reach up into the colour bar's title.
        xgap=1, ygap=1, colorbar=colorbar("Jaccard index", UNIT, ticklabelposition="outside bottom",
                                          len=min(1.0, max(0.6, 180 / (cell * len(y))))),
        hovertemplate=f"{y_title} %{{y}} · {x_title} %{{x}}<br>Jaccard %{{z:.3f}}<extra></extra>",
        hoverongaps=False,
    ))  # fmt: skip
    if diagonal is not None:
        fig.add_heatmap(
            z=[[1.0 if i == j else math.nan for j in range(len(x))] for i in range(len(y))],
            x=x, y=y, text=[[size_label(n) if i == j else "" for j in range(len(x))]
                            for i, n in enumerate(diagonal)],
            customdata=[[f"{n:,}" for _ in x] for n in diagonal],
            texttemplate="%{text}", textfont={"size": 10, "color": "#555"},
            colorscale=[[0, DIAGONAL], [1, DIAGONAL]], showscale=False, xgap=1, ygap=1,
            hovertemplate=f"%{{y}}: %{{customdata}} {diagonal_what}<br>(a count, not a "
                          "Jaccard index)<extra></extra>", hoverongaps=False,
        )  # fmt: skip
    left = max(text_px(s, 12) for s in y) + 50
    bottom = int(max(text_px(s, 12) for s in x) * 0.72) + 50  # tick labels at −45°
    fig.update_xaxes(title_text=x_title, tickangle=-45, showgrid=False)
    fig.update_yaxes(title_text=y_title, autorange="reversed", showgrid=False)
    right = colorbar_px("Jaccard index", UNIT)
    return finish(fig, title=title, subtitle=subtitle, width=max(left + cell * len(x) + right, 380),
                  plot_height=cell * len(y), left=left, right=right, bottom=bottom)  # fmt: skip


def language_overlap(neurons: LanguageNeurons, *, title: str | None = None) -> go.Figure:
    """Jaccard overlap between the sets of every pair of languages, from one method.

    Args:
        neurons: Selected sets (:func:`crane_lens.select_language_neurons`).
        title: Figure title (default: names the method and the model).

    Returns:
        A heatmap of :meth:`LanguageNeurons.jaccard`, values in the cells; the diagonal shows
        each language's set size instead of its trivial overlap of 1.

    Example:
        >>> import torch
        >>> from crane_lens.selection import LanguageNeurons
        >>> sets = LanguageNeurons(1, 8, {"en": torch.tensor([[0, 0], [0, 1]]),
        ...                               "zh": torch.tensor([[0, 1], [0, 2], [0, 3]])})
        >>> fig = language_overlap(sets)
        >>> fig.data[0].text[0], fig.data[1].text[1]  # en vs en, zh: |{1}| / |{0, 1, 2, 3}|
        (['', '0.25'], ['', 'n=3'])
    """
    table = neurons.jaccard()
    langs = list(table.index)
    what = f"{neurons.method} sets" if neurons.method else "Sets"
    on = f" of {neurons.model}" if neurons.model else ""
    return _heatmap(
        table.values.tolist(), langs, langs,
        title=title or f"Overlap of the {what}{on} between languages",
        subtitle="Jaccard index per pair of languages; diagonal: neurons in the set",
        x_title="language", y_title="language", diagonal=[neurons.count(x) for x in langs],
    )  # fmt: skip


def method_overlap_table(neurons_by_method: Mapping[str, LanguageNeurons]) -> pd.DataFrame:
    """Same-language Jaccard overlap of every pair of methods, language by language.

    Args:
        neurons_by_method: ``{method: LanguageNeurons}`` for one model; only the languages every
            method covers are compared, in the first method's order.

    Returns:
        Long format, one row per (language, method pair): ``lang``, ``a``, ``b``, ``jaccard``.

    Example:
        >>> import torch
        >>> from crane_lens.selection import LanguageNeurons
        >>> one = LanguageNeurons(1, 8, {"en": torch.tensor([[0, 0], [0, 1]])})
        >>> two = LanguageNeurons(1, 8, {"en": torch.tensor([[0, 1]])})
        >>> method_overlap_table({"one": one, "two": two}).to_dict("records")
        [{'lang': 'en', 'a': 'one', 'b': 'two', 'jaccard': 0.5}]
    """
    import pandas as pd

    methods = list(neurons_by_method)
    first = neurons_by_method[methods[0]]
    langs = [x for x in first.langs if all(x in n.langs for n in neurons_by_method.values())]
    if not langs:
        raise ValueError(f"The methods {methods} have no language in common.")
    rows = []
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            pair = (
                neurons_by_method[a]
                .select_langs(langs)
                .jaccard(neurons_by_method[b].select_langs(langs))
            )
            rows += [{"lang": x, "a": a, "b": b, "jaccard": float(pair.loc[x, x])} for x in langs]
    return pd.DataFrame(rows, columns=["lang", "a", "b", "jaccard"])


def method_overlap(
    neurons_by_method: Mapping[str, LanguageNeurons], *, by_language: bool = False,
    title: str | None = None,
) -> go.Figure:  # fmt: skip
    """How far different methods pick the same neurons for the same language.

    Args:
        neurons_by_method: ``{method: LanguageNeurons}`` of one model (at least two methods).
        by_language: ``False``: method × method, the mean over languages of the same-language
            Jaccard index; ``True``: one row per language, one column per method pair.
        title: Figure title.

    Example:
        >>> import torch
        >>> from crane_lens.selection import LanguageNeurons
        >>> one = LanguageNeurons(1, 8, {"en": torch.tensor([[0, 0], [0, 1]]),
        ...                              "zh": torch.tensor([[0, 5]])})
        >>> two = LanguageNeurons(1, 8, {"en": torch.tensor([[0, 1]]),
        ...                              "zh": torch.tensor([[0, 5]])})
        >>> method_overlap({"one": one, "two": two}).data[0].z[0][1]  # mean of 0.5 and 1
        0.75
    """
    if len(neurons_by_method) < 2:
        raise ValueError("method_overlap compares at least two methods.")
    table = method_overlap_table(neurons_by_method)
    langs = list(dict.fromkeys(table["lang"]))
    sizes = {m: sorted({n.count(x) for x in langs}) for m, n in neurons_by_method.items()}
    size_note = "; ".join(
        f"{m} {s[0]:,}" if len(s) == 1 else f"{m} {s[0]:,}–{s[-1]:,}" for m, s in sizes.items()
    )
    if by_language:
        table["pair"] = table["a"] + " · " + table["b"]
        wide = table.pivot(index="lang", columns="pair", values="jaccard")
        pairs = list(dict.fromkeys(table["pair"]))
        return _heatmap(
            wide.loc[langs, pairs].values.tolist(), pairs, langs,
            title=title or "Same-language overlap of the methods' sets",
            subtitle=f"Jaccard per language and method pair; neurons per set: {size_note}",
            x_title="method pair", y_title="language",
        )  # fmt: skip
    methods = list(neurons_by_method)
    mean = table.groupby(["a", "b"])["jaccard"].mean()
    z = [[1.0 if a == b else float(mean.get((a, b), mean.get((b, a), math.nan)))
          for b in methods] for a in methods]  # fmt: skip
    return _heatmap(
        z, methods, methods,
        title=title or "Overlap of the methods' sets for the same language",
        subtitle=f"mean Jaccard over {len(langs)} languages; diagonal: mean neurons per set",
        x_title="method", y_title="method", diagonal_what="neurons per set, mean over languages",
        diagonal=[round(sum(n.count(x) for x in langs) / len(langs))
                  for n in neurons_by_method.values()],
    )  # fmt: skip
