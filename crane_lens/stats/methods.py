"""The statistics crane_lens computes, what each needs from the engine, and how it is derived.

Every method names the pass it needs (``lrp``: one forward + one LRP-modified backward; ``grad``:
one forward + one ordinary backward; ``forward``: activations only; ``ablation``: one forward per
group of ablated neurons) and the statistics it provides. The activation sums (``act_sum``,
``act_abs_sum``, ``act_on``) are collected in whichever pass runs, so activation methods are free
when a gradient method runs too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from crane_lens.stats.kojima import average_precision_by_group

if TYPE_CHECKING:
    from crane_lens.stats.results import NeuronStats

Pass = Literal["lrp", "grad", "forward", "ablation"]


@dataclass(frozen=True)
class Method:
    """A neuron-scoring method.

    Attributes:
        name: Key in :data:`METHODS`.
        needs: The engine pass it needs.
        statistics: Names of the statistics it provides (the first is its primary score).
        description: One line for docs and ``--help``.
    """

    name: str
    needs: Pass
    statistics: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Statistic:
    """A score per (language, layer, neuron), derived from the accumulators.

    Attributes:
        name: Key in :data:`STATISTICS`.
        method: The method that provides it.
        compute: ``stats -> Float[Tensor, "lang layer neuron"]`` over ``stats.langs`` (what
            :meth:`NeuronStats.scores` calls once and caches).
        description: One line for docs.
    """

    name: str
    method: str
    compute: Callable[[NeuronStats], Float[Tensor, "lang layer neuron"]]
    description: str


PerLanguage = Callable[["NeuronStats", str], Tensor]


def _per_lang(fn: PerLanguage) -> Callable[[NeuronStats], Tensor]:
    """A statistic computed language by language, stacked in ``stats.langs`` order."""
    return lambda s: torch.stack([fn(s, lang) for lang in s.langs])


def _mean(field: str) -> Callable[[NeuronStats], Tensor]:
    return _per_lang(lambda s, lang: s.sums[lang][field] / s.n_tokens[lang])


def _attribution_mean(s: NeuronStats) -> Tensor:
    # Σ_t (μ − h_t)·g_t = μ·Σg − Σh·g: mean ablation needs no second pass.
    mu = s.pooled_mean_activation()
    return torch.stack(
        [(mu * s.sums[x]["g_sum"] - s.sums[x]["hg_sum"]) / s.n_tokens[x] for x in s.langs]
    )


def _kojima_ap(s: NeuronStats) -> Tensor:
    """Every language's AP from one sort per neuron. Blocks are ranked in language order, then
    block order (the tie order); one layer is concatenated at a time, never all block means."""
    groups = torch.cat(
        [torch.full((len(s.block_means[x]),), i, dtype=torch.long) for i, x in enumerate(s.langs)]
    )
    layers = [
        average_precision_by_group(
            torch.cat([s.block_means[x][:, layer] for x in s.langs]), groups, len(s.langs)
        )
        for layer in range(s.spec.n_layers)
    ]
    return torch.stack(layers, dim=1)


def _kojima_median(s: NeuronStats, lang: str) -> Tensor:
    return s.block_means[lang].median(dim=0).values


def _plnd(s: NeuronStats, lang: str) -> Tensor:
    assert s.w_down_norm is not None
    return s.sums[lang]["act_abs_sum"] / s.n_tokens[lang] * s.w_down_norm


def _plnd_min(s: NeuronStats, lang: str) -> Tensor:
    assert s.w_down_norm is not None
    return s.sums[lang]["abs_mean_min"] * s.w_down_norm


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("crane", "lrp", ("crane", "crane_abs", "crane_pos"),
               "AttnLRP relevance h·g_LRP of the gold next-token logit (CRANE)"),
        Method("attribution", "grad", ("attribution", "attribution_mean"),
               "attribution patching: first-order ΔNLL of zero- (and mean-) ablation"),
        Method("ablation", "ablation", ("ablation",),
               "exact ΔNLL when the neuron alone is zero-ablated (ground truth)"),
        Method("grad_act", "grad", ("grad_act",), "mean |h·∂NLL/∂h| (Mondal et al.)"),
        Method("lape", "forward", ("activation_probability",),
               "LAPE: activation probability per language; entropy and selection in stats.lape"),
        Method("activation_probability", "forward", ("activation_probability",),
               "share of tokens with act(gate) > 0"),
        Method("mean_activation", "forward", ("mean_activation",), "mean h over tokens"),
        Method("kojima", "forward", ("kojima", "kojima_median"),
               "average precision of per-block mean h as a language detector (Kojima et al.)"),
        Method("plnd", "forward", ("plnd", "plnd_min"),
               "PLND importance ‖h_i·W_down[i,:]‖: mean, and minimum over blocks"),
    )
}  # fmt: skip

STATISTICS: dict[str, Statistic] = {
    s.name: s
    for s in (
        Statistic("crane", "crane", _mean("rel_sum"), "mean relevance per token"),
        Statistic("crane_abs", "crane", _mean("rel_abs_sum"), "mean |relevance| per token"),
        Statistic("crane_pos", "crane", _mean("rel_pos_sum"), "mean max(relevance, 0)"),
        Statistic("attribution", "attribution", _per_lang(lambda s, lang: -s.sums[lang]["hg_sum"]
                  / s.n_tokens[lang]), "estimated ΔNLL/token of zero-ablation"),
        Statistic("attribution_mean", "attribution", _attribution_mean,
                  "estimated ΔNLL/token of mean-ablation (mean over all languages)"),
        Statistic("ablation", "ablation", _mean("ablation_sum"), "exact ΔNLL/token"),
        Statistic("grad_act", "grad_act", _mean("hg_abs_sum"), "mean |h·∂NLL/∂h|"),
        Statistic("activation_probability", "activation_probability", _mean("act_on"),
                  "P(act(gate) > 0)"),
        Statistic("mean_activation", "mean_activation", _mean("act_sum"), "mean h"),
        Statistic("kojima", "kojima", _kojima_ap, "average precision as a language detector"),
        Statistic("kojima_median", "kojima", _per_lang(_kojima_median),
                  "median per-block mean h"),
        Statistic("plnd", "plnd", _per_lang(_plnd), "mean ‖h_i·W_down[i,:]‖"),
        Statistic("plnd_min", "plnd", _per_lang(_plnd_min),
                  "minimum over blocks of the block mean"),
    )
}  # fmt: skip


def primary_statistic(method: str) -> str:
    """The statistic :meth:`NeuronStats.top` and selection use by default for ``method``."""
    return METHODS[method].statistics[0]


def check_methods(methods: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Validate method names (order kept, duplicates dropped).

    Raises:
        ValueError: An unknown method.
    """
    names = (methods,) if isinstance(methods, str) else tuple(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ValueError(f"Unknown methods {unknown or names}; choose from {sorted(METHODS)}.")
    return tuple(dict.fromkeys(names))
