"""Stage 2 of the pipeline — model: the embedded demo models and the TransformerBridge loader."""

from crane_lens.model.loader import (
    BUILTIN_MODELS,
    builtin_model_dir,
    dtype_choice,
    get_spec,
    load_model,
    resolve_device,
    resolve_dtype,
)
from crane_lens.model.spec import NEURON_HOOK, ModelSpec, model_spec

__all__ = [
    "BUILTIN_MODELS",
    "NEURON_HOOK",
    "ModelSpec",
    "builtin_model_dir",
    "dtype_choice",
    "get_spec",
    "load_model",
    "model_spec",
    "resolve_device",
    "resolve_dtype",
]
