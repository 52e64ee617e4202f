"""blocks.{l}.mlp.hook_post is the input of the Hugging Face down projection — activations and
gradients — for every architecture family users bring (the oracle is the plain HF model)."""

from __future__ import annotations

import pytest
import torch

import crane_lens as cl
from tests.tiny_models import ARCHITECTURES, DOWN_PROJ

TEXT = "The quick brown fox jumps over the lazy dog. Con cáo nâu nhanh nhẹn."


def _hf_down_proj_inputs(folder, arch, tokens):  # type: ignore[no-untyped-def]
    """Down-projection inputs and their gradients of the loss, from the plain HF model."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    captured: dict[int, torch.Tensor] = {}

    def capture(layer: int):  # type: ignore[no-untyped-def]
        def hook(module, args):  # type: ignore[no-untyped-def]
            args[0].retain_grad()
            captured[layer] = args[0]

        return hook

    n_layers = hf.config.num_hidden_layers
    handles = [
        DOWN_PROJ[arch](hf, layer).register_forward_pre_hook(capture(layer))
        for layer in range(n_layers)
    ]
    try:
        hf(input_ids=tokens, labels=tokens).loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    return {layer: (t.detach(), t.grad) for layer, t in captured.items()}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_hook_post_is_the_down_projection_input(arch: str, tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints[arch], device="cpu")
    spec = cl.get_spec(model)
    assert spec.gated == (arch not in ("gpt2", "bloom"))
    tokens = model.to_tokens(TEXT)
    acts: dict[int, torch.Tensor] = {}
    grads: dict[int, torch.Tensor] = {}

    def save(store: dict[int, torch.Tensor], layer: int):  # type: ignore[no-untyped-def]
        def hook(tensor, hook):  # type: ignore[no-untyped-def]
            store[layer] = tensor.detach().clone()

        return hook

    names = [spec.hook_name(layer) for layer in range(spec.n_layers)]
    with model.hooks(
        fwd_hooks=[(n, save(acts, layer)) for layer, n in enumerate(names)],
        bwd_hooks=[(n, save(grads, layer)) for layer, n in enumerate(names)],
    ):
        model(tokens, return_type="loss").backward()

    reference = _hf_down_proj_inputs(tiny_checkpoints[arch], arch, tokens)
    assert set(acts) == set(grads) == set(reference) == set(range(spec.n_layers))
    for layer, (ref_act, ref_grad) in reference.items():
        assert acts[layer].shape[-1] == spec.d_mlp
        torch.testing.assert_close(acts[layer], ref_act, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grads[layer], ref_grad, rtol=1e-4, atol=1e-8)
        assert ref_grad.abs().max() > 0  # the comparison is not between zeros
