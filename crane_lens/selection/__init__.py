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

__all__ = [
    "DEFAULT_BUDGET",
    "RULES",
    "LanguageNeurons",
    "budget_to_k",
    "random_neurons",
    "select_language_neurons",
    "specificity_scores",
]
