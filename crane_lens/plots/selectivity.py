"""Selectivity per language and method, against random sets of the same per-layer sizes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from crane_lens.evaluation.intervals import DEFAULT_LEVEL, selectivity_index
from crane_lens.plots.matrix import PAGE_WIDTH, page_layout, size_range, text_px
from crane_lens.plots.sweep import _COLOURS

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from crane_lens.evaluation.ablation import AblationMatrix


def random_selectivity(matrix: AblationMatrix) -> pd.DataFrame:
    """The random control sets' own ΔNLL and selectivity index, seed by seed, then mean and std.

    Per masked language ``A`` and seed: ``own`` = ΔNLL of the random set on ``A``, ``others`` =
    its mean ΔNLL on the other evaluated languages, ``index`` =
    :func:`~crane_lens.evaluation.intervals.selectivity_index` — the definition
    :meth:`AblationMatrix.selectivity` applies to the selected set.

    Returns:
        Index: masked language; columns ``own``, ``own_std``, ``index``, ``index_std`` (mean and
        std over seeds; std is NaN for one seed) and ``seeds``. Empty without random sets.

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> m = AblationMatrix("toy", "zero", ["en", "zh"], ["en", "zh"], {"en": 2.0, "zh": 3.0},
        ...     {"en": {"en": 2.5, "zh": 3.0}, "zh": {"en": 2.1, "zh": 3.9}},
        ...     random_nll={"en": {"en": [2.2, 2.4], "zh": [3.2, 3.0]},
        ...                 "zh": {"en": [2.0, 2.0], "zh": [3.1, 3.3]}})
        >>> random_selectivity(m).round(3).to_dict("index")["en"]
        {'own': 0.3, 'own_std': 0.141, 'index': 0.5, 'index_std': 0.707, 'seeds': 2.0}
    """
    import pandas as pd

    columns = ["own", "own_std", "index", "index_std", "seeds"]
    rows = {}
    for a in matrix.masked:
        if a not in matrix.random_nll or a not in matrix.evaluated:
            continue
        delta = {b: torch.tensor(matrix.random_nll[a][b], dtype=torch.float64)
                 - matrix.baseline[b] for b in matrix.evaluated if b in matrix.random_nll[a]}  # fmt: skip
        own = delta[a]
        rest = [delta[b] for b in matrix.evaluated if b != a and b in delta]
        # No other language (or random sets evaluated on their own language only): no index.
        if rest and len(rest) == len(matrix.evaluated) - 1:
            others = torch.stack(rest).mean(dim=0)
            index = torch.from_numpy(selectivity_index(own.numpy(), others.numpy()))
        else:
            index = torch.full_like(own, math.nan)

        def std(x: torch.Tensor) -> float:
            return float(x.std(correction=1)) if len(x) > 1 else math.nan

        rows[a] = [float(own.mean()), std(own), float(index.mean()), std(index), float(len(own))]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def selectivity_chart(
    matrices: Mapping[str, AblationMatrix], *, title: str | None = None
) -> go.Figure:
    """Selectivity index and own-language ΔNLL per language, one colour per method, each with
    its random control (open markers: mean ± std over seeds).

    Top: the selectivity index (own⁺ − others⁺) / (own⁺ + others⁺) (x⁺ = max(x, 0)): 1 = only
    the masked set's own language degrades, 0 = all languages alike (or none), negative = the
    others degrade more; with per-block results each filled marker carries its bootstrap
    interval (:meth:`~crane_lens.evaluation.AblationMatrix.intervals`). Bottom:
    ΔNLL on the own language, against random sets of the same per-layer sizes. Matrices
    without random sets get no random marker.

    Args:
        matrices: ``{method: AblationMatrix}``.
        title: Figure title.

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> m = AblationMatrix("toy", "zero", ["en", "zh"], ["en", "zh"], {"en": 2.0, "zh": 3.0},
        ...     {"en": {"en": 2.5, "zh": 3.0}, "zh": {"en": 2.1, "zh": 3.9}},
        ...     random_nll={"en": {"en": [2.2, 2.4], "zh": [3.2, 3.0]},
        ...                 "zh": {"en": [2.0, 2.0], "zh": [3.1, 3.3]}})
        >>> fig = selectivity_chart({"crane": m})
        >>> [t.name for t in fig.data][:2], [round(v, 2) for v in fig.data[0].y]
        (['crane (mean index 0.90)', "random, crane's layer sizes (2 seeds)"], [1.0, 0.8])
    """
    from plotly.subplots import make_subplots

    if not matrices:
        raise ValueError("selectivity_chart needs at least one matrix ({method: matrix}).")
    langs = list(dict.fromkeys(a for m in matrices.values() for a in m.masked))
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
        subplot_titles=("selectivity index: (own⁺ − others⁺) / (own⁺ + others⁺)",
                        "ΔNLL on the masked set's own language (nats/token)"),
    )  # fmt: skip
    for i, (method, matrix) in enumerate(matrices.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        sel = matrix.selectivity().reindex(langs)
        rand = random_selectivity(matrix).reindex(langs)
        has_random = bool(rand["own"].notna().any())
        size = size_range(matrix.n_neurons.values())
        name = (
            f"{method} ({f'{size} neurons; ' if size else ''}mean index {sel['index'].mean():.2f})"
        )
        for row, column in ((1, "index"), (2, "own")):
            low, high = sel[f"{column}_low"], sel[f"{column}_high"]
            bars = high.notna().any()
            fig.add_scatter(
                x=langs, y=sel[column].tolist(), name=name, legendgroup=method,
                offsetgroup=method, mode="markers", showlegend=row == 1, row=row, col=1,
                marker={"color": colour, "size": 9, "symbol": "circle"},
                error_y={"type": "data", "symmetric": False, "visible": bool(bars),
                         "array": (high - sel[column]).fillna(0).tolist(),
                         "arrayminus": (sel[column] - low).fillna(0).tolist(),
                         "color": colour, "thickness": 1.5, "width": 0},
                customdata=list(zip(low.tolist(), high.tolist(), strict=True)),
                hovertemplate=f"{method} · %{{x}}: %{{y:.3f}}"
                + ("<br>interval %{customdata[0]:.3f} to %{customdata[1]:.3f}" if bars else "")
                + "<extra></extra>",
            )  # fmt: skip
            if not has_random:
                continue
            spread = rand[f"{column}_std"]
            seeds = int(rand["seeds"].max())
            fig.add_scatter(
                x=langs, y=rand[column].tolist(),
                name=f"random, {method}'s layer sizes ({seeds} seed{'s' if seeds > 1 else ''})",
                legendgroup=f"{method}-random", offsetgroup=f"{method}-random", mode="markers",
                showlegend=row == 1, row=row, col=1,
                marker={"color": colour, "size": 8, "symbol": "circle-open",
                        "line": {"width": 2}},
                # one seed has no spread: no bar rather than a bar of length 0
                error_y={"type": "data", "array": spread.fillna(0.0).tolist(), "color": colour,
                         "thickness": 1.2, "width": 3, "visible": bool(spread.notna().any())},
                customdata=rand["seeds"].tolist(),
                hovertemplate=f"random ({method} sizes) · %{{x}}: %{{y:.3f}}<br>mean of "
                "%{customdata} seeds<extra></extra>",
            )  # fmt: skip
    for row in (1, 2):
        fig.add_hline(y=0, line={"color": "#888", "width": 1}, row=row, col=1)
    fig.update_yaxes(title_text="index", range=[-1.05, 1.05], dtick=0.5, row=1, col=1)
    fig.update_yaxes(title_text="ΔNLL (nats/token)", row=2, col=1)
    fig.update_xaxes(type="category", tickangle=0, showgrid=False)
    fig.update_xaxes(title_text="masked language", row=2, col=1)
    for i in range(1, len(langs), 2):  # every other language shaded: which dots are whose
        fig.add_vrect(x0=i - 0.5, x1=i + 0.5, fillcolor="#f2f2f2", line_width=0, layer="below")
    fig.update_annotations(font={"size": 14})
    first = next(iter(matrices.values()))
    model = first.config.get("model")
    title = title or f"Selectivity per language{f' — {model}' if model else ''}"
    with_bars = any(m.intervals_unavailable() is None for m in matrices.values())
    subtitle = f"{first.mode} ablation; filled: the method's set" + (
        f" (bars: {round(100 * DEFAULT_LEVEL):g} % bootstrap interval over held-out blocks)"
        if with_bars else ""
    ) + (
        ", open: random sets with the same per-layer sizes (mean ± std over seeds)"
        if any(m.random_nll for m in matrices.values()) else "; no random control sets"
    )  # fmt: skip
    legend_px = max(text_px(t.name, 12) for t in fig.data if t.showlegend is not False)
    left, right, top, bottom = 70, 80 + legend_px, 110, 60
    markers = sum(1 for t in fig.data if t.showlegend is not False)  # per language, side by side
    plot_w = min(max(560, len(langs) * (12 + 8 * markers)), PAGE_WIDTH - left - right)
    return page_layout(
        fig, title, subtitle, (plot_w, 620), (left, right, top, bottom),
        scattermode="group", scattergap=0.35,
        legend={"x": 1.02, "xanchor": "left", "y": 1.0, "yanchor": "top"},
    )  # fmt: skip
