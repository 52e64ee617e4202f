"""Benchmarks under masking: multiple-choice accuracy (or generation language) per language.

The input is the ``benchmarks.json`` that ``crane-lens study`` writes
(:meth:`crane_lens.study.stages.Study.benchmarks`): ``{"mc": {condition: {lang: accuracy}}, "generation":
{condition: {lang: share}}, "mc_items": {lang: n}, "n_neurons": {condition: n}}`` (the last two
optional), where a condition is ``"none"`` (unmasked) or ``"<set name>:<masked language>"``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from crane_lens.plots.matrix import text_px
from crane_lens.plots.overlap import finish

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

UNMASKED = "none"
# (own language masked, other languages masked) per set, in set order.
PALETTE = [("#b2182b", "#f4a582"), ("#2166ac", "#92c5de"), ("#1b7837", "#a6dba0"),
           ("#762a83", "#c2a5cf"), ("#8c510a", "#dfc27d")]  # fmt: skip
LABELS = {
    "mc": ("accuracy", "Multiple-choice accuracy with language sets masked"),
    "generation": ("share in the prompt's language",
                   "Language of greedy continuations with language sets masked"),
}  # fmt: skip


def benchmark_table(benchmarks: Mapping[str, Any], key: str = "mc") -> pd.DataFrame:
    """``benchmarks[key]`` in long format.

    Returns:
        One row per (condition, evaluated language): ``set`` (``None`` unmasked), ``masked``
        (the masked set's language, ``None`` unmasked), ``evaluated``, ``value`` and
        ``n_neurons`` (neurons masked, where recorded).

    Example:
        >>> bench = {"mc": {"none": {"en": 0.6}, "crane:en": {"en": 0.4}}}
        >>> benchmark_table(bench).to_dict("records")[1]
        {'set': 'crane', 'masked': 'en', 'evaluated': 'en', 'value': 0.4, 'n_neurons': None}
    """
    import pandas as pd

    rows = []
    counts = benchmarks.get("n_neurons", {})
    for condition, by_lang in benchmarks[key].items():
        name, masked = (None, None) if condition == UNMASKED else condition.rsplit(":", 1)
        for lang, value in by_lang.items():
            rows.append({"set": name, "masked": masked, "evaluated": lang, "value": value,
                         "n_neurons": counts.get(condition) if name else None})  # fmt: skip
    return pd.DataFrame(rows, columns=["set", "masked", "evaluated", "value", "n_neurons"])


def accuracy_chart(
    benchmarks: Mapping[str, Any], *, key: Literal["mc", "generation"] = "mc",
    chance: float | None = None, title: str | None = None,
) -> go.Figure:  # fmt: skip
    """Per evaluated language: unmasked, with its own language's set masked, with the others'.

    A selective set lowers its own language's bar (dark) and leaves the other languages' sets'
    bars (light, the mean; dots: each masked language) at the unmasked level.

    Args:
        benchmarks: ``benchmarks.json`` (see the module's docstring).
        key: ``"mc"`` (multiple-choice accuracy; error bars ±1 binomial standard error from
            ``mc_items``) or ``"generation"`` (share of greedy continuations identified as the
            prompt's language).
        chance: Level of a dashed chance line (default 0.25, four options, for ``"mc"``; none
            for ``"generation"``).
        title: Figure title.

    Example:
        >>> bench = {"mc": {"none": {"en": 0.6, "zh": 0.5}, "crane:en": {"en": 0.4, "zh": 0.5},
        ...                 "crane:zh": {"en": 0.6, "zh": 0.3}}, "mc_items": {"en": 40, "zh": 40}}
        >>> fig = accuracy_chart(bench)
        >>> [(t.legendgroup, t.name, t.y) for t in fig.data[:3]]  # doctest: +NORMALIZE_WHITESPACE
        [('', 'unmasked', (0.6, 0.5)), ('crane', 'own language masked', (0.4, 0.3)),
         ('crane', 'other languages masked (mean)', (0.6, 0.5))]
    """
    import plotly.graph_objects as go

    if key not in LABELS:
        raise ValueError(f"key must be one of {list(LABELS)}, not {key!r}.")
    table = benchmark_table(benchmarks, key)
    if table.empty or not (table["set"].isna()).any():
        raise ValueError(f"benchmarks[{key!r}] needs an unmasked condition {UNMASKED!r}.")
    chance = 0.25 if chance is None and key == "mc" else chance
    langs = list(dict.fromkeys(table.loc[table["set"].isna(), "evaluated"]))
    sets = list(dict.fromkeys(table["set"].dropna()))
    items = benchmarks.get("mc_items", {}) if key == "mc" else {}
    n_bars = 1 + 2 * len(sets)
    width = 0.86 / n_bars
    # 40 px per bar leaves room for its value; many languages get narrower bars (≥ 12 px) and
    # their values on hover only, so the figure stays page-wide.
    bar_px = max(12.0, min(40.0, 1300 / (n_bars * len(langs))))
    group_px = bar_px * n_bars
    labelled = bar_px >= 28
    fig = go.Figure()

    def value(name: str | None, masked: str | None, lang: str) -> float:
        hit = table[(table["evaluated"] == lang) & (table["set"].fillna("") == (name or ""))
                    & (table["masked"].fillna("") == (masked or ""))]  # fmt: skip
        return float(hit["value"].iloc[0]) if len(hit) else math.nan

    def error(values: list[float]) -> dict[str, Any] | None:
        if not items:
            return None
        se = [math.sqrt(v * (1 - v) / items[x]) if x in items and not math.isnan(v) else 0.0
              for v, x in zip(values, langs, strict=True)]  # fmt: skip
        return {"type": "data", "array": se, "color": "#555", "thickness": 1.2, "width": 4}

    def bars(
        slot: int, values: list[float], name: str, colour: str, hover: list[str], group: str = ""
    ) -> None:
        # Light bars (slot 2, 4...) are means over several conditions: their circles show the
        # spread, a binomial error bar would not apply.
        x = [i - 0.43 + width * (slot + 0.5) for i in range(len(langs))]
        fig.add_bar(x=x, y=values, width=width * 0.92, name=name, marker_color=colour,
                    legendrank=slot, legendgroup=group, legendgrouptitle_text=group,
                    error_y=None if slot and slot % 2 == 0 else error(values),
                    text=["" if math.isnan(v) or not labelled else f"{v:.2f}" for v in values],
                    textangle=0,
                    insidetextanchor="start",
                    # At the bar's foot; above a bar too short to hold it (e.g. 0.00).
                    textposition=["inside" if v >= 0.08 else "outside" for v in values],
                    textfont={"size": 11, "color": [("white" if slot % 2 else "#222")
                                                    if v >= 0.08 else "#222" for v in values]},
                    cliponaxis=False, customdata=hover,
                    hovertemplate="%{customdata}: %{y:.3f}<extra></extra>")  # fmt: skip

    base = [value(None, None, x) for x in langs]
    bars(0, base, "unmasked", "#9e9e9e", [f"{x}, unmasked" for x in langs])
    for k, name in enumerate(sets):
        dark, light = PALETTE[k % len(PALETTE)]
        own = [value(name, x, x) for x in langs]
        counts = table[(table["set"] == name)].set_index("masked")["n_neurons"].to_dict()
        size = [f" ({counts[x]:.0f} neurons)" if counts.get(x) is not None
                and not math.isnan(counts[x]) else "" for x in langs]  # fmt: skip
        bars(
            2 * k + 1,
            own,
            "own language masked",
            dark,
            [f"{x}, {name} set of {x} masked{s}" for x, s in zip(langs, size, strict=True)],
            name,
        )
        masked = [m for m in dict.fromkeys(table.loc[table["set"] == name, "masked"])]
        others = {x: {m: value(name, m, x) for m in masked if m != x} for x in langs}
        mean = [statistics.fmean(v.values()) if v else math.nan for v in others.values()]
        bars(
            2 * k + 2,
            mean,
            "other languages masked (mean)",
            light,
            [f"{x}, mean over {name} sets of {', '.join(v)} masked" for x, v in others.items()],
            name,
        )
        centre = [i - 0.43 + width * (2 * k + 2.5) for i in range(len(langs))]
        dots = [(c, v, m, x) for c, x in zip(centre, langs, strict=True)
                for m, v in others[x].items()]  # fmt: skip
        fig.add_scatter(
            x=[d[0] for d in dots], y=[d[1] for d in dots], mode="markers", showlegend=k == 0,
            name="one other language's set masked", legendgroup="dots", legendrank=n_bars,
            marker={"color": "#222", "size": 6, "symbol": "circle-open", "line": {"width": 1.5}},
            customdata=[f"{x}, {name} set of {m} masked" for _, _, m, x in dots],
            hovertemplate="%{customdata}: %{y:.3f}<extra></extra>",
        )  # fmt: skip
    axis, default_title = LABELS[key]
    if chance is not None:
        fig.add_hline(y=chance, line={"dash": "dash", "color": "#444", "width": 1.2})
        fig.add_annotation(x=1, xref="paper", xanchor="left", y=chance, showarrow=False,
                           text=f"chance<br>{chance:g}", align="left")  # fmt: skip
    counts = {items.get(x) for x in langs}
    if len(counts) == 1 and None not in counts:  # one count for all: said once
        ticks, x_title = langs, f"evaluated language ({counts.pop()} items each)"
    else:
        ticks = [f"{x}<br>({items[x]} items)" if x in items else x for x in langs]
        x_title = "evaluated language"
    fig.update_xaxes(tickvals=list(range(len(langs))), ticktext=ticks, showgrid=False,
                     range=[-0.5, len(langs) - 0.5], title_text=x_title)  # fmt: skip
    fig.update_yaxes(title_text=axis, range=[0, 1.04], tickformat=".1f", dtick=0.2)
    width = max(round(140 + group_px * len(langs)), 760)
    # Legend: "unmasked", then per set a titled group of two entries, wrapping like text.
    names = ["other languages masked (mean)", *sets]
    group = max(text_px(name, 12) for name in names) + 60
    rows, used = 1, 110.0  # "unmasked" opens the first row; the circles' entry gets its own
    for _ in sets:
        rows, used = (rows + 1, group) if used + group > width - 40 else (rows, used + group)
    fig.update_layout(barmode="overlay", legend={
        "orientation": "h", "x": 0, "y": 0.005, "xanchor": "left", "yanchor": "bottom",
        "yref": "container"})  # fmt: skip
    subtitle = ("Per evaluated language: unmasked (grey); that language's set masked (dark); "
                "the other languages' sets masked (light: mean, circles: each)")  # fmt: skip
    if items:
        subtitle += "; error bars ±1 binomial standard error"
    return finish(fig, title=title or default_title, subtitle=subtitle, width=width,
                  plot_height=380, left=70, right=70,
                  bottom=54 + 16 * max(t.count('<br>') + 1 for t in ticks) + 58 * rows)  # fmt: skip
