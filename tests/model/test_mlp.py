"""Gated MLPs read from the hooks, and the load-time probe that the hooks compute what the
statistics assume: ``act(hook_pre) [· hook_pre_linear] == hook_post``."""

from __future__ import annotations

import logging

import pytest
import torch

import crane_lens as cl
from crane_lens.errors import UnsupportedModelError
from crane_lens.model import mlp as mlp_module
from crane_lens.model.spec import model_spec

GATED = {"llama": True, "qwen2": True, "mistral": True, "gemma2": True, "gpt2": False,
         "bloom": False}  # fmt: skip


@pytest.mark.parametrize("arch", sorted(GATED))
def test_every_architecture_passes_the_probe_and_is_gated_as_its_hooks_say(
    tiny_checkpoints, arch
) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints[arch])
    spec = model_spec(model, arch)
    assert spec.gated is GATED[arch]


def test_a_gated_model_whose_config_says_otherwise_is_still_gated(tiny_checkpoints, caplog) -> None:  # type: ignore[no-untyped-def]
    """An adapter that leaves cfg.gated_mlp unset on a gated model: before, the spec said
    "not gated", so LRP's identity rule ran on act(gate)·up and LAPE read the product."""
    model = cl.load_model(tiny_checkpoints["llama"])
    model.cfg.gated_mlp = False
    with caplog.at_level(logging.WARNING, logger="crane_lens.model.spec"):
        spec = model_spec(model, "llama")
    assert spec.gated is True
    assert "cfg.gated_mlp=False, but its MLP hooks say gated" in caplog.text


def test_an_mlp_that_does_not_compute_its_hooks_is_refused_with_its_name(
    tiny_checkpoints, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A wrong activation function (here ReLU for SiLU) would make LAPE's test and the LRP
    rule read the wrong quantity: the probe refuses the model at load, naming the MLP."""
    model = cl.load_model(tiny_checkpoints["llama"])
    monkeypatch.setattr(mlp_module, "activation_function", lambda model, layer: torch.relu)
    with pytest.raises(UnsupportedModelError, match=r"layer 0's MLP \(LlamaMLP, activation relu\)"):
        model_spec(model, "llama")


def test_gemma3_passes_the_probe(tmp_path, tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from tests.tiny_models import save_tiny_gemma3

    model = cl.load_model(save_tiny_gemma3(tmp_path / "gemma3", tiny_tokenizer))
    assert model_spec(model, "gemma3").gated is True
