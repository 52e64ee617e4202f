"""Repairs for known TransformerLens / transformers mismatches, applied to every loaded bridge.

transformers 5.24 renamed the KV-cache argument of its decoder layers and attention modules from
``past_key_values`` to ``cache`` (the old name still works for callers, with a FutureWarning).
TransformerLens 4.3's attention bridges look the cache up only under the old names
(``past_key_values``, ``layer_past``), so under 5.24 they never write keys and values into it:
the cache stays empty, every decode step after the prompt sees only itself at position 0, and
``TransformerBridge.generate`` (default ``use_past_kv_cache=True``) returns garbage — as does the
wrapped ``bridge.original_model.generate``, whose attention modules are the bridge's. Teacher-forced
forward passes (all statistics, all ablations) never use the cache and are unaffected.

:func:`repair_kv_cache` gives each attention bridge of a loaded model a lookup that also accepts
``cache``; under older transformers that argument never appears and nothing changes. The bridge's
own generation loop still passes ``past_key_values`` to the Hugging Face model, which transformers
5.24+ answers with a FutureWarning on every step: :func:`quiet_generate` runs ``generate`` with that
one warning filtered. Both are instance-level (no class is patched) and are removable once
TransformerLens reads the new name; ``docs/dependencies.md`` records the versions.
"""

from __future__ import annotations

import functools
import types
import warnings
from typing import Any

import torch

CACHE_KWARGS = ("past_key_values", "layer_past")  # the names TransformerLens 4.3 reads
RENAMED_CACHE_KWARG = "cache"  # transformers >= 5.24
# transformers >= 5.24, on every cached step of the bridge's own loop.
DEPRECATION_MESSAGE = r".*`past_key_values`.* is deprecated"


def _update_kv_cache_any_name(
    self: torch.nn.Module, k: torch.Tensor, v: torch.Tensor, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention bridge's cache update, also finding the cache under its new name."""
    renamed = kwargs.get(RENAMED_CACHE_KWARG)
    if renamed is not None and all(kwargs.get(name) is None for name in CACHE_KWARGS):
        kwargs[CACHE_KWARGS[0]] = renamed
    result: tuple[torch.Tensor, torch.Tensor] = type(self)._update_kv_cache(  # type: ignore[attr-defined]
        self, k, v, **kwargs
    )
    return result


def repair_kv_cache(bridge: torch.nn.Module) -> int:
    """Let every attention bridge of ``bridge`` find the KV cache whatever transformers calls it.

    Args:
        bridge: A ``TransformerBridge``, modified in place.

    Returns:
        The number of attention modules repaired (0 for an architecture without them).
    """
    repaired = 0
    for module in bridge.modules():
        if callable(getattr(type(module), "_update_kv_cache", None)):
            # A bound method in the instance dict: deepcopy rebinds it to the copy.
            module.__dict__["_update_kv_cache"] = types.MethodType(
                _update_kv_cache_any_name, module
            )
            repaired += 1
    return repaired


def quiet_generate(bridge: torch.nn.Module) -> None:
    """Make ``bridge.generate`` run without the cache-name FutureWarning of transformers >= 5.24.

    Args:
        bridge: A ``TransformerBridge``; its ``generate`` is wrapped in place (same signature,
            same docstring, same results).
    """

    @functools.wraps(type(bridge).generate)  # type: ignore[attr-defined]
    def generate(self: Any, *args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", DEPRECATION_MESSAGE, FutureWarning)
            return type(self).generate(self, *args, **kwargs)

    bridge.__dict__["generate"] = types.MethodType(generate, bridge)
