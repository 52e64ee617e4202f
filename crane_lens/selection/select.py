"""Stage 4 of the pipeline — selection: from neuron scores to language-specific neuron sets.

Rules (``rule=``), each applied to one statistic of :class:`~crane_lens.stats.NeuronStats`:

* ``"specificity"`` — CRANE's default (our reconstruction, ``docs/methods.md``): each
  language's score map is divided by its total ``|score|`` (so languages with larger relevance
  overall do not dominate), ``score(L, n) = R̃_L(n) − max_{L'≠L} R̃_L'(n)``, and the top-k
  neurons by that score among those with ``R̃_L(n) > 0`` are kept.
* ``"contrast_mean"`` — as ``specificity`` but against the *mean* of the other languages.
* ``"top"`` — the top-k neurons by the raw statistic (the default for ``attribution``,
  ``grad_act``, ``kojima``, ``plnd``): what those methods rank, not made specific.
* ``"lape"`` — LAPE's own entropy ranking and threshold assignment (only for ``lape``). Its
  assignment decides how many neurons each language gets, so its budget is a total: the
  published ``top_rate`` (a fraction of all neurons *in total*) when given; otherwise, matched to
  ``budget``/``k`` per language, the *smallest* total whose assignment gives the languages a
  mean set size of at least ``k`` (found by binary search; sizes still vary by language).

Ties always break by (score, layer, neuron index): a stable sort of the negated scores over
the flattened ``layer × neuron`` grid.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from crane_lens.errors import UnknownLanguageError
from crane_lens.selection.neurons import LanguageNeurons, pairs_from_layers
from crane_lens.stats.lape import (
    ACTIVATION_BAR_RATIO,
    lape_entropy,
    lape_matched_count,
    lape_neurons,
)
from crane_lens.stats.methods import METHODS, STATISTICS, primary_statistic
from crane_lens.stats.results import NeuronStats

log = logging.getLogger(__name__)

Rule = Literal["specificity", "contrast_mean", "top", "lape"]
RULES = ("specificity", "contrast_mean", "top", "lape")

DEFAULT_BUDGET = 0.01
# Statistic and rule each method selects with unless told otherwise. PLND's paper keeps neurons
# important on *every* document, hence the minimum over blocks rather than the mean.
DEFAULT_STATISTIC = {"plnd": "plnd_min", "lape": "activation_probability"}
DEFAULT_RULE: dict[str, Rule] = {"crane": "specificity", "lape": "lape"}


def budget_to_k(n_neurons: int, budget: float | None, k: int | None) -> int:
    """Neurons per language for a budget (a fraction of all MLP neurons) or an absolute ``k``."""
    if (budget is None) == (k is None):
        raise ValueError("Give exactly one of budget (a fraction, e.g. 0.01) or k (a count).")
    if k is not None:
        if not 0 < k <= n_neurons:
            raise ValueError(f"k must be between 1 and the model's {n_neurons} neurons, not {k}.")
        return int(k)
    assert budget is not None
    if not 0 < budget <= 1:
        raise ValueError(f"budget is a fraction of all MLP neurons in (0, 1], not {budget}.")
    return max(1, round(budget * n_neurons))


def specificity_scores(
    scores: Float[Tensor, "lang layer neuron"], against: Literal["max", "mean"] = "max"
) -> tuple[Float[Tensor, "lang layer neuron"], Float[Tensor, "lang layer neuron"]]:
    """Normalised maps ``R̃`` and specificity ``R̃_L − max`` (or mean) ``over L' ≠ L of R̃_L'``.

    With a single language there is nothing to contrast with: the specificity is ``R̃`` itself.

    Returns:
        ``(normalised, specificity)``.
    """
    total = scores.abs().sum(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)
    normalised = scores / total
    n_lang = len(scores)
    if n_lang == 1:
        return normalised, normalised.clone()
    others = []
    for index in range(n_lang):
        rest = torch.cat([normalised[:index], normalised[index + 1 :]])
        others.append(rest.max(dim=0).values if against == "max" else rest.mean(dim=0))
    return normalised, normalised - torch.stack(others)


def _ranked(values: Tensor, eligible: Tensor, k: int, d_mlp: int) -> tuple[Tensor, Tensor]:
    flat, ok = values.flatten(), eligible.flatten()
    order = torch.sort(-flat, stable=True).indices  # stable: ties stay in (layer, neuron) order
    order = order[ok[order]][:k]
    return torch.stack([order // d_mlp, order % d_mlp], dim=1), flat[order]


def select_language_neurons(
    stats: NeuronStats,
    method: str = "crane",
    *,
    budget: float | None = DEFAULT_BUDGET,
    k: int | None = None,
    statistic: str | None = None,
    rule: Rule | None = None,
    langs: list[str] | None = None,
    lape_ratio: float = ACTIVATION_BAR_RATIO,
    top_rate: float | None = None,
) -> LanguageNeurons:
    """Select each language's neurons.

    Args:
        stats: Statistics of every language to contrast (from :func:`crane_lens.compute_stats`).
        method: A method of ``stats`` (``"crane"``, ``"lape"``, ``"attribution"``...).
        budget: Neurons per language as a fraction of all MLP neurons (default 1 %). For
            ``lape`` it is the *mean* set size per language: LAPE keeps the smallest number of
            lowest-entropy neurons whose assignment (each to every language whose activation
            probability passes the bar) gives a mean set size ``≥ k`` over ``langs`` (a binary
            search; every eligible neuron, with a warning, when even all fall short).
        k: Neurons per language as a count (overrides ``budget``).
        statistic: Score to rank by (default: the method's primary statistic; ``plnd_min`` for
            ``plnd``).
        rule: ``"specificity"`` (default for ``crane``), ``"contrast_mean"``, ``"top"``
            (default for the other scores) or ``"lape"`` (default, and only valid, for LAPE).
        langs: Languages to select for (default: all of ``stats``); specificity contrasts them
            with each other only.
        lape_ratio: LAPE's activation-threshold quantile.
        top_rate: LAPE only (not with ``k``; overrides ``budget``): its published budget — keep
            ``round(top_rate × all MLP neurons)`` neurons *in total* by lowest entropy, each
            assigned to every language whose activation probability passes the bar (the
            recipe's ``top_rate = 0.01``), so the set sizes are what that assignment gives,
            not a chosen size (a neuron may belong to several languages). The config records
            ``budget_semantics`` (``"matched mean set size per language"`` or ``"total
            (published top_rate)"``), ``top_rate`` (the total fraction used), ``n_kept_total``
            (neurons kept) and ``mean_set_size`` (over ``langs``).

    Returns:
        :class:`LanguageNeurons`, each language's set in rank order.

    Raises:
        KeyError: ``method`` (or ``statistic``) was not computed in ``stats``.
        ValueError: Bad budget/k/top_rate or rule, or ``top_rate`` with another rule or ``k``.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> corpus = cl.load_corpus("builtin", langs=["en", "zh"])
        >>> stats = cl.compute_stats(model, corpus, "crane", max_tokens_per_lang=256, progress=False)
        >>> neurons = cl.select_language_neurons(stats, "crane", k=8)
        >>> [neurons.count(lang) for lang in neurons.langs]
        [8, 8]
    """
    if method not in METHODS and method not in STATISTICS:
        raise KeyError(f"Unknown method {method!r}; choose from {sorted(METHODS)}.")
    statistic = (
        statistic
        or DEFAULT_STATISTIC.get(method)
        or (primary_statistic(method) if method in METHODS else method)
    )
    rule = rule or DEFAULT_RULE.get(method, "top")
    if rule not in RULES:
        raise ValueError(f"Unknown rule {rule!r}; choose from {RULES}.")
    if rule == "lape" and statistic != "activation_probability":
        raise ValueError("rule='lape' ranks activation probabilities: use it with method='lape'.")
    if top_rate is not None:
        if rule != "lape":
            raise ValueError(f"top_rate is LAPE's budget: use it with rule='lape', not {rule!r}.")
        if k is not None:
            raise ValueError("Give top_rate (LAPE's total fraction) or k (per language), not both.")
        if not 0 < top_rate <= 1:
            raise ValueError(
                f"top_rate is a fraction of all MLP neurons in (0, 1], not {top_rate}."
            )
    langs = list(stats.langs if langs is None else langs)
    for lang in langs:
        if lang not in stats.langs:
            raise UnknownLanguageError(f"No statistics for {lang!r}; stats cover {stats.langs}.")
    index = [stats.langs.index(lang) for lang in langs]
    values = stats.scores(statistic)[index]
    n_layers, d_mlp = stats.spec.n_layers, stats.spec.d_mlp
    if top_rate is not None:  # a total, not a per-language budget
        budget, per_lang = None, None
    else:
        per_lang = budget_to_k(stats.spec.n_neurons, None if k is not None else budget, k)
    config = {"statistic": statistic, "rule": rule, "budget": budget, "k": per_lang,
              "langs": langs, "stats_config": stats.config}  # fmt: skip
    ranked, scores = {}, {}
    if rule == "lape":
        n_neurons = stats.spec.n_neurons
        if top_rate is not None:  # LAPE's published budget: a fraction of all neurons in total
            semantics, n_kept = "total (published top_rate)", round(top_rate * n_neurons)
        else:  # matched: the smallest total whose assignment gives a mean set size ≥ k
            assert per_lang is not None
            semantics = "matched mean set size per language"
            n_kept = lape_matched_count(values, per_lang, lape_ratio)
            top_rate = n_kept / n_neurons
        entropy = lape_entropy(values, lape_ratio)
        sets = lape_neurons(values, ratio=lape_ratio, n_kept=n_kept)
        for lang, layers in zip(langs, sets, strict=True):
            pairs = pairs_from_layers(layers)
            # Rank order = LAPE's: lowest entropy first; the score is the negated entropy.
            negated = -entropy[pairs[:, 0], pairs[:, 1]]
            order = torch.sort(-negated, stable=True).indices
            ranked[lang], scores[lang] = pairs[order], negated[order]
        n_eligible = int(torch.isfinite(entropy).sum())
        mean_size = sum(len(ranked[lang]) for lang in langs) / len(langs)
        if per_lang is not None and mean_size < per_lang:
            log.warning("lape: even all %d neurons with a finite entropy give a mean set size of "
                        "%.1f per language, under k = %d; keeping them all.",
                        n_eligible, mean_size, per_lang)  # fmt: skip
        config |= {"top_rate": top_rate, "budget_semantics": semantics,
                   "n_kept_total": min(n_kept, n_eligible), "mean_set_size": mean_size,
                   "activation_bar_ratio": lape_ratio}  # fmt: skip
    else:
        assert per_lang is not None  # top_rate (no per-language count) is LAPE's alone
        if rule == "top":
            ranking, eligible = values, torch.ones_like(values, dtype=torch.bool)
        else:
            normalised, ranking = specificity_scores(
                values, "max" if rule == "specificity" else "mean"
            )
            eligible = normalised > 0
        for i, lang in enumerate(langs):
            ranked[lang], scores[lang] = _ranked(ranking[i], eligible[i], per_lang, d_mlp)
            if len(ranked[lang]) < per_lang:
                log.warning("%s: only %d neurons are eligible for %s (asked for %d).",
                            method, len(ranked[lang]), lang, per_lang)  # fmt: skip
    return LanguageNeurons(n_layers, d_mlp, ranked, scores, method, stats.spec.name, config)


def random_neurons(like: LanguageNeurons, seed: int) -> LanguageNeurons:
    """Random control sets: for each language, as many neurons per layer as ``like`` holds,
    drawn uniformly without replacement within the layer.

    Args:
        like: The sets whose per-layer sizes to copy.
        seed: Seed of the draw (a ``torch.Generator``; the same seed gives the same sets).
    """
    generator = torch.Generator().manual_seed(seed)
    ranked = {}
    for lang in like.langs:
        ranked[lang] = pairs_from_layers([
            torch.randperm(like.d_mlp, generator=generator)[:count].sort().values
            for count in like.layer_counts(lang)
        ])  # fmt: skip
    return LanguageNeurons(like.n_layers, like.d_mlp, ranked, None, "random", like.model,
                           {"seed": seed, "like": like.method})  # fmt: skip
