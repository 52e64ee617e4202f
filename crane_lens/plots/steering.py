"""Steering: does a language's set switch prompts of other languages into it, and at what cost?"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crane_lens.plots.matrix import text_px
from crane_lens.plots.overlap import finish

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from crane_lens.evaluation.steering import SteeringMatrix

_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
UNSTEERED = "#404040"


def steering_success(
    matrices: Mapping[str, SteeringMatrix], strength: float | None = None
) -> go.Figure:
    """Success rate per (source, target) pair: one heatmap per method, and the random sets'.

    Args:
        matrices: ``{label: SteeringMatrix}`` (one per method; same languages).
        strength: Which strength (default: each matrix's largest).

    Returns:
        Heatmaps, rows = prompt language, columns = target language, cell = the share of
        continuations identified as the target (the diagonal is not measured).

    Example:
        >>> import pandas as pd
        >>> from crane_lens.evaluation.steering import SteeringMatrix
        >>> rows = [{"condition": "selected", "strength": 1.0, "target": t, "source": s,
        ...          "prompt": 0, "success": float(t == "vi"), "stay": 0.0, "nll": 3.0,
        ...          "distinct_2": 1.0, "repetition": 0.0}
        ...         for t in ("en", "vi") for s in ("en", "vi") if s != t]
        >>> m = SteeringMatrix(pd.DataFrame(rows), {"targets": ["en", "vi"],
        ...                    "sources": ["en", "vi"], "strengths": [1.0], "mode": "replace"})
        >>> [len(trace.z) for trace in steering_success({"crane": m}).data]
        [2]
    """
    from plotly.subplots import make_subplots

    panels: list[tuple[str, pd.DataFrame]] = []
    for label, m in matrices.items():
        panels.append((label, m.rates("success", strength=strength)))
    first = next(iter(matrices.values()))
    if any(first.records.condition.str.startswith("random-")):
        label = f"random sets ({first.method}'s sizes)" if first.method else "random sets"
        panels.append((label, first.rates("success", strength=strength, condition="random")))
    n = len(panels)
    sources, targets = list(panels[0][1].index), list(panels[0][1].columns)
    cell = max(26.0, min(56.0, 560 / max(len(targets) * n, 1)))
    fig = make_subplots(rows=1, cols=n, subplot_titles=[p[0] for p in panels],
                        horizontal_spacing=0.04)  # fmt: skip
    for i, (_, table) in enumerate(panels, start=1):
        text = [["" if math.isnan(v) else f"{v:.2f}" for v in row] for row in table.to_numpy()]
        fig.add_heatmap(
            z=table.to_numpy(), x=targets, y=sources, zmin=0, zmax=1, colorscale="Greens",
            text=text if cell >= 30 else None, texttemplate="%{text}" if cell >= 30 else None,
            showscale=i == n, colorbar={"title": {"text": "success"}, "len": 0.9},
            hovertemplate="prompts in %{y}, steered to %{x}: %{z:.2f}<extra></extra>",
            row=1, col=i,
        )  # fmt: skip
        fig.update_xaxes(title_text="steered to", side="bottom", row=1, col=i)
        fig.update_yaxes(autorange="reversed", showticklabels=i == 1, row=1, col=i)
    fig.update_yaxes(title_text="prompt language", row=1, col=1)
    strengths = sorted({m.strengths[-1] if strength is None else strength
                        for m in matrices.values()})  # fmt: skip
    mode = first.config.get("mode", "")
    width = 110 + n * (cell * len(targets) + 30) + 90
    title = "Steering: share of continuations in the target language"
    return finish(
        fig, title=title,
        subtitle=f"mode {mode}, strength {', '.join(f'{s:g}' for s in strengths)}; rows: the "
        "prompt's language, columns: the language whose set steers; greedy continuations "
        "identified by language",
        width=max(width, text_px(title, 17) + 40), plot_height=cell * len(sources) + 10,
        left=90, right=90, bottom=70, header=24,
    )  # fmt: skip


def _band(summary: pd.DataFrame, metric: str) -> dict[str, Any] | None:
    low, high = summary[f"{metric}_low"], summary[f"{metric}_high"]
    if not (low.notna().any() and high.notna().any()):
        return None
    return {"type": "data", "symmetric": False, "array": (high - summary[metric]).tolist(),
            "arrayminus": (summary[metric] - low).tolist(), "thickness": 1.2, "width": 4}  # fmt: skip


def steering_strength(
    matrices: Mapping[str, SteeringMatrix], summaries: Mapping[str, pd.DataFrame] | None = None
) -> go.Figure:
    """Success (left) and fluency (right: the continuation's NLL under the unsteered model) as
    the strength grows, means over every (source, target) pair with 95 % intervals; each
    method's random sets of its sizes dashed in its colour, the unsteered model dotted.

    Args:
        matrices: ``{label: SteeringMatrix}``.
        summaries: Their :meth:`~crane_lens.evaluation.steering.SteeringMatrix.summary`
            (computed here when not given; the bootstrap takes a few seconds).
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.13, subplot_titles=[
        "success: continuation in the target language", "NLL of the continuation (nats/token)"])  # fmt: skip
    for i, (label, m) in enumerate(matrices.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        s = summaries[label] if summaries is not None else m.summary()
        s = s[s.target == "all"]
        # each method's own random sets (their sizes differ between methods), dashed
        for condition, name, dash in (("selected", label, "solid"),
                                      ("random", f"random sets of {label}'s sizes", "dash")):  # fmt: skip
            rows = s[s.condition == condition].sort_values("strength")
            if rows.empty:
                continue
            for col, metric in ((1, "success"), (2, "nll")):
                fig.add_scatter(
                    x=rows.strength, y=rows[metric], name=name, legendgroup=name,
                    showlegend=col == 1, mode="lines+markers",
                    line={"color": colour, "dash": dash, "width": 2 if dash == "solid" else 1.2},
                    error_y=_band(rows, metric), row=1, col=col,
                )  # fmt: skip
        base = s[s.condition == "none"]
        if i == 0 and not base.empty:
            for col, metric in ((1, "success"), (2, "nll")):
                fig.add_hline(y=float(base[metric].iloc[0]), line={"color": UNSTEERED,
                              "dash": "dot", "width": 1}, row=1, col=col)  # fmt: skip
    strengths = sorted({s for m in matrices.values() for s in m.strengths})
    if strengths and strengths[-1] / strengths[0] >= 4:  # a doubling sweep: evenly spaced on log
        fig.update_xaxes(type="log", tickvals=strengths, ticktext=[f"{s:g}" for s in strengths])
    fig.update_xaxes(title_text="strength")
    fig.update_yaxes(range=[-0.03, 1.03], row=1, col=1)
    mode = next(iter(matrices.values())).config.get("mode", "")
    return finish(
        fig, title="Steering strength: success against fluency",
        subtitle=f"mode {mode}; means over every (prompt language, target) pair with 95 % "
        "intervals (bootstrap over prompts); dotted: the unsteered model",
        width=900, plot_height=340, left=70, right=20, bottom=60, header=24,
    )  # fmt: skip


__all__ = ["steering_strength", "steering_success"]
