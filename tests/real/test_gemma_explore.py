"""The real-LLM tier for the per-prompt views: Gemma 3 270M's byte-fallback pieces.

Gemma's tokenizer covers common Chinese characters with whole tokens and falls back to one
``<0xNN>`` piece per byte for rare ones (three pieces per CJK character). Skipped unless the
model is installed, as tests/real/test_gemma.py.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

import crane_lens as cl
from crane_lens.model.installable import is_installed
from tests.explore.test_tokens import coloured_spans, invisible

NAME = "gemma-3-270m"
if not is_installed(NAME):
    if os.environ.get("CRANE_LENS_REAL") == "1":
        raise RuntimeError(f"CRANE_LENS_REAL=1 but {NAME} is not installed: crane-lens models install {NAME}")  # fmt: skip
    pytest.skip(f"{NAME} is not installed (crane-lens models install {NAME})", allow_module_level=True)  # fmt: skip

pytestmark = pytest.mark.real_llm

TEXT = "我们今天去公园散步，龘靐天气很好。"  # 龘 and 靐: three byte-fallback pieces each


@pytest.fixture(scope="module")
def model() -> Any:
    return cl.load_model(NAME, device="cpu", dtype="float32")


def test_byte_fallback_characters_are_one_unit_everywhere(model: Any) -> None:
    result = cl.explain(model, TEXT)
    pieces = model.tokenizer.convert_ids_to_tokens(result.tokens.tolist())
    assert pieces.count("<0xE9>") == 2  # the first bytes of 龘 and 靐
    split = [(g.text, pieces[g.start : g.stop]) for g in result.groups if g.n_tokens > 1]
    assert split == [("龘", ["<0xE9>", "<0xBE>", "<0x98>"]), ("靐", ["<0xE9>", "<0x9D>", "<0x90>"])]
    assert "".join(result.units[1:]) == TEXT
    torch.testing.assert_close(result.unit_relevance().sum(0), result.relevance.sum(0))
    spans = coloured_spans(result.to_html())
    assert len(spans) == len(result.groups)
    assert [s for s in spans if s[1] > 0 and invisible(s[0])] == []
    assert all(token.strip() for token in result.top_neurons(10)["token"])
    ticks = list(result.heatmap().data[0].x)
    assert len(set(ticks)) == len(ticks) and "8 龘" in ticks

    sets = cl.LanguageNeurons(18, 2048, {"zh": torch.tensor([[3, 5], [9, 100], [12, 7]])})
    change = cl.token_nll_change(model, TEXT, sets, "zh")
    unit = change.units.index("龘")
    group = change.predicted_groups[unit]
    torch.testing.assert_close(
        change.unit_delta()[unit], change.delta[group.start - 1 : group.stop - 1].sum()
    )
