from __future__ import annotations

import pytest
import torch

from crane_lens.plots import neuron_counts
from crane_lens.plots.counts import count_tables
from crane_lens.plots.matrix import text_px
from crane_lens.selection import LanguageNeurons


def toy_neurons(n_langs: int, n_layers: int, d_mlp: int = 64, k: int = 40) -> LanguageNeurons:
    """Random sets of k neurons per language, drawn from a small pool so that some are shared."""
    generator = torch.Generator().manual_seed(n_langs * 100 + n_layers)
    pool = torch.randperm(n_layers * d_mlp, generator=generator)[: 3 * k]
    ranked = {}
    for i in range(n_langs):
        flat = pool[torch.randperm(len(pool), generator=generator)[:k]]
        ranked[f"l{i:02d}"] = torch.stack([flat // d_mlp, flat % d_mlp], dim=1)
    return LanguageNeurons(n_layers, d_mlp, ranked, method="toy", model="toy-model")


@pytest.mark.parametrize(("n_langs", "n_layers"), [(3, 4), (17, 32)])
def test_counts_are_the_sets_per_layer_exclusive_and_shared(n_langs: int, n_layers: int) -> None:
    neurons = toy_neurons(n_langs, n_layers)
    fig = neuron_counts(neurons)
    heat, lang_bars, layer_bars = fig.data[0], fig.data[1:3], fig.data[3:5]
    membership = torch.stack([neurons.mask(x) for x in neurons.langs]).sum(dim=0)
    # heatmap: rows = layers, columns = languages, every cell the set's count there
    assert heat.z.T.tolist() == [neurons.layer_counts(x) for x in neurons.langs]
    assert list(heat.x) == neurons.langs and list(heat.y) == list(range(n_layers))
    exclusive = [int((neurons.mask(x) & (membership == 1)).sum()) for x in neurons.langs]
    assert list(lang_bars[0].y) == exclusive and lang_bars[0].name == "exclusive"
    assert [e + s for e, s in zip(lang_bars[0].y, lang_bars[1].y, strict=True)] == [
        neurons.count(x) for x in neurons.langs
    ]
    assert sum(lang_bars[1].y) > 0  # the toy sets do share neurons: both kinds are drawn
    by_layer = [sum(neurons.layer_counts(x)[layer] for x in neurons.langs)
                for layer in range(n_layers)]  # fmt: skip
    assert [e + s for e, s in zip(layer_bars[0].x, layer_bars[1].x, strict=True)] == by_layer
    # readable: cells of at least 30 × 14 px with their numbers in them, titles not cut
    layout = fig.layout
    assert layout.template.layout.paper_bgcolor == "white"
    assert heat.texttemplate == "%{text}" and heat.textfont.size >= 9
    plot_w = layout.width - layout.margin.l - layout.margin.r
    plot_h = layout.height - layout.margin.t - layout.margin.b
    domain_w = layout.xaxis3.domain[1] - layout.xaxis3.domain[0]
    domain_h = layout.yaxis3.domain[1] - layout.yaxis3.domain[0]
    assert plot_w * domain_w / n_langs >= 29 and plot_h * domain_h / n_layers >= 13
    assert layout.width >= 40 + text_px(layout.title.subtitle.text, 12)
    assert layout.width <= 1400 and layout.height <= 1000
    assert "neurons" in heat.colorbar.title.text


def test_count_tables_by_hand() -> None:
    neurons = LanguageNeurons(2, 4, {"en": torch.tensor([[0, 1], [1, 2]]),
                                     "zh": torch.tensor([[1, 2], [1, 3], [0, 0]])})  # fmt: skip
    cells, per_lang, per_layer = count_tables(neurons)
    assert cells.to_dict("list") == {"en": [1, 1], "zh": [1, 2]}
    assert per_lang.to_dict("index") == {"en": {"exclusive": 1, "shared": 1},
                                         "zh": {"exclusive": 2, "shared": 1}}  # fmt: skip
    assert per_layer.to_dict("list") == {"exclusive": [2, 1], "shared": [0, 2]}
