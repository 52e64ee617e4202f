"""Multiple choice: scores equal a hand computation, the built-in set is parallel and fair, the
demo model beats chance and loses it when its MLPs are zeroed, users' files load offline."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter

import pytest
import torch

import crane_lens as cl
from crane_lens.errors import CorpusFormatError, MissingLanguageError, UnknownLanguageError
from crane_lens.evaluation.multiple_choice import (
    MultipleChoiceItem,
    MultipleChoiceSet,
    builtin_multiple_choice,
    continuation_logprobs,
    encode_continuations,
    load_multiple_choice,
    mc_accuracy,
    split_text,
)

CONTEXTS = ["The quick brown", "Con cáo nâu", "敏捷的棕色", "", "Le renard brun rapide saute"]
CONTINUATIONS = [
    " fox jumps.",
    " nhanh nhẹn nhảy qua.",
    "狐狸跳过了懒狗。",
    "The lazy dog.",
    " par-dessus",
]
ZERO_MLPS = [(f"blocks.{layer}.mlp.hook_post", lambda x, hook: x * 0) for layer in range(4)]


def _by_hand(logits_of, tokenizer, context: str, continuation: str) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """log_softmax of the model's logits on BOS + context ids + continuation ids, summed over
    the continuation's positions."""
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    ids = [tokenizer.bos_token_id, *ctx, *cont]
    with torch.no_grad():
        logp = logits_of(torch.tensor([ids]))[0].double().log_softmax(-1)
    total = sum(float(logp[pos - 1, ids[pos]]) for pos in range(1 + len(ctx), len(ids)))
    return total, len(cont)


# -- scoring oracles on a tiny random model ------------------------------------------------------
def test_scores_equal_the_hf_log_softmax_by_hand(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    model = cl.load_model(tiny_checkpoints["llama"], device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(
        tiny_checkpoints["llama"], attn_implementation="eager"
    )
    logprobs, counts = continuation_logprobs(model, CONTEXTS, CONTINUATIONS)
    for context, continuation, value, count in zip(
        CONTEXTS, CONTINUATIONS, logprobs, counts, strict=True
    ):
        expected, n = _by_hand(lambda t: hf(input_ids=t).logits, model.tokenizer, context,
                               continuation)  # fmt: skip
        assert count == n > 0
        assert value == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_batching_and_padding_do_not_change_scores(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["gpt2"], device="cpu")
    contexts, continuations = CONTEXTS * 3, CONTINUATIONS[::-1] * 3
    together, counts = continuation_logprobs(model, contexts, continuations)
    alone = [continuation_logprobs(model, [c], [x], max_tokens_per_batch=1)[0][0]
             for c, x in zip(contexts, continuations, strict=True)]  # fmt: skip
    assert together == pytest.approx(alone, rel=1e-5, abs=1e-5)
    assert len(set(counts)) > 1  # sequences of different lengths really were padded together


def test_a_long_question_is_cut_from_the_left(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["llama"], device="cpu")  # 64 positions
    tok = model.tokenizer
    long = " ".join(["The quick brown fox jumps over the lazy dog."] * 10)
    cont = tok(" fox jumps.", add_special_tokens=False)["input_ids"]
    kept = tok(long, add_special_tokens=False)["input_ids"][-(model.cfg.n_ctx - 1 - len(cont)) :]
    [value], _ = continuation_logprobs(model, [long], [" fox jumps."])
    ids = [tok.bos_token_id, *kept, *cont]
    with torch.no_grad():
        logp = model(torch.tensor([ids]), return_type="logits")[0].log_softmax(-1)
    expected = sum(float(logp[p - 1, ids[p]]) for p in range(1 + len(kept), len(ids)))
    assert len(ids) == model.cfg.n_ctx
    assert value == pytest.approx(expected, rel=1e-4)


def test_continuations_tokenise_as_inside_the_text(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    """Separate tokenisation equals joint tokenisation at a space, for byte-level BPE and for a
    tokenizer that prepends '▁' to every text as Llama 2's does (the anchor drops it)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tests.conftest import TRAIN_LINES

    sp = Tokenizer(models.BPE())  # the layout of Llama 2's tokenizer.json
    sp.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=["\n"], show_progress=False)
    sp.train_from_iterator(TRAIN_LINES, trainer)
    byte_level = cl.load_model(tiny_checkpoints["llama"], device="cpu").tokenizer
    for tok in (byte_level, PreTrainedTokenizerFast(tokenizer_object=sp)):
        for head, tail in [("The quick brown", " fox jumps over"), ("Le renard", " brun rapide")]:
            whole = tok(head + tail, add_special_tokens=False)["input_ids"]
            first = tok(head, add_special_tokens=False)["input_ids"]
            assert first + encode_continuations(tok, [tail])[0] == whole
    plain = tok(" fox", add_special_tokens=False)["input_ids"]
    assert len(encode_continuations(tok, [" fox"])[0]) < len(plain)  # no spurious '▁' token


def test_report_normalises_and_breaks_ties_to_the_lowest_index(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["llama"], device="cpu")
    mc = MultipleChoiceSet({"eng": [
        MultipleChoiceItem("The quick brown", [" fox", " fox"], 1),  # a tie: prediction 0
        MultipleChoiceItem("Le renard", [" brun rapide saute", " chien", " x"], 2, key="k"),
    ], "vi": [MultipleChoiceItem("Con cáo", [" nâu", " nhanh nhẹn"], 0)]})  # fmt: skip
    token = mc_accuracy(model, mc)
    assert token.langs == ["en", "vi"] and token.predictions["en"][0] == 0
    assert token.correct("en")[0] is False and token.keys["en"] == [None, "k"]
    assert token.chance("en") == pytest.approx((1 / 2 + 1 / 3) / 2)
    for norm in ("token", "none", "char"):
        report = mc_accuracy(model, mc, normalize=norm)
        for item, lp, nt, score, pred in zip(
            mc["en"], report.logprobs["en"], report.n_tokens["en"], report.scores["en"],
            report.predictions["en"], strict=True,
        ):  # fmt: skip
            divisor = {"token": nt, "none": [1] * len(nt),
                       "char": [len(c.strip()) for c in item.choices]}[norm]  # fmt: skip
            assert score == pytest.approx([v / d for v, d in zip(lp, divisor, strict=True)])
            assert pred == min(i for i, s in enumerate(score) if s == max(score))
        assert report.logprobs == token.logprobs  # normalisation never changes the raw scores
    frame = token.to_dataframe()
    assert list(frame["lang"]) == ["en", "vi"] and list(frame["n_items"]) == [2, 1]
    assert len(token.item_dataframe()) == 3
    with pytest.raises(ValueError, match="normalize"):
        mc_accuracy(model, mc, normalize="mean")  # type: ignore[arg-type]


# -- items and sets ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("choices", "answer", "match"),
    [([" a"], 0, "at least 2"), ([" a", " b"], 2, "out of range"), ([" a", "  "], 0, "blank"),
     ([" a", " b"], True, "int")],
)  # fmt: skip
def test_items_are_validated(choices: list[str], answer: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MultipleChoiceItem("q", choices, answer)


def test_set_round_trips_through_json_atomically(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mc = MultipleChoiceSet(
        {"zho_Hans": [MultipleChoiceItem("问", ["甲", "乙"], 1, key="a")],
         "en": [MultipleChoiceItem("Q", [" x", " y", " z"], 0)] * 2},
        name="demo", meta={"seed": 3},
    )  # fmt: skip
    assert mc.langs == ["zh", "en"] and len(mc) == 3 and mc.n_items("en") == 2
    path = mc.save(tmp_path / "sets" / "demo.json")
    assert [p.name for p in path.parent.iterdir()] == ["demo.json"]  # no temporary file left
    assert json.loads(path.read_text(encoding="utf-8"))["items"]["zh"][0]["choices"] == ["甲", "乙"]
    for loaded in (MultipleChoiceSet.load(path), load_multiple_choice(path)):
        assert loaded.items == mc.items and loaded.name == "demo" and loaded.meta == {"seed": 3}
    frame = mc.to_dataframe()
    assert list(frame["answer_text"]) == ["乙", " x", " x"]
    with pytest.raises(MissingLanguageError, match="zh, en"):
        mc["vi"]
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(CorpusFormatError, match="not a file written by"):
        MultipleChoiceSet.load(tmp_path / "bad.json")


def test_split_text_cuts_at_word_boundaries_or_after_punctuation() -> None:
    text = "To change  the properties of a control in design mode, right-click the control."
    context, continuation = split_text(text, "en")
    assert context + continuation == " ".join(text.split())
    assert continuation.startswith(" ") and not context.endswith(" ")
    assert abs(len(context) - len(" ".join(text.split())) / 2) < 12
    zh = "要在设计模式下修改某个控件的属性，请在该控件上点击鼠标右键，然后选择「属性」。"
    context, continuation = split_text(zh, "zh")
    assert context + continuation == zh and context.endswith("，")
    assert split_text("too short text", "en") is None and split_text("太短的文字", "zh") is None


# -- the built-in set ----------------------------------------------------------------------------
def test_builtin_set_is_parallel_deterministic_and_fair() -> None:
    langs = ["en", "de", "zh", "ja", "vi", "ru"]
    mc = builtin_multiple_choice(langs, seed=0)
    assert mc == builtin_multiple_choice(langs, seed=0)
    other = builtin_multiple_choice(langs, seed=1)
    assert [it.answer for it in other["en"]] != [it.answer for it in mc["en"]]
    eval_split = cl.load_corpus("builtin", langs=langs, split="eval").parallel()
    n = mc.n_items("en")
    assert n > 300 and all(mc.n_items(x) == n for x in langs)
    for i in range(n):
        rows = {x: mc[x][i] for x in langs}
        assert len({r.key for r in rows.values()}) == 1  # same key ...
        assert len({r.answer for r in rows.values()}) == 1  # ... and answer position everywhere
        for lang, item in rows.items():
            text = eval_split.loc[item.key, lang]
            # The right choice is the text's own continuation; no choice appears twice.
            assert split_text(text, lang) == (item.question, item.choices[item.answer])
            assert len({c.strip() for c in item.choices}) == 4
    for lang in langs:
        used = Counter(c for it in mc[lang] for j, c in enumerate(it.choices) if j != it.answer)
        assert len(used) > 0.8 * n and max(used.values()) <= 15  # distractors vary
        # ... and have about the true continuation's length (median within ~25 %).
        ratios = [abs(math.log(len(c) / len(it.choices[it.answer])))
                  for it in mc[lang] for c in it.choices]  # fmt: skip
        assert statistics.median(ratios) < 0.25
    # Distractor keys are parallel too: the k-th choice of item i comes from the same text in
    # every language (checked through the English and German continuations' source keys).
    sources: dict[str, dict[str, set[str]]] = {"en": {}, "de": {}}
    for lang, by_text in sources.items():
        for key, text in eval_split[lang].items():
            parts = split_text(text, lang)
            if parts is not None:
                by_text.setdefault(parts[1], set()).add(str(key))
    for en_item, de_item in zip(mc["en"], mc["de"], strict=True):
        for en_choice, de_choice in zip(en_item.choices, de_item.choices, strict=True):
            assert sources["en"][en_choice] & sources["de"][de_choice]
    for lang in langs:
        answers = Counter(it.answer for it in mc[lang])
        assert max(answers.values()) - min(answers.values()) <= 1  # balanced positions
        # Length alone does not find the answer: "shortest" / "longest" are near chance.
        for pick in (min, max):
            hits = sum(
                pick(range(4), key=lambda j, it=it: len(it.choices[j])) == it.answer
                for it in mc[lang]
            )  # fmt: skip
            assert abs(hits / n - 0.25) < 0.06, (lang, pick.__name__, hits / n)


def test_builtin_set_options_and_errors(caplog: pytest.LogCaptureFixture) -> None:
    full = builtin_multiple_choice(["en", "fr"])
    sample = builtin_multiple_choice(["en", "fr"], n_choices=2, max_items_per_lang=20, seed=5)
    assert sample.n_items("fr") == 20 and all(len(it.choices) == 2 for it in sample["fr"])
    assert {it.key for it in sample["en"]} <= {it.key for it in full["en"]}
    udhr = builtin_multiple_choice(["en", "vi"], origins=["udhr"], max_items_per_lang=5)
    assert all(it.key.startswith("udhr:") for it in udhr["vi"])  # type: ignore[union-attr]
    with caplog.at_level("WARNING"):
        every = builtin_multiple_choice(max_items_per_lang=3)
    assert len(every.langs) == 17 and "without ar, hi" in caplog.text
    with pytest.raises(UnknownLanguageError):
        builtin_multiple_choice(["en", "xx"])
    with pytest.raises(MissingLanguageError, match="Available"):
        builtin_multiple_choice(["en", "sw"])
    with pytest.raises(ValueError, match="n_choices"):
        builtin_multiple_choice(["en"], n_choices=1)


# -- crane-tiny ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crane_tiny():  # type: ignore[no-untyped-def]
    return cl.load_model("crane-tiny", device="cpu")


@pytest.fixture(scope="module")
def builtin_report(crane_tiny):  # type: ignore[no-untyped-def]
    """crane-tiny on 40 in-domain items (LibreOffice help) per language."""
    mc = builtin_multiple_choice(
        ["en", "fr", "zh", "vi"], max_items_per_lang=40, seed=0, origins=["libreoffice-help"]
    )
    return mc, mc_accuracy(crane_tiny, mc)


@pytest.mark.integration
def test_crane_tiny_score_equals_its_logits_by_hand(crane_tiny) -> None:  # type: ignore[no-untyped-def]
    logprobs, _ = continuation_logprobs(crane_tiny, CONTEXTS, CONTINUATIONS)
    for context, continuation, value in zip(CONTEXTS, CONTINUATIONS, logprobs, strict=True):
        expected, _ = _by_hand(lambda t: crane_tiny(t, return_type="logits"),
                               crane_tiny.tokenizer, context, continuation)  # fmt: skip
        assert value == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.integration
def test_crane_tiny_beats_chance(builtin_report) -> None:  # type: ignore[no-untyped-def]
    # Measured (seed 0): en 0.525, fr 0.625, zh 0.425, vi 0.55, mean 0.53; chance 0.25. Over 160
    # items, 0.40 is 4.5 standard errors above chance.
    _, report = builtin_report
    assert all(report.chance(x) == 0.25 for x in report.langs)
    assert report.accuracy() > 0.40, report.to_dataframe()
    assert all(report.accuracy(x) > 0.32 for x in report.langs), report.to_dataframe()


@pytest.mark.integration
def test_zeroing_every_mlp_drops_accuracy(crane_tiny, builtin_report) -> None:  # type: ignore[no-untyped-def]
    # Measured: en 0.525 -> 0.275, vi 0.55 -> 0.20 (attention alone stays a little above chance).
    mc, report = builtin_report
    with crane_tiny.hooks(fwd_hooks=ZERO_MLPS):
        masked = mc_accuracy(crane_tiny, mc, langs=["en", "vi"])
    assert masked.langs == ["en", "vi"]
    for lang in masked.langs:
        assert masked.accuracy(lang) < report.accuracy(lang) - 0.15, masked.to_dataframe()
        assert all(  # the hooks acted on every score
            m != r for mi, ri in zip(masked.logprobs[lang], report.logprobs[lang], strict=True)
            for m, r in zip(mi, ri, strict=True)
        )  # fmt: skip
    few = MultipleChoiceSet({"vi": mc["vi"][:4]})
    after = mc_accuracy(crane_tiny, few).logprobs["vi"]
    assert after == [pytest.approx(x, rel=1e-5) for x in report.logprobs["vi"][:4]]  # removed


# -- loading users' sets ----------------------------------------------------------------------------
ROWS = [
    {"lang": "en", "question": "The capital of France is", "choices": ["Paris", "Rome", "Oslo"],
     "answer": 0, "id": "q1"},
    {"lang": "fr", "question": "La capitale de l'Italie est", "choices": ["Paris", "Rome", "Oslo"],
     "answer": 1, "id": "q2"},
    {"lang": "eng", "question": "Two plus two is", "choices": ["three", "four"], "answer": 1,
     "id": "q3"},
]  # fmt: skip


def _jsonl(path, rows):  # type: ignore[no-untyped-def]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_load_jsonl_with_index_answers_and_a_lang_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mc = load_multiple_choice(_jsonl(tmp_path / "mc.jsonl", ROWS), key_field="id")
    assert mc.langs == ["en", "fr"] and mc.n_items("en") == 2 and mc.name == "mc.jsonl"
    assert mc["en"][1] == MultipleChoiceItem("Two plus two is", [" three", " four"], 1, "q3")
    assert mc["fr"][0].choices[mc["fr"][0].answer] == " Rome"
    only_fr = load_multiple_choice(tmp_path / "mc.jsonl", langs=["fra"], choice_prefix="")
    assert only_fr.langs == ["fr"] and only_fr["fr"][0].choices == ["Paris", "Rome", "Oslo"]
    (tmp_path / "list.json").write_text(json.dumps(ROWS))  # a JSON array of records
    assert load_multiple_choice(tmp_path / "list.json", key_field="id").items == mc.items


def test_load_csv_with_letter_answers_and_one_column_per_choice(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "mc.csv"
    path.write_text(
        "question,A,B,C,D,answer\n"
        "The capital of France is,Rome,Paris,Oslo,Bern,B\n"
        "Two plus two is,three,four,,,B\n",
        "utf-8",
    )
    mc = load_multiple_choice(path, lang="en", choices_field=["A", "B", "C", "D"])
    assert [it.answer for it in mc["en"]] == [1, 1]
    assert mc["en"][1].choices == [" three", " four"]  # trailing empty columns dropped


def test_load_parquet_with_text_answers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    rows = [{**r, "answer": r["choices"][r["answer"]]} for r in ROWS]  # type: ignore[index]
    pd.DataFrame(rows).to_parquet(tmp_path / "mc.parquet")
    mc = load_multiple_choice(tmp_path / "mc.parquet", langs="en")
    assert [it.answer for it in mc["en"]] == [0, 1]


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "match"),
    [
        ({}, {"answer_field": "label"}, CorpusFormatError, "no field 'label'"),
        ({"answer": 3}, {}, CorpusFormatError, "row 0: answer 3 is out of range"),
        ({"answer": "D"}, {}, CorpusFormatError, "row 0: answer 'D' is out of range"),
        ({"answer": "Lyon"}, {}, CorpusFormatError, "not an index 0..2, a letter A..C, or one"),
        ({"answer": "Paris"}, {"answer_format": "letter"}, CorpusFormatError, "not a letter"),
        ({"choices": ["Paris"]}, {}, CorpusFormatError, "at least 2 choices"),
        ({"choices": ["B", "A"], "answer": "A"}, {}, CorpusFormatError, "ambiguous"),
        ({"lang": "xx"}, {"langs": ["fr"]}, CorpusFormatError, "no usable rows"),
        ({}, {"langs": ["de"]}, MissingLanguageError, "no rows in 'de'"),
        ({}, {"lang": "klingon"}, UnknownLanguageError, "klingon"),
    ],
)
def test_bad_inputs_raise_clear_errors(tmp_path, change, kwargs, error, match) -> None:  # type: ignore[no-untyped-def]
    rows = [{**ROWS[0], **change}] + ([] if "lang" in change else ROWS[1:])
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(error, match=match):
        load_multiple_choice(path, **kwargs)


def test_unreadable_sources_raise_corpus_format_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "blank.jsonl").write_text("\n")
    for source in (tmp_path / "missing.jsonl", tmp_path / "empty.jsonl", tmp_path / "blank.jsonl"):
        with pytest.raises(CorpusFormatError):
            load_multiple_choice(source, lang="en")
    _jsonl(tmp_path / "mc.jsonl", ROWS)
    with pytest.raises(CorpusFormatError, match="lang='en'"):
        load_multiple_choice(tmp_path / "mc.jsonl", lang_field="language")
    assert len(load_multiple_choice(tmp_path / "mc.jsonl", lang="de")) == 3
