"""``ModelSpec``: what crane_lens needs to know about a loaded model, checked at load time."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch

from crane_lens.errors import UnsupportedModelError
from crane_lens.model.mlp import check_mlp, gated_from_hooks

log = logging.getLogger(__name__)

NEURON_HOOK = "blocks.{layer}.mlp.hook_post"  # input of the MLP's down projection (TL 4)


@dataclass(frozen=True)
class ModelSpec:
    """The facts about a model that neuron analyses depend on.

    Attributes:
        name: Built-in name, local path or hub id the model was loaded from.
        architecture: Hugging Face architecture class, e.g. ``"LlamaForCausalLM"``.
        n_layers: Number of transformer blocks.
        d_model: Residual stream width.
        d_mlp: Neurons per MLP layer.
        gated: Whether the MLP is gated (``act(gate(x)) * up(x)``, Llama family).
        dtype: Parameter dtype, e.g. ``"torch.float32"``.
        device: Device of the parameters.
        neuron_hook: Hook name pattern of the neuron activations (``{layer}`` placeholder).
        vocab_size: Vocabulary size of the unembedding.
    """

    name: str
    architecture: str
    n_layers: int
    d_model: int
    d_mlp: int
    gated: bool
    dtype: str
    device: str
    neuron_hook: str
    vocab_size: int

    @property
    def n_neurons(self) -> int:
        """MLP neurons in the whole model."""
        return self.n_layers * self.d_mlp

    def hook_name(self, layer: int) -> str:
        """Neuron hook name of one layer, e.g. ``blocks.3.mlp.hook_post``."""
        return self.neuron_hook.format(layer=layer)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(**data)

    def same_neurons_as(self, other: ModelSpec) -> bool:
        """Whether neuron indices of the two models refer to the same layout."""
        return (self.n_layers, self.d_mlp) == (other.n_layers, other.d_mlp)

    def summary(self) -> str:
        """Readable ``key: value`` lines (what ``crane-lens model info`` prints)."""
        rows = {**self.to_dict(), "n_neurons": self.n_neurons}
        width = max(map(len, rows))
        return "\n".join(f"{key:<{width}}  {value}" for key, value in rows.items())

    def __str__(self) -> str:
        return json.dumps(self.to_dict())


def model_spec(model: Any, name: str) -> ModelSpec:
    """Derive and validate the :class:`ModelSpec` of a TransformerBridge.

    Runs one forward pass over BOS and a few tokens that caches only the MLP hooks, checks
    that ``blocks.{l}.mlp.hook_post`` exists for every layer with last dimension ``d_mlp``,
    reads whether the MLPs are gated from the hooks (``hook_pre_linear``; an adapter's
    ``cfg.gated_mlp`` that disagrees is logged and overruled), and verifies that every layer
    computes ``act(hook_pre) [· hook_pre_linear] == hook_post``
    (:func:`crane_lens.model.mlp.check_mlp`).

    Raises:
        UnsupportedModelError: The architecture has no MLP neuron hooks of that shape, or an MLP
            does not compute what its hooks say.
    """
    cfg = model.cfg
    architecture = str(getattr(cfg, "architecture", None) or type(model).__name__)
    n_layers, d_mlp = int(cfg.n_layers), getattr(cfg, "d_mlp", None)
    names = [NEURON_HOOK.format(layer=layer) for layer in range(n_layers)]
    probed = {f"blocks.{layer}.mlp.{hook}" for layer in range(n_layers)
              for hook in ("hook_pre", "hook_pre_linear", "hook_post")}  # fmt: skip
    bos = getattr(model.tokenizer, "bos_token_id", None) if model.tokenizer is not None else None
    param = next(model.parameters())
    vocab = int(getattr(cfg, "d_vocab", 2) or 2)
    ids = [0 if bos is None else bos] + [(7 * i + 3) % vocab for i in range(1, 8)]
    tokens = torch.tensor([ids], device=param.device)
    try:
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in probed)
    except Exception as exc:  # an adapter without these hooks fails inside TransformerLens
        raise UnsupportedModelError(
            f"{architecture} ({name}): running with the neuron hooks failed ({exc}). crane_lens "
            "needs TransformerLens' blocks.{l}.mlp.hook_post on every layer."
        ) from exc
    missing = [n for n in names if n not in cache]
    if d_mlp is None or missing:
        raise UnsupportedModelError(
            f"{architecture} ({name}) exposes no MLP neuron hook {missing[:1] or names[:1]}: "
            "crane_lens analyses MLP neurons at blocks.{l}.mlp.hook_post (the input of the down "
            "projection). Use a decoder-only model with MLP blocks (Llama, Qwen2, Mistral, "
            "Gemma2, GPT-2, BLOOM...)."
        )
    wrong = {n: tuple(cache[n].shape) for n in names if cache[n].shape[-1] != d_mlp}
    if wrong:
        raise UnsupportedModelError(
            f"{architecture} ({name}): neuron hooks have shapes {wrong}, expected last dimension "
            f"d_mlp={d_mlp}: its MLP (e.g. a mixture of experts) has no single neuron layer "
            "crane_lens can analyse. Use a dense-MLP model."
        )
    gated = gated_from_hooks(model, n_layers)
    if gated != bool(getattr(cfg, "gated_mlp", False)):
        log.warning("%s (%s): cfg.gated_mlp=%s, but its MLP hooks say %s; using the hooks",
                    architecture, name, getattr(cfg, "gated_mlp", None),
                    "gated" if gated else "not gated")  # fmt: skip
    if all(f"blocks.{layer}.mlp.hook_pre" in cache for layer in range(n_layers)):
        check_mlp(model, cache, n_layers, gated, f"{architecture} ({name})")
    return ModelSpec(
        name=name,
        architecture=architecture,
        n_layers=n_layers,
        d_model=int(cfg.d_model),
        d_mlp=int(d_mlp),
        gated=gated,
        dtype=str(param.dtype),
        device=str(param.device),
        neuron_hook=NEURON_HOOK,
        vocab_size=int(cfg.d_vocab),
    )
