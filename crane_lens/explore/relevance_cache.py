"""``relevance_cache(model, prompts)``: :func:`~crane_lens.explain` for a batch of prompts, as a
TransformerLens ``ActivationCache`` keyed by hook name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from transformer_lens import ActivationCache

from crane_lens.explore.explain import Method, relevance_pass
from crane_lens.explore.tokens import prompt_tokens
from crane_lens.model.loader import get_spec
from crane_lens.model.runner import pad_rows
from crane_lens.stats.lrp import AttentionRule


class RelevanceCache(ActivationCache):
    """Per-token relevance of a batch of prompts as a TransformerLens ``ActivationCache``:
    ``cache["blocks.3.mlp.hook_post"]`` → ``Float[Tensor, "batch pos neuron"]`` (the
    neuron's relevance at each token; 0 at padded positions), with the prompts' activations
    beside it in the same form.

    Attributes:
        activations: An ``ActivationCache`` of the neuron activations, same keys and shapes.
        tokens: ``Int[Tensor, "batch pos"]``: ``[BOS] + prompt``, right-padded.
        lengths: ``Int[Tensor, " batch"]``: the real tokens of each row.
        scores: ``Float[Tensor, "batch pred"]``: the explained score at each predicted
            position (0 where padded).
        method: ``"crane"`` or ``"attribution"``.
    """

    def __init__(
        self, relevance: dict[str, Tensor], activations: dict[str, Tensor], model: Any,
        tokens: Tensor, lengths: Tensor, scores: Tensor, method: str,
    ) -> None:  # fmt: skip
        super().__init__(relevance, model)
        self.activations = ActivationCache(activations, model)
        self.tokens, self.lengths, self.scores, self.method = tokens, lengths, scores, method

    def explanation_of(self, row: int) -> Tensor:
        """Row ``row``'s relevance as :func:`explain` gives it: ``[pos, layer, neuron]``
        over its real tokens."""
        n = int(self.lengths[row])
        return torch.stack([self[name][row, :n] for name in self.keys()], dim=1)


def relevance_cache(
    model: Any,
    prompts: Sequence[str | Sequence[int] | Tensor],
    method: Method = "crane",
    *,
    target: Literal["logit", "logprob"] = "logit",
    attention: AttentionRule = "attnlrp",
    objective: Literal["nll", "logit"] = "nll",
    batch_size: int = 8,
) -> RelevanceCache:
    """:func:`explain` for a batch of prompts, in TransformerLens form: an ``ActivationCache``
    keyed by hook name (``blocks.{layer}.mlp.hook_post``) whose values are each neuron's
    relevance at each token, ``[prompt, pos, neuron]`` (prompts right-padded).

    Prompts run ``batch_size`` at a time, each batch one forward and one backward pass; the
    relevance of prompt ``i`` equals ``explain(model, prompts[i]).relevance`` up to
    floating-point rounding (other batch shapes, other kernels).

    Args:
        model: A TransformerBridge.
        prompts: Texts (BOS is prepended) or token ids.
        method, target, attention, objective: As for :func:`explain`.
        batch_size: Prompts per pass.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> cache = cl.relevance_cache(model, ["Xin chào", "Hello there, friend"])
        >>> cache["blocks.3.mlp.hook_post"].shape[0], cache.lengths.tolist() == [
        ...     len(cl.explain(model, p).tokens) for p in ["Xin chào", "Hello there, friend"]]
        (2, True)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}.")
    if not prompts:
        raise ValueError("Give at least one prompt.")
    rows = [prompt_tokens(model, p).tolist() for p in prompts]
    tokens, lengths = pad_rows(rows)
    width, spec = tokens.shape[1], get_spec(model)
    acts = torch.zeros(len(rows), width, spec.n_layers, spec.d_mlp)
    relevance, scores = torch.zeros_like(acts), torch.zeros(len(rows), width - 1)
    for start in range(0, len(rows), batch_size):
        chunk = slice(start, start + batch_size)
        n = int(lengths[chunk].max())
        a, r, s = relevance_pass(model, tokens[chunk, :n], lengths[chunk], method,
                                 target=target, attention=attention, objective=objective)  # fmt: skip
        acts[chunk, :n], relevance[chunk, :n], scores[chunk, : n - 1] = a, r, s
    names = [spec.hook_name(layer) for layer in range(spec.n_layers)]
    return RelevanceCache(
        {name: relevance[:, :, layer] for layer, name in enumerate(names)},
        {name: acts[:, :, layer] for layer, name in enumerate(names)},
        model, tokens, lengths, scores, method,
    )  # fmt: skip
