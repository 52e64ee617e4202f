"""Per-prompt exploration against the corpus engine and direct masked scoring."""

from __future__ import annotations

import unicodedata

import pytest
import torch

import crane_lens as cl
from crane_lens.data.tokens import TokenBlocks
from crane_lens.explore.tokens import display_groups, visible_text
from tests.explore.test_tokens import coloured_spans, invisible

pytestmark = pytest.mark.integration

PROMPTS = {"en": "The cat sleeps.", "zh": "今天天气很好。", "vi": "Xin chào"}


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return cl.load_model("crane-tiny", device="cpu")


@pytest.mark.parametrize("lang", list(PROMPTS))
@pytest.mark.parametrize("method", ["crane", "attribution"])
def test_per_token_relevance_sums_to_the_engines_sum(model, lang, method) -> None:  # type: ignore[no-untyped-def]
    """Summed over the prompt's tokens, explain() gives compute_stats' sums on the same tokens."""
    result = cl.explain(model, PROMPTS[lang], method)
    tokens = result.tokens
    blocks = TokenBlocks({lang: tokens[None]}, len(tokens), int(tokens[0]), 0)
    stats = cl.compute_stats(model, blocks, [method], batch_size=1, progress=False)
    field = "rel_sum" if method == "crane" else "hg_sum"
    expected = stats.sums[lang][field] * (1 if method == "crane" else -1)
    torch.testing.assert_close(result.relevance.sum(dim=0), expected, rtol=1e-4, atol=1e-6)
    assert result.relevance.shape == (len(tokens), 4, 1024)
    assert "".join(result.pieces[1:]) == PROMPTS[lang]  # byte pieces merged, nothing lost
    assert "\ufffd" not in "".join(result.pieces)


def test_one_word_and_bad_prompts(model) -> None:  # type: ignore[no-untyped-def]
    assert len(cl.explain(model, "cat").tokens) >= 2
    with pytest.raises(ValueError, match="empty"):
        cl.explain(model, "")
    with pytest.raises(ValueError, match="method"):
        cl.explain(model, "cat", "lape")  # type: ignore[arg-type]


def test_top_neurons_share_and_views(model) -> None:  # type: ignore[no-untyped-def]
    result = cl.explain(model, PROMPTS["zh"])
    top = result.top_neurons(5)
    total = result.relevance.sum(dim=0)
    assert list(top["relevance"]) == sorted(top["relevance"], reverse=True)
    assert top["relevance"].iloc[0] == pytest.approx(float(total.max()), rel=1e-6)
    sets = cl.LanguageNeurons(4, 1024, {"zh": torch.tensor([[int(top["layer"][0]),
                                                             int(top["neuron"][0])]])})  # fmt: skip
    share = result.share(sets, "zh")
    layer, neuron = int(top["layer"][0]), int(top["neuron"][0])
    magnitude = result.relevance.abs()
    total_abs = magnitude.sum(dim=(1, 2))
    # The last token predicts nothing, so nothing there is relevant: its share is 0, not NaN.
    assert float(total_abs[-1]) == 0 and float(share[-1]) == 0
    live = total_abs > 0
    torch.testing.assert_close(share[live], magnitude[live, layer, neuron] / total_abs[live])
    assert "<span" in result._repr_html_()
    figure = result.heatmap()
    assert figure.data[0].z.shape == (4, len(result.groups))


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_token_nll_change_equals_direct_masked_scoring(model, mode) -> None:  # type: ignore[no-untyped-def]
    """Per-token ΔNLL = NLL under cl.ablate − NLL unmasked, computed from the model's logits."""
    corpus = cl.load_corpus("builtin", langs=["en", "zh"], split="train")
    stats = cl.compute_stats(model, corpus, ["crane"], max_tokens_per_lang=1024, progress=False)
    neurons = cl.select_language_neurons(stats, "crane", k=40)
    values = cl.intervention_values(stats, "mean", "zh") if mode == "mean" else None
    change = cl.token_nll_change(model, PROMPTS["zh"], neurons, "zh", mode=mode, values=values)
    tokens = change.tokens[None]

    def nll() -> torch.Tensor:
        logits = model(tokens, return_type="logits").float()
        return -logits.log_softmax(-1)[0, :-1].gather(-1, tokens[0, 1:, None])[:, 0]

    with torch.no_grad():
        base = nll()
        with cl.ablate(model, neurons, "zh", mode=mode, values=values):
            masked = nll()
    torch.testing.assert_close(change.base, base, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(change.delta, masked - base, rtol=1e-4, atol=1e-5)
    assert bool((change.delta != 0).any())
    assert len(change.pieces) == len(change.delta) and "<span" in change._repr_html_()
    frame = change.to_dataframe()
    assert list(frame.columns) == ["token", "nll", "nll_masked", "delta", "position",
                                   "token_start", "token_stop"]  # fmt: skip
    assert len(frame) == len(change.units) == len(change.groups) - 1
    raw = change.to_dataframe("token")
    assert list(raw.columns) == ["token", "nll", "nll_masked", "delta", "position", "token_index"]
    torch.testing.assert_close(torch.tensor(raw["delta"].to_numpy()), change.delta.double())
    assert list(raw["token_index"]) == list(range(1, len(change.tokens)))


# Byte-level pieces: crane-tiny's byte-level BPE splits most Chinese characters in two pieces
# (Gemma's byte fallback splits rare ones in three), each decoding to '�' on its own.
ZH = "我们今天去公园散步，天气很好。"


def test_crane_tiny_splits_chinese_characters_into_byte_pieces(model) -> None:  # type: ignore[no-untyped-def]
    """The premise of the tests below: the pieces exist and are unreadable on their own."""
    ids = model.tokenizer("你好", add_special_tokens=False)["input_ids"]
    assert len(ids) == 4 and all(model.tokenizer.decode([i]) == "\ufffd" for i in ids)
    groups = display_groups(model.tokenizer, ids)
    assert [(g.text, g.start, g.stop) for g in groups] == [("你", 0, 2), ("好", 2, 4)]


@pytest.mark.parametrize("method", ["crane", "attribution"])
def test_units_sum_the_relevance_of_their_pieces(model, method) -> None:  # type: ignore[no-untyped-def]
    result = cl.explain(model, ZH, method)
    groups = result.groups
    assert len(groups) < len(result.tokens)  # some characters are several pieces
    assert result.units == [g.text for g in groups]
    assert "".join(result.units[1:]) == ZH == model.tokenizer.decode(result.tokens[1:])
    assert [g.start for g in groups[1:]] == [g.stop for g in groups[:-1]]
    assert groups[0].stop == 1 and groups[-1].stop == len(result.tokens)
    per_unit = result.unit_relevance()
    assert per_unit.shape == (len(groups), *result.relevance.shape[1:])
    for u, group in enumerate(groups):
        torch.testing.assert_close(per_unit[u], result.relevance[group.start : group.stop].sum(0))
    torch.testing.assert_close(per_unit.sum(0), result.relevance.sum(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result.per_unit(), per_unit.sum(dim=(1, 2)), rtol=1e-5, atol=1e-5)
    assert result.per_unit().sum().item() == pytest.approx(
        result.per_token().sum().item(), rel=1e-5
    )
    # The raw per-piece data stays: one row per token, pieces as before.
    assert result.relevance.shape[0] == len(result.tokens) == len(result.pieces)


@pytest.mark.parametrize("text", [ZH, "今天天气很好。\n我们去公园\u200b散步 😀"])
def test_chinese_explain_html_colours_no_invisible_span(model, text) -> None:  # type: ignore[no-untyped-def]
    """Each span is a visible unit; no empty/zero-width piece carries colour (it used to carry
    the largest: the first byte piece of each character)."""
    result = cl.explain(model, text)
    spans = coloured_spans(result.to_html())
    assert len(spans) == len(result.groups)
    assert [s for s in spans if s[1] > 0 and invisible(s[0])] == []
    assert all(not invisible(s) for s, _ in spans)
    assert [s for s, _ in spans] == [visible_text(u) for u in result.units]
    # Colour is the unit's summed relevance: the strongest span is the strongest unit.
    per_unit = result.per_unit().abs()
    assert max(spans, key=lambda s: s[1])[1] == 1.0
    assert spans[int(per_unit.argmax())][1] == 1.0
    assert any(alpha > 0 for s, alpha in spans if unicodedata.category(s[0]) == "Lo")


def test_top_neurons_name_the_visible_unit_where_they_peak(model) -> None:  # type: ignore[no-untyped-def]
    result = cl.explain(model, ZH)
    top = result.top_neurons(10)
    assert list(top.columns) == ["layer", "neuron", "relevance", "token", "position",
                                 "token_start", "token_stop"]  # fmt: skip
    for row in top.itertuples():
        by_unit = [float(result.relevance[g.start : g.stop, row.layer, row.neuron].sum())
                   for g in result.groups]  # fmt: skip
        peak = max(range(len(by_unit)), key=by_unit.__getitem__)  # brute force, no torch
        group = result.groups[row.position]
        assert row.position == peak
        assert row.token == group.label and row.token.strip() and not invisible(row.token)
        assert (row.token_start, row.token_stop) == (group.start, group.stop)


def test_heatmap_ticks_are_unique_visible_units(model) -> None:  # type: ignore[no-untyped-def]
    result = cl.explain(model, "天天\n天")  # the same character three times, and a newline
    figure = result.heatmap()
    ticks = list(figure.data[0].x)
    assert len(ticks) == len(set(ticks)) == len(result.groups)
    assert ticks == ["0 &lt;s&gt;", "1 天", "2 天", "3 ↵", "4 天"]  # plotly would strike <s>
    z = torch.tensor(figure.data[0].z)
    torch.testing.assert_close(z, result.unit_relevance().sum(dim=2).T)


def test_token_nll_change_sums_the_pieces_of_each_unit(model) -> None:  # type: ignore[no-untyped-def]
    sets = cl.LanguageNeurons(4, 1024, {"zh": torch.tensor([[0, 1], [1, 7], [2, 3], [3, 500]])})
    change = cl.token_nll_change(model, ZH, sets, "zh")
    predicted = change.groups[1:]
    assert change.groups[0].stop == 1 and "".join(change.units) == ZH
    base, masked = change.unit_nll()
    delta = change.unit_delta()
    for u, group in enumerate(predicted):  # delta[i] is the NLL change of predicting token i + 1
        pieces = slice(group.start - 1, group.stop - 1)
        torch.testing.assert_close(delta[u], change.delta[pieces].sum())
        torch.testing.assert_close(base[u], change.base[pieces].sum())
        torch.testing.assert_close(masked[u], change.masked[pieces].sum())
    frame = change.to_dataframe()
    torch.testing.assert_close(torch.tensor(frame["delta"].to_numpy()).float(), delta)
    assert list(frame["position"]) == list(range(1, len(change.groups)))
    assert all(token and not invisible(token) for token in frame["token"])
    spans = coloured_spans(change.to_html())
    assert len(spans) == len(predicted)
    assert [s for s in spans if s[1] > 0 and invisible(s[0])] == []


def test_views_rebuild_units_from_pieces_when_not_given(model) -> None:  # type: ignore[no-untyped-def]
    result = cl.explain(model, ZH)
    old_style = cl.Explanation(result.tokens, result.pieces, result.relevance,
                               result.activations, result.scores, result.method, result.target)  # fmt: skip
    assert old_style.groups == result.groups
