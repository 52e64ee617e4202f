"""selection_stability: split-half agreement, convergence and chance level of the selected sets."""

from __future__ import annotations

import math

import pytest
import torch

import crane_lens as cl
from crane_lens.selection import SelectionStability, chance_jaccard, selection_stability
from crane_lens.stats import NeuronStats
from crane_lens.stats.results import FRACTIONS, N_PARTS

LANGS = ["en", "vi", "zh", "de", "ar"]
METHODS = ["crane", "lape", "attribution"]


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return cl.load_model("crane-tiny")


@pytest.fixture(scope="module")
def stats(model):  # type: ignore[no-untyped-def]
    """5 languages × 8 blocks of 64 tokens (504 predicted tokens each)."""
    corpus = cl.load_corpus("builtin", langs=LANGS)
    return cl.compute_stats(model, corpus, METHODS, seq_len=64, max_tokens_per_lang=512,
                            progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def stability(stats):  # type: ignore[no-untyped-def]
    return selection_stability(stats)


@pytest.mark.parametrize(("a", "b", "n"), [(30, 50, 400), (5, 5, 12), (41, 41, 4096)])
def test_chance_level_is_the_mean_jaccard_of_random_draws(a: int, b: int, n: int) -> None:
    generator = torch.Generator().manual_seed(0)
    draws = 20_000
    values = []
    for _ in range(draws):
        first = torch.zeros(n, dtype=torch.bool)
        first[torch.randperm(n, generator=generator)[:a]] = True
        second = torch.zeros(n, dtype=torch.bool)
        second[torch.randperm(n, generator=generator)[:b]] = True
        values.append(float((first & second).sum()) / float((first | second).sum()))
    drawn = torch.tensor(values, dtype=torch.float64)
    error = float(drawn.std()) / math.sqrt(draws)
    assert abs(chance_jaccard(a, b, n) - float(drawn.mean())) < 4 * error + 1e-9
    assert chance_jaccard(a, b, n) == pytest.approx(chance_jaccard(b, a, n), rel=1e-12)


def test_chance_level_edge_cases() -> None:
    assert chance_jaccard(7, 7, 7) == 1.0 and chance_jaccard(0, 4, 9) == 0.0
    assert math.isnan(chance_jaccard(0, 0, 9))
    assert chance_jaccard(600, 700, 1000) == pytest.approx(
        sum(math.comb(600, x) * math.comb(400, 700 - x) * x / (1300 - x)
            for x in range(300, 601)) / math.comb(1000, 700), rel=1e-9)  # fmt: skip
    with pytest.raises(ValueError, match="between 0 and 9"):
        chance_jaccard(10, 1, 9)


def test_the_whole_text_selects_the_full_sets(stats) -> None:  # type: ignore[no-untyped-def]
    """part("fraction", 1) is the full statistics; the sum of all parts selects the same sets."""
    summed = NeuronStats(stats.spec, stats.methods, config=stats.config)
    for lang in stats.langs:
        summed.n_tokens[lang] = sum(stats.part_tokens[lang])
        summed.sums[lang] = {name: values.sum(dim=0)
                             for name, values in stats.part_sums[lang].items()}  # fmt: skip
    for method in METHODS:
        full = cl.select_language_neurons(stats, method)
        for other in (stats.part("fraction", 1), summed):
            again = cl.select_language_neurons(other, method)
            assert {x: p.tolist() for x, p in again.ranked.items()} == {
                x: p.tolist() for x, p in full.ranked.items()}, method  # fmt: skip


def test_report_tables(stability, stats) -> None:  # type: ignore[no-untyped-def]
    assert stability.methods == METHODS and stability.langs == LANGS
    halves = stability.split_half()
    assert list(halves.columns) == METHODS and list(halves.index) == LANGS
    assert ((halves >= 0) & (halves <= 1)).all().all()
    curves = stability.convergence()
    assert list(curves.columns) == ["method", "lang", "fraction", "tokens", "jaccard", "chance"]
    assert len(curves) == len(METHODS) * len(LANGS) * len(FRACTIONS)
    whole = curves[curves["fraction"] == 1]
    assert (whole["jaccard"] == 1.0).all()  # all of the text is the reference itself
    assert (whole["tokens"] == [stats.n_tokens[x] for x in whole["lang"]]).all()
    # 8 blocks of 63 tokens: prefixes of 1, 1, 2, 4 and 8 blocks.
    en = curves[(curves["method"] == "crane") & (curves["lang"] == "en")]
    assert en["tokens"].tolist() == [63, 63, 126, 252, 504]
    frame = stability.to_dataframe()
    half = frame[frame["kind"] == "split_half"]
    assert (half[["tokens_a", "tokens_b"]] == 252).all().all()
    assert (half["size_a"] > 0).all() and (half["chance"] < 0.05).all()
    summary = stability.summary()
    assert list(summary.index) == METHODS
    assert list(summary.columns) == ["median", "min", "min_lang", "chance", "tokens", "converged"]
    for method in METHODS:
        column = halves[method]
        assert summary.loc[method, "median"] == pytest.approx(column.median())
        assert summary.loc[method, "min_lang"] == column.idxmin()
    lines = stability.describe().splitlines()
    assert len(lines) == len(METHODS) and lines[0].startswith("CRANE: two disjoint halves")
    assert "(Jaccard index)" in lines[0] and "at 1/4 of the text" in lines[0]


def test_save_and_load(stability, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = stability.save(tmp_path / "out")
    assert path.name == "stability.json"
    for source in (tmp_path / "out", path):
        loaded = SelectionStability.load(source)
        assert loaded.to_dataframe().equals(stability.to_dataframe())
        assert loaded.describe() == stability.describe() and loaded.config == stability.config
    with pytest.raises(cl.CraneLensError, match="No stability.json"):
        SelectionStability.load(tmp_path / "missing")


def test_identical_halves_agree_exactly(model) -> None:  # type: ignore[no-untyped-def]
    """Every block twice in a row: half 0 and half 1 hold the same blocks, so each method
    selects exactly the same sets on both."""
    corpus = cl.load_corpus("builtin", langs=LANGS[:3])
    blocks = cl.make_token_blocks(corpus, model.tokenizer, 16, 16 * 16, 0)
    twice = cl.TokenBlocks({x: t.repeat_interleave(2, dim=0) for x, t in blocks.blocks.items()},
                           blocks.seq_len, blocks.bos_token_id, blocks.seed)  # fmt: skip
    assert all(len(t) == 32 for t in twice.blocks.values())  # parts' bounds fall between pairs
    stats = cl.compute_stats(model, twice, METHODS, progress=False)
    for lang in stats.langs:
        for name, values in stats.part_sums[lang].items():
            assert torch.equal(values[0::2], values[1::2]), name
    result = selection_stability(stats)
    assert (result.split_half() == 1.0).all().all()


def test_languages_shuffled_between_halves_agree_at_chance(stats, stability) -> None:  # type: ignore[no-untyped-def]
    """Half 1 of each language replaced by half 1 of another: CRANE's language-specific sets
    of different languages overlap no more than random sets would."""
    shuffled = NeuronStats(stats.spec, stats.methods, config=stats.config)
    odd = torch.arange(1, N_PARTS, 2)
    for i, lang in enumerate(stats.langs):
        other = stats.langs[(i + 1) % len(stats.langs)]
        shuffled.n_tokens[lang] = stats.n_tokens[lang]
        shuffled.sums[lang] = stats.sums[lang]
        tokens = list(stats.part_tokens[lang])
        for p in odd.tolist():
            tokens[p] = stats.part_tokens[other][p]
        shuffled.part_tokens[lang] = tokens
        shuffled.part_sums[lang] = {}
        for name, values in stats.part_sums[lang].items():
            mixed = values.clone()
            mixed[odd] = stats.part_sums[other][name][odd]
            shuffled.part_sums[lang][name] = mixed
    result = selection_stability(shuffled, "crane").summary().loc["crane"]
    assert abs(result["median"] - result["chance"]) < 0.02
    assert stability.summary().loc["crane", "median"] > result["median"] + 0.2


def test_settings_reach_every_selection(stats) -> None:  # type: ignore[no-untyped-def]
    result = selection_stability(stats, ["crane", "lape"], k=20, top_rate=0.02)
    frame = result.to_dataframe()
    crane = frame[frame["method"] == "crane"]
    assert (crane[["size_a", "size_b"]] == 20).all().all()
    assert result.config["k"] == 20 and result.config["budget"] is None
    assert result.config["rules"] == {"crane": "specificity", "lape": "lape"}
    # LAPE takes top_rate (its total budget); CRANE ignores it.
    lape = cl.select_language_neurons(stats, "lape", top_rate=0.02)
    full = frame[(frame["method"] == "lape") & (frame["kind"] == "convergence")
                 & (frame["fraction"] == 1)]  # fmt: skip
    assert full["size_b"].tolist() == [lape.count(x) for x in LANGS]


def test_statistics_without_parts_are_refused(model) -> None:  # type: ignore[no-untyped-def]
    corpus = cl.load_corpus("builtin", langs=["en", "vi"])
    stats = cl.compute_stats(model, corpus, "crane", seq_len=32, max_tokens_per_lang=64,
                             progress=False, parts=False)  # fmt: skip
    with pytest.raises(cl.CraneLensError, match=r"lack: recompute .*parts=True"):
        selection_stability(stats)
    one_block = cl.compute_stats(model, corpus, "crane", seq_len=32, max_tokens_per_lang=32,
                                 progress=False)  # fmt: skip
    with pytest.raises(cl.CraneLensError, match="two blocks per language"):
        selection_stability(one_block)


def test_figure(stability, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from crane_lens.plots import stability_figure

    fig = stability_figure(stability)
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert names == ["CRANE", "LAPE", "attribution", "chance: random sets of the same sizes"]
    boxes = [t for t in fig.data if t.type == "box"]
    assert [len(t.y) for t in boxes] == [len(LANGS)] * len(METHODS)
    assert fig.layout.xaxis2.type == "log"
    assert len(fig.layout.shapes) == len(METHODS) + 1  # a chance line per box, one on the right
