"""Stage 6 of the pipeline — plots (plotly figures, ready for notebooks and reports)."""

from crane_lens.plots.benchmarks import accuracy_chart
from crane_lens.plots.causality import (
    estimate_vs_exact,
    estimate_vs_exact_from_causality,
    estimate_vs_exact_from_stats,
)
from crane_lens.plots.counts import neuron_counts
from crane_lens.plots.heatmap import neuron_heatmap
from crane_lens.plots.matrix import ablation_heatmap, ablation_matrices, uncertain_cells
from crane_lens.plots.overlap import language_overlap, method_overlap
from crane_lens.plots.run import NamedFigure, run_figures
from crane_lens.plots.selectivity import random_selectivity, selectivity_chart
from crane_lens.plots.stability import stability_figure
from crane_lens.plots.steering import steering_strength, steering_success
from crane_lens.plots.sweep import budget_sweep, sweep_table
from crane_lens.plots.transfer import transfer_chart

__all__ = [
    "NamedFigure",
    "ablation_heatmap",
    "ablation_matrices",
    "accuracy_chart",
    "budget_sweep",
    "estimate_vs_exact",
    "estimate_vs_exact_from_causality",
    "estimate_vs_exact_from_stats",
    "language_overlap",
    "method_overlap",
    "neuron_counts",
    "neuron_heatmap",
    "random_selectivity",
    "run_figures",
    "selectivity_chart",
    "stability_figure",
    "steering_strength",
    "steering_success",
    "sweep_table",
    "transfer_chart",
    "uncertain_cells",
]
