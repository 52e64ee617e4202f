"""A bridged model's MLPs: their activation function, whether they are gated, and a probe that
the neuron hooks compute what crane_lens assumes they compute.

crane_lens reads every MLP neuron at ``blocks.{l}.mlp.hook_post`` and rests two methods on what
produced it: the LRP identity rule on the activation and LAPE's activation test both need the
activation function and, for a gated MLP (``act(gate(x)) · up(x)``), the gate's pre-activation
``hook_pre`` rather than the product. Whether an MLP is gated is therefore read from the bridge's
hooks (``hook_pre_linear``, the up projection, exists only there) — not from an adapter's
config flag, which can be unset — and :func:`check_mlp` verifies on a few tokens that
``act(hook_pre) [· hook_pre_linear] == hook_post`` in every layer before any statistic is
computed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from crane_lens.errors import UnsupportedModelError

log = logging.getLogger(__name__)

Activation = Callable[[Tensor], Tensor]

# Children of a Hugging Face MLP that are not its activation function.
_NOT_ACTIVATION = ("Linear", "Conv1D", "Dropout", "Identity")
# Attributes under which Hugging Face MLPs keep their activation (Llama, Gemma, Qwen2: act_fn;
# GPT-2: act; BLOOM: gelu_impl; OPT-style: activation_fn); :func:`check_mlp` verifies the choice.
_ACTIVATION_ATTRIBUTES = ("act_fn", "act", "gelu_impl", "activation_fn", "activation")


def mlp_of(model: Any, layer: int) -> Any:
    """The bridged MLP module of one layer."""
    return model.blocks[layer].mlp


def activation_function(model: Any, layer: int) -> Activation:
    """The element-wise non-linearity of one MLP layer (applied to ``hook_pre``).

    Taken from the wrapped Hugging Face module — its ``act_fn``, ``act``, ``gelu_impl``,
    ``activation_fn`` or ``activation`` attribute, else its one child that is not a linear map
    or dropout — rather than from ``cfg.act_fn``, which is wrong for some adapters (BLOOM
    reports relu but uses GELU). Native TransformerLens models fall back to ``cfg.act_fn``.
    Whatever is found, :func:`check_mlp` verifies at load that it reproduces ``hook_post``.

    Raises:
        UnsupportedModelError: No activation function can be identified.
    """
    original = getattr(mlp_of(model, layer), "original_component", None)
    if original is not None:
        for attribute in _ACTIVATION_ATTRIBUTES:  # Hugging Face's names for it, first
            found = getattr(original, attribute, None)
            if callable(found) and not isinstance(found, torch.nn.Linear):
                return found
        for child in original.children():
            kind = type(child).__name__
            if not any(part in kind for part in _NOT_ACTIVATION):
                return child
    name = str(getattr(model.cfg, "act_fn", "") or "")
    if name:
        from transformers.activations import ACT2FN

        if name in ACT2FN:
            return ACT2FN[name]
    raise UnsupportedModelError(
        f"Cannot identify the MLP activation function of layer {layer} "
        f"({type(original).__name__ if original is not None else 'native MLP'}, "
        f"cfg.act_fn={name!r}); the LRP identity rule and LAPE's activation test need it."
    )


def gated_from_hooks(model: Any, n_layers: int) -> bool:
    """Whether every MLP is gated, from the bridge's hooks: a gated MLP has
    ``blocks.{l}.mlp.hook_pre_linear`` (the up projection's output) beside ``hook_pre``.

    Raises:
        UnsupportedModelError: Some layers have it and others not.
    """
    hooks = getattr(model, "hook_dict", {})
    has = [f"blocks.{layer}.mlp.hook_pre_linear" in hooks for layer in range(n_layers)]
    if any(has) and not all(has):
        raise UnsupportedModelError(
            f"Only layers {[i for i, h in enumerate(has) if h]} of {n_layers} have a gated MLP "
            "(blocks.{l}.mlp.hook_pre_linear): crane_lens needs one MLP kind in every layer."
        )
    return all(has)


def check_mlp(model: Any, cache: Any, n_layers: int, gated: bool, architecture: str) -> None:
    """Verify ``act(hook_pre) [· hook_pre_linear] == hook_post`` in every layer, on the
    tokens of a probe pass whose ``cache`` holds those hooks.

    The tolerance follows the dtype (the hooks are computed in it; the check recomputes in
    float32): 1e-4 × the largest |hook_post| in float32, 2e-2 × it in 16-bit dtypes.

    Raises:
        UnsupportedModelError: A layer where it does not hold, named with its MLP.
    """
    for layer in range(n_layers):
        post = cache[f"blocks.{layer}.mlp.hook_post"].float()
        pre = cache[f"blocks.{layer}.mlp.hook_pre"]
        act = activation_function(model, layer)
        with torch.no_grad():
            expected = act(pre).float()
            if gated:
                expected = expected * cache[f"blocks.{layer}.mlp.hook_pre_linear"].float()
        bound = float(post.abs().max()) or 1.0
        tolerance = (1e-4 if cache[f"blocks.{layer}.mlp.hook_post"].dtype == torch.float32
                     else 2e-2) * bound  # fmt: skip
        error = float((expected - post).abs().max())
        if not error <= tolerance:
            mlp = mlp_of(model, layer)
            module = type(getattr(mlp, "original_component", mlp)).__name__
            formula = "act(hook_pre) * hook_pre_linear" if gated else "act(hook_pre)"
            raise UnsupportedModelError(
                f"{architecture}: layer {layer}'s MLP ({module}, activation "
                f"{getattr(act, '__name__', type(act).__name__)}) "
                f"does not compute {formula} == hook_post (largest difference {error:.3g}, "
                f"allowed {tolerance:.3g}): crane_lens cannot tell its activation function or "
                "gate apart, so LRP and LAPE would read the wrong quantity. Report the "
                "architecture, or use a supported one (Llama, Qwen2, Mistral, Gemma 2/3, GPT-2, "
                "BLOOM)."
            )
