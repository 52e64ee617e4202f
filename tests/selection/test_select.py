"""Selection rules against hand computations, and the neuron-set file formats."""

from __future__ import annotations

import json

import pytest
import torch

from crane_lens.errors import NeuronSetMismatchError, UnknownLanguageError
from crane_lens.model.spec import NEURON_HOOK, ModelSpec
from crane_lens.selection import (
    LanguageNeurons,
    budget_to_k,
    random_neurons,
    select_language_neurons,
    specificity_scores,
)
from crane_lens.stats import NeuronStats, lape_neurons


def _spec(n_layers: int = 2, d_mlp: int = 4) -> ModelSpec:
    return ModelSpec("toy", "Toy", n_layers, 8, d_mlp, True, "torch.float32", "cpu",
                     NEURON_HOOK, 10)  # fmt: skip


def _stats(relevance: dict[str, list[list[float]]], methods=("crane",)) -> NeuronStats:  # type: ignore[no-untyped-def]
    n_layers, d_mlp = len(next(iter(relevance.values()))), len(next(iter(relevance.values()))[0])
    stats = NeuronStats(_spec(n_layers, d_mlp), tuple(methods))
    for lang, rows in relevance.items():
        rel = torch.tensor(rows)
        stats.sums[lang] = {"rel_sum": rel * 2, "rel_abs_sum": rel.abs() * 2,
                            "rel_pos_sum": rel.clamp_min(0) * 2, "act_sum": rel,
                            "act_on": rel.abs() * 2}  # fmt: skip
        stats.n_tokens[lang] = 2  # scores are sums / 2: the values above
    return stats


def test_specificity_rule_by_hand() -> None:
    stats = _stats({
        "en": [[4.0, 1.0, 0.0, -1.0], [2.0, 0.0, 0.0, 2.0]],   # total |R| = 10
        "zh": [[0.0, 1.0, 3.0, 0.0], [0.0, 0.0, 1.0, 0.0]],    # total |R| = 5
    })  # fmt: skip
    neurons = select_language_neurons(stats, "crane", k=3)
    # en: R̃ = [.4 .1 0 -.1 | .2 0 0 .2]; zh: R̃ = [0 .2 .6 0 | 0 0 .2 0]
    # en − zh = [.4 −.1 −.6 −.1 | .2 0 −.2 .2]; eligible R̃_en > 0: (0,0) (0,1) (1,0) (1,3)
    # top 3: (0,0) .4, then the tie .2: (1,0) before (1,3) by index.
    assert neurons.ranked["en"].tolist() == [[0, 0], [1, 0], [1, 3]]
    assert torch.allclose(neurons.scores["en"], torch.tensor([0.4, 0.2, 0.2]))  # type: ignore[index]
    # zh − en = [−.4 .1 .6 .1 | −.2 0 .2 −.2]; eligible: (0,1) (0,2) (1,2)
    assert neurons.ranked["zh"].tolist() == [[0, 2], [1, 2], [0, 1]]
    normalised, spec = specificity_scores(stats.scores("crane"), "mean")
    assert torch.allclose(normalised.abs().sum(dim=(1, 2)), torch.ones(2))
    assert torch.allclose(spec[0], normalised[0] - normalised[1])


def test_only_positive_relevance_is_eligible_and_too_few_is_logged(caplog) -> None:  # type: ignore[no-untyped-def]
    stats = _stats({"en": [[1.0, -1.0, 0.0]], "vi": [[-1.0, -1.0, -1.0]]})
    neurons = select_language_neurons(stats, "crane", k=3)
    assert neurons.ranked["en"].tolist() == [[0, 0]]
    assert neurons.count("vi") == 0
    assert "only 0 neurons are eligible for vi" in caplog.text


def test_top_rule_and_deterministic_ties() -> None:
    stats = _stats({"en": [[1.0, 2.0, 2.0], [2.0, 0.0, 0.0]], "vi": [[0.0, 0.0, 0.0]] * 2})
    neurons = select_language_neurons(stats, "crane", k=3, rule="top")
    assert neurons.ranked["en"].tolist() == [[0, 1], [0, 2], [1, 0]]
    again = select_language_neurons(stats, "crane", k=3, rule="top")
    assert torch.equal(neurons.ranked["en"], again.ranked["en"])


def test_lape_rule_is_lapes_own_assignment() -> None:
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 2, 200, generator=generator) ** 3
    stats = NeuronStats(_spec(2, 200), ("lape",))
    for i, lang in enumerate(["en", "zh", "vi"]):
        stats.sums[lang] = {"act_on": probs[i] * 10, "act_sum": probs[i]}
        stats.n_tokens[lang] = 10
    neurons = select_language_neurons(stats, "lape", budget=0.02)
    # budget is the mean set size per language (k = 8): LAPE keeps the smallest total that
    # reaches it, and the recorded top_rate is that total's share of the 400 neurons.
    n_kept = neurons.config["n_kept_total"]
    assert neurons.config["top_rate"] == pytest.approx(n_kept / 400)
    assert neurons.config["mean_set_size"] >= 8
    expected = lape_neurons(probs, n_kept=n_kept)
    for i, lang in enumerate(neurons.langs):
        assert [t.tolist() for t in neurons.per_layer(lang)] == [t.tolist() for t in expected[i]]
    with pytest.raises(ValueError, match="method='lape'"):
        select_language_neurons(stats, "mean_activation", rule="lape")


def _identify_py(probs: torch.Tensor, top_rate: float) -> dict[int, set[tuple[int, int]]]:
    """LAPE's published identify.py, written from its description (Tang et al. 2024): entropy
    of each neuron's normalised activation probabilities over languages; neurons with no
    probability above the 95 % quantile of all probabilities dismissed; the round(N · top_rate)
    lowest-entropy neurons of all N kept; each assigned to every language whose probability
    exceeds the activation bar (the same 95 % quantile). -> language index -> {(layer, neuron)}.
    """
    activation_probs = probs.permute(1, 2, 0)  # layer × neuron × lang, as identify.py holds it
    normed = activation_probs / activation_probs.sum(dim=-1, keepdim=True)
    normed[torch.isnan(normed)] = 0
    log_probs = torch.where(normed > 0, normed.log(), 0)
    entropy = -torch.sum(normed * log_probs, dim=-1)
    flat = activation_probs.flatten()
    top_prob_value = flat.kthvalue(round(len(flat) * 0.95)).values.item()
    entropy[(activation_probs > top_prob_value).sum(dim=-1) == 0] = torch.inf
    flat_entropy = entropy.flatten()
    _, index = flat_entropy.topk(round(len(flat_entropy) * top_rate), largest=False)
    rows, cols = index // entropy.size(1), index % entropy.size(1)
    selected = activation_probs[rows, cols].transpose(0, 1)  # lang × kept
    bar = flat.kthvalue(round(len(flat) * 0.95)).values.item()
    out: dict[int, set[tuple[int, int]]] = {i: set() for i in range(probs.shape[0])}
    for lang, j in zip(*torch.where(selected > bar), strict=True):
        out[int(lang)].add((int(rows[j]), int(cols[j])))
    return out


def _lape_stats(probs: torch.Tensor) -> NeuronStats:
    n_lang, n_layers, d_mlp = probs.shape
    langs = [f"l{i:02d}" for i in range(n_lang)]
    stats = NeuronStats(_spec(n_layers, d_mlp), ("lape",))
    for i, lang in enumerate(langs):
        stats.sums[lang] = {"act_on": probs[i] * 10, "act_sum": probs[i]}
        stats.n_tokens[lang] = 10
    return stats


def test_published_top_rate_keeps_lapes_total_count_set_for_set() -> None:
    """17 languages × 4 layers × 1024 neurons (crane-tiny's shape): top_rate=0.01 keeps
    round(0.01 · 4096) = 41 neurons in total — not 41 per language — exactly identify.py's."""
    probs = torch.rand(17, 4, 1024, generator=torch.Generator().manual_seed(1)) ** 3
    stats = _lape_stats(probs)
    neurons = select_language_neurons(stats, "lape", top_rate=0.01)
    reference = _identify_py(probs, 0.01)
    union = set().union(*reference.values())
    assert len(union) == round(0.01 * 4096) == 41
    mine = {i: {tuple(pair) for pair in neurons.ranked[lang].tolist()}
            for i, lang in enumerate(neurons.langs)}  # fmt: skip
    assert mine == reference  # every language's set, set for set
    assert set().union(*mine.values()) == union
    recorded = {key: neurons.config[key] for key in ("top_rate", "budget_semantics", "budget", "k")}
    assert recorded == {"top_rate": 0.01, "budget_semantics": "total (published top_rate)",
                        "budget": None, "k": None}  # fmt: skip
    # The default budget is matched: a mean set size of at least 41 per language.
    per_lang = select_language_neurons(stats, "lape", budget=0.01)
    assert per_lang.config["budget_semantics"] == "matched mean set size per language"
    sizes = [per_lang.count(lang) for lang in per_lang.langs]
    assert sum(sizes) / 17 == per_lang.config["mean_set_size"] >= 41
    total = set().union(*({tuple(p) for p in per_lang.ranked[lang].tolist()}
                          for lang in per_lang.langs))  # fmt: skip
    assert len(total) == per_lang.config["n_kept_total"]
    assert per_lang.config["top_rate"] == pytest.approx(len(total) / 4096)


def test_top_rate_is_lapes_alone_and_exclusive_with_k() -> None:
    stats = _lape_stats(torch.rand(3, 2, 100, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="rule='lape'"):
        select_language_neurons(stats, "lape", rule="top", top_rate=0.01)
    with pytest.raises(ValueError, match="not both"):
        select_language_neurons(stats, "lape", k=5, top_rate=0.01)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            select_language_neurons(stats, "lape", top_rate=bad)
    # A per-language budget past all neurons in total is a mean set size like any other:
    # neurons are shared, so it may be reached; if not, every eligible neuron is kept (warned).
    large = select_language_neurons(stats, "lape", budget=0.4)  # 80 × 3 languages > 200
    assert large.config["n_kept_total"] <= 200
    # top_rate overrides budget: the same selection whatever budget says.
    a = select_language_neurons(stats, "lape", top_rate=0.05, budget=0.3)
    b = select_language_neurons(stats, "lape", top_rate=0.05)
    assert all(torch.equal(a.ranked[lang], b.ranked[lang]) for lang in a.langs)


def test_budget_and_bad_input() -> None:
    assert budget_to_k(4096, 0.01, None) == 41
    assert budget_to_k(4096, None, 7) == 7
    with pytest.raises(ValueError, match="exactly one"):
        budget_to_k(4096, 0.01, 5)
    with pytest.raises(ValueError, match="fraction"):
        budget_to_k(4096, 1.5, None)
    stats = _stats({"en": [[1.0, 2.0]], "vi": [[2.0, 1.0]]})
    with pytest.raises(KeyError, match="which this run did not compute"):
        select_language_neurons(stats, "attribution", k=1)
    with pytest.raises(UnknownLanguageError, match="stats cover"):
        select_language_neurons(stats, "crane", k=1, langs=["fr"])


def _toy_sets() -> LanguageNeurons:
    return LanguageNeurons(2, 4, {"en": torch.tensor([[0, 1], [1, 3], [0, 2]]),
                                  "zh": torch.tensor([[0, 1], [1, 0]])},
                           {"en": torch.tensor([3.0, 2.0, 1.0]), "zh": torch.tensor([5.0, 4.0])},
                           "crane", "toy")  # fmt: skip


def test_exclusive_shared_and_jaccard_by_hand() -> None:
    sets = _toy_sets()
    counts = sets.overlap_counts().set_index(["lang", "layer"])
    assert counts.loc[("en", "all")].tolist() == [3, 2, 1]  # selected, exclusive, shared
    assert counts.loc[("zh", 0)].tolist() == [1, 0, 1]
    assert counts.loc[("zh", 1)].tolist() == [1, 1, 0]
    table = sets.jaccard()
    assert table.loc["en", "zh"] == pytest.approx(1 / 4)  # {(0,1)} / 4 distinct neurons
    assert table.loc["en", "en"] == 1.0
    other = LanguageNeurons(2, 4, {"en": torch.tensor([[0, 2]])}, method="lape")
    assert sets.jaccard(other).loc["en", "en"] == pytest.approx(1 / 3)
    frame = sets.to_dataframe()
    assert frame[frame.lang == "en"].exclusive.tolist() == [False, True, True]
    assert sets.top(1).ranked["en"].tolist() == [[0, 1]]


def test_json_and_lape_format_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sets = _toy_sets()
    loaded = LanguageNeurons.load(sets.save(tmp_path / "crane.json"))
    assert loaded.to_dict() == sets.to_dict()
    assert (
        json.loads((tmp_path / "crane.json").read_text())["format"] == "crane_lens.language_neurons"
    )
    path = tmp_path / "lape.pt"
    sets.to_lape(path)
    raw = torch.load(path)  # exactly LAPE's published layout
    assert [[t.tolist() for t in layers] for layers in raw] == [[[1, 2], [3]], [[1], [0]]]
    back = LanguageNeurons.from_lape(path, ["en", "zh"], _spec(2, 4))
    assert all(torch.equal(back.mask(x), sets.mask(x)) for x in ("en", "zh"))


def test_sets_that_do_not_fit_the_model_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sets = _toy_sets()
    with pytest.raises(NeuronSetMismatchError, match="has 3 × 4"):
        sets.check_fits(_spec(3, 4))
    with pytest.raises(NeuronSetMismatchError, match="has 2 layers; the model has 3"):
        LanguageNeurons.from_lape(sets.to_lape(), ["en", "zh"], _spec(3, 4))
    with pytest.raises(NeuronSetMismatchError, match="Expected a list of 3 languages"):
        LanguageNeurons.from_lape(sets.to_lape(), ["en", "zh", "vi"], _spec(2, 4))
    with pytest.raises(NeuronSetMismatchError, match="outside a model"):
        LanguageNeurons.from_lape([[torch.tensor([9]), torch.tensor([0])]], ["en"], _spec(2, 4))
    with pytest.raises(NeuronSetMismatchError, match="twice"):
        LanguageNeurons(2, 4, {"en": torch.tensor([[0, 1], [0, 1]])})


def test_random_control_keeps_per_layer_sizes() -> None:
    sets = LanguageNeurons(3, 50, {"en": torch.tensor([[0, 1], [0, 2], [2, 7]]),
                                   "zh": torch.tensor([[1, 4]])})  # fmt: skip
    a, b, c = random_neurons(sets, 0), random_neurons(sets, 0), random_neurons(sets, 1)
    assert a.layer_counts("en") == [2, 0, 1] and a.layer_counts("zh") == [0, 1, 0]
    assert a.to_dict() == b.to_dict()
    assert a.to_dict()["langs"] != c.to_dict()["langs"]
