from __future__ import annotations

import pytest

from crane_lens.evaluation import AblationMatrix
from crane_lens.plots import ablation_heatmap, ablation_matrices
from crane_lens.plots.matrix import MIN_CELL, PAGE_WIDTH, cell_text, text_px

LANGS17 = ["ar", "de", "en", "es", "fr", "hi", "id", "it", "ja", "ko", "nl", "pl", "pt", "ru",
           "tr", "vi", "zh"]  # fmt: skip


def toy_matrix(method: str, langs: list[str], seeds: int = 0, scale: float = 1.0) -> AblationMatrix:
    """own ΔNLL = scale·(1 + i/10), others scale·0.01·(i − j), random sets seed/100."""
    base = {b: 3.0 + j / 10 for j, b in enumerate(langs)}
    nll = {a: {b: base[b] + scale * ((1 + i / 10) if a == b else 0.01 * (i - j))
               for j, b in enumerate(langs)} for i, a in enumerate(langs)}  # fmt: skip
    rand = {a: {b: [base[b] + s / 100 + (0.05 if a == b else 0.0) for s in range(seeds)]
                for b in langs} for a in langs} if seeds else {}  # fmt: skip
    return AblationMatrix(method, "zero", langs, langs, base, nll, rand,
                          n_neurons=dict.fromkeys(langs, 41))  # fmt: skip


def _rows(table: object) -> list[list[object]]:
    return [list(row) for row in table]  # type: ignore[attr-defined]


@pytest.mark.parametrize("langs", [["en", "zh", "vi"], LANGS17])
def test_ablation_heatmap_is_readable_at_its_default_size(langs: list[str]) -> None:
    matrix = toy_matrix("crane", langs, scale=20.0)
    fig = ablation_heatmap(matrix)
    trace, layout = fig.data[0], fig.layout
    delta = matrix.delta()
    assert _rows(trace.z) == delta.to_numpy().tolist()
    assert list(trace.y) == langs and list(trace.x) == langs  # every row label, "zh" included
    assert _rows(trace.text) == cell_text(delta.to_numpy().tolist(), "delta", len(langs))
    assert trace.texttemplate == "%{text}"
    assert trace.zmin == -trace.zmax and trace.zmax == pytest.approx(delta.abs().max().max())
    assert "nats/token" in trace.colorbar.title.text
    # the title and subtitle fit; every cell is at least 30 px and its text fits in it
    assert layout.width >= 40 + text_px(layout.title.text, 17)
    assert layout.width >= 40 + text_px(layout.title.subtitle.text, 12)
    plot_w = layout.width - layout.margin.l - layout.margin.r
    plot_h = layout.height - layout.margin.t - layout.margin.b
    cell = min(plot_w, plot_h) / len(langs)
    assert cell >= 30
    assert max(text_px(t, trace.textfont.size) for row in trace.text for t in row) <= cell - 2
    assert len(layout.shapes) == len(langs)  # the own-language cells are framed
    assert layout.template.layout.paper_bgcolor == "white"


def test_cell_text_never_shows_a_negative_zero() -> None:
    assert cell_text([[-0.0004, 0.0004, -0.02]], "delta", 3) == [["0.000", "0.000", "−0.020"]]
    assert cell_text([[-0.004, 12.345]], "delta", 17) == [["0.0", "12.3"]]
    assert cell_text([[-0.004, 0.3]], "relative", 3) == [["−0.4%", "30.0%"]]


def test_ablation_matrices_share_one_scale_centred_on_zero() -> None:
    langs = ["en", "zh", "vi"]
    crane, lape = toy_matrix("crane", langs, seeds=3), toy_matrix("lape", langs, scale=4.0)
    fig = ablation_matrices({"crane": crane, "lape": lape})
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["crane", "lape", "random (mean of 3 seeds)"]
    frames = [crane.delta(), lape.delta(), crane.random_delta()]
    for trace, frame in zip(fig.data, frames, strict=True):
        assert _rows(trace.z) == frame.to_numpy().tolist()
        assert trace.coloraxis == "coloraxis" and trace.texttemplate == "%{text}"
    axis = fig.layout.coloraxis
    top = max(float(f.abs().max().max()) for f in frames)
    assert axis.cmin == -axis.cmax and axis.cmax == pytest.approx(top)
    assert "nats/token" in axis.colorbar.title.text
    assert all(fig.layout.width >= 40 + text_px(line, 12)
               for line in fig.layout.title.subtitle.text.split("<br>"))  # fmt: skip
    # no random panel on request or when no matrix has random sets
    assert len(ablation_matrices({"crane": crane}, random=False).data) == 1
    assert len(ablation_matrices({"lape": lape}).data) == 1


def test_ablation_matrices_of_17_languages_wrap_into_a_page() -> None:
    matrices = {m: toy_matrix(m, LANGS17, seeds=2) for m in ("crane", "lape")}
    fig = ablation_matrices(matrices)
    assert len(fig.data) == 3
    # The report's content width (a 1400-px window): 2 × 2 panels with smaller cells, not 1 × 3
    # (too tall) nor 2 × 2 at the 30-px cells of a page 1 300 px wide (cut there).
    assert fig.layout.width <= PAGE_WIDTH and fig.layout.height <= 1400
    assert fig.layout.xaxis.domain[1] < fig.layout.xaxis2.domain[0]  # crane, lape side by side
    assert fig.layout.xaxis3.domain == fig.layout.xaxis.domain  # random below crane
    plot_w = fig.layout.width - fig.layout.margin.l - fig.layout.margin.r
    cell = plot_w * (fig.layout.xaxis.domain[1] - fig.layout.xaxis.domain[0]) / 17
    assert cell >= MIN_CELL - 0.5
    # Every title line within the width (the long subtitle wraps instead of widening the figure).
    lines = [*fig.layout.title.text.split("<br>"), *fig.layout.title.subtitle.text.split("<br>")]
    assert len(lines) >= 3 and all(40 + text_px(x, 12) <= fig.layout.width for x in lines[1:])
    assert {trace.xaxis for trace in fig.data} == {"x", "x2", "x3"}
    assert fig.data[0].textfont.size <= 10
