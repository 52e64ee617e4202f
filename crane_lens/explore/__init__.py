"""Per-prompt exploration: which neurons one text relies on, and what masking does to each token.

:func:`explain` runs one forward and one backward pass on a prompt (no corpus) and keeps the
relevance of every neuron at every token; :func:`token_nll_change` scores a prompt with and
without a language's neurons masked, token by token. Both display as coloured text in a
notebook.
"""

from crane_lens.explore.explain import Explanation, explain
from crane_lens.explore.token_nll import TokenNLLChange, token_nll_change
from crane_lens.explore.tokens import readable_tokens

__all__ = ["Explanation", "TokenNLLChange", "explain", "readable_tokens", "token_nll_change"]
