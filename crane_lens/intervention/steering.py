"""Steering with language neurons: push the model towards a target language T.

Every steering edit is the masking core's ``h' = h * keep + fill`` at
``blocks.{l}.mlp.hook_post`` (:mod:`crane_lens.intervention.hooks`), with a strength ``s``
(``s = 0``: no edit at all, the unsteered model exactly):

===========  ===========================  ==================================================
mode         neurons edited               edit
===========  ===========================  ==================================================
``replace``  T's set                      ``h' = (1 − s) h + s v_T``: at ``s = 1`` fixed to
                                          T's statistic ``v_T`` (its mean activation, or
                                          Kojima et al.'s median per-block response)
``add``      T's set                      ``h' = h + s (μ_T − μ_S)``: the difference of the
                                          mean activations of T and S (S: the source
                                          language, or all languages pooled)
``swap``     S's set, then T's set        S's neurons ``h' = (1 − d) h`` (deactivated at
                                          ``d = 1``), T's as in ``replace``
===========  ===========================  ==================================================

``d`` (``deactivation``) is the strength of the deactivation, ``s`` by default (with ``d``
given, ``swap`` edits S's set even at ``s = 0``). A neuron in both S's and T's set gets T's
edit. ``s > 1`` extrapolates past the statistic, away from the current activation
(``s = 2``: ``2 v_T − h``), as the steering literature's strength sweeps do; it is not
``s × v_T``.

Where the recipes come from: Kojima et al. (2024) fix a target language's top expert units to
their median activation on that language (``replace`` with ``statistic="median"``); Tang et al.
(LAPE, 2024) switch languages by deactivating the source's neurons and activating the target's
(``swap``); Gurgurov et al. (2025, "Language Arithmetics") compare additive, replacement and
difference-of-means steering with separate deactivation and activation strengths (``add``,
``replace``, ``swap``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from crane_lens.intervention.hooks import Intervention, intervene, intervention_values
from crane_lens.selection.neurons import LanguageNeurons

SteerMode = Literal["replace", "add", "swap"]
STEER_MODES = ("replace", "add", "swap")
Statistic = Literal["mean", "median"]


def steering_values(stats: Any, lang: str | None, statistic: Statistic = "mean") -> Tensor:
    """A language's per-neuron statistic: ``"mean"`` activation (``lang=None``: all languages
    pooled) or Kojima et al.'s ``"median"`` per-block response (needs the ``kojima`` method).

    Returns:
        ``Float[Tensor, "layer neuron"]``.
    """
    if statistic == "mean":
        return intervention_values(stats, "mean", lang)
    if statistic == "median":
        if lang is None:
            raise ValueError("The median statistic is per language: name the language.")
        try:
            return intervention_values(stats, "fixed", lang)
        except KeyError as exc:
            raise ValueError(
                "statistic='median' needs Kojima's per-block responses: compute the statistics "
                "with the 'kojima' method, or steer with statistic='mean'."
            ) from exc
    raise ValueError(f"statistic={statistic!r}: choose 'mean' or 'median'.")


def steering(
    neurons: LanguageNeurons,
    target: str,
    *,
    stats: Any = None,
    source: str | None = None,
    mode: SteerMode = "replace",
    strength: float = 1.0,
    deactivation: float | None = None,
    statistic: Statistic = "mean",
    target_values: Float[Tensor, "layer neuron"] | None = None,
    source_values: Float[Tensor, "layer neuron"] | None = None,
    source_neurons: LanguageNeurons | None = None,
) -> Intervention:
    """One steering condition towards ``target`` (see the module docstring for the modes).

    Args:
        neurons: The language sets; T's set (``neurons``' set of ``target``) is steered.
        target: The language to steer towards.
        stats: The :class:`~crane_lens.stats.NeuronStats` the values come from (not needed
            when ``target_values`` / ``source_values`` are given, nor for ``swap``'s source).
        source: The prompt's language: ``add`` subtracts its mean (default: all languages
            pooled); ``swap`` deactivates its set (required there).
        mode: ``"replace"``, ``"add"`` or ``"swap"``.
        strength: ``s``; 0 leaves the model unchanged.
        deactivation: ``d`` of ``swap`` (default ``strength``).
        statistic: ``replace``'s / ``swap``'s value: ``"mean"`` or ``"median"`` (Kojima).
        target_values: ``v_T`` (or ``μ_T`` for ``add``) instead of reading it from ``stats``.
        source_values: ``μ_S`` for ``add`` instead of reading it from ``stats``.
        source_neurons: The sets whose ``source`` set ``swap`` deactivates (default
            ``neurons``; e.g. random sets for a control).

    Returns:
        An :class:`~crane_lens.intervention.Intervention` labelled ``"steer-<mode>:<S>→<T>"``.

    Raises:
        ValueError: Unknown mode or statistic, ``swap`` without a source, values missing.

    Example:
        >>> import torch
        >>> from crane_lens.selection.neurons import LanguageNeurons
        >>> sets = LanguageNeurons(1, 4, {"vi": torch.tensor([[0, 2]])})
        >>> edit = steering(sets, "vi", target_values=torch.full((1, 4), 3.0), strength=0.5)
        >>> edit.keep[0].tolist(), edit.fill[0].tolist()
        ([1.0, 1.0, 0.5, 1.0], [0.0, 0.0, 1.5, 0.0])
    """
    if mode not in STEER_MODES:
        raise ValueError(f"Unknown steering mode {mode!r}; choose from {STEER_MODES}.")
    if mode == "swap" and source is None:
        raise ValueError("mode='swap' deactivates the source language's set: pass source=.")
    d_mlp, n_layers = neurons.d_mlp, neurons.n_layers
    keep, fill = torch.ones(n_layers, d_mlp), torch.zeros(n_layers, d_mlp)

    def values(given: Tensor | None, lang: str | None, which: Statistic) -> Tensor:
        if given is None:
            if stats is None:
                raise ValueError(f"mode={mode!r} needs stats= (or the values themselves).")
            given = steering_values(stats, lang, which)
        if tuple(given.shape) != (n_layers, d_mlp):
            raise ValueError(f"values have shape {tuple(given.shape)}; expected "
                             f"({n_layers}, {d_mlp}).")  # fmt: skip
        return given.detach().float().cpu()

    if mode == "swap":
        chosen_sets = neurons if source_neurons is None else source_neurons
        deactivated = chosen_sets.mask(source)  # type: ignore[arg-type]
        keep[deactivated] = 1.0 - (strength if deactivation is None else deactivation)
    chosen = neurons.mask(target)
    if mode == "add":
        shift = values(target_values, target, "mean") - values(source_values, source, "mean")
        fill[chosen] = strength * shift[chosen]
    else:
        keep[chosen] = 1.0 - strength
        fill[chosen] = strength * values(target_values, target, statistic)[chosen]
    edited = [layer for layer in range(n_layers)
              if bool((keep[layer] != 1).any() or (fill[layer] != 0).any())]  # fmt: skip
    label = f"steer-{mode}:{source or '*'}→{target}"
    return Intervention({x: keep[x] for x in edited}, {x: fill[x] for x in edited}, label)


@contextmanager
def steer(model: Any, neurons: LanguageNeurons, target: str, **kwargs: Any) -> Iterator[Any]:
    """Run the model steered towards ``target``, inside a ``with`` block.

    Takes the arguments of :func:`steering`; the sets are checked against the model first. The
    edit is one more condition of the masking core (:func:`~crane_lens.intervention.intervene`),
    so it composes with generation, :func:`~crane_lens.evaluation.greedy_continuations` and
    any forward pass.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> corpus = cl.load_corpus("builtin", langs=["en", "vi"])
        >>> stats = cl.compute_stats(model, corpus, "crane", max_tokens_per_lang=256,
        ...                          progress=False)
        >>> neurons = cl.select_language_neurons(stats, k=20)
        >>> with cl.steer(model, neurons, "vi", stats=stats, strength=2.0):
        ...     steered = cl.greedy_continuations(model, ["The file is"], max_new_tokens=6)
        >>> steered != cl.greedy_continuations(model, ["The file is"], max_new_tokens=6)
        True
    """
    with intervene(model, steering(neurons, target, **kwargs), neurons) as steered:
        yield steered


__all__ = ["STEER_MODES", "SteerMode", "steer", "steering", "steering_values"]
