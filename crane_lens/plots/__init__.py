"""Stage 6 of the pipeline — plots (plotly figures, ready for notebooks and reports)."""

from crane_lens.plots.heatmap import neuron_heatmap
from crane_lens.plots.matrix import ablation_heatmap
from crane_lens.plots.run import NamedFigure, run_figures
from crane_lens.plots.sweep import budget_sweep, sweep_table

__all__ = [
    "NamedFigure",
    "ablation_heatmap",
    "budget_sweep",
    "neuron_heatmap",
    "run_figures",
    "sweep_table",
]
