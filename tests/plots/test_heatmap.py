from __future__ import annotations

import pytest
import torch

import crane_lens as cl
from crane_lens.plots import neuron_heatmap
from crane_lens.plots.heatmap import quantile
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
