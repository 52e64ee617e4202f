from __future__ import annotations

import math

import pytest
import torch

from crane_lens.plots import language_overlap, method_overlap
from crane_lens.plots.matrix import text_px
from crane_lens.plots.overlap import (
    DIAGONAL,
    TITLE_SIZE,
    cell_label,
    finish,
    method_overlap_table,
    size_label,
)
from crane_lens.selection import LanguageNeurons

LANGS = ["ar", "de", "en", "es", "fr", "hi", "id", "it", "ja", "ko", "nl", "pl", "pt", "ru",
         "tr", "vi", "zh"]  # fmt: skip


def _sets(langs: list[str], seed: int, method: str = "toy", size: int = 12) -> LanguageNeurons:
    """Random sets of 2 layers × 16 neurons: small enough to overlap often."""
    generator = torch.Generator().manual_seed(seed)
    ranked = {}
    for i, lang in enumerate(langs):
        flat = torch.randperm(32, generator=generator)[: size - i % 3]  # sizes differ
        ranked[lang] = torch.stack([flat // 16, flat % 16], dim=1)
    return LanguageNeurons(2, 16, ranked, method=method, model="toy-model")


def _title_fits(fig) -> None:  # type: ignore[no-untyped-def]
    for line in fig.layout.title.text.split("<br>"):
        assert text_px(line, TITLE_SIZE) <= fig.layout.width - 30, line


@pytest.mark.parametrize("n", [3, 17])
def test_language_overlap_draws_the_jaccard_table(n: int) -> None:
    sets = _sets(LANGS[:n], seed=n)
    fig = language_overlap(sets)
    table = sets.jaccard()
    values, diagonal = fig.data
    assert list(values.x) == list(values.y) == LANGS[:n]
    for i, a in enumerate(LANGS[:n]):
        for j, b in enumerate(LANGS[:n]):
            drawn = values.z[i][j]
            if i == j:  # the trivial 1 gives way to the set's size
                assert math.isnan(drawn) and diagonal.text[i][j] == f"n={sets.count(a)}"
            else:
                assert drawn == table.loc[a, b] and not diagonal.text[i][j]
    off = [v for i, row in enumerate(table.values) for j, v in enumerate(row) if i != j]
    assert (values.zmin, values.zmax) == (0.0, max(max(off), 0.1))  # from no overlap up
    _title_fits(fig)
    # Readable at the default size: cells ≥ 46 px both ways and the figure grows with n.
    assert fig.layout.width >= fig.layout.margin.l + 46 * n + 100
    assert fig.layout.height >= fig.layout.margin.t + 46 * n + fig.layout.margin.b
    assert fig.layout.template.layout.plot_bgcolor == "white"  # plotly_white


def test_disjoint_sets_keep_a_zero_to_one_scale() -> None:
    one = [[0, 0], [0, 1]]
    sets = LanguageNeurons(1, 4, {"en": torch.tensor(one), "zh": torch.tensor([[0, 2]])})
    fig = language_overlap(sets)
    assert (fig.data[0].zmin, fig.data[0].zmax) == (0.0, 1.0)
    assert fig.data[0].text[0][1] == "0"


def test_method_overlap_is_the_mean_same_language_jaccard() -> None:
    by_method = {m: _sets(LANGS[:5], seed=s, method=m) for s, m in enumerate(["a", "bb", "c"])}
    by_method["c"] = by_method["c"].select_langs(LANGS[1:5])  # one language fewer: ignored
    fig = method_overlap(by_method)
    values = fig.data[0]
    assert list(values.x) == ["a", "bb", "c"]
    for i, a in enumerate(by_method):
        for j, b in enumerate(by_method):
            if i == j:
                continue
            pairs = (
                by_method[a].select_langs(LANGS[1:5]).jaccard(by_method[b].select_langs(LANGS[1:5]))
            )
            expected = sum(pairs.loc[x, x] for x in LANGS[1:5]) / 4
            assert values.z[i][j] == pytest.approx(expected, abs=1e-12)
    sizes = [round(sum(n.count(x) for x in LANGS[1:5]) / 4) for n in by_method.values()]
    assert [fig.data[1].text[i][i] for i in range(3)] == [f"n={s}" for s in sizes]
    detail = method_overlap(by_method, by_language=True).data[0]
    table = method_overlap_table(by_method)
    assert list(detail.y) == LANGS[1:5] and list(detail.x) == ["a · bb", "a · c", "bb · c"]
    for row in table.itertuples():
        assert detail.z[LANGS[1:5].index(row.lang)][list(detail.x).index(f"{row.a} · {row.b}")] \
            == row.jaccard  # fmt: skip
    with pytest.raises(ValueError, match="at least two"):
        method_overlap({"a": by_method["a"]})


def test_finish_wraps_titles_to_the_width() -> None:
    import plotly.graph_objects as go

    long = "A title much longer than the narrow figure it belongs to, " * 3
    fig = finish(go.Figure(), title=long, subtitle=long, width=400, plot_height=100)
    _title_fits(fig)
    lines = fig.layout.title.text.count("<br>") + 1
    assert lines >= 5 and fig.layout.margin.t >= 24 * lines  # the margin makes room for them


def test_cells_read_as_fractions_and_the_diagonal_as_counts() -> None:
    """Fractions with a leading zero ("0.53", not ".53"); the diagonal's set sizes marked "n=" on
    neutral grey, outside the colour scale, and said to be counts on hover."""
    assert [cell_label(v) for v in (0.53, 0.047, 0.004, 0.0, 1.0)] == [
        "0.53", "0.05", "<0.01", "0", "1"]  # fmt: skip
    assert [size_label(n) for n in (41, 1234, 45875)] == ["n=41", "n=1,234", "n=46k"]
    sets = _sets(LANGS[:17], seed=3)
    fig = language_overlap(sets)
    values, diagonal = fig.data
    labels = [t for i, row in enumerate(values.text) for j, t in enumerate(row) if i != j]
    assert all(t in ("0", "1", "<0.01") or t.startswith("0.") for t in labels), labels
    assert [diagonal.text[i][i] for i in range(17)] == [f"n={sets.count(x)}" for x in LANGS[:17]]
    assert diagonal.colorscale[0][1] == diagonal.colorscale[-1][1] == DIAGONAL  # one grey
    assert not diagonal.showscale and "a count, not a Jaccard index" in diagonal.hovertemplate
    # Gaps (the other trace's cells) get no hover label of their own: no "Jaccard NaN".
    assert values.hoverongaps is False and diagonal.hoverongaps is False
    by_method = {m: _sets(LANGS[:5], seed=s, method=m) for s, m in enumerate(["a", "b"])}
    diagonal = method_overlap(by_method).data[1]
    assert "neurons per set, mean over languages" in diagonal.hovertemplate


def test_the_colour_bar_title_keeps_clear_of_the_top_tick() -> None:
    """The scale ends at the largest value, often a round tick (0.1 here): its label goes below
    the tick, not up into the two-line title above the bar."""
    one = LanguageNeurons(1, 40, {"en": torch.tensor([[0, i] for i in range(10)]),
                                  "zh": torch.tensor([[0, i] for i in range(9, 19)])})  # fmt: skip
    two = LanguageNeurons(1, 40, {"en": torch.tensor([[0, i] for i in range(9, 19)]),
                                  "zh": torch.tensor([[0, i] for i in range(18, 28)])})  # fmt: skip
    fig = method_overlap({"a": one, "b": two})
    assert fig.data[0].zmax == pytest.approx(0.1)  # 1/19 → the 0.1 floor: a tick at the top
    colour_bar = fig.data[0].colorbar
    assert colour_bar.title.side == "top" and colour_bar.ticklabelposition == "outside bottom"
