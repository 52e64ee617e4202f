"""The pieces of a bridged model's MLPs the statistics need beyond the neuron hook itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from crane_lens.errors import UnsupportedModelError

Activation = Callable[[Tensor], Tensor]

# Children of a Hugging Face MLP that are not its activation function.
_NOT_ACTIVATION = ("Linear", "Conv1D", "Dropout", "Identity")


def _mlp(model: Any, layer: int) -> Any:
    return model.blocks[layer].mlp


def activation_function(model: Any, layer: int) -> Activation:
    """The element-wise non-linearity of one MLP layer (applied to ``hook_pre``).

    Taken from the wrapped Hugging Face module (``act_fn``, ``act``, ``gelu_impl``...) rather than
    from ``cfg.act_fn``, which is wrong for some adapters (BLOOM reports relu but uses GELU).
    Native TransformerLens models fall back to ``cfg.act_fn``.

    Raises:
        UnsupportedModelError: No activation function can be identified.
    """
    original = getattr(_mlp(model, layer), "original_component", None)
    if original is not None:
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


@torch.no_grad()
def down_projection_rows(model: Any, layer: int) -> Float[Tensor, "neuron d_model"]:
    """``W_down[i, :]`` for every neuron ``i`` of one layer: the vector neuron ``i`` writes.

    Computed by applying the down projection to the identity (minus its bias), which works for
    ``nn.Linear``, GPT-2's transposed ``Conv1D`` and any other affine map alike.
    """
    out = _mlp(model, layer).out
    module = getattr(out, "original_component", out)
    param = next(module.parameters())
    d_mlp = int(model.cfg.d_mlp)
    eye = torch.eye(d_mlp, device=param.device, dtype=param.dtype)
    rows = module(eye) - module(torch.zeros_like(eye[:1]))
    return rows.float()
