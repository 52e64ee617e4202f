"""Steering on crane-tiny: strength 0 is the unsteered model token for token; the matrix's
records, rates, intervals and fluency measures against oracles; resume; success judged like a
person would on hand-labelled continuations."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
import torch

import crane_lens as cl
from crane_lens.errors import CraneLensError
from crane_lens.evaluation import steering as steering_module
from crane_lens.evaluation.generation import default_prompts, greedy_generate
from crane_lens.evaluation.language_id import identifier_for
from crane_lens.evaluation.steering import (
    SteeringMatrix,
    continuation_nll,
    steered_continuations,
    steering_matrix,
)
from crane_lens.selection import LanguageNeurons

pytestmark = pytest.mark.integration
LANGS = ["en", "zh", "vi"]
SMALL: dict[str, Any] = {"n_prompts": 3, "max_new_tokens": 6, "progress": False}


@pytest.fixture(scope="module")
def setup() -> tuple[Any, Any, LanguageNeurons]:
    model = cl.load_model("crane-tiny", device="cpu")
    corpus = cl.load_corpus("builtin", langs=LANGS)
    stats = cl.compute_stats(model, corpus, ["crane", "kojima"], max_tokens_per_lang=512,
                             progress=False)  # fmt: skip
    return model, stats, cl.select_language_neurons(stats, budget=0.01)


@pytest.mark.parametrize("mode", ["replace", "add", "swap"])
def test_strength_zero_and_an_empty_set_generate_the_unsteered_tokens(setup, mode):  # type: ignore[no-untyped-def]
    model, stats, neurons = setup
    prompts = ["You can choose the", "Chọn lệnh", "选择"]
    clean = cl.greedy_continuations(model, prompts, max_new_tokens=12)
    zero = steered_continuations(model, prompts, neurons, "vi", stats=stats, source="en",
                                 mode=mode, strength=0.0, max_new_tokens=12)  # fmt: skip
    empty = LanguageNeurons(neurons.n_layers, neurons.d_mlp,
                            {x: torch.zeros(0, 2) for x in LANGS})  # fmt: skip
    none = steered_continuations(model, prompts, empty, "vi", stats=stats, source="en",
                                 mode=mode, strength=4.0, max_new_tokens=12)  # fmt: skip
    strong = steered_continuations(model, prompts, neurons, "vi", stats=stats, source="en",
                                   mode=mode, strength=4.0, max_new_tokens=12)  # fmt: skip
    assert zero == clean and none == clean
    assert strong != clean  # the same call with a strength does steer


def test_the_matrix_records_what_generation_and_the_identifier_give(setup):  # type: ignore[no-untyped-def]
    model, stats, neurons = setup
    m = steering_matrix(model, neurons, stats, strengths=[3.0], random_seeds=1, **SMALL)
    r = m.records
    # every (condition, target, source != target) cell has every prompt
    assert set(r.condition) == {"none", "selected", "random-0"}
    assert not (r.source == r.target).any()
    assert r.groupby(["condition", "target", "source"]).size().eq(3).all()
    # "none" is plain greedy generation of the default prompts
    ids = default_prompts(model, LANGS, n_prompts=3)["en"][0]
    tokens = greedy_generate(model, ids, max_new_tokens=6)
    eos = model.tokenizer.eos_token_id
    texts = [model.tokenizer.decode([t for t in row if t != eos]) for row in tokens]
    none_en = r[(r.condition == "none") & (r.source == "en") & (r.target == "vi")]
    assert [t.strip() for t in none_en.sort_values("prompt").text] == [t.strip() for t in texts]
    # success / stay are the identifier's verdicts
    identifier = identifier_for(LANGS)
    for row in r.sample(10, random_state=0).itertuples():
        label = identifier.predict(row.text)
        assert row.success == float(label == row.target)
        assert row.stay == float(label == row.source)
    # the rate table is the mean of the records
    rates = m.rates("success", condition="selected")
    cell = r[(r.condition == "selected") & (r.source == "en") & (r.target == "zh")]
    assert rates.loc["en", "zh"] == pytest.approx(cell.success.mean())
    assert pd.isna(rates.loc["en", "en"])


def test_summary_means_and_intervals(setup):  # type: ignore[no-untyped-def]
    model, stats, neurons = setup
    m = steering_matrix(model, neurons, stats, strengths=[1.0, 3.0], random_seeds=1, **SMALL)
    summary = m.summary(n_resamples=999)
    r = m.records
    plain = summary[summary.condition != "selected − random"]
    for row in plain.itertuples():
        rows = r[r.strength == row.strength]
        rows = rows[rows.condition.str.startswith("random-")] if row.condition == "random" else (
            rows[rows.condition == row.condition])  # fmt: skip
        if row.target != "all":
            rows = rows[rows.target == row.target]
        # equal prompts per (source, cell): the mean of cell means is the plain mean
        assert row.success == pytest.approx(rows.success.mean())
        assert row.nll == pytest.approx(rows.nll.mean())
        assert row.n == len(rows)
        assert row.success_low <= row.success + 1e-9 and row.success <= row.success_high + 1e-9
    keyed = summary.set_index(["condition", "strength", "target"])
    for strength in (1.0, 3.0):
        for target in [*LANGS, "all"]:
            assert keyed.loc[("selected − random", strength, target), "success"] == pytest.approx(
                keyed.loc[("selected", strength, target), "success"]
                - keyed.loc[("random", strength, target), "success"])  # fmt: skip
    assert set(summary.condition) == {"none", "selected", "random", "selected − random"}
    assert set(summary.target) == {*LANGS, "all"}


def test_fluency_nll_equals_scoring_by_hand(setup):  # type: ignore[no-untyped-def]
    model, *_ = setup
    bos = model.tokenizer.bos_token_id
    prompt, continuation = [bos, 40, 41, 42], [50, 51, 52]
    with torch.no_grad():
        for in_context, head in ((False, [bos]), (True, prompt)):
            seq = torch.tensor([[*head, *continuation]])
            logp = model(seq, return_type="logits").log_softmax(-1)[0]
            nats = [-float(logp[len(head) - 1 + i, t]) for i, t in enumerate(continuation)]
            got = continuation_nll(model, [prompt], [continuation], in_context=in_context)
            assert got[0] == pytest.approx(sum(nats) / 3, rel=1e-5)


# Hand-labelled continuations, as steering produces them: switched, stayed, unidentifiable.
# Labelled by reading them (None: no language a person could name).
HAND_LABELLED = [
    ("Chọn lệnh Định dạng - Ô để mở hộp thoại.", "vi"),
    ("nhấn vào nút OK.", "vi"),
    ("选择「格式 - 单元格」。", "zh"),
    ("的对话框，可以通过「编辑 - 粘贴」", "zh"),
    ("the dialog opens when you click OK.", "en"),
    ("You can set the properties of the selected object.", "en"),
    (" . . .", None),
    ("", None),
    ("Hiển thị các giá trị trong bảng tính.", "vi"),
    ("Choose Format - Cells to open the dialog.", "en"),
]


def test_success_rate_against_hand_labelled_continuations(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """steering_matrix's verdicts on continuations a person labelled: the generator is replaced
    by one that "continues" each English prompt with a hand-labelled text."""
    model, stats, neurons = setup
    identifier = identifier_for(LANGS)
    assert [identifier.predict(text) for text, _ in HAND_LABELLED] == [
        label for _, label in HAND_LABELLED]  # fmt: skip
    prompts = {"en": [f"Prompt number {i} says" for i in range(len(HAND_LABELLED))]}
    continuations = [model.tokenizer(text, add_special_tokens=False)["input_ids"]
                     for text, _ in HAND_LABELLED]  # fmt: skip
    monkeypatch.setattr(steering_module, "greedy_generate",
                        lambda model, ids, **kw: [list(c) for c in continuations])  # fmt: skip
    m = steering_matrix(model, neurons, stats, targets=["vi", "zh"], sources=["en"],
                        strengths=[1.0], prompts=prompts, progress=False)  # fmt: skip
    for target in ("vi", "zh"):
        by_hand = sum(label == target for _, label in HAND_LABELLED) / len(HAND_LABELLED)
        assert m.rates("success").loc["en", target] == pytest.approx(by_hand)
    stayed = sum(label == "en" for _, label in HAND_LABELLED) / len(HAND_LABELLED)
    assert m.rates("stay").loc["en", "vi"] == pytest.approx(stayed) == 0.3
    assert m.records[m.records.text == ""].no_tokens.eq(1.0).all()  # the empty one is flagged


def test_unequal_prompt_counts_weigh_each_source_equally_and_the_difference_is_paired(setup):  # type: ignore[no-untyped-def]
    model, stats, neurons = setup
    prompts = {"en": ["You can choose the", "The file is", "Click the button to"],
               "zh": ["选择", "单击"]}  # fmt: skip
    m = steering_matrix(model, neurons, stats, targets=["vi"], sources=["en", "zh"],
                        strengths=[4.0], random_seeds=1, prompts=prompts, max_new_tokens=6,
                        progress=False)  # fmt: skip
    summary = m.summary(n_resamples=999).set_index(["condition", "target"])
    r = m.records
    for condition in ("selected", "random"):
        rows = r[r.condition.str.startswith(condition[:6])]
        by_source = rows.groupby("source").nll.mean()
        assert summary.loc[(condition, "vi"), "nll"] == pytest.approx(by_source.mean())
    difference = summary.loc[("selected − random", "vi")]
    assert difference.nll == pytest.approx(summary.loc[("selected", "vi"), "nll"]
                                           - summary.loc[("random", "vi"), "nll"])  # fmt: skip
    assert difference.nll_low <= difference.nll <= difference.nll_high


def test_random_controls_steer_their_own_sets_in_every_mode(setup, monkeypatch):  # type: ignore[no-untyped-def]
    model, stats, neurons = setup
    seen: list[tuple[str, str, str]] = []
    real = steering_module.steering

    def spy(sets, target, **kwargs):  # type: ignore[no-untyped-def]
        source_sets = kwargs.get("source_neurons")
        seen.append((sets.method, target, source_sets.method if source_sets else ""))
        return real(sets, target, **kwargs)

    monkeypatch.setattr(steering_module, "steering", spy)
    steering_matrix(model, neurons, stats, targets=["vi"], sources=["en"], mode="swap",
                    strengths=[1.0], random_seeds=1, n_prompts=2, max_new_tokens=3,
                    progress=False)  # fmt: skip
    assert seen == [("crane", "vi", "crane"), ("random", "vi", "random")]


def test_strengths_are_kept_exactly(setup) -> None:  # type: ignore[no-untyped-def]
    model, stats, neurons = setup
    third = 1 / 3
    m = steering_matrix(model, neurons, stats, targets=["vi", "vi"], sources=["en"],
                        strengths=[third], n_prompts=2, max_new_tokens=3, progress=False)  # fmt: skip
    assert m.strengths == [third] and m.targets == ["vi"]  # duplicates dropped
    assert set(m.records.strength) == {0.0, third}
    assert m.rates(strength=third).shape == (1, 1)


def test_an_interrupted_matrix_resumes_without_redoing_work(setup, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    model, stats, neurons = setup
    kwargs: dict[str, Any] = {"targets": ["vi"], "sources": ["en", "zh"], "mode": "add",
                              "strengths": [2.0], "random_seeds": 1, **SMALL}  # fmt: skip
    whole = steering_matrix(model, neurons, stats, **kwargs)
    calls = {"n": 0}
    real = steering_module.greedy_generate

    def flaky(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(steering_module, "greedy_generate", flaky)
    with pytest.raises(KeyboardInterrupt):
        steering_matrix(model, neurons, stats, output_dir=tmp_path, **kwargs)
    assert not (tmp_path / "steering.json").exists()
    calls["n"] = 10  # no more failures; count what the resumed run generates
    resumed = steering_matrix(model, neurons, stats, output_dir=tmp_path, **kwargs)
    # jobs: none, then (selected, random-0) × (en, zh) = 5; two were done before the interrupt
    assert calls["n"] == 10 + 3
    pd.testing.assert_frame_equal(resumed.records, whole.records)
    assert SteeringMatrix.load(tmp_path).records.equals(resumed.records)
    # a finished folder is read back; other settings are refused
    assert steering_matrix(model, neurons, stats, output_dir=tmp_path, **kwargs).records.equals(
        resumed.records)  # fmt: skip
    with pytest.raises(CraneLensError, match="other settings"):
        steering_matrix(
            model, neurons, stats, output_dir=tmp_path, **(kwargs | {"strengths": [1.0]})
        )


def test_bad_input_fails_before_any_generation(setup, monkeypatch):  # type: ignore[no-untyped-def]
    model, stats, neurons = setup

    def never(*args: Any, **kw: Any) -> Any:
        raise AssertionError("generated before checking the input")

    monkeypatch.setattr(steering_module, "greedy_generate", never)
    for kwargs, message in [
        ({"strengths": [0.0]}, "strengths must be > 0"),
        ({"targets": ["fr"]}, "No neuron set"),
        ({"mode": "boost"}, "choose from"),
        ({"random_seeds": -1}, "random_seeds"),
        ({"sources": ["en"], "prompts": {"vi": ["x"]}}, "No prompts for en"),
        ({"statistic": "medain"}, "choose 'mean' or 'median'"),
        ({"deactivation": 1.0}, "for mode='swap' only"),
        ({"targets": ["vi"], "sources": ["vi"]}, "add a source language"),
    ]:
        with pytest.raises(ValueError, match=message):
            steering_matrix(model, neurons, stats, **kwargs, progress=False)
