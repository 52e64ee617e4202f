"""The batched relevance (``relevance_cache``) against ``explain`` prompt by prompt."""

from __future__ import annotations

import pytest
import torch

import crane_lens as cl

PROMPTS = ["Xin chào các bạn", "Hello", "敏捷的棕色狐狸跳过了懒狗。", "Le renard brun rapide saute"]


@pytest.fixture(scope="module")
def llama(tiny_checkpoints):  # type: ignore[no-untyped-def]
    return cl.load_model(tiny_checkpoints["llama"])


@pytest.mark.parametrize("method", ["crane", "attribution"])
def test_the_batched_relevance_equals_explain_per_prompt(llama, method) -> None:  # type: ignore[no-untyped-def]
    cache = cl.relevance_cache(llama, PROMPTS, method, batch_size=3)  # a full and a partial batch
    spec = cl.get_spec(llama)
    assert list(cache.keys()) == [spec.hook_name(layer) for layer in range(spec.n_layers)]
    for row, prompt in enumerate(PROMPTS):
        single = cl.explain(llama, prompt, method)
        n = int(cache.lengths[row])
        assert cache.tokens[row, :n].tolist() == single.tokens.tolist()
        assert single.relevance.abs().max() > 0
        torch.testing.assert_close(cache.explanation_of(row), single.relevance, rtol=1e-4,
                                   atol=1e-6 * float(single.relevance.abs().max()))  # fmt: skip
        torch.testing.assert_close(cache.activations[spec.hook_name(1)][row, :n],
                                   single.activations[:, 1], rtol=1e-4, atol=1e-6)  # fmt: skip
        torch.testing.assert_close(cache.scores[row, : n - 1], single.scores, rtol=1e-4, atol=1e-5)
        # Padded positions carry nothing.
        assert not cache[spec.hook_name(0)][row, n:].any()


def test_the_cache_is_a_transformer_lens_activation_cache(llama) -> None:  # type: ignore[no-untyped-def]
    from transformer_lens import ActivationCache

    cache = cl.relevance_cache(llama, PROMPTS[:2])
    assert isinstance(cache, ActivationCache) and isinstance(cache.activations, ActivationCache)
    stacked = torch.stack([cache[name] for name in cache])
    assert stacked.shape[:2] == (cl.get_spec(llama).n_layers, 2)


def test_bad_input_is_refused(llama) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="at least one prompt"):
        cl.relevance_cache(llama, [])
    with pytest.raises(ValueError, match="batch_size"):
        cl.relevance_cache(llama, ["Hello"], batch_size=0)
