"""Stage 5 of the pipeline — interventions on MLP neurons, as TransformerLens hook functions.

Every intervention is the affine edit ``h' = h * keep + fill`` at ``blocks.{l}.mlp.hook_post``
(the neuron activations, the input of the down projection):

=========  ===================  =========================================================
mode       keep on chosen ``i``  fill on chosen ``i``
=========  ===================  =========================================================
``zero``   0                    0 (LAPE's and CRANE's masking)
``mean``   0                    the neuron's mean activation (per language or pooled)
``fixed``  0                    given values, e.g. Kojima et al.'s target-language medians
``scale``  ``factor``           0 (``factor=0`` is zero ablation; ``2`` doubles the neuron)
=========  ===================  =========================================================

Hooks return a new tensor (never edit in place), so they compose with backward hooks and
gradients: ``∂h'/∂h = keep``. :func:`stacked_hooks` applies *different* interventions to
consecutive slices of the batch, so one forward pass evaluates many conditions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from crane_lens.model.runner import HookFn, keep_fill_hook
from crane_lens.model.spec import NEURON_HOOK
from crane_lens.selection.neurons import LanguageNeurons

Mode = Literal["zero", "mean", "fixed", "scale"]
MODES = ("zero", "mean", "fixed", "scale")


def _edit(
    d_mlp: int, idx: Tensor, keep_value: Tensor | float, fill_value: Tensor | float
) -> tuple[Tensor, Tensor]:
    idx = torch.as_tensor(idx, dtype=torch.long).flatten()
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= d_mlp):
        raise IndexError(f"Neuron indices must lie in [0, {d_mlp}); got {idx.tolist()[:8]}...")
    keep, fill = torch.ones(d_mlp), torch.zeros(d_mlp)
    keep[idx] = torch.as_tensor(keep_value, dtype=torch.float32)
    fill[idx] = torch.as_tensor(fill_value, dtype=torch.float32)
    return keep, fill


def zero_hook(neurons: Int[Tensor, " k"], d_mlp: int) -> HookFn:
    """A hook that sets the given neurons of one layer to 0 at every position.

    Example:
        >>> import torch
        >>> zero_hook(torch.tensor([1]), 3)(torch.ones(1, 2, 3), None)[0, 0].tolist()
        [1.0, 0.0, 1.0]
    """
    return keep_fill_hook(*_edit(d_mlp, neurons, 0.0, 0.0))


def replace_hook(
    neurons: Int[Tensor, " k"], values: Float[Tensor, " k"] | float, d_mlp: int
) -> HookFn:
    """A hook that sets the given neurons to fixed values (means, medians...) at every position."""
    return keep_fill_hook(*_edit(d_mlp, neurons, 0.0, values))


def scale_hook(neurons: Int[Tensor, " k"], factor: float, d_mlp: int) -> HookFn:
    """A hook that multiplies the given neurons by ``factor`` at every position."""
    return keep_fill_hook(*_edit(d_mlp, neurons, factor, 0.0))


@dataclass
class Intervention:
    """One condition: the ``keep`` and ``fill`` vectors of every edited layer.

    Attributes:
        keep: ``layer -> Float[Tensor, "neuron"]``.
        fill: ``layer -> Float[Tensor, "neuron"]``.
        label: A name for tables (``"crane:zh"``, ``"random-3:zh"``...).
    """

    keep: dict[int, Tensor]
    fill: dict[int, Tensor]
    label: str = ""

    @property
    def layers(self) -> list[int]:
        return sorted(self.keep)

    @property
    def n_neurons(self) -> int:
        return sum(int(((k != 1) | (f != 0)).sum()) for k, f in
                   zip(self.keep.values(), self.fill.values(), strict=True))  # fmt: skip

    def hooks(self, hook_name: str = NEURON_HOOK) -> list[tuple[str, HookFn]]:
        """``(hook_name, fn)`` pairs for ``run_with_hooks`` / ``model.hooks(fwd_hooks=...)``."""
        return [(hook_name.format(layer=layer), keep_fill_hook(self.keep[layer], self.fill[layer]))
                for layer in self.layers]  # fmt: skip


def intervention(
    neurons: LanguageNeurons | Sequence[Tensor],
    lang: str | None = None,
    *,
    mode: Mode = "zero",
    values: Float[Tensor, "layer neuron"] | None = None,
    factor: float = 0.0,
    d_mlp: int | None = None,
) -> Intervention:
    """Build one condition from a language's neuron set.

    Args:
        neurons: A :class:`LanguageNeurons` (then ``lang`` picks the set) or per-layer index
            tensors (LAPE's layout for one language; then ``d_mlp`` is needed).
        lang: The language whose set to edit.
        mode: ``"zero"``, ``"mean"``, ``"fixed"`` or ``"scale"`` (see the module docstring).
        values: Per-neuron values for ``"mean"``/``"fixed"`` — see :func:`intervention_values`.
        factor: Multiplier for ``"scale"``.
        d_mlp: Neurons per layer, when ``neurons`` is a plain list.

    Raises:
        ValueError: Unknown mode, or ``values`` missing / of the wrong shape.
    """
    if isinstance(neurons, LanguageNeurons):
        if lang is None:
            raise ValueError(f"Name the language whose set to edit (one of {neurons.langs}).")
        per_layer, d_mlp = neurons.per_layer(lang), neurons.d_mlp
    else:
        per_layer = [torch.as_tensor(idx, dtype=torch.long) for idx in neurons]
        if d_mlp is None:
            raise ValueError("Pass d_mlp (neurons per layer) with plain per-layer index lists.")
    if mode not in MODES:
        raise ValueError(f"Unknown intervention mode {mode!r}; choose from {MODES}.")
    if mode in ("mean", "fixed"):
        if values is None:
            raise ValueError(
                f"mode={mode!r} needs values[layer, neuron]: use intervention_values(stats, "
                f"{mode!r}, lang) for the means / Kojima medians of a statistics run."
            )
        if tuple(values.shape) != (len(per_layer), d_mlp):
            raise ValueError(
                f"values has shape {tuple(values.shape)}; expected ({len(per_layer)}, {d_mlp})."
            )
    keep, fill = {}, {}
    for layer, idx in enumerate(per_layer):
        if len(idx):
            value = values[layer, idx].float() if values is not None and mode != "zero" else 0.0
            keep[layer], fill[layer] = _edit(d_mlp, idx, factor if mode == "scale" else 0.0,
                                             0.0 if mode == "scale" else value)  # fmt: skip
    label = f"{getattr(neurons, 'method', '') or 'neurons'}:{lang}" if lang else "neurons"
    return Intervention(keep, fill, label)


def intervention_values(stats: Any, mode: Mode, lang: str | None = None) -> Tensor:
    """Replacement values from a statistics run.

    Args:
        stats: A :class:`~crane_lens.stats.NeuronStats`.
        mode: ``"mean"`` — the mean activation of ``lang``, or over all languages' tokens when
            ``lang`` is ``None``; ``"fixed"`` — Kojima et al.'s median per-block response of
            ``lang`` (needs the ``kojima`` method).
        lang: See ``mode``.

    Returns:
        ``Float[Tensor, "layer neuron"]``.
    """
    if mode == "mean":
        if lang is None:
            return stats.pooled_mean_activation()
        if lang not in stats.n_tokens:
            raise ValueError(f"No statistics for {lang!r}; they cover {stats.langs}.")
        return stats.sums[lang]["act_sum"] / stats.n_tokens[lang]  # collected by every pass
    if mode == "fixed":
        if lang is None:
            raise ValueError("Kojima's fixed values are per target language: pass lang.")
        return stats.scores("kojima_median")[stats.langs.index(lang)]
    raise ValueError(f"mode {mode!r} takes no values from statistics (use 'mean' or 'fixed').")


def ablation_hooks(
    neurons: LanguageNeurons | Sequence[Tensor],
    lang: str | None = None,
    **kwargs: Any,
) -> list[tuple[str, HookFn]]:
    """Plain ``(hook_name, fn)`` pairs for ``model.run_with_hooks`` / ``model.hooks``.

    Takes the arguments of :func:`intervention`.

    Example:
        >>> import crane_lens as cl, torch
        >>> model = cl.load_model("crane-tiny")
        >>> hooks = ablation_hooks([torch.tensor([0, 5]), torch.tensor([], dtype=torch.long)],
        ...                        d_mlp=model.cfg.d_mlp)
        >>> [name for name, _ in hooks]
        ['blocks.0.mlp.hook_post']
    """
    return intervention(neurons, lang, **kwargs).hooks()


@contextmanager
def ablate(
    model: Any,
    neurons: LanguageNeurons | Sequence[Tensor],
    lang: str | None = None,
    **kwargs: Any,
) -> Iterator[Any]:
    """Run the model with a language's neurons masked, inside a ``with`` block.

    Takes the arguments of :func:`intervention`; the set is checked against the model first.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> stats = cl.compute_stats(model, cl.load_corpus("builtin", langs=["en", "vi"]),
        ...                          "crane", max_tokens_per_lang=256, progress=False)
        >>> neurons = cl.select_language_neurons(stats, k=20)
        >>> tokens = model.to_tokens("Xin chào các bạn")
        >>> with cl.ablate(model, neurons, "vi"):
        ...     masked = model(tokens, return_type="loss")
        >>> bool(masked != model(tokens, return_type="loss"))
        True
    """
    from crane_lens.model.loader import get_spec

    kwargs.setdefault("d_mlp", get_spec(model).d_mlp)
    with intervene(model, intervention(neurons, lang, **kwargs), neurons) as edited:
        yield edited


@contextmanager
def intervene(
    model: Any, edit: Intervention, neurons: LanguageNeurons | Sequence[Tensor] | None = None
) -> Iterator[Any]:
    """Run the model under one :class:`Intervention` (masking or steering), inside a ``with``
    block: the one place where edits become active hooks.

    Args:
        model: A TransformerBridge.
        edit: The condition (:func:`intervention`, :func:`~crane_lens.intervention.steering`).
        neurons: The sets it came from, checked against the model first.

    Raises:
        NeuronSetMismatchError: ``neurons`` or the edit do not fit the model.
    """
    from crane_lens.errors import NeuronSetMismatchError
    from crane_lens.model.loader import get_spec

    spec = get_spec(model)  # raises a clear error when the neuron hooks are missing
    if isinstance(neurons, LanguageNeurons):
        neurons.check_fits(spec)
    bad = [x for x in edit.layers if not 0 <= x < spec.n_layers or len(edit.keep[x]) != spec.d_mlp]
    if bad:
        raise NeuronSetMismatchError(
            f"{edit.label or 'The edit'} changes layer {bad[0]} with {len(edit.keep[bad[0]])} "
            f"neurons; the model has {spec.n_layers} layers of {spec.d_mlp}."
        )
    with model.hooks(fwd_hooks=edit.hooks(spec.neuron_hook)):
        yield model


def stacked_hooks(
    conditions: Sequence[Intervention], rows_each: int, hook_name: str = NEURON_HOOK
) -> list[tuple[str, HookFn]]:
    """Hooks that apply ``conditions[c]`` to batch rows ``c*rows_each ... (c+1)*rows_each - 1``.

    Repeat the same inputs once per condition along the batch dimension and one forward pass
    evaluates every condition (an unedited condition is ``Intervention({}, {})``).

    Raises:
        ValueError: At call time, when the batch is not ``len(conditions) * rows_each`` rows.
    """
    layers = sorted({layer for c in conditions for layer in c.layers})
    hooks = []
    for layer in layers:
        d_mlp = next(len(c.keep[layer]) for c in conditions if layer in c.keep)
        keep = torch.stack([c.keep.get(layer, torch.ones(d_mlp)) for c in conditions])
        fill = torch.stack([c.fill.get(layer, torch.zeros(d_mlp)) for c in conditions])
        hooks.append((hook_name.format(layer=layer), keep_fill_hook(keep, fill, rows_each)))
    return hooks
