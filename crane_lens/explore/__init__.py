"""Per-prompt exploration: which neurons one text relies on, and what masking does to each token.

:func:`explain` runs one forward and one backward pass on a prompt (no corpus) and keeps the
relevance of every neuron at every token (:func:`relevance_cache`: a batch of prompts, as a
TransformerLens ``ActivationCache``); :func:`token_nll_change` scores a prompt with and
without a language's neurons masked, token by token. Both display as coloured text in a
notebook, by visible character: :func:`display_groups` joins the byte-level pieces of one
character and :func:`sum_groups` sums a per-token quantity over them.
"""

from crane_lens.explore.explain import Explanation, explain
from crane_lens.explore.neuron_card import Context, NeuronCard, neuron_card
from crane_lens.explore.relevance_cache import RelevanceCache, relevance_cache
from crane_lens.explore.token_nll import TokenNLLChange, token_nll_change
from crane_lens.explore.tokens import TokenGroup, display_groups, readable_tokens, sum_groups

__all__ = [
    "Context",
    "Explanation",
    "NeuronCard",
    "RelevanceCache",
    "TokenGroup",
    "TokenNLLChange",
    "display_groups",
    "explain",
    "neuron_card",
    "readable_tokens",
    "relevance_cache",
    "sum_groups",
    "token_nll_change",
]
