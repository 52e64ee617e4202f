"""LAPE at a matched set size: the smallest total whose assignment gives a mean set size ≥ k
per language, against a brute-force scan; the published top_rate path stays LAPE's own."""

from __future__ import annotations

import pytest
import torch

import crane_lens as cl
from crane_lens.model.spec import NEURON_HOOK, ModelSpec
from crane_lens.selection import select_language_neurons
from crane_lens.stats import NeuronStats
from crane_lens.stats.lape import lape_entropy, lape_matched_count, lape_neurons

MATCHED = "matched mean set size per language"


def _stats(probs: torch.Tensor) -> NeuronStats:
    n_lang, n_layers, d_mlp = probs.shape
    spec = ModelSpec("toy", "Toy", n_layers, 8, d_mlp, True, "torch.float32", "cpu",
                     NEURON_HOOK, 10)  # fmt: skip
    stats = NeuronStats(spec, ("lape",))
    for i in range(n_lang):
        stats.sums[f"l{i:02d}"] = {"act_on": probs[i] * 10, "act_sum": probs[i]}
        stats.n_tokens[f"l{i:02d}"] = 10
    return stats


def _mean_size(probs: torch.Tensor, n_kept: int) -> float:
    sets = lape_neurons(probs, n_kept=n_kept)
    return sum(int(sum(len(t) for t in layers)) for layers in sets) / len(probs)


@pytest.mark.parametrize("seed", range(4))
def test_matched_count_is_the_smallest_total_a_linear_scan_finds(seed: int) -> None:
    """Oracle: keep 1, 2, 3... neurons with lape_neurons itself; the first total whose mean set
    size reaches k is the search's, and one neuron fewer falls short."""
    generator = torch.Generator().manual_seed(seed)
    probs = torch.rand(5, 3, 40, generator=generator) ** 3
    means = [_mean_size(probs, n) for n in range(121)]
    assert means == sorted(means)  # monotone in the total: the search's premise
    for k in (1, 2, 3, 5, 8):
        count = lape_matched_count(probs, k)
        linear = next((n for n in range(1, 121) if means[n] >= k), None)
        if linear is None:  # even every eligible neuron falls short: keep them all
            assert means[count] == means[-1] and means[count - 1] < means[-1]
            continue
        assert count == linear and means[count] >= k > means[count - 1]
        neurons = select_language_neurons(_stats(probs), "lape", k=k)
        assert neurons.config["n_kept_total"] == count
        assert neurons.config["mean_set_size"] == pytest.approx(means[count])
        assert neurons.config["top_rate"] == pytest.approx(count / 120)
        assert neurons.config["budget_semantics"] == MATCHED


def test_matched_selection_is_lapes_assignment_of_that_many() -> None:
    probs = torch.rand(3, 2, 200, generator=torch.Generator().manual_seed(0)) ** 3
    neurons = select_language_neurons(_stats(probs), "lape", budget=0.02)  # k = 8 per language
    n_kept = neurons.config["n_kept_total"]
    expected = lape_neurons(probs, n_kept=n_kept)
    for i, lang in enumerate(neurons.langs):
        assert [t.tolist() for t in neurons.per_layer(lang)] == [t.tolist() for t in expected[i]]
    sizes = [neurons.count(lang) for lang in neurons.langs]
    assert sum(sizes) / 3 == neurons.config["mean_set_size"] >= 8 > _mean_size(probs, n_kept - 1)


def test_a_budget_no_total_can_reach_keeps_every_eligible_neuron_and_says_so(caplog) -> None:  # type: ignore[no-untyped-def]
    probs = torch.rand(3, 2, 100, generator=torch.Generator().manual_seed(0))
    neurons = select_language_neurons(_stats(probs), "lape", budget=0.5)  # 100 per language
    eligible = int(torch.isfinite(lape_entropy(probs)).sum())
    assert 0 < eligible == neurons.config["n_kept_total"] == lape_matched_count(probs, 100)
    assert neurons.config["mean_set_size"] == _mean_size(probs, 200) < 100
    assert "mean set size" in caplog.text and "keeping them all" in caplog.text


def test_published_top_rate_is_unchanged_and_recorded() -> None:
    probs = torch.rand(17, 4, 1024, generator=torch.Generator().manual_seed(1)) ** 3
    neurons = select_language_neurons(_stats(probs), "lape", top_rate=0.01)
    expected = lape_neurons(probs, top_rate=0.01)
    for i, lang in enumerate(neurons.langs):
        assert [t.tolist() for t in neurons.per_layer(lang)] == [t.tolist() for t in expected[i]]
    by_count = lape_neurons(probs, n_kept=41)
    assert [[t.tolist() for t in x] for x in by_count] == [
        [t.tolist() for t in x] for x in expected
    ]
    config = neurons.config
    assert config["budget_semantics"] == "total (published top_rate)"
    assert config["top_rate"] == 0.01 and config["n_kept_total"] == 41
    assert config["mean_set_size"] == pytest.approx(_mean_size(probs, 41))


@pytest.fixture(scope="module")
def tiny_stats() -> NeuronStats:
    model = cl.load_model("crane-tiny")
    corpus = cl.load_corpus("builtin")
    return cl.compute_stats(model, corpus, "lape", max_tokens_per_lang=256, progress=False)


def test_crane_tiny_matched_mean_set_size_is_k(tiny_stats: NeuronStats) -> None:
    """17 languages at 1 %: LAPE's mean set size is k = 41 (the old reading, k × 17 neurons in
    total, gave about twice that; the published 1 % in total gives a few per language)."""
    assert len(tiny_stats.langs) == 17
    neurons = select_language_neurons(tiny_stats, "lape", budget=0.01)
    k = neurons.config["k"]
    mean = sum(neurons.count(lang) for lang in neurons.langs) / 17
    assert k == 41 and mean == neurons.config["mean_set_size"]
    assert k <= mean <= 1.05 * k
    n_kept = neurons.config["n_kept_total"]
    fewer = select_language_neurons(tiny_stats, "lape", top_rate=(n_kept - 1) / 4096)
    assert fewer.config["n_kept_total"] == n_kept - 1 and fewer.config["mean_set_size"] < k
    old = select_language_neurons(tiny_stats, "lape", top_rate=17 * 41 / 4096)
    assert old.config["mean_set_size"] > 1.5 * k
    published = select_language_neurons(tiny_stats, "lape", top_rate=0.01)
    assert published.config["n_kept_total"] == 41 and published.config["mean_set_size"] < k
