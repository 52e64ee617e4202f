"""Stage 4 of the pipeline — selection: language-specific neuron sets from neuron statistics."""

from crane_lens.selection.neurons import LanguageNeurons
from crane_lens.selection.select import (
    DEFAULT_BUDGET,
    RULES,
    budget_to_k,
    random_neurons,
    select_language_neurons,
    specificity_scores,
)
from crane_lens.selection.stability import (
    SelectionStability,
    chance_jaccard,
    selection_stability,
)

__all__ = [
    "DEFAULT_BUDGET",
    "RULES",
    "LanguageNeurons",
    "SelectionStability",
    "budget_to_k",
    "chance_jaccard",
    "random_neurons",
    "select_language_neurons",
    "selection_stability",
    "specificity_scores",
]
