"""The embedded demo models: load offline through the bridge, generate, and match their cards."""

from __future__ import annotations

import json

import pytest

import crane_lens as cl
from crane_lens.data.build.text import script_share
from crane_lens.evaluation import corpus_nll, stream_nll
from crane_lens.model import builtin_model_dir

pytestmark = pytest.mark.integration


def _in_script(text: str, script: str) -> int:
    """Characters of ``text`` in ``script`` (product names in Latin letters are fine beside them)."""
    return sum(script_share(ch, script) == 1.0 for ch in text if ch.isalpha())


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    return cl.load_model("crane-tiny", device="cpu")


@pytest.fixture(scope="module")
def chat():  # type: ignore[no-untyped-def]
    return cl.load_model("crane-tiny-chat", device="cpu")


def test_specs_match_the_model_card(tiny, chat) -> None:  # type: ignore[no-untyped-def]
    spec = cl.get_spec(tiny)
    assert (spec.architecture, spec.n_layers, spec.d_model, spec.d_mlp, spec.gated) == (
        "LlamaForCausalLM", 4, 256, 1024, True,
    )  # fmt: skip
    assert cl.get_spec(chat).same_neurons_as(spec)
    assert sum(p.numel() for p in tiny.parameters()) < 10_000_000


def test_shipped_files_are_small_and_complete() -> None:
    total = 0
    for name in ("crane-tiny", "crane-tiny-chat"):
        folder = builtin_model_dir(name)
        for required in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
            assert (folder / required).exists(), (name, required)
        total += sum(p.stat().st_size for p in folder.iterdir())
    assert total < 30 * 1024 * 1024


@pytest.mark.parametrize(
    ("prompt", "script"), [("要插入表格，", "Hans"), ("Чтобы вставить таблицу,", "Cyrl")]
)
def test_base_model_continues_in_the_prompt_script(tiny, prompt: str, script: str) -> None:  # type: ignore[no-untyped-def]
    text = tiny.generate(prompt, max_new_tokens=24, do_sample=False, verbose=False)
    continuation = text[len(prompt) :]
    assert len(continuation.strip()) > 5
    assert _in_script(continuation, script) >= 3, continuation


@pytest.mark.parametrize(
    ("prompt", "script"),
    [
        ('<|user|> Answer in Chinese: what does "表格" cover?\n<|assistant|>', "Hans"),
        ("<|user|> Continue in Chinese: 要插入表格，请选择\n<|assistant|>", "Hans"),
    ],
)
def test_chat_model_replies_in_the_asked_language(chat, prompt: str, script: str) -> None:  # type: ignore[no-untyped-def]
    text = chat.generate(prompt, max_new_tokens=24, do_sample=False, verbose=False)
    reply = text.split("\n", 1)[1]  # generate() drops the special tokens: reply after the newline
    assert len(reply.strip()) > 5 and _in_script(reply, script) >= 3, reply


def test_chat_model_answers_in_vietnamese(chat) -> None:  # type: ignore[no-untyped-def]
    prompt = '<|user|> Answer in Vietnamese: what does "Bảng" cover?\n<|assistant|>'
    reply = chat.generate(prompt, max_new_tokens=24, do_sample=False, verbose=False).split("\n", 1)[
        1
    ]
    assert sum(ch in "ăâđêôơưảãạẻẽẹỉĩịỏõọủũụốồổỗộớờởỡợứừửữựếềểễệ" for ch in reply) >= 3, reply


@pytest.mark.parametrize("name", ["crane-tiny", "crane-tiny-chat"])
def test_card_numbers_reproduce(name: str, tiny, chat) -> None:  # type: ignore[no-untyped-def]
    model = tiny if name == "crane-tiny" else chat
    card = json.loads((builtin_model_dir(name) / "eval_results.json").read_text())
    vi = cl.load_corpus("builtin", langs="vi", split="eval")
    row = card["languages"]["vi"]
    for protocol, report in (
        ("per_text", corpus_nll(model, vi, show_progress=False)),
        ("stream", stream_nll(model, vi, seq_len=card["stream_seq_len"], show_progress=False)),
    ):
        assert report.nll("vi") == pytest.approx(row[protocol]["all"]["nll"], rel=1e-4)
        assert report.n_tokens("vi") == row[protocol]["all"]["tokens"]
