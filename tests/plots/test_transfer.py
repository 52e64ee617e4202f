from __future__ import annotations

import statistics

import pandas as pd
import pytest
import torch

from crane_lens.evaluation import AblationMatrix
from crane_lens.plots import transfer_chart
from crane_lens.plots.transfer import transfer_table

CONDITIONS = ["base sets on base", "base sets on chat", "chat sets on chat"]


def _matrix(langs: list[str], seed: int, seeds: int = 3) -> AblationMatrix:
    generator = torch.Generator().manual_seed(seed)

    def draw(scale: float) -> float:
        return float(torch.rand(1, generator=generator)) * scale

    base = {b: 2.0 + draw(1) for b in langs}
    nll = {a: {b: base[b] + (draw(2) if a == b else draw(0.2) - 0.02) for b in langs}
           for a in langs}  # fmt: skip
    rand = {a: {b: [base[b] + draw(0.05) - 0.01 for _ in range(seeds)] for b in langs}
            for a in langs}  # fmt: skip
    return AblationMatrix("crane", "zero", langs, langs, base, nll, rand,
                          n_neurons=dict.fromkeys(langs, 10), config={"model": "toy"})  # fmt: skip


@pytest.mark.parametrize("langs", [["en", "zh", "vi"], [f"l{i:02d}" for i in range(17)]])
def test_bars_and_controls_are_the_matrices_values(langs: list[str]) -> None:
    matrices = {c: _matrix(langs, seed) for seed, c in enumerate(CONDITIONS)}
    jaccard = pd.DataFrame([[0.3 if a == b else 0.01 for b in langs] for a in langs],
                           index=langs, columns=langs)  # fmt: skip
    fig = transfer_chart(matrices, jaccard)
    bars = [t for t in fig.data if t.type == "bar" and t.name != "Jaccard"]
    marks = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]
    assert len(bars) == len(marks) == 2 * len(CONDITIONS)  # own and others, per panel
    for k, (condition, matrix) in enumerate(matrices.items()):
        sel = matrix.selectivity()
        own, others = bars[2 * k], bars[2 * k + 1]
        assert list(own.y) == sel["own"].tolist() and list(others.y) == sel["others"].tolist()
        assert list(own.customdata) == langs
        assert list(marks[2 * k].y) == pytest.approx(sel["random_own"].tolist(), abs=1e-12)
        assert list(marks[2 * k].error_y.array) == pytest.approx(sel["random_own_std"].tolist())
        # Random sets on the other languages: per seed the mean over them, then mean ± std.
        for i, a in enumerate(langs):
            per_seed = [statistics.fmean(matrix.random_nll[a][b][s] - matrix.baseline[b]
                                         for b in langs if b != a) for s in range(3)]  # fmt: skip
            assert marks[2 * k + 1].y[i] == pytest.approx(statistics.fmean(per_seed))
            assert marks[2 * k + 1].error_y.array[i] == pytest.approx(statistics.stdev(per_seed))
        assert fig.layout.annotations[k].text.startswith(f"<b>{condition}</b>")
    if len(langs) <= 8:  # values printed above the bar, its random mark and error bar
        labels = [t for t in fig.data if t.type == "scatter" and t.mode == "text"]
        for bar, mark, text in zip(bars, marks, labels, strict=True):
            assert [float(v) for v in text.text] == pytest.approx(list(bar.y), abs=5e-3)
            tops = [m + e for m, e in zip(mark.y, mark.error_y.array, strict=True)]
            assert list(text.y) == [max(b, t, 0.0) for b, t in zip(bar.y, tops, strict=True)]
    overlap = next(t for t in fig.data if t.name == "Jaccard")
    assert list(overlap.y) == [0.3] * len(langs)
    # One y range for the three ΔNLL panels that holds every bar and error bar.
    ranges = {tuple(fig.layout[f"yaxis{i if i > 1 else ''}"].range) for i in (1, 2, 3)}
    (low, high), top = ranges.pop(), max(max(t.y) for t in bars)
    assert not ranges and low <= min(0.0, *(min(t.y) for t in bars)) and high > top
    assert fig.layout.width >= 52 * len(langs)  # ≥ 52 px per language


def test_matrices_without_random_sets_and_with_one_seed() -> None:
    langs = ["en", "zh"]
    bare = _matrix(langs, 0)
    bare.random_nll = {}
    fig = transfer_chart({"a": bare, "b": _matrix(langs, 1, seeds=1)})
    kinds = [t.mode if t.type == "scatter" else t.type for t in fig.data]
    assert kinds == ["bar", "text", "bar", "text", "bar", "text", "markers", "bar", "text",
                     "markers"]  # fmt: skip
    marks = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]
    assert list(marks[0].error_y.array) == [0.0, 0.0]  # one seed: no spread to draw
    assert "one seed" in fig.layout.title.subtitle.text
    table = transfer_table({"a": bare})
    assert table["random_own"].isna().all() and len(table) == 2
