"""Intervals and p-values of the ablation matrix: coverage on data with a known truth, the
per-block results against direct computation, and the statistics by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import crane_lens as cl
from crane_lens.evaluation import AblationMatrix, ablation_matrix, eval_blocks
from crane_lens.evaluation.intervals import (
    block_bootstrap,
    empirical_p_value,
    selectivity_index,
)
from crane_lens.model.runner import gold_scores
from crane_lens.selection import LanguageNeurons

TRUE_MEAN = 0.3


def _ratio(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean ΔNLL per token: summed ΔNLL (row 1) ÷ tokens (row 0)."""
    return (x[1].sum(axis=axis) / x[0].sum(axis=axis))[None]


def _simulated_blocks(rng: np.random.Generator, n_blocks: int) -> tuple[np.ndarray, list]:
    """Blocks of 40–80 tokens whose per-token ΔNLL shares a block effect (sd 0.5) plus token
    noise (sd 1): tokens of a block are correlated, as consecutive tokens of a text are. The
    expected per-token mean is TRUE_MEAN."""
    tokens = rng.integers(40, 80, size=n_blocks)
    per_token = [rng.normal(rng.normal(TRUE_MEAN, 0.5), 1.0, size=n) for n in tokens]
    blocks = np.stack([tokens.astype(float), [t.sum() for t in per_token]])
    return blocks, per_token


def test_block_bootstrap_covers_the_truth_and_a_token_bootstrap_does_not() -> None:
    rng = np.random.default_rng(0)
    n_sims, block_hits, token_hits = 400, 0, 0
    for sim in range(n_sims):
        blocks, per_token = _simulated_blocks(rng, n_blocks=60)
        _, low, high = block_bootstrap([blocks], _ratio, n_resamples=1000, seed=sim)
        block_hits += bool(low[0] <= TRUE_MEAN <= high[0])
        if sim % 4 == 0:  # every 4th: enough to show it, and resampling tokens costs more
            tokens = np.concatenate(per_token)[None]  # every token its own unit: wrong here
            _, low, high = block_bootstrap([tokens], lambda x, axis: x[0].mean(axis)[None],
                                           n_resamples=500, seed=sim)  # fmt: skip
            token_hits += bool(low[0] <= TRUE_MEAN <= high[0])
    print(
        f"coverage of nominal 95 %: blocks {block_hits / n_sims:.3f}, tokens {token_hits / (n_sims // 4):.3f}"
    )
    assert abs(block_hits / n_sims - 0.95) <= 0.03, block_hits / n_sims
    assert token_hits / (n_sims // 4) < 0.6, token_hits  # far below the nominal 95 %


def test_bootstrap_is_deterministic_for_a_seed_and_constant_statistics_have_no_width() -> None:
    rng = np.random.default_rng(1)
    blocks, _ = _simulated_blocks(rng, 12)
    first = block_bootstrap([blocks], _ratio, n_resamples=500, seed=3)
    again = block_bootstrap([blocks], _ratio, n_resamples=500, seed=3)
    other = block_bootstrap([blocks], _ratio, n_resamples=500, seed=4)
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert not np.array_equal(np.stack(first), np.stack(other))
    zero = np.stack([blocks[0], np.zeros(12)])  # an empty set: ΔNLL 0 on every block
    estimate, low, high = block_bootstrap([zero], _ratio, n_resamples=500)
    assert (estimate[0], low[0], high[0]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="at least 2 blocks"):
        block_bootstrap([blocks[:, :1]], _ratio)


def test_selectivity_index_and_p_values_by_hand() -> None:
    assert float(selectivity_index(1.0, 0.5)) == pytest.approx(1 / 3)
    assert float(selectivity_index(-0.1, -0.3)) == 0.0  # both improve: no preference, not 0.5
    assert float(selectivity_index(0.4, -0.2)) == 1.0
    assert float(selectivity_index(-0.4, 0.2)) == -1.0
    assert empirical_p_value(1.0, [0.1] * 5) == pytest.approx(1 / 6)
    assert empirical_p_value(0.1, [0.1] * 5) == 1.0  # ties count against the set
    assert empirical_p_value(0.5, [0.1] * 19) == pytest.approx(0.05)


def _toy_matrix(rng: np.random.Generator, n_blocks: int = 10, seeds: int = 3) -> AblationMatrix:
    langs = ["en", "zh", "vi"]
    tokens = {b: [int(n) for n in rng.integers(50, 60, n_blocks)] for b in langs}
    base = {b: [float(n) * 2.0 + rng.normal() for n in tokens[b]] for b in langs}

    def hit(b: str, size: float) -> list[float]:
        return [x + n * size + rng.normal(0, 2) for x, n in zip(base[b], tokens[b], strict=True)]

    per_block = {
        "tokens": tokens, "baseline": base,
        "selected": {a: {b: hit(b, 0.5 if a == b else 0.05) for b in langs} for a in langs},
        "random": {a: {b: [hit(b, 0.02) for _ in range(seeds)] for b in langs} for a in langs},
    }  # fmt: skip
    sizes = dict.fromkeys(langs, 5)
    toy = AblationMatrix("toy", "zero", langs, langs, {}, {}, n_neurons=sizes, per_block=per_block)
    return AblationMatrix.from_blocks(toy)


def test_matrix_intervals_agree_with_the_tables_and_bracket_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    matrix = _toy_matrix(np.random.default_rng(2))
    found = matrix.intervals(n_resamples=800, seed=1)
    cells = found[found["quantity"] == "delta"].set_index(["masked", "evaluated"])
    delta = matrix.delta()
    for a in matrix.masked:
        for b in matrix.evaluated:
            assert cells.loc[(a, b), "estimate"] == pytest.approx(float(delta.loc[a, b]), abs=1e-12)
    assert (found["low"] <= found["estimate"] + 1e-12).all()
    assert (found["estimate"] <= found["high"] + 1e-12).all()
    sel = matrix.selectivity(n_resamples=800, seed=1)
    for name in ("own", "others", "index", "vs_random"):
        part = found[found["quantity"] == name].set_index("masked")
        assert sel[name].to_numpy() == pytest.approx(part["estimate"].to_numpy(), abs=1e-12)
        assert sel[f"{name}_low"].to_numpy() == pytest.approx(part["low"].to_numpy())
    summary = matrix.summary(n_resamples=800, seed=1)
    assert summary["own_low"] < summary["own"] < summary["own_high"]
    assert sel["p_value"].tolist() == [pytest.approx(1 / 4)] * 3  # above all 3 random sets
    loaded = AblationMatrix.load(matrix.save(tmp_path))
    assert loaded.to_dict() == matrix.to_dict()
    assert loaded.intervals(n_resamples=800, seed=1).equals(found)
    assert (tmp_path / "intervals.csv").is_file()


def test_older_matrices_load_without_intervals(tmp_path) -> None:  # type: ignore[no-untyped-def]
    matrix = _toy_matrix(np.random.default_rng(3))
    old = matrix.to_dict()
    del old["per_block"]  # as written before per-block results existed
    (tmp_path / "matrix.json").write_text(__import__("json").dumps(old), encoding="utf-8")
    loaded = AblationMatrix.load(tmp_path)
    assert loaded.per_block is None
    assert "before crane_lens kept per-block" in (loaded.intervals_unavailable() or "")
    with pytest.raises(cl.CraneLensError, match="No intervals"):
        loaded.intervals()
    sel = loaded.selectivity()
    assert sel["own"].tolist() == pytest.approx(matrix.selectivity()["own"].tolist())
    assert sel["own_low"].isna().all()


@pytest.mark.integration
def test_per_block_sums_reproduce_direct_block_nll_and_the_means() -> None:
    """float64 model: each block's summed NLL under each condition equals a direct forward pass
    of that block alone to 1e-9, and the matrix's means are those sums ÷ tokens."""
    model = cl.load_model("crane-tiny")
    model.to(torch.float64)
    langs = ["en", "vi"]
    held_out = cl.load_corpus("builtin", langs=langs, split="eval", origins=["udhr"])
    generator = torch.Generator().manual_seed(0)
    sets = LanguageNeurons(4, 1024, {
        lang: torch.stack([torch.randint(0, 4, (20,), generator=generator),
                           torch.randperm(1024, generator=generator)[:20]], 1)
        for lang in langs})  # fmt: skip
    matrix = ablation_matrix(model, held_out, sets, random_seeds=1, seq_len=64,
                             max_tokens_per_lang=320, max_batch_rows=6, progress=False)  # fmt: skip
    blocks = eval_blocks(model, held_out, langs, seq_len=64, max_tokens_per_lang=320)
    assert matrix.per_block is not None
    for b in langs:
        direct_base, direct_vi = [], []
        for tokens, scored in zip(blocks[b].tokens, blocks[b].scored, strict=True):
            with torch.no_grad():
                direct_base.append(float(-(gold_scores(model, tokens[None])[0] * scored).sum()))
                with cl.ablate(model, sets, "vi"):
                    direct_vi.append(float(-(gold_scores(model, tokens[None])[0] * scored).sum()))
        assert matrix.per_block["baseline"][b] == pytest.approx(direct_base, rel=1e-9, abs=1e-9)
        assert matrix.per_block["selected"]["vi"][b] == pytest.approx(direct_vi, rel=1e-9, abs=1e-9)
        assert matrix.per_block["tokens"][b] == blocks[b].block_tokens
        total = sum(blocks[b].block_tokens)
        assert matrix.tokens[b] == total
        assert matrix.baseline[b] == pytest.approx(math.fsum(direct_base) / total, rel=1e-9)
        assert matrix.nll["vi"][b] == pytest.approx(math.fsum(direct_vi) / total, rel=1e-9)
    assert len(matrix.per_block["tokens"]["en"]) == 5  # 320 tokens in blocks of 64
    assert matrix.intervals_unavailable() is None
