from __future__ import annotations

import pytest

from crane_lens.evaluation import AblationMatrix
from crane_lens.plots import budget_sweep, sweep_table


def _matrix(method: str, own: float, others: float) -> AblationMatrix:
    langs = ["en", "vi", "zh"]
    base = {x: 3.0 for x in langs}
    nll = {a: {b: 3.0 + (own if a == b else others) for b in langs} for a in langs}
    return AblationMatrix(
        method, "zero", langs, langs, base, nll, n_neurons=dict.fromkeys(langs, 5)
    )


def test_sweep_traces_are_the_selectivity_means() -> None:
    matrices = {
        0.01: {"crane": _matrix("crane", 2.0, 0.5), "lape": _matrix("lape", 1.0, 1.0)},
        0.001: {"crane": _matrix("crane", 0.4, 0.01), "lape": _matrix("lape", 0.1, 0.05)},
    }
    table = sweep_table(matrices)
    assert table["budget"].tolist() == [0.001, 0.001, 0.01, 0.01]  # sorted by budget
    fig = budget_sweep(matrices)
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["crane · own"].x) == [5, 5]  # the sets' actual mean size
    assert list(by_name["crane · own"].customdata) == [0.1, 1.0]  # the budget, in percent
    assert list(by_name["crane · own"].y) == pytest.approx([0.4, 2.0])
    assert list(by_name["lape · others"].y) == pytest.approx([0.05, 1.0])
    assert list(by_name["crane"].y) == pytest.approx([0.39 / 0.41, 1.5 / 2.5])
    assert fig.layout.yaxis.type == "log"  # every ΔNLL positive
    assert fig.layout.xaxis.type == "log"
    matrices[0.001]["lape"] = _matrix("lape", 0.1, -0.02)  # a set that helps the others
    assert budget_sweep(matrices).layout.yaxis.type == "linear"


def test_sweep_shows_sets_that_hurt_the_others_more() -> None:
    worse = {0.01: {"plnd": _matrix("plnd", 0.1, 1.0)}}  # index (0.1 - 1) / 1.1 = -0.82
    fig = budget_sweep(worse)
    assert fig.layout.yaxis2.range[0] < -0.82
    with pytest.raises(ValueError, match="at least one"):
        budget_sweep({})
