"""The figures of one finished run, in the order a report shows them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from crane_lens.pipeline import RunResult


@dataclass(frozen=True)
class NamedFigure:
    """A figure with the file stem it is exported under and a one-sentence caption.

    Attributes:
        name: File stem (``crane-lens figures`` writes ``<name>.png``), lower-case, no spaces.
        caption: What the figure shows and how to read it, one or two sentences.
        figure: The plotly figure.
    """

    name: str
    caption: str
    figure: go.Figure


def run_figures(result: RunResult) -> list[NamedFigure]:
    """Every figure that applies to a finished run (``crane-lens report`` and ``figures``).

    Args:
        result: A run, e.g. ``RunResult.load("results/<run-name>")``.

    Returns:
        The figures in report order.
    """
    from crane_lens.plots.heatmap import neuron_heatmap
    from crane_lens.plots.matrix import ablation_heatmap

    figures = [
        NamedFigure(f"ablation-{method}",
                    f"ΔNLL when each language's {method} set is masked (rows) on each language "
                    "(columns).", ablation_heatmap(matrix))
        for method, matrix in result.matrices.items()
    ]  # fmt: skip
    figures.append(NamedFigure("crane-relevance", "CRANE relevance per layer and neuron.",
                               neuron_heatmap(result.stats, "crane")))  # fmt: skip
    return figures
