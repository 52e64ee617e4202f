"""Stage 3 of the pipeline — neuron statistics: relevance (CRANE / AttnLRP), attribution, exact
ablation and the activation baselines (LAPE, Kojima et al., PLND), from one streaming engine."""

from crane_lens.stats.engine import compute_stats
from crane_lens.stats.kojima import average_precision
from crane_lens.stats.lape import lape_entropy, lape_neurons, lape_threshold
from crane_lens.stats.lrp import lrp_hooks
from crane_lens.stats.methods import METHODS, STATISTICS, Method, Statistic
from crane_lens.stats.results import NeuronStats

__all__ = [
    "METHODS",
    "STATISTICS",
    "Method",
    "NeuronStats",
    "Statistic",
    "average_precision",
    "compute_stats",
    "lape_entropy",
    "lape_neurons",
    "lape_threshold",
    "lrp_hooks",
]
