from __future__ import annotations

import itertools
import math

import pytest
import torch

from crane_lens.model.spec import NEURON_HOOK, ModelSpec
from crane_lens.plots import neuron_heatmap
from crane_lens.plots.heatmap import quantile, rank_bins, rank_edges, selected_per_bin
from crane_lens.plots.matrix import PAGE_WIDTH
from crane_lens.selection import (
    LanguageNeurons,
    select_language_neurons,
    specificity_scores,
)
from crane_lens.stats import NeuronStats


def toy_stats(langs: list[str], n_layers: int, d_mlp: int, seed: int = 0) -> NeuronStats:
    """CRANE-like relevance (heavy-tailed, both signs) and activation probabilities."""
    generator = torch.Generator().manual_seed(seed)
    spec = ModelSpec("toy", "Toy", n_layers, 8, d_mlp, True, "float32", "cpu", NEURON_HOOK, 10)
    stats = NeuronStats(spec, ("crane", "activation_probability"))
    for lang in langs:
        rel = torch.randn(n_layers, d_mlp, generator=generator) ** 3
        on = torch.rand(n_layers, d_mlp, generator=generator)
        stats.sums[lang] = {"rel_sum": rel, "rel_abs_sum": rel.abs(),
                            "rel_pos_sum": rel.clamp_min(0), "act_on": on}  # fmt: skip
        stats.n_tokens[lang] = 1
    return stats


def _brute_force_bins(row: list[float], edges: list[int]) -> tuple[list[float], list[float]]:
    ordered = sorted(row, reverse=True)
    bins = [ordered[a:b] for a, b in itertools.pairwise(edges)]
    return [max(b) for b in bins], [sum(b) / len(b) for b in bins]


@pytest.mark.parametrize(("n", "columns", "log"), [(1000, 7, False), (1000, 64, True),
                                                   (37, 64, True), (14336, 128, True)])  # fmt: skip
def test_bins_equal_a_brute_force_sort(n: int, columns: int, log: bool) -> None:
    values = torch.randn(3, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    edges = rank_edges(n, columns, log=log)
    assert edges[0] == 0 and edges[-1] == n and len(edges) - 1 <= columns
    assert bool((edges[1:] > edges[:-1]).all())  # no empty bin
    maxima, rank, top = rank_bins(values, edges, "max")
    means = rank_bins(values, edges, "mean")[0]
    for layer, row in enumerate(values.tolist()):
        expect_max, expect_mean = _brute_force_bins(row, edges.tolist())
        assert maxima[layer].tolist() == expect_max  # the max of a bin is exact
        assert means[layer].tolist() == pytest.approx(expect_mean, rel=1e-12)
        assert [row[i] for i in top[layer].tolist()] == expect_max  # each bin's best neuron
        assert sorted(rank[layer].tolist()) == list(range(n))
        assert [row[i] for i in rank[layer].argsort().tolist()] == sorted(row, reverse=True)


def test_selected_per_bin_counts_each_neuron_once() -> None:
    generator = torch.Generator().manual_seed(1)
    values = torch.randn(5, 300, generator=generator)
    mask = torch.rand(5, 300, generator=generator) < 0.1
    edges = rank_edges(300, 20)
    _, rank, _ = rank_bins(values, edges)
    counts = selected_per_bin(mask, rank, edges)
    for layer in range(5):
        for b in range(len(edges) - 1):
            in_bin = (rank[layer] >= edges[b]) & (rank[layer] < edges[b + 1])
            assert counts[layer, b] == int((mask[layer] & in_bin).sum())


def test_heatmap_draws_each_layers_ranked_scores() -> None:
    stats = toy_stats(["en", "vi", "zh"], 4, 500)
    fig = neuron_heatmap(stats, "crane", langs=["vi", "en"], columns=32)
    assert [a.text for a in fig.layout.annotations] == ["vi", "en"]
    edges = rank_edges(500, 32)
    for trace, lang in zip(fig.data, ["vi", "en"], strict=True):
        scores = stats.scores("crane")[stats.langs.index(lang)]
        expected = [_brute_force_bins(row, edges.tolist())[0] for row in scores.tolist()]
        assert trace.customdata.tolist() == expected  # hover: the raw best value of each bin
        # colour: sign(v)·log10(1 + |v|/scale) — monotone, 0 stays 0
        order = torch.tensor(expected).flatten().argsort()
        assert bool((torch.tensor(trace.z).flatten()[order].diff() >= 0).all())
        assert list(trace.x) == pytest.approx((edges + 0.5).tolist())  # rank edges, from 1
    axis = fig.layout.coloraxis
    assert axis.cmin == -axis.cmax and axis.colorscale[0][1] != axis.colorscale[-1][1]
    assert "signed log" in axis.colorbar.title.text
    assert fig.layout.template.layout.paper_bgcolor == "white"  # plotly_white
    probs = neuron_heatmap(stats, "activation_probability")
    assert probs.layout.coloraxis.cmin >= 0  # probabilities: sequential, not centred on 0
    assert probs.data[0].z.tolist() == probs.data[0].customdata.tolist()  # linear colours


def test_specificity_is_the_selection_rules_and_marks_its_set() -> None:
    stats = toy_stats(["en", "vi", "zh"], 6, 400, seed=3)
    neurons = select_language_neurons(stats, "crane", k=60)
    # columns = d_mlp: one neuron per bin, so the marks can be checked rank by rank
    fig = neuron_heatmap(stats, "crane", neurons=neurons, specificity=True, columns=400)
    spec = specificity_scores(stats.scores("crane"), "max")[1] * (6 * 400)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    labels = [t for t in fig.data if t.type == "scatter" and t.mode == "text"]
    lines = [t for t in fig.data if t.type == "scatter" and t.mode == "lines"]
    assert len(heatmaps) == len(labels) == len(lines) == 3
    for i, lang in enumerate(neurons.langs):
        assert heatmaps[i].customdata.tolist() == spec[i].sort(dim=1, descending=True)[0].tolist()
        # the marked count of every layer is the set's count there
        marked = dict.fromkeys(range(6), 0) | {y: n for y, n in labels[i].customdata}
        assert list(marked.values()) == neurons.layer_counts(lang)
        for layer in range(6):  # one segment per run of consecutive selected ranks
            order = spec[i, layer].argsort(descending=True, stable=True).tolist()
            ranks = sorted(order.index(n) for n in neurons.per_layer(lang)[layer].tolist())
            runs = [r for j, r in enumerate(ranks) if j == 0 or ranks[j - 1] != r - 1]
            ends = [r for j, r in enumerate(ranks) if j == len(ranks) - 1 or ranks[j + 1] != r + 1]
            expected = [x for a, b in zip(runs, ends, strict=True) for x in (a + 0.5, b + 1.5)]
            xs = [x for x, y in zip(lines[i].x, lines[i].y, strict=True) if y == layer]
            assert xs == expected


def test_a_32_x_14336_model_draws_bounded_cells() -> None:
    langs = ["en", "vi", "zh"]
    stats = toy_stats(langs, 32, 14336)
    neurons = LanguageNeurons(32, 14336, {lang: torch.stack([torch.arange(32),
                              torch.arange(32) * 400 + i]).T for i, lang in enumerate(langs)},
                              method="toy")  # fmt: skip
    fig = neuron_heatmap(stats, "crane", neurons=neurons, specificity=True, columns=128)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 3
    for trace in heatmaps:
        assert trace.z.shape[0] == 32 and trace.z.shape[1] <= 128
    labels = [t for t in fig.data if t.type == "scatter" and t.mode == "text"]
    for trace, lang in zip(labels, langs, strict=True):
        assert [n for _, n in trace.customdata] == neurons.layer_counts(lang)
    assert len(fig.to_html(include_plotlyjs=False)) < 400_000  # was 5 MB for 4 × 1 024


@pytest.mark.parametrize("n_langs", [3, 17])
def test_heatmap_size_fits_its_panels_and_titles(n_langs: int) -> None:
    langs = [f"l{i}" for i in range(n_langs)]
    fig = neuron_heatmap(toy_stats(langs, 18, 256), "crane", specificity=True)
    layout = fig.layout
    assert 600 <= layout.width <= PAGE_WIDTH and 400 <= layout.height <= 1800  # fits the report
    panel_px = (layout.height - layout.margin.t - layout.margin.b) * (
        layout.yaxis.domain[1] - layout.yaxis.domain[0]
    )
    assert panel_px / 18 >= 7  # at least 7 px per layer row
    assert layout.width >= 40 + 0.6 * 17 * len(layout.title.text)


@pytest.mark.parametrize("q", [0.0, 0.001, 0.01, 0.25, 0.5, 0.9, 0.999, 1.0])
def test_quantile_equals_torch_quantile(q: float) -> None:
    generator = torch.Generator().manual_seed(0)
    for values in (torch.randn(3, 7, 11, generator=generator), torch.tensor([5.0]),
                   torch.randn(5000, generator=generator),
                   torch.randint(0, 5, (40,), generator=generator).float()):  # fmt: skip
        # torch rounds its rank arithmetic to float32; the values agree to that rounding.
        assert quantile(values, q) == pytest.approx(float(torch.quantile(values, q)), rel=1e-5)
        assert quantile(values.double(), q) == float(torch.quantile(values.double(), q))


def test_quantile_beyond_torch_quantiles_limit() -> None:
    """torch.quantile refuses more than 2^24 elements; a 70B model × 8 languages has more."""
    n = 2**24 + 1001
    shuffled = torch.arange(n, dtype=torch.float64).roll(n // 3)
    nonfinite = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=torch.float64)
    values = torch.cat([shuffled, nonfinite])  # finite entries: 0 … n−1, so rank r holds r
    for q in (0.001, 0.999, 0.5):
        assert quantile(values, q) == pytest.approx(q * (n - 1), rel=1e-12)
    assert math.isfinite(quantile(values, 0.5))
