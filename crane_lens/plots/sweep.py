"""Budget sweep: own-language vs other-language damage as the masked sets grow."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crane_lens.evaluation.intervals import DEFAULT_LEVEL

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from crane_lens.evaluation.ablation import AblationMatrix

# 1-2-5 ticks: plotly's own log ticks label 0.2 and 0.5 as "2" and "5".
_LOG_TICKS = [m * 10.0**e for e in range(-6, 3) for m in (1, 2, 5)]
_COUNT_TICKS = [m * 10**e for e in range(7) for m in (1, 2, 5)]
_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#7f7f7f"]


def sweep_table(matrices: Mapping[float, Mapping[str, AblationMatrix]]) -> pd.DataFrame:
    """One row per (budget, method): mean own ΔNLL, mean others ΔNLL and mean selectivity index.

    Args:
        matrices: ``{budget: {method: AblationMatrix}}``, budgets as fractions of all neurons per
            language (as given to ``select_language_neurons``).

    Returns:
        Columns ``budget``, ``method``, ``neurons`` (mean set size), ``own``, ``others``,
        ``index`` (means over the masked languages), and their bootstrap intervals
        ``own_low``, ``own_high``, ... (NaN for matrices without per-block results).

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> m = AblationMatrix("crane", "zero", ["en", "zh"], ["en", "zh"], {"en": 2.0, "zh": 3.0},
        ...                    {"en": {"en": 2.5, "zh": 3.0}, "zh": {"en": 2.1, "zh": 3.9}})
        >>> sweep_table({0.01: {"crane": m}}).round(2).to_dict("records")[0]["own"]
        0.7
    """
    import pandas as pd

    rows = []
    for budget, by_method in sorted(matrices.items()):
        for method, matrix in by_method.items():
            s = matrix.summary()
            row = {"budget": budget, "method": method, "neurons": s["neurons"]}
            for key in ("own", "others", "index"):
                row |= {key: s[key], f"{key}_low": s.get(f"{key}_low", math.nan),
                        f"{key}_high": s.get(f"{key}_high", math.nan)}  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def _error_bars(rows: pd.DataFrame, key: str, colour: str) -> dict[str, Any] | None:
    """Asymmetric error bars from a sweep table's interval columns (``None`` without them)."""
    low, high = rows[f"{key}_low"], rows[f"{key}_high"]
    if not (low.notna().any() and high.notna().any()):
        return None
    return {"type": "data", "symmetric": False, "array": (high - rows[key]).fillna(0).tolist(),
            "arrayminus": (rows[key] - low).fillna(0).tolist(), "color": colour,
            "thickness": 1.2, "width": 4}  # fmt: skip


def budget_sweep(
    matrices: Mapping[float, Mapping[str, AblationMatrix]], *, title: str | None = None
) -> go.Figure:
    """Two panels over the sets' actual mean size (log axis; the budget shows on hover): mean
    ΔNLL on the masked set's own language (solid) and on the other languages (dashed), and the
    mean selectivity index, one colour per method; error bars: bootstrap intervals of the means
    over held-out blocks (matrices with per-block results).

    "Selective but not exclusive" reads off the left panel: where the solid line of a method
    stands well above its dashed line while the dashed line is above 0.

    Args:
        matrices: ``{budget: {method: AblationMatrix}}`` (see :func:`sweep_table`).
        title: Figure title (default: the model's name from the matrices' config, if any).

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> m = AblationMatrix("crane", "zero", ["en", "zh"], ["en", "zh"], {"en": 2.0, "zh": 3.0},
        ...                    {"en": {"en": 2.5, "zh": 3.0}, "zh": {"en": 2.1, "zh": 3.9}})
        >>> fig = budget_sweep({0.001: {"crane": m}, 0.01: {"crane": m}})
        >>> [trace.name for trace in fig.data]
        ['crane · own', 'crane · others', 'crane']
    """
    from plotly.subplots import make_subplots

    table = sweep_table(matrices)
    if table.empty:
        raise ValueError("budget_sweep needs at least one ablation matrix ({budget: {method: m}})")
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.12,
        subplot_titles=("ΔNLL when masking a language's set",
                        "selectivity index (own⁺ − others⁺) / (own⁺ + others⁺)"),
    )  # fmt: skip
    for i, (method, rows) in enumerate(table.groupby("method", sort=False)):
        colour = _COLOURS[i % len(_COLOURS)]
        # The x axis is the sets' actual mean size: a method that assigns neurons itself (LAPE)
        # can mask many more than the budget asks for.
        x = rows["neurons"].tolist()
        hover = ("budget %{customdata:g} %: %{x:.0f} neurons per language<br>%{y:.3f}"
                 "<extra>%{fullData.name}</extra>")  # fmt: skip
        budget = (rows["budget"] * 100).tolist()
        fig.add_scatter(x=x, y=rows["own"].tolist(), name=f"{method} · own", row=1, col=1,
                        mode="lines+markers", line={"color": colour}, legendgroup=method,
                        error_y=_error_bars(rows, "own", colour),
                        customdata=budget, hovertemplate=hover)  # fmt: skip
        fig.add_scatter(x=x, y=rows["others"].tolist(), name=f"{method} · others", row=1, col=1,
                        mode="lines+markers", line={"color": colour, "dash": "dash"},
                        marker={"symbol": "circle-open"}, legendgroup=method,
                        error_y=_error_bars(rows, "others", colour),
                        customdata=budget, hovertemplate=hover)  # fmt: skip
        fig.add_scatter(x=x, y=rows["index"].tolist(), name=method, row=1, col=2,
                        mode="lines+markers", line={"color": colour}, legendgroup=method,
                        error_y=_error_bars(rows, "index", colour),
                        showlegend=False, customdata=budget, hovertemplate=hover)  # fmt: skip
    positive = bool((table[["own", "others"]] > 0).all().all())
    fig.update_xaxes(type="log", title_text="neurons masked per language (mean set size)",
                     tickvals=_COUNT_TICKS, ticktext=[f"{t:,}" for t in _COUNT_TICKS])  # fmt: skip
    fig.update_yaxes(title_text="mean ΔNLL (nats/token; solid own, dashed others)",
                     type="log" if positive else "linear",
                     tickvals=_LOG_TICKS if positive else None,
                     ticktext=[f"{t:g}" for t in _LOG_TICKS] if positive else None,
                     zeroline=True, zerolinecolor="#888", row=1, col=1)  # fmt: skip
    low = min(-0.05, float(table["index"].min()) - 0.05)  # a set can hurt the others more
    fig.update_yaxes(title_text="mean selectivity index", range=[low, 1.05], row=1, col=2)
    if title is None:
        first = next((m for by in matrices.values() for m in by.values()), None)
        model = first.config.get("model") if first is not None else None
        title = f"Budget sweep{f' on {model}' if model else ''}: own vs other languages"
    if table["own_low"].notna().any():
        title += (f"<br><sup>error bars: {round(100 * DEFAULT_LEVEL):g} % bootstrap intervals of "
                  "the means, resampling held-out blocks</sup>")  # fmt: skip
    fig.update_layout(title=title, width=1100, height=480, template="plotly_white",
                      legend={"groupclick": "togglegroup"}, margin={"t": 110})  # fmt: skip
    return fig
