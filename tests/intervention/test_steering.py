"""Steering edits, read back at the hook point on tiny random models: each mode writes exactly
its formula at the chosen neurons and leaves every other neuron as it was."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

import crane_lens as cl
from crane_lens.errors import NeuronSetMismatchError
from crane_lens.intervention import Intervention, intervene, steering
from crane_lens.selection import LanguageNeurons

TOKENS = torch.tensor([[0, 5, 17, 42, 99, 7, 3, 250], [0, 8, 8, 120, 31, 64, 2, 11]])
ARCHS = ["llama", "gpt2", "gemma2"]  # gated, plain GELU, gated with post-MLP norm


def _sets(d_mlp: int) -> LanguageNeurons:
    """Target ``vi`` and source ``en`` overlap in neuron (1, 4)."""
    return LanguageNeurons(2, d_mlp, {
        "vi": torch.tensor([[0, 3], [0, 10], [1, 4], [1, d_mlp - 1]]),
        "en": torch.tensor([[0, 7], [1, 4], [1, 20]]),
    }, method="test")  # fmt: skip


def _read_back(model: Any, edit: Intervention) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The activations entering and leaving the edit at every layer, in one pass: a hook
    registered before the edit's and one after it, on the same hook point."""
    before: list[torch.Tensor] = []
    after: list[torch.Tensor] = []
    names = [f"blocks.{layer}.mlp.hook_post" for layer in range(model.cfg.n_layers)]
    with (
        model.hooks(fwd_hooks=[(n, lambda x, hook: before.append(x.clone())) for n in names]),
        intervene(model, edit),
        model.hooks(fwd_hooks=[(n, lambda x, hook: after.append(x.clone())) for n in names]),
        torch.no_grad(),
    ):
        model(TOKENS, return_type="logits")
    return before, after


def _check(before: list[torch.Tensor], after: list[torch.Tensor], expected: Any) -> None:
    """``after`` equals ``expected(layer, before)`` exactly, layer by layer."""
    for layer, (b, a) in enumerate(zip(before, after, strict=True)):
        torch.testing.assert_close(a, expected(layer, b), rtol=0, atol=0)


@pytest.fixture(scope="module", params=ARCHS)
def model(request: pytest.FixtureRequest, tiny_checkpoints: dict[str, Any]) -> Any:
    return cl.load_model(tiny_checkpoints[request.param])


@pytest.mark.parametrize("strength", [1.0, 0.3, 2.5])
def test_replace_writes_the_statistic_at_the_chosen_neurons_and_nowhere_else(model, strength):  # type: ignore[no-untyped-def]
    d_mlp = int(model.cfg.d_mlp)
    sets, values = _sets(d_mlp), torch.randn(2, d_mlp)
    before, after = _read_back(model, steering(sets, "vi", target_values=values,
                                               strength=strength))  # fmt: skip
    chosen = sets.mask("vi")

    def expected(layer: int, h: torch.Tensor) -> torch.Tensor:
        out = h.clone()
        idx = chosen[layer]
        out[..., idx] = h[..., idx] * (1 - strength) + strength * values[layer, idx]
        return out

    _check(before, after, expected)
    if strength == 1.0:  # exactly the statistic, whatever the activation was
        for layer in range(2):
            assert torch.equal(after[layer][..., chosen[layer]],
                               values[layer, chosen[layer]].expand_as(after[layer][..., chosen[layer]]))  # fmt: skip


def test_add_shifts_by_strength_times_the_difference_of_means(model):  # type: ignore[no-untyped-def]
    d_mlp = int(model.cfg.d_mlp)
    sets = _sets(d_mlp)
    mu_t, mu_s = torch.randn(2, d_mlp), torch.randn(2, d_mlp)
    edit = steering(sets, "vi", source="en", mode="add", strength=1.5, target_values=mu_t,
                    source_values=mu_s)  # fmt: skip
    before, after = _read_back(model, edit)
    chosen = sets.mask("vi")
    for layer in range(2):  # the shift, by hand: 1.5 * (mu_t - mu_s) on vi's set, 0 elsewhere
        shift = torch.zeros(d_mlp)
        for neuron in range(d_mlp):
            if chosen[layer, neuron]:
                shift[neuron] = 1.5 * (mu_t[layer, neuron] - mu_s[layer, neuron])
        torch.testing.assert_close(after[layer] - before[layer], shift.expand_as(before[layer]),
                                   rtol=1e-6, atol=1e-6)  # fmt: skip
        assert torch.equal(after[layer][..., ~chosen[layer]], before[layer][..., ~chosen[layer]])


def test_swap_deactivates_the_source_and_activates_the_target_which_wins_overlaps(model):  # type: ignore[no-untyped-def]
    d_mlp = int(model.cfg.d_mlp)
    sets, values = _sets(d_mlp), torch.randn(2, d_mlp)
    edit = steering(sets, "vi", source="en", mode="swap", strength=1.0, deactivation=0.75,
                    target_values=values)  # fmt: skip
    before, after = _read_back(model, edit)
    target, source = sets.mask("vi"), sets.mask("en") & ~sets.mask("vi")

    def expected(layer: int, h: torch.Tensor) -> torch.Tensor:
        out = h.clone()
        out[..., source[layer]] = h[..., source[layer]] * 0.25
        out[..., target[layer]] = h[..., target[layer]] * 0.0 + values[layer, target[layer]]
        return out

    _check(before, after, expected)
    assert bool(sets.mask("vi")[1, 4] & sets.mask("en")[1, 4])  # the overlap is tested


@pytest.mark.parametrize("mode", ["replace", "add", "swap"])
def test_strength_zero_or_an_empty_set_edits_nothing(model, mode):  # type: ignore[no-untyped-def]
    d_mlp = int(model.cfg.d_mlp)
    values = {"target_values": torch.randn(2, d_mlp), "source_values": torch.randn(2, d_mlp)}
    zero = steering(_sets(d_mlp), "vi", source="en", mode=mode, strength=0.0, **values)
    empty_sets = LanguageNeurons(2, d_mlp, {"vi": torch.zeros(0, 2), "en": torch.zeros(0, 2)})
    empty = steering(empty_sets, "vi", source="en", mode=mode, strength=3.0, **values)
    assert zero.layers == [] and empty.layers == []
    with torch.no_grad():
        clean = model(TOKENS, return_type="logits")
        for edit in (zero, empty):
            with intervene(model, edit):
                assert torch.equal(model(TOKENS, return_type="logits"), clean)


def test_steering_values_come_from_the_statistics() -> None:
    """``replace`` with stats= uses the language's mean activation (act_sum / tokens);
    ``median`` is Kojima's per-block median and needs the kojima method."""

    def no_kojima(name: str) -> torch.Tensor:
        raise KeyError(name)

    stats = SimpleNamespace(
        langs=["vi", "en"], n_tokens={"vi": 4, "en": 2},
        sums={"vi": {"act_sum": torch.full((1, 3), 8.0)}, "en": {"act_sum": torch.ones(1, 3)}},
        scores=no_kojima, pooled_mean_activation=lambda: torch.full((1, 3), 1.5),
    )  # fmt: skip
    sets = LanguageNeurons(1, 3, {"vi": torch.tensor([[0, 1]]), "en": torch.tensor([[0, 2]])})
    assert steering(sets, "vi", stats=stats).fill[0].tolist() == [0.0, 2.0, 0.0]
    add = steering(sets, "vi", stats=stats, mode="add", strength=2.0)  # minus the pooled mean
    assert add.fill[0].tolist() == [0.0, 1.0, 0.0]
    add = steering(sets, "vi", stats=stats, source="en", mode="add")
    assert add.fill[0].tolist() == [0.0, 1.5, 0.0]
    with pytest.raises(ValueError, match="kojima"):
        steering(sets, "vi", stats=stats, statistic="median")


def test_bad_steering_input_says_what_to_do() -> None:
    sets = LanguageNeurons(1, 3, {"vi": torch.tensor([[0, 1]])})
    with pytest.raises(ValueError, match="source="):
        steering(sets, "vi", mode="swap", target_values=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="choose from"):
        steering(sets, "vi", mode="boost", target_values=torch.zeros(1, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stats="):
        steering(sets, "vi")
    with pytest.raises(ValueError, match=r"expected \(1, 3\)"):
        steering(sets, "vi", target_values=torch.zeros(2, 3))


def test_an_edit_for_another_model_is_refused(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["llama"])
    wide = LanguageNeurons(2, 500, {"vi": torch.tensor([[0, 1]])})
    values = torch.zeros(2, 500)
    with (
        pytest.raises(NeuronSetMismatchError),
        intervene(model, steering(wide, "vi", target_values=values)),
    ):
        pass
    with pytest.raises(NeuronSetMismatchError), cl.steer(model, wide, "vi", target_values=values):
        pass
