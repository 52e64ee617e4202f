"""Neuron cards: the table read back from the statistics, contexts that are the neuron's own."""

from __future__ import annotations

import json

import pytest
import torch

import crane_lens as cl
from crane_lens.intervention.hooks import zero_hook
from crane_lens.model.runner import gold_scores

pytestmark = pytest.mark.integration

LAYER, NEURON = 3, 17


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    model = cl.load_model("crane-tiny")
    corpus = cl.load_corpus("builtin", langs=["en", "vi", "zh"])
    stats = cl.compute_stats(model, corpus, ["crane", "kojima"], max_tokens_per_lang=1024,
                             top_contexts=4, progress=False)  # fmt: skip
    neurons = {"crane": cl.select_language_neurons(stats, "crane", budget=0.01)}
    return model, corpus, stats, neurons


@pytest.mark.parametrize("kind", ["activation", "relevance"])
def test_each_context_shows_the_neurons_own_value_at_its_top_token(setup, kind) -> None:  # type: ignore[no-untyped-def]
    model, corpus, stats, neurons = setup
    card = cl.neuron_card(stats, LAYER, NEURON, model=model, blocks=corpus, kind=kind,
                          n_contexts=2, neurons=neurons)  # fmt: skip
    assert [c.lang for c in card.contexts] == ["en", "en", "vi", "vi", "zh", "zh"]
    for c in card.contexts:
        # Recomputed by the card (a fresh pass over the block) = kept by the statistics pass.
        assert c.values[c.focus] == pytest.approx(c.value, rel=1e-4, abs=1e-6)
        # The first of its block: by magnitude (activation) or value (relevance).
        shown = [abs(v) for v in c.values] if kind == "activation" else c.values
        first = abs(c.value) if kind == "activation" else c.value
        assert max(shown) <= first + 1e-5 * abs(first) + 1e-6
        assert len(c.pieces) == len(c.values) and c.pieces[c.focus]
    best = card.contexts_of("vi")
    if kind == "activation":
        assert abs(best[0].value) >= abs(best[1].value)
    else:
        assert best[0].value >= best[1].value


def test_the_table_reads_the_statistics_and_the_sets(setup) -> None:  # type: ignore[no-untyped-def]
    _, _, stats, neurons = setup
    chosen = next((layer, int(idx[0])) for layer, idx in enumerate(neurons["crane"].per_layer("vi"))
                  if len(idx))  # fmt: skip
    card = cl.neuron_card(stats, *chosen, neurons=neurons)
    index = stats.langs.index("vi")
    assert card.table.loc["vi", "crane"] == pytest.approx(
        float(stats.scores("crane")[(index, *chosen)])
    )
    assert card.table.loc["vi", "kojima"] == pytest.approx(
        float(stats.scores("kojima")[(index, *chosen)])
    )
    on = stats.sums["vi"]["act_on"][chosen] / stats.n_tokens["vi"]
    assert card.table.loc["vi", "activation_probability"] == pytest.approx(float(on))
    assert "crane" in card.table.loc["vi", "sets"].split(", ")
    assert card.contexts == []  # no blocks given: statistics only
    json.dumps(card.to_dict())


def test_the_exact_ablation_column_is_the_single_neuron_nll_change(setup) -> None:  # type: ignore[no-untyped-def]
    model, _, stats, _ = setup
    held_out = cl.load_corpus("builtin", langs=["vi"], split="eval")
    card = cl.neuron_card(stats, LAYER, NEURON, model=model, langs=["vi"], ablation=held_out,
                          ablation_tokens=256)  # fmt: skip
    from crane_lens.evaluation.ablation import eval_blocks

    blocks = eval_blocks(model, held_out, ["vi"], seq_len=128, max_tokens_per_lang=256)["vi"]
    hook = zero_hook(torch.tensor([NEURON]), cl.get_spec(model).d_mlp)
    with torch.no_grad():
        base = gold_scores(model, blocks.tokens)
        zeroed = gold_scores(model, blocks.tokens, hooks=[(f"blocks.{LAYER}.mlp.hook_post", hook)])
    expected = float(((base - zeroed) * blocks.scored).sum() / blocks.n_tokens)
    assert card.table.loc["vi", "ablation_dnll"] == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_the_html_outlines_each_top_token(setup) -> None:  # type: ignore[no-untyped-def]
    model, corpus, stats, _ = setup
    card = cl.neuron_card(stats, LAYER, NEURON, model=model, blocks=corpus, n_contexts=1)
    page = card._repr_html_()
    assert page.count("outline:2px solid") == len(card.contexts) == 3
    assert f"Neuron ({LAYER}, {NEURON}) of crane-tiny" in page


def test_contexts_from_another_pass_and_bad_input(setup) -> None:  # type: ignore[no-untyped-def]
    model, corpus, stats, _ = setup
    plain = cl.compute_stats(model, corpus, "lape", max_tokens_per_lang=1024, progress=False)
    with pytest.raises(cl.CraneLensError, match="contexts=..."):
        cl.neuron_card(plain, LAYER, NEURON, model=model, blocks=corpus)
    card = cl.neuron_card(plain, LAYER, NEURON, model=model, blocks=corpus, contexts=stats)
    assert len(card.contexts) == 9
    other = cl.load_corpus("builtin", langs=["en", "vi", "zh"], split="eval")
    with pytest.raises(cl.CraneLensError, match="not the token blocks"):
        cl.neuron_card(stats, LAYER, NEURON, model=model, blocks=other)
    with pytest.raises(ValueError, match="No neuron"):
        cl.neuron_card(stats, 4, 0)
    with pytest.raises(ValueError, match="needs the model"):
        cl.neuron_card(stats, 0, 0, ablation=other)


def test_a_context_window_never_cuts_a_character(setup) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    from crane_lens.data.tokens import TokenBlocks
    from crane_lens.explore.neuron_card import contexts_in_blocks

    model = setup[0]
    ids = model.tokenizer("我们你好世界 cat", add_special_tokens=False)["input_ids"]
    assert len(ids) > 7  # byte-level: the characters are several pieces each
    row = torch.tensor([model.tokenizer.bos_token_id, *ids])
    blocks = TokenBlocks({"zh": row[None]}, len(row), model.tokenizer.bos_token_id, 0)
    for position in range(1, len(row)):
        for window in ((1, 0), (2, 1), (3, 2)):
            found = pd.DataFrame([("zh", 0, 1.0, 0, position)],
                                 columns=["lang", "rank", "value", "block", "position"])  # fmt: skip
            (context,) = contexts_in_blocks(found, blocks, model.tokenizer, {}, window)
            assert not any("\ufffd" in piece for piece in context.pieces), context.pieces
            # whole characters: the pieces of one are all shown, 你(1/2) through 你(2/2)
            assert not context.pieces[0].endswith(("(2/2)", "(2/3)", "(3/3)"))
            assert not context.pieces[-1].endswith(("(1/2)", "(1/3)", "(2/3)"))
            assert context.pieces[context.focus]  # the top token is still marked
