"""NLL scoring: equal to the Hugging Face loss, independent of batching."""

from __future__ import annotations

import math

import pytest
import torch

import crane_lens as cl
from crane_lens.data.corpus import Corpus, CorpusInfo, TextRecord
from crane_lens.evaluation import corpus_nll, stream_nll, text_nll

TEXTS = ["The quick brown fox.", "Con cáo nâu nhanh nhẹn nhảy qua.", "敏捷的棕色狐狸", "Le renard."]


def test_text_nll_equals_the_hf_loss(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    model = cl.load_model(tiny_checkpoints["llama"], device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(
        tiny_checkpoints["llama"], attn_implementation="eager"
    )
    nats, counts = text_nll(model, TEXTS)
    for text, total, count in zip(TEXTS, nats, counts, strict=True):
        ids = [
            model.tokenizer.bos_token_id,
            *model.tokenizer(text, add_special_tokens=False)["input_ids"],
        ]
        assert count == len(ids) - 1
        with torch.no_grad():
            loss = hf(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss
        assert math.isclose(total / count, float(loss), rel_tol=1e-5)


def test_batching_does_not_change_scores(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["gpt2"], device="cpu")
    texts = TEXTS * 3 + ["The quick brown fox!"]  # repeats share a batch by length
    together = text_nll(model, texts, max_tokens_per_batch=4096)
    one_by_one = [text_nll(model, [t], max_tokens_per_batch=1)[0][0] for t in texts]
    assert together[0] == pytest.approx(one_by_one, rel=1e-5)


def test_corpus_report_aggregates_by_language_and_origin(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["llama"], device="cpu")
    corpus = Corpus(
        {"en": [TextRecord(TEXTS[0], origin="a"), TextRecord(TEXTS[3], origin="b")],
         "vi": [TextRecord(TEXTS[1], origin="a")]},
        CorpusInfo(source="test", split="eval"),
    )  # fmt: skip
    report = corpus_nll(model, corpus, show_progress=False)
    nats, counts = text_nll(model, [TEXTS[0], TEXTS[3]])
    assert math.isclose(report.nll("en"), sum(nats) / sum(counts))
    assert math.isclose(report.nll("en", origins=["b"]), nats[1] / counts[1])
    assert report.n_tokens("en") == sum(counts)
    frame = report.to_dataframe()
    assert set(frame["origin"]) == {"a", "b"} and len(frame) == 3


def test_stream_nll_equals_the_hf_loss_on_the_packed_stream(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    """Oracle: pack ``BOS t1 EOS BOS t2 ...`` by hand, cut into blocks, score every text token
    with the HF model; separators are context, never scored."""
    from transformers import AutoModelForCausalLM

    model = cl.load_model(tiny_checkpoints["llama"], device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(
        tiny_checkpoints["llama"], attn_implementation="eager"
    )
    tok = model.tokenizer
    records = [TextRecord(t, origin="x" if i % 2 else "y") for i, t in enumerate(TEXTS * 2)]
    corpus = Corpus({"en": records}, CorpusInfo(source="test", split="eval"))
    seq_len = 9
    stream, scored = [], []
    for i, record in enumerate(records):
        if i:
            stream += [tok.eos_token_id, tok.bos_token_id]
            scored += [None, None]
        ids = tok(record.text, add_special_tokens=False)["input_ids"]
        stream += ids
        scored += [record.origin] * len(ids)
    expected: dict[str, float] = {"x": 0.0, "y": 0.0}
    for start in range(0, len(stream), seq_len - 1):
        block = [tok.bos_token_id, *stream[start : start + seq_len - 1]]
        with torch.no_grad():
            logp = hf(input_ids=torch.tensor([block])).logits[0, :-1].log_softmax(-1)
        for pos, origin in enumerate(scored[start : start + seq_len - 1]):
            if origin is not None:
                expected[origin] -= float(logp[pos, block[pos + 1]])
    for batch_size in (1, 3):
        report = stream_nll(model, corpus, seq_len=seq_len, batch_size=batch_size,
                            show_progress=False)  # fmt: skip
        assert report.nats["en"] == pytest.approx(expected, rel=1e-5)
        assert report.n_tokens("en") == sum(o is not None for o in scored)
