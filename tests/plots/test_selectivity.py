from __future__ import annotations

import math

import pytest

from crane_lens.evaluation import AblationMatrix
from crane_lens.plots import random_selectivity, selectivity_chart
from crane_lens.plots.matrix import PAGE_WIDTH
from tests.plots.test_matrix import LANGS17, toy_matrix


def _seed_matrix(matrix: AblationMatrix, seed: int) -> AblationMatrix:
    """The matrix whose masked sets are the random sets of one seed."""
    nll = {a: {b: matrix.random_nll[a][b][seed] for b in matrix.evaluated} for a in matrix.masked}
    return AblationMatrix("random", matrix.mode, matrix.masked, matrix.evaluated,
                          matrix.baseline, nll)  # fmt: skip


def test_random_index_per_seed_is_the_selectivity_index_of_that_seeds_sets() -> None:
    langs = ["en", "zh", "vi", "ar"]
    matrix = toy_matrix("crane", langs, seeds=3)
    # distinct seeds: each seed's sets hurt another language most
    for s in range(3):
        for j, a in enumerate(langs):
            matrix.random_nll[a][langs[(j + s) % 4]][s] += 0.3 + s / 10
    table = random_selectivity(matrix)
    per_seed = [_seed_matrix(matrix, s).selectivity() for s in range(3)]
    for a in langs:
        index = [float(sel.loc[a, "index"]) for sel in per_seed]
        own = [float(sel.loc[a, "own"]) for sel in per_seed]
        mean = sum(index) / 3
        assert table.loc[a, "index"] == pytest.approx(mean)
        assert table.loc[a, "index_std"] == pytest.approx(
            math.sqrt(sum((x - mean) ** 2 for x in index) / 2)
        )
        assert table.loc[a, "own"] == pytest.approx(sum(own) / 3)
        assert table.loc[a, "own"] == pytest.approx(matrix.selectivity().loc[a, "random_own"])
        assert table.loc[a, "own_std"] == pytest.approx(
            matrix.selectivity().loc[a, "random_own_std"]
        )
    assert random_selectivity(toy_matrix("lape", langs)).empty


@pytest.mark.parametrize("langs", [["en", "zh", "vi"], LANGS17])
def test_chart_draws_each_methods_selectivity_and_its_random_control(langs: list[str]) -> None:
    crane, lape = toy_matrix("crane", langs, seeds=2), toy_matrix("lape", langs, scale=0.2)
    one_seed = toy_matrix("plnd", langs, seeds=1)
    fig = selectivity_chart({"crane": crane, "lape": lape, "plnd": one_seed})
    by_name: dict[str, list] = {}
    for trace in fig.data:
        by_name.setdefault(trace.name, []).append(trace)
    sel, rand = crane.selectivity(), random_selectivity(crane)
    index, own = by_name[f"crane (41 neurons; mean index {sel['index'].mean():.2f})"]
    assert list(index.x) == langs and list(index.y) == pytest.approx(sel["index"].tolist())
    assert list(own.y) == pytest.approx(sel["own"].tolist())
    r_index, r_own = by_name["random, crane's layer sizes (2 seeds)"]
    assert list(r_index.y) == pytest.approx(rand["index"].tolist())
    assert list(r_index.error_y.array) == pytest.approx(rand["index_std"].tolist())
    assert list(r_own.error_y.array) == pytest.approx(rand["own_std"].tolist())
    assert not any(name.startswith("random, lape") for name in by_name)  # no random sets
    r_plnd = by_name["random, plnd's layer sizes (1 seed)"]
    assert all(t.error_y.visible is False for t in r_plnd)  # one seed: no spread to draw
    layout = fig.layout
    assert layout.scattermode == "group" and layout.template.layout.paper_bgcolor == "white"
    assert layout.yaxis.range == (-1.05, 1.05)
    assert 600 <= layout.width <= PAGE_WIDTH  # fits the report's content column
