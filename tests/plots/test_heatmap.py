from __future__ import annotations

import torch

import crane_lens as cl
from crane_lens.plots import neuron_heatmap
from tests.stats.test_engine import _blocks


def test_heatmap_shows_exactly_the_scores(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["llama"])
    stats = cl.compute_stats(model, _blocks(), ["crane", "lape"], progress=False)
    fig = neuron_heatmap(stats, "crane", langs=["vi", "en"])
    assert [a.text for a in fig.layout.annotations] == ["vi", "en"]
    for trace, lang in zip(fig.data, ["vi", "en"], strict=True):
        expected = stats.scores("crane")[stats.langs.index(lang)]
        assert torch.tensor(trace.z, dtype=torch.float32).equal(expected)
    assert fig.data[0].zmin == -fig.data[0].zmax  # relevance has both signs: diverging scale
    probs = neuron_heatmap(stats, "lape")
    assert probs.data[0].colorscale[0][1] != fig.data[0].colorscale[0][1]  # sequential scale
