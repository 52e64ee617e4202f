"""The ablation matrix as a heatmap: masked language (rows) × evaluated language (columns)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from crane_lens.evaluation.ablation import AblationMatrix


def ablation_heatmap(
    matrix: AblationMatrix, value: Literal["delta", "relative", "random"] = "delta"
) -> go.Figure:
    """Heatmap of ``matrix.delta()`` (or ``relative()``, or the random controls' mean ΔNLL).

    A diverging scale centred on 0: red where masking raises the NLL, blue where it lowers it.
    A language-specific set shows as a red diagonal.

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> m = AblationMatrix("toy", "zero", ["en", "zh"], ["en", "zh"], {"en": 2.0, "zh": 3.0},
        ...                    {"en": {"en": 2.5, "zh": 3.0}, "zh": {"en": 2.1, "zh": 3.9}})
        >>> [round(v, 2) for v in ablation_heatmap(m).data[0].z[1]]  # row zh: masked zh set
        [0.1, 0.9]
    """
    import plotly.graph_objects as go

    frame = {"delta": matrix.delta, "relative": matrix.relative,
             "random": matrix.random_delta}[value]()  # fmt: skip
    bound = float(abs(frame.values).max()) or 1.0
    label = {"delta": "ΔNLL (nats/token)", "relative": "ΔNLL / NLL",
             "random": "ΔNLL, random sets (mean)"}[value]  # fmt: skip
    fig = go.Figure(go.Heatmap(
        z=frame.values.tolist(), x=list(frame.columns), y=list(frame.index),
        colorscale="RdBu_r", zmin=-bound, zmax=bound, colorbar={"title": label},
        hovertemplate="masked %{y} · evaluated %{x}<br>" + label + " = %{z:.4f}<extra></extra>",
    ))  # fmt: skip
    fig.update_yaxes(title_text="masked set", autorange="reversed")
    fig.update_xaxes(title_text="evaluated language", side="top")
    fig.update_layout(title=f"{matrix.method}: {label} ({matrix.mode} ablation)",
                      height=120 + 32 * len(frame), width=160 + 36 * len(frame.columns))  # fmt: skip
    return fig
