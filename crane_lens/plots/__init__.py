"""Stage 6 of the pipeline — plots (plotly figures, ready for notebooks and reports)."""

from crane_lens.plots.heatmap import neuron_heatmap
from crane_lens.plots.matrix import ablation_heatmap

__all__ = ["ablation_heatmap", "neuron_heatmap"]
