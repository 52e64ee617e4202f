from __future__ import annotations

import math
import statistics

import pytest
import torch

from crane_lens.plots import accuracy_chart
from crane_lens.plots.benchmarks import benchmark_table

LANGS = ["en", "zh", "vi"]
SETS = ["crane", "lape", "crane ×5 budget (205 neurons)"]


def _benchmarks() -> dict:  # type: ignore[type-arg]
    """The format crane-lens study writes, with random values."""
    generator = torch.Generator().manual_seed(0)
    conditions = ["none"] + [f"{s}:{x}" for s in SETS for x in LANGS]
    return {
        "mc_items": {"en": 60, "zh": 50, "vi": 40},
        "mc": {c: {x: float(torch.rand(1, generator=generator)) for x in LANGS}
               for c in conditions},
        "generation": {c: {x: float(torch.randint(0, 9, (1,), generator=generator)) / 8
                           for x in LANGS} for c in conditions},
        "n_neurons": {c: 0 if c == "none" else 37 for c in conditions},
    }  # fmt: skip


@pytest.mark.parametrize("key", ["mc", "generation"])
def test_bars_are_the_benchmark_values(key: str) -> None:
    bench = _benchmarks()
    values = bench[key]
    fig = accuracy_chart(bench, key=key)  # type: ignore[arg-type]
    bars = [t for t in fig.data if t.type == "bar"]
    dots = [t for t in fig.data if t.type == "scatter"]
    assert len(bars) == 1 + 2 * len(SETS) and len(dots) == len(SETS)
    assert list(bars[0].y) == [values["none"][x] for x in LANGS]
    for k, name in enumerate(SETS):
        own, others = bars[1 + 2 * k], bars[2 + 2 * k]
        assert own.legendgroup == others.legendgroup == name
        assert list(own.y) == [values[f"{name}:{x}"][x] for x in LANGS]
        expected = [statistics.fmean(values[f"{name}:{m}"][x] for m in LANGS if m != x)
                    for x in LANGS]  # fmt: skip
        assert list(others.y) == pytest.approx(expected)
        # The circles: every other language's set, each at its own value.
        assert sorted(dots[k].y) == sorted(values[f"{name}:{m}"][x] for x in LANGS
                                           for m in LANGS if m != x)  # fmt: skip
        assert "37 neurons" in own.customdata[0]
    if key == "mc":  # ±1 binomial standard error from the item counts; chance at 0.25
        n = bench["mc_items"]
        assert list(bars[1].error_y.array) == pytest.approx(
            [math.sqrt(p * (1 - p) / n[x]) for p, x in zip(bars[1].y, LANGS, strict=True)]
        )
        assert bars[2].error_y.array is None  # a mean over sets: the circles show the spread
        assert [s.y0 for s in fig.layout.shapes] == [0.25]
        assert list(fig.layout.xaxis.ticktext) == [f"{x}<br>({n[x]} items)" for x in LANGS]
        bench["mc_items"] = dict.fromkeys(LANGS, 60)  # one count for all: in the axis title
        same = accuracy_chart(bench).layout.xaxis
        assert list(same.ticktext) == LANGS and "60 items each" in same.title.text
    else:
        assert not fig.layout.shapes and bars[1].error_y.array is None
    # Every bar shows its value, and a zero-height one shows it above its foot.
    assert list(bars[1].text) == [f"{v:.2f}" for v in bars[1].y]
    assert fig.layout.width >= 7 * 40 * len(LANGS)  # ≥ 40 px per bar


def test_seventeen_languages_fit_a_page() -> None:
    langs = [f"l{i:02d}" for i in range(17)]
    conditions = ["none"] + [f"{s}:{x}" for s in ("crane", "lape") for x in langs]
    bench = {"mc": {c: {x: 0.5 for x in langs} for c in conditions}}
    fig = accuracy_chart(bench)
    bars = [t for t in fig.data if t.type == "bar"]
    bar_px = bars[0].width * (fig.layout.width - 140) / 17  # x axis: one unit per language
    assert fig.layout.width <= 1500 and bar_px >= 12
    assert set(bars[0].text) == {""}  # too narrow for printed values: hover has them


def test_zero_bars_keep_a_visible_label_and_bad_input_is_refused() -> None:
    bench = {"mc": {"none": {"en": 0.5}, "x:y:en": {"en": 0.0}}}  # a set name with a colon
    table = benchmark_table(bench)
    assert table["set"].isna().tolist() == [True, False] and table["set"][1] == "x:y"
    fig = accuracy_chart(bench, chance=0.5)
    assert list(fig.data[1].textposition) == ["outside"] and list(fig.data[1].text) == ["0.00"]
    assert list(fig.data[2].text) == [""]  # no other language's set was masked: no value
    assert [s.y0 for s in fig.layout.shapes] == [0.5]
    with pytest.raises(ValueError, match="unmasked"):
        accuracy_chart({"mc": {"crane:en": {"en": 0.4}}})
    with pytest.raises(ValueError, match="key"):
        accuracy_chart(bench, key="accuracy")  # type: ignore[arg-type]
