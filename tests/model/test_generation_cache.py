"""``model.generate`` with its KV cache equals a plain no-cache greedy loop, whatever the
transformers release (5.24 renamed the cache argument; see ``crane_lens/model/compat.py``)."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
import torch

import crane_lens as cl
from crane_lens.evaluation.generation import greedy_tokens
from crane_lens.model.compat import repair_kv_cache
from tests.tiny_models import ARCHITECTURES

MAX_NEW = 12


def check_generate_matches_no_cache_loop(model: Any, prompts: torch.Tensor) -> list[list[int]]:
    """Oracle: the bridge's cached greedy decoding (tokens and every step's logits) against
    full-sequence forward passes without any cache; also HF's own ``generate`` on the wrapped
    model. Returns the new tokens."""
    expected = greedy_tokens(model, prompts, max_new_tokens=MAX_NEW)  # no cache, no EOS stop
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model.generate(prompts, max_new_tokens=MAX_NEW, do_sample=False, stop_at_eos=False,
                             verbose=False, output_logits=True)  # fmt: skip
        uncached = model.generate(prompts, max_new_tokens=MAX_NEW, do_sample=False,
                                  stop_at_eos=False, verbose=False, use_past_kv_cache=False)  # fmt: skip
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [
        str(w.message) for w in caught
    ]
    new = out.sequences[:, prompts.shape[1] :]
    assert new.tolist() == expected
    assert uncached[:, prompts.shape[1] :].tolist() == expected
    # Logits of each cached step == the last-position logits of a full forward without cache.
    with torch.no_grad():
        full = model(out.sequences[:, :-1], return_type="logits")[:, prompts.shape[1] - 1 :]
    torch.testing.assert_close(torch.stack(out.logits, dim=1), full, atol=2e-4, rtol=1e-4)
    # The wrapped Hugging Face model decodes through the bridge's attention: same tokens, up to
    # the EOS where HF's generate stops.
    with torch.no_grad():
        hf = model.original_model.generate(prompts, max_new_tokens=MAX_NEW, do_sample=False)
    for row, hf_row in zip(expected, hf[:, prompts.shape[1] :].tolist(), strict=True):
        eos = model.tokenizer.eos_token_id
        hf_row = hf_row[: hf_row.index(eos) + 1] if eos in hf_row else hf_row
        assert hf_row == row[: len(hf_row)]
    return expected


@pytest.mark.integration
def test_crane_tiny_generate_matches_the_no_cache_loop(capfd: pytest.CaptureFixture[str]) -> None:
    model = cl.load_model("crane-tiny", device="cpu")
    capfd.readouterr()  # the loading bar of transformers is not ours to judge here
    prompts = [model.to_tokens(text)[0] for text in ("要插入表格，", "Để chèn một bảng,")]
    for prompt in prompts:
        new = check_generate_matches_no_cache_loop(model, prompt[None])
        assert len(set(new[0])) > 3  # a real continuation, not one repeated token
    assert "it/s" not in capfd.readouterr().err  # no progress bar with verbose=False


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tiny_models_generate_matches_the_no_cache_loop(
    arch: str, tiny_checkpoints: dict[str, Any]
) -> None:
    model = cl.load_model(tiny_checkpoints[arch], device="cpu")
    prompts = torch.tensor([[0, 17, 200, 43, 99, 5, 250], [0, 88, 3, 140, 61, 230, 12]])
    check_generate_matches_no_cache_loop(model, prompts)


def test_repair_finds_the_cache_under_its_new_name(tiny_checkpoints: dict[str, Any]) -> None:
    """Version-independent: an attention bridge handed the cache as ``cache=`` (transformers
    >= 5.24) must write keys and values into it. TransformerLens 4.3's own lookup does not — the
    finding kept as a test, so a TransformerLens that fixes it tells us to drop the repair."""
    from transformers import DynamicCache

    model = cl.load_model(tiny_checkpoints["llama"], device="cpu")
    attention = model.blocks[0].attn
    k = v = torch.randn(1, 2, 3, 16)  # [batch, kv heads, pos, head dim]
    cache = DynamicCache()
    got_k, _ = attention._update_kv_cache(k, v, cache=cache)
    assert cache.get_seq_length() == 3 and torch.equal(got_k, k)
    got_k, _ = attention._update_kv_cache(k, v, cache=cache)
    assert cache.get_seq_length() == 6 and got_k.shape[2] == 6  # extended by the cached keys
    unrepaired = DynamicCache()
    type(attention)._update_kv_cache(attention, k, v, cache=unrepaired)
    assert unrepaired.get_seq_length() == 0, "TransformerLens now reads `cache=`: drop the repair"
    # The old name keeps working, and the repair is idempotent and survives a deepcopy.
    old = DynamicCache()
    attention._update_kv_cache(k, v, past_key_values=old)
    assert old.get_seq_length() == 3
    assert repair_kv_cache(model) == model.cfg.n_layers
    clone = copy.deepcopy(model)
    assert clone.blocks[0].attn._update_kv_cache.__self__ is clone.blocks[0].attn
    assert clone.generate.__self__ is clone
