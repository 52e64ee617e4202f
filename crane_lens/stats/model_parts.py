"""The pieces of a bridged model's MLPs the statistics need beyond the neuron hook itself."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from crane_lens.model.mlp import Activation, activation_function, mlp_of

__all__ = ["Activation", "activation_function", "down_projection_rows"]


@torch.no_grad()
def down_projection_rows(model: Any, layer: int) -> Float[Tensor, "neuron d_model"]:
    """``W_down[i, :]`` for every neuron ``i`` of one layer: the vector neuron ``i`` writes.

    Computed by applying the down projection to the identity (minus its bias), which works for
    ``nn.Linear``, GPT-2's transposed ``Conv1D`` and any other affine map alike.
    """
    out = mlp_of(model, layer).out
    module = getattr(out, "original_component", out)
    param = next(module.parameters())
    d_mlp = int(model.cfg.d_mlp)
    eye = torch.eye(d_mlp, device=param.device, dtype=param.dtype)
    rows = module(eye) - module(torch.zeros_like(eye[:1]))
    return rows.float()
