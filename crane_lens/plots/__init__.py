"""Stage 6 of the pipeline — plots (plotly figures, ready for notebooks and reports)."""

from crane_lens.plots.heatmap import neuron_heatmap

__all__ = ["neuron_heatmap"]
