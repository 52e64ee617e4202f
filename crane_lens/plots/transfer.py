"""Do one model's language sets still break another model (base → chat) selectively?"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import TYPE_CHECKING

from crane_lens.plots.matrix import text_px
from crane_lens.plots.overlap import finish

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from crane_lens.evaluation.ablation import AblationMatrix

OWN, OTHERS, RANDOM = "#b2182b", "#f4a582", "#404040"
COLUMNS = ["condition", "lang", "n_neurons", "own", "others", "random_own", "random_own_std",
           "random_others", "random_others_std"]  # fmt: skip


def _random(matrix: AblationMatrix, a: str) -> tuple[float, float, float, float]:
    """Random sets of ``a``'s per-layer sizes: ΔNLL on ``a`` and mean ΔNLL on the other
    languages, each as (mean, std) over seeds (NaN without random sets; std NaN for one seed).
    """
    runs = matrix.random_nll.get(a, {})
    if not runs or a not in runs:
        return (math.nan,) * 4
    own = [v - matrix.baseline[a] for v in runs[a]]
    rest = [b for b in matrix.evaluated if b != a]
    # Per seed, the mean over the other languages: the spread is that of what the bar shows.
    # NaN without other languages, or with random sets evaluated on their own language only.
    others = [statistics.fmean(runs[b][s] - matrix.baseline[b] for b in rest)
              for s in range(len(own))] if rest and all(b in runs for b in rest) else [math.nan]  # fmt: skip

    def spread(x: list[float]) -> float:
        return statistics.stdev(x) if len(x) > 1 else math.nan

    return statistics.fmean(own), spread(own), statistics.fmean(others), spread(others)


def transfer_table(matrices: Mapping[str, AblationMatrix]) -> pd.DataFrame:
    """Per condition and masked language: own and others ΔNLL, and the random controls'.

    Args:
        matrices: ``{condition: AblationMatrix}``, e.g. ``{"base sets on base": ...,
            "base sets on chat": ..., "chat sets on chat": ...}``.

    Returns:
        One row per (condition, masked language that is also evaluated): ``n_neurons``, ``own``
        and ``others`` (as :meth:`AblationMatrix.selectivity`), ``random_own`` /
        ``random_others`` (mean over seeds) and their ``_std`` (std over seeds; ``others`` is
        averaged over the other languages seed by seed first).

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> m = AblationMatrix("crane", "zero", ["en", "zh"], ["en", "zh"], {"en": 2.0, "zh": 3.0},
        ...     {"en": {"en": 2.5, "zh": 3.1}, "zh": {"en": 2.1, "zh": 3.9}},
        ...     {"en": {"en": [2.0, 2.2], "zh": [3.0, 3.0]},
        ...      "zh": {"en": [2.0, 2.0], "zh": [3.1, 3.1]}})
        >>> row = transfer_table({"base": m}).iloc[0]
        >>> [round(float(row[c]), 2) for c in ("own", "others", "random_own", "random_own_std")]
        [0.5, 0.1, 0.1, 0.14]
    """
    import pandas as pd

    rows = []
    for condition, matrix in matrices.items():
        sel = matrix.selectivity()
        for a in matrix.masked:
            if a not in matrix.evaluated:
                continue
            rows.append([condition, a, matrix.n_neurons.get(a), float(sel.loc[a, "own"]),
                         float(sel.loc[a, "others"]), *_random(matrix, a)])  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def _value(v: float) -> str:
    """A ΔNLL as printed on a bar: small ones keep a significant digit ("0.003", not "0.00").

    Example:
        >>> [_value(v) for v in (1.234, 0.0123, -0.0031, 0.0)]
        ['1.23', '0.012', '-0.003', '0.000']
    """
    return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.3f}"


def _panel_title(condition: str, rows: pd.DataFrame) -> str:
    own, others = rows["own"].mean(), rows["others"].mean()
    index = ((rows["own"] - rows["others"]) / (rows["own"].abs() + rows["others"].abs())).mean()
    return (f"<b>{condition}</b>: mean own {own:.3g}, others {others:.3g} nats/token; "
            f"selectivity index {index:.2f}")  # fmt: skip


def transfer_chart(
    matrices: Mapping[str, AblationMatrix], jaccard: pd.DataFrame | None = None, *,
    title: str | None = None,
) -> go.Figure:  # fmt: skip
    """Own vs other-language ΔNLL of each language's set, one panel per condition.

    Made for base → chat transfer: with the panels "base sets on base", "base sets on chat"
    and "chat sets on chat", the base model's sets still break the chat model selectively where
    the middle panel's dark bars stand as far above its light bars (and above the random
    controls) as in the others. Any ``{label: AblationMatrix}`` works, e.g. one method at
    several budgets.

    Args:
        matrices: ``{condition: AblationMatrix}`` in panel order (see :func:`transfer_table`).
        jaccard: Optional overlap of the two models' sets, ``base_sets.jaccard(chat_sets)``; its
            same-language entries are drawn in a last panel.
        title: Figure title.

    Returns:
        Per panel: a dark bar (ΔNLL on the masked set's own language) and a light bar (mean
        ΔNLL on the other evaluated languages) per language; where the matrices have random
        control sets, a grey mark with error bars: their mean ± std over seeds.

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> m = AblationMatrix("crane", "zero", ["en", "zh"], ["en", "zh"], {"en": 2.0, "zh": 3.0},
        ...                    {"en": {"en": 2.5, "zh": 3.0}, "zh": {"en": 2.1, "zh": 3.9}})
        >>> fig = transfer_chart({"base sets on base": m, "base sets on chat": m})
        >>> own, others = [t for t in fig.data if t.type == "bar"][:2]
        >>> [round(v, 2) for v in own.y], [round(v, 2) for v in others.y]
        ([0.5, 0.9], [0.0, 0.1])
    """
    import pandas as pd
    from plotly.subplots import make_subplots

    table = transfer_table(matrices)
    if table.empty:
        raise ValueError("transfer_chart needs matrices whose masked languages are evaluated.")
    langs = list(dict.fromkeys(table["lang"]))
    pos = {lang: i for i, lang in enumerate(langs)}
    conditions = list(matrices)
    overlap = None
    if jaccard is not None:
        overlap = {x: float(jaccard.loc[x, x]) for x in langs
                   if x in jaccard.index and x in jaccard.columns}  # fmt: skip
    panel = 250
    heights = [panel] * len(conditions) + ([150] if overlap else [])
    titles = [_panel_title(c, table[table["condition"] == c]) for c in conditions]
    if overlap:
        titles.append(f"<b>overlap</b> of the two sets of each language (Jaccard index), mean "
                      f"{statistics.fmean(overlap.values()):.2f}")  # fmt: skip
    gap = 70
    plot_height = sum(heights) + gap * (len(heights) - 1)
    fig = make_subplots(rows=len(heights), cols=1, row_heights=heights, subplot_titles=titles,
                        vertical_spacing=gap / plot_height, shared_xaxes=True)  # fmt: skip
    label = len(langs) <= 8  # values on the bars while they are wide enough
    first = next(iter(matrices.values()))
    seeds = max((len(v) for m in matrices.values() for by_b in m.random_nll.values()
                 for v in by_b.values()), default=0)  # fmt: skip
    random_name = "random sets, same sizes" + (" (mean ± std)" if seeds > 1 else "")
    for row, condition in enumerate(conditions, start=1):
        rows = table[table["condition"] == condition]
        x = [pos[lang] for lang in rows["lang"]]
        top = row == 1
        hover = "%{customdata}: %{y:.4f} nats/token<extra>%{fullData.name}</extra>"
        for shift, column, colour, name in (
            (-0.2, "own", OWN, "own language"),
            (0.2, "others", OTHERS, "other languages (mean)"),
        ):
            rank = 1 if column == "own" else 2  # legend: own, others, then the random control
            fig.add_bar(
                x=[i + shift for i in x], y=rows[column].tolist(), width=0.38, name=name,
                marker_color=colour, legendgroup=column, showlegend=top, legendrank=rank,
                customdata=rows["lang"].tolist(), hovertemplate=hover, row=row, col=1,
            )  # fmt: skip
            mean, std = rows[f"random_{column}"], rows[f"random_{column}_std"]
            if label:  # the value above whatever is drawn there: bar, random mark, error bar
                above = pd.concat([rows[column], mean + std.fillna(0), 0 * mean], axis=1)
                fig.add_scatter(
                    x=[i + shift for i in x], y=above.max(axis=1).tolist(), mode="text",
                    text=[_value(v) for v in rows[column]], textposition="top center",
                    textfont={"size": 11}, showlegend=False, hoverinfo="skip", cliponaxis=False,
                    row=row, col=1,
                )  # fmt: skip
            if mean.notna().any():
                fig.add_scatter(
                    x=[i + shift for i in x], y=mean.tolist(), mode="markers",
                    name=random_name, legendgroup="random",
                    showlegend=top and column == "own", legendrank=3,
                    customdata=rows["lang"].tolist(),
                    marker={"symbol": "line-ew-open", "size": 16, "color": RANDOM,
                            "line": {"width": 2.5}},
                    error_y={"type": "data", "array": std.fillna(0).tolist(), "color": RANDOM,
                             "thickness": 1.5, "width": 5},
                    hovertemplate=hover, row=row, col=1,
                )  # fmt: skip
        fig.update_yaxes(title_text="ΔNLL (nats/token)", zeroline=True, zerolinecolor="#777",
                         row=row, col=1)  # fmt: skip
    # One y range for every ΔNLL panel, so the conditions compare at a glance (headroom for
    # the values printed above the bars).
    drawn = [table[c] for c in ("own", "others")]
    drawn += [table[f"random_{c}"] + sign * table[f"random_{c}_std"].fillna(0)
              for c in ("own", "others") for sign in (-1, 1)]  # fmt: skip
    low = min(0.0, *(float(v.min()) for v in drawn if v.notna().any()))
    high = max(0.0, *(float(v.max()) for v in drawn if v.notna().any()))
    span = high - low or 1.0
    for row in range(1, len(conditions) + 1):
        fig.update_yaxes(range=[low - 0.04 * span * (low < 0), high + 0.12 * span], row=row,
                         col=1)  # fmt: skip
    if overlap:
        row = len(heights)
        fig.add_bar(
            x=[pos[x] for x in overlap], y=list(overlap.values()), width=0.5, showlegend=False,
            marker_color="#4393c3", text=[f"{v:.2f}" for v in overlap.values()],
            textposition="outside", textfont={"size": 11}, cliponaxis=False,
            customdata=list(overlap), name="Jaccard",
            hovertemplate="%{customdata}: Jaccard %{y:.3f}<extra></extra>", row=row, col=1,
        )  # fmt: skip
        fig.update_yaxes(title_text="Jaccard index", range=[0, 1.15], tickvals=[0, 0.5, 1],
                         row=row, col=1)  # fmt: skip
    fig.update_xaxes(tickvals=list(range(len(langs))), ticktext=langs, showticklabels=True,
                     range=[-0.6, len(langs) - 0.4], showgrid=False)  # fmt: skip
    fig.update_xaxes(title_text="masked set's language", row=len(heights), col=1)
    fig.update_annotations(font_size=13, xanchor="left", x=0)
    subtitle = (f"ΔNLL when a language's {first.method} set is masked ({first.mode} ablation): "
                f"on that language (dark) and averaged over the other {len(langs) - 1} "
                "evaluated languages (light)")  # fmt: skip
    if table["random_own"].notna().any():
        spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
        subtitle += f"; grey: random sets of the same per-layer sizes ({spread})"
    width = max(80 + 20 + 52 * len(langs), 640, max(text_px(t, 13) for t in titles) + 100)
    fig.update_layout(barmode="overlay", bargap=0,
                      legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 0.005,
                              "yanchor": "bottom", "yref": "container"})  # fmt: skip
    fig = finish(fig, title=title or "Own vs other-language damage of the masked sets",
                 subtitle=subtitle, width=width, plot_height=plot_height, left=80,
                 bottom=100, header=20)  # fmt: skip
    return fig
