"""Stage 6 of the pipeline — plots (plotly figures, ready for notebooks and reports)."""

from crane_lens.plots.counts import neuron_counts
from crane_lens.plots.heatmap import neuron_heatmap
from crane_lens.plots.matrix import ablation_heatmap, ablation_matrices
from crane_lens.plots.run import NamedFigure, run_figures
from crane_lens.plots.selectivity import random_selectivity, selectivity_chart
from crane_lens.plots.sweep import budget_sweep, sweep_table

__all__ = [
    "NamedFigure",
    "ablation_heatmap",
    "ablation_matrices",
    "budget_sweep",
    "neuron_counts",
    "neuron_heatmap",
    "random_selectivity",
    "run_figures",
    "selectivity_chart",
    "sweep_table",
]
