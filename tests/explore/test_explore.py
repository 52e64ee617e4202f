"""Per-prompt exploration against the corpus engine and direct masked scoring."""

from __future__ import annotations

import pytest
import torch

import crane_lens as cl
from crane_lens.data.tokens import TokenBlocks

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
    assert figure.data[0].z.shape == (4, len(result.tokens))


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
    assert list(frame.columns) == ["token", "nll", "nll_masked", "delta"]
