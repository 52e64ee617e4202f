"""Interventions against the Hugging Face module they stand for, on six architectures."""

from __future__ import annotations

import pytest
import torch

import crane_lens as cl
from crane_lens.evaluation import conditions_nll, eval_blocks
from crane_lens.intervention import Intervention, ablate, intervention, stacked_hooks
from crane_lens.selection import LanguageNeurons
from tests.tiny_models import ARCHITECTURES, DOWN_PROJ

TOKENS = torch.tensor([[0, 5, 17, 42, 99, 7, 3, 250], [0, 8, 8, 120, 31, 64, 2, 11]])


def _hf(folder):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).eval()


def _sets(d_mlp: int) -> LanguageNeurons:
    return LanguageNeurons(2, d_mlp, {"en": torch.tensor([[0, 3], [0, 10], [1, d_mlp - 1]])},
                           method="test")  # fmt: skip


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("mode", ["zero", "fixed", "scale"])
def test_intervention_equals_editing_the_hf_down_projection_input(tiny_checkpoints, arch, mode):  # type: ignore[no-untyped-def]  # fmt: skip
    """The bridge hook must change exactly what a pre-hook on HF's down projection changes."""
    model, hf = cl.load_model(tiny_checkpoints[arch]), _hf(tiny_checkpoints[arch])
    d_mlp = int(model.cfg.d_mlp)
    sets = _sets(d_mlp)
    values = torch.randn(2, d_mlp)
    kwargs = {"mode": mode, "values": values if mode == "fixed" else None, "factor": 2.5}

    def edit(layer):  # type: ignore[no-untyped-def]
        idx = sets.per_layer("en")[layer]

        def pre_hook(module, args):  # type: ignore[no-untyped-def]
            x = args[0].clone()
            if mode == "zero":
                x[..., idx] = 0.0
            elif mode == "fixed":
                x[..., idx] = values[layer, idx]
            else:
                x[..., idx] *= 2.5
            return (x, *args[1:])

        return pre_hook

    handles = [
        DOWN_PROJ[arch](hf, layer).register_forward_pre_hook(edit(layer)) for layer in (0, 1)
    ]
    with torch.no_grad():
        expected = hf(TOKENS).logits
        for handle in handles:
            handle.remove()
        unedited = hf(TOKENS).logits
        with ablate(model, sets, "en", **kwargs):
            got = model(TOKENS, return_type="logits")
    assert not torch.allclose(expected, unedited, atol=1e-4)  # the edit matters
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_hooks_are_functional_and_compose_with_gradients(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["llama"])
    sets = _sets(int(model.cfg.d_mlp))
    model.zero_grad()
    with ablate(model, sets, "en"):
        model(TOKENS, return_type="loss").backward()
    gate = model.original_model.model.layers[0].mlp.gate_proj.weight.grad
    up = model.original_model.model.layers[0].mlp.up_proj.weight.grad
    # A zeroed neuron passes no gradient back to its own gate/up rows; the others do.
    for grad in (gate, up):
        assert torch.all(grad[[3, 10]] == 0)
        assert torch.all(grad[[0, 1, 2]].abs().sum(dim=1) > 0)


def test_scale_zero_equals_zero_and_mean_needs_values(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["llama"])
    sets = _sets(int(model.cfg.d_mlp))
    with torch.no_grad(), ablate(model, sets, "en", mode="scale", factor=0.0):
        scaled = model(TOKENS, return_type="logits")
    with torch.no_grad(), ablate(model, sets, "en"):
        zeroed = model(TOKENS, return_type="logits")
    torch.testing.assert_close(scaled, zeroed)
    with pytest.raises(ValueError, match="intervention_values"):
        intervention(sets, "en", mode="mean")
    with pytest.raises(ValueError, match="expected"):
        intervention(sets, "en", mode="fixed", values=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="Unknown intervention mode"):
        intervention(sets, "en", mode="median")  # type: ignore[arg-type]


def test_sets_for_another_model_are_refused(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["llama"])
    wrong = LanguageNeurons(3, 96, {"en": torch.tensor([[2, 0]])}, model="other")
    with pytest.raises(cl.NeuronSetMismatchError, match="selected on other with 3 layers"), \
            ablate(model, wrong, "en"):  # fmt: skip
        pass


def test_stacked_conditions_equal_one_pass_per_condition(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["llama"])
    d_mlp = int(model.cfg.d_mlp)
    sets = LanguageNeurons(2, d_mlp, {"en": torch.tensor([[0, 3], [1, 5]]),
                                      "vi": torch.tensor([[1, 7], [1, 9], [0, 1]])})  # fmt: skip
    conditions = [Intervention({}, {}), intervention(sets, "en"), intervention(sets, "vi"),
                  intervention(sets, "vi", mode="scale", factor=3.0)]  # fmt: skip
    corpus = cl.load_corpus("builtin", langs=["en"], split="eval")
    blocks = eval_blocks(model, corpus, ["en"], seq_len=32, max_tokens_per_lang=32 * 5)["en"]
    stacked = conditions_nll(model, blocks, conditions, max_batch_rows=20)
    single = conditions_nll(model, blocks, conditions, stack=False)
    assert stacked.shape == (4, 5)  # condition × block
    torch.testing.assert_close(stacked, single, rtol=1e-5, atol=1e-4)
    assert len({round(float(a), 3) for a in stacked.sum(1)}) == 4  # four different conditions
    with pytest.raises(ValueError, match="conditions"):  # rows must match the stacking
        stacked_hooks(conditions, 3)[0][1](torch.zeros(5, 2, d_mlp), None)
