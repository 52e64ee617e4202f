"""Top contexts: equal to a brute-force scan, and the same however the text is split."""

from __future__ import annotations

import pytest
import torch

import crane_lens as cl
from crane_lens.stats import NeuronStats, compute_stats
from crane_lens.stats.top_contexts import batch_top, merge_top, ordered
from tests.stats.interrupt import interrupt_after, record_items
from tests.stats.test_engine import _blocks


def _brute_force(
    values: torch.Tensor, k: int, magnitude: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``values [block, pos, layer, neuron]`` → top ``k`` per (layer, neuron) by a plain
    Python scan: sort each neuron's (value, index) pairs by value (or |value|), BOS excluded."""
    n_blocks, seq_len, n_layers, n = values.shape
    top_v = torch.empty(n_layers, k, n)
    top_i = torch.empty(n_layers, k, n, dtype=torch.long)
    for layer in range(n_layers):
        column = values[:, 1:, layer].reshape(-1, n)
        index = (torch.arange(n_blocks)[:, None] * seq_len + torch.arange(1, seq_len)).reshape(-1)
        for neuron in range(n):
            pairs = sorted(zip(column[:, neuron].tolist(), index.tolist(), strict=True),
                           key=lambda p: (-abs(p[0]) if magnitude else -p[0], p[1]))[:k]  # fmt: skip
            top_v[layer, :, neuron] = torch.tensor([v for v, _ in pairs])
            top_i[layer, :, neuron] = torch.tensor([i for _, i in pairs])
    return top_v, top_i


def test_ordered_breaks_ties_towards_the_earlier_token_in_any_merge_order() -> None:
    generator = torch.Generator().manual_seed(0)
    values = torch.randint(0, 4, (40, 3), generator=generator).float()  # many ties
    index = torch.randperm(40, generator=generator)[:, None].expand(40, 3).clone()
    whole = ordered(values, index, 5)
    chunks = [(values[s : s + 8], index[s : s + 8]) for s in range(0, 40, 8)]
    for order in ([0, 1, 2, 3, 4], [4, 2, 0, 3, 1]):
        merged = ordered(*chunks[order[0]], 5)
        for c in order[1:]:
            merged = merge_top(merged, chunks[c], 5)
        assert torch.equal(merged[0], whole[0]) and torch.equal(merged[1], whole[1])


def test_activations_rank_by_magnitude_and_empty_slots_rank_last() -> None:
    x = torch.tensor([[[0.0], [-3.0], [2.0]]])  # one block: BOS, then -3 and 2
    values, index = batch_top(x, first_block=0, seq_len=3, k=2, magnitude=True)
    assert values[:, 0].tolist() == [-3.0, 2.0] and index[:, 0].tolist() == [1, 2]
    # Fewer tokens than k: the empty slots (value -inf, index -1) stay behind real tokens.
    from crane_lens.stats.top_contexts import empty_top

    merged = merge_top(empty_top(4, 1), (values, index), 4, magnitude=True)
    assert merged[0][:2, 0].tolist() == [-3.0, 2.0] and merged[1][2:, 0].tolist() == [-1, -1]


def test_batch_top_skips_bos_and_indexes_blocks_and_positions() -> None:
    x = torch.zeros(2, 4, 1)
    x[:, 0] = 100.0  # BOS: never a context
    x[1, 3, 0] = 5.0
    x[0, 2, 0] = 7.0
    values, index = batch_top(x, first_block=10, seq_len=4, k=2)
    assert values[:, 0].tolist() == [7.0, 5.0]
    assert index[:, 0].tolist() == [10 * 4 + 2, 11 * 4 + 3]


@pytest.fixture(scope="module")
def llama(tiny_checkpoints):  # type: ignore[no-untyped-def]
    return cl.load_model(tiny_checkpoints["llama"])


def _assert_same_top(a: NeuronStats, b: NeuronStats) -> None:
    assert a.top_contexts.keys() == b.top_contexts.keys()
    for lang, kinds in a.top_contexts.items():
        assert kinds.keys() == b.top_contexts[lang].keys()
        for kind, (values, index) in kinds.items():
            assert torch.equal(values, b.top_contexts[lang][kind][0]), (lang, kind)
            assert torch.equal(index, b.top_contexts[lang][kind][1]), (lang, kind)


def test_two_merged_shards_equal_one_pass(llama) -> None:  # type: ignore[no-untyped-def]
    blocks = _blocks()
    halves = [cl.TokenBlocks({lang: t[part] for lang, t in blocks.blocks.items()}, 10, 0, 0)
              for part in (slice(0, 3), slice(3, 6))]  # fmt: skip
    whole = compute_stats(llama, blocks, ["crane", "lape"], batch_size=3, top_contexts=4,
                          progress=False)  # fmt: skip
    shards = [compute_stats(llama, h, ["crane", "lape"], batch_size=3, top_contexts=4,
                            progress=False) for h in halves]  # fmt: skip
    assert set(whole.top_contexts["en"]) == {"activation", "relevance"}
    _assert_same_top(shards[0] + shards[1], whole)
    # Shard 1's blocks count after shard 0's: some of the top tokens come from each.
    blocks_seen = set((whole.top_contexts["en"]["activation"][1] // 10).flatten().tolist())
    assert blocks_seen & {0, 1, 2} and blocks_seen & {3, 4, 5}


def test_an_interrupted_run_resumes_to_the_same_top_contexts(llama, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    blocks = _blocks()
    reference = compute_stats(llama, blocks, ["crane"], batch_size=2, top_contexts=3,
                              progress=False)  # fmt: skip
    interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        compute_stats(llama, blocks, ["crane"], batch_size=2, top_contexts=3,
                      output_dir=tmp_path, checkpoint_every=2, progress=False)  # fmt: skip
    record_items(monkeypatch)
    resumed = compute_stats(llama, blocks, ["crane"], batch_size=2, top_contexts=3,
                            output_dir=tmp_path, checkpoint_every=2, progress=False)  # fmt: skip
    _assert_same_top(resumed, reference)
    _assert_same_top(NeuronStats.load(tmp_path), reference)


def test_statistics_without_top_contexts_stay_readable_and_resumable(llama, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Folders written before top contexts existed continue (their config lacks the key)."""
    import json

    blocks = _blocks()
    compute_stats(llama, blocks, ["lape"], batch_size=3, output_dir=tmp_path, progress=False)
    meta = json.loads((tmp_path / "stats.json").read_text())
    del meta["config"]["top_contexts"]
    (tmp_path / "stats.json").write_text(json.dumps(meta))
    again = compute_stats(llama, blocks, ["lape"], batch_size=3, output_dir=tmp_path,
                          progress=False)  # fmt: skip
    assert again.top_contexts == {}
    with pytest.raises(cl.CraneLensError, match="top_contexts=k"):
        again.contexts(0, 1)


@pytest.mark.parametrize("k", [-1, 33, 2.5, True])
def test_a_bad_k_is_refused_before_any_work(llama, k) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="top_contexts must be an integer from 0"):
        compute_stats(llama, _blocks(), ["lape"], top_contexts=k, progress=False)


@pytest.mark.integration
def test_top_contexts_equal_a_brute_force_scan_on_crane_tiny() -> None:
    """Every neuron's top activations and top CRANE relevances (values and positions) equal a
    scan of every token's activation (a forward pass) and relevance (``explain``, which
    keeps the relevance per token) over the same blocks."""
    model = cl.load_model("crane-tiny")
    corpus = cl.load_corpus("builtin", langs=["en", "vi"], split="eval")
    blocks = cl.make_token_blocks(corpus, model.tokenizer, seq_len=32, max_tokens_per_lang=6 * 31)
    stats = compute_stats(model, blocks, ["crane"], batch_size=1, top_contexts=5, progress=False)
    for lang in ("en", "vi"):
        acts, rels = [], []
        for row in blocks.blocks[lang]:
            found = cl.explain(model, row)
            assert found.tokens.tolist() == row.tolist()  # the block as is, BOS included
            acts.append(found.activations)
            rels.append(found.relevance)
        for kind, per_token in (("activation", acts), ("relevance", rels)):
            magnitude = kind == "activation"
            expected_v, expected_i = _brute_force(torch.stack(per_token), 5, magnitude)
            values, index = stats.top_contexts[lang][kind]
            torch.testing.assert_close(values, expected_v, rtol=1e-5, atol=1e-6)
            if magnitude:  # signed values kept: gated MLPs give both signs
                assert (values < 0).any() and (values > 0).any()
            # Positions: the same tokens wherever the ranks are not tied within rounding.
            key = expected_v.abs() if magnitude else expected_v
            gaps = (key[:, :-1] - key[:, 1:]).abs()
            clear = torch.cat([gaps[:, :1], torch.minimum(gaps[:, 1:], gaps[:, :-1]),
                               gaps[:, -1:]], dim=1) > 1e-4  # fmt: skip
            assert clear.float().mean() > 0.9, kind
            assert torch.equal(index[clear], expected_i[clear]), (lang, kind)
    frame = stats.contexts(2, 7, "relevance", langs=["vi"])
    assert (
        frame["block"].tolist()
        == (stats.top_contexts["vi"]["relevance"][1][2, :, 7] // 32).tolist()
    )
