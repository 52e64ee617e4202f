"""NeuronStats: Kojima's block responses, cached scores, persistence and merging."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

import crane_lens as cl
from crane_lens.model.spec import ModelSpec
from crane_lens.stats import NeuronStats, compute_stats
from crane_lens.stats import methods as methods_module
from crane_lens.stats.kojima import average_precision

N_LAYERS, D_MLP, SEQ_LEN = 2, 3, 5


def _spec(**changes: Any) -> ModelSpec:
    fields = {"name": "toy", "architecture": "LlamaForCausalLM", "n_layers": N_LAYERS,
              "d_model": 4, "d_mlp": D_MLP, "gated": True, "dtype": "torch.float32",
              "device": "cpu", "neuron_hook": "blocks.{layer}.mlp.hook_post", "vocab_size": 10}  # fmt: skip
    return ModelSpec(**{**fields, **changes})


def _config(**changes: Any) -> dict[str, Any]:
    config = {"methods": ["kojima", "mean_activation"], "seq_len": SEQ_LEN, "target": "logit",
              "attention": "attnlrp", "gated_mlp_rule": "uniform", "objective": "nll",
              "ablation_layers": None, "seed": 0, "model_fingerprint": "m1",
              "tokenizer_sha256": "t1", "blocks_sha256": "b1"}  # fmt: skip
    return {**config, **changes}


def _stats(
    n_blocks: dict[str, int],
    kept: dict[str, list[int]] | None = None,
    seed: int = 0,
    spec: ModelSpec | None = None,
    methods: tuple[str, ...] = ("kojima", "mean_activation"),
    **config: Any,
) -> NeuronStats:
    """Hand-built results: ``n_blocks[lang]`` blocks of SEQ_LEN tokens, Kojima keeping ``kept``."""
    generator = torch.Generator().manual_seed(seed)
    stats = NeuronStats(spec or _spec(), methods, config=_config(methods=list(methods), **config),
                        versions={"crane_lens": "1", "torch": f"2.{seed}"})  # fmt: skip
    for lang, n in n_blocks.items():
        stats.n_tokens[lang] = n * (SEQ_LEN - 1)
        stats.sums[lang] = {"act_sum": torch.randn(N_LAYERS, D_MLP, generator=generator)}
        ids = torch.tensor(kept[lang]) if kept else torch.arange(n)
        # Coarse values: ties across languages, which the AP breaks by block order.
        means = torch.randint(0, 3, (len(ids), N_LAYERS, D_MLP), generator=generator).float()
        stats.add_block_means(lang, ids, means)
    return stats


def _reference_kojima(stats: NeuronStats) -> torch.Tensor:
    """The plain per-language AP over all languages' blocks in language order."""
    responses = torch.cat([stats.block_means[lang] for lang in stats.langs])
    owner = torch.cat(
        [torch.full((len(stats.block_means[x]),), i) for i, x in enumerate(stats.langs)]
    )
    return torch.stack([average_precision(responses, owner == i) for i in range(len(stats.langs))])


# -- Kojima's block responses ----------------------------------------------------------------
def test_add_block_means_orders_by_id_whatever_the_insertion_order() -> None:
    means = torch.randn(8, N_LAYERS, D_MLP)
    ids = torch.tensor([3, 9, 14, 20, 21, 40, 41, 77])
    results = []
    for parts in ([[0, 1, 2, 3, 4, 5, 6, 7]], [[5, 6, 7], [0, 1], [2, 3, 4]], [[7], [2, 0], [6, 4, 1, 5, 3]]):  # fmt: skip
        stats = NeuronStats(_spec(), ("kojima",))
        for part in parts:
            stats.add_block_means("en", ids[part], means[part])
        results.append(stats)
    for stats in results:
        assert stats.block_ids["en"].equal(ids) and stats.block_ids["en"].dtype == torch.int64
        assert stats.block_means["en"].equal(means)


def test_add_block_means_refuses_a_block_twice_and_bad_shapes() -> None:
    stats = NeuronStats(_spec(), ("kojima",))
    stats.add_block_means("en", torch.tensor([1, 5]), torch.zeros(2, N_LAYERS, D_MLP))
    with pytest.raises(cl.CraneLensError, match=r"Blocks \[5\] of 'en' were added twice"):
        stats.add_block_means("en", torch.tensor([5, 6]), torch.zeros(2, N_LAYERS, D_MLP))
    with pytest.raises(ValueError, match=r"expected \(1, 2, 3\)"):
        stats.add_block_means("en", torch.tensor([7]), torch.zeros(1, N_LAYERS, D_MLP + 1))
    assert stats.block_ids["en"].tolist() == [1, 5]  # refused additions change nothing


def test_kojima_scores_equal_the_per_language_reference() -> None:
    stats = _stats({"en": 7, "vi": 5, "zh": 6})
    expected = _reference_kojima(stats)
    torch.testing.assert_close(stats.scores("kojima"), expected, rtol=0, atol=1e-6)
    median = torch.stack([stats.block_means[x].median(dim=0).values for x in stats.langs])
    assert stats.scores("kojima_median").equal(median)


def test_scores_are_computed_once(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    expected = _stats({"en": 4, "vi": 3, "zh": 5}).scores("kojima")
    calls: list[int] = []
    real = methods_module.average_precision_by_group

    def counting(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(methods_module, "average_precision_by_group", counting)
    stats = _stats({"en": 4, "vi": 3, "zh": 5})
    first = stats.scores("kojima")
    assert len(calls) == N_LAYERS  # all languages at once, one layer at a time
    first.zero_()  # a caller's copy: editing it leaves the cache alone
    again = stats.scores("kojima")
    frame = stats.to_dataframe()
    stats.top(3, "vi", "kojima")
    assert len(calls) == N_LAYERS
    assert again.equal(expected)
    assert frame["kojima"].tolist() == again.flatten().tolist()
    # load and merge build objects with fresh caches; a new block clears the cache.
    loaded = NeuronStats.load(stats.save(tmp_path))
    assert loaded.scores("kojima").equal(expected) and len(calls) == 2 * N_LAYERS
    other = _stats({"en": 2}, seed=5, blocks_sha256="other")
    merged = stats + other
    assert not merged.scores("kojima").equal(expected) and len(calls) == 3 * N_LAYERS
    stats.add_block_means("en", torch.tensor([99]), torch.ones(1, N_LAYERS, D_MLP))
    assert not stats.scores("kojima").equal(expected) and len(calls) == 4 * N_LAYERS


def test_to_dataframe_rows_and_columns() -> None:
    stats = _stats({"en": 3, "vi": 4})
    frame = stats.to_dataframe(["mean_activation", "kojima"])
    assert list(frame.columns) == ["lang", "layer", "neuron", "mean_activation", "kojima"]
    assert len(frame) == 2 * N_LAYERS * D_MLP
    row = frame.iloc[D_MLP * N_LAYERS + D_MLP + 2]  # vi, layer 1, neuron 2
    assert (row["lang"], row["layer"], row["neuron"]) == ("vi", 1, 2)
    assert row["mean_activation"] == pytest.approx(float(stats.scores("mean_activation")[1, 1, 2]))
    assert row["kojima"] == pytest.approx(float(stats.scores("kojima")[1, 1, 2]))


# -- persistence ------------------------------------------------------------------------------
def test_save_and_load_keep_block_ids(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stats = _stats({"en": 40, "vi": 30}, kept={"en": [2, 17, 39], "vi": [0, 29]})
    assert {"en/block_ids", "vi/block_ids"} <= set(stats.tensors())
    loaded = NeuronStats.load(stats.save(tmp_path / "s"))
    assert {lang: ids.tolist() for lang, ids in loaded.block_ids.items()} == {
        "en": [2, 17, 39], "vi": [0, 29]}  # fmt: skip
    assert loaded.scores("kojima").equal(stats.scores("kojima"))
    assert loaded.config == stats.config and "block_ids" not in loaded.sums["en"]


def test_files_without_block_ids_load_as_every_block_in_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file, save_file

    folder = _stats({"en": 3, "vi": 2}).save(tmp_path / "old")
    tensors = {k: v for k, v in load_file(str(folder / "stats.safetensors")).items()
               if not k.endswith("/block_ids")}  # fmt: skip
    save_file(tensors, str(folder / "stats.safetensors"))
    meta = json.loads((folder / "stats.json").read_text())
    (folder / "stats.json").write_text(json.dumps({**meta, "format_version": 1}))
    loaded = NeuronStats.load(folder)
    assert {lang: ids.tolist() for lang, ids in loaded.block_ids.items()} == {
        "en": [0, 1, 2], "vi": [0, 1]}  # fmt: skip
    (folder / "stats.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(cl.CraneLensError, match="newer crane_lens"):
        NeuronStats.load(folder)


# -- merging ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("left", "right", "message"),
    [
        ({"spec": _spec(name="crane-tiny")}, {"spec": _spec(name="crane-tiny-chat")},
         r"different models: the model's name is 'crane-tiny' in the first and 'crane-tiny-chat'"),
        ({}, {"spec": _spec(dtype="torch.bfloat16")}, r"model's dtype is 'torch.float32' .* 'torch.bfloat16'"),
        ({}, {"spec": _spec(architecture="Qwen2ForCausalLM")}, "model's architecture"),
        ({}, {"model_fingerprint": "m2"}, r"different models: config\[\"model_fingerprint\"\] is 'm1'"),
        ({}, {"tokenizer_sha256": "t2"}, r"different tokenizers: config\[\"tokenizer_sha256\"\]"),
        ({}, {"methods": ("kojima",)}, r"different methods: methods is \['kojima', 'mean_activation'\] in the first and \['kojima'\]"),
        ({}, {"target": "logprob"}, r"config\[\"target\"\] is 'logit' in the first and 'logprob'"),
        ({}, {"attention": "cp"}, r"config\[\"attention\"\]"),
        ({}, {"objective": "logit"}, r"config\[\"objective\"\]"),
        ({}, {"seq_len": 9}, r"config\[\"seq_len\"\] is 5 in the first and 9 .* seq_len=5"),
        ({"drop": "seq_len"}, {}, r"config\[\"seq_len\"\] is missing in the first and 5 .* seq_len=5"),
        ({}, {"blocks_sha256": "b1"}, "same token blocks .* count every token twice"),
    ],
)  # fmt: skip
def test_merge_refuses_mismatches(
    left: dict[str, Any], right: dict[str, Any], message: str
) -> None:
    def build(changes: dict[str, Any], seed: int) -> NeuronStats:
        changes = dict(changes)
        spec, methods = (
            changes.pop("spec", None),
            changes.pop("methods", ("kojima", "mean_activation")),
        )
        drop = changes.pop("drop", None)
        stats = _stats({"en": 2}, seed=seed, spec=spec, methods=methods,
                       **{"blocks_sha256": f"b{seed}", **changes})  # fmt: skip
        stats.config.pop(drop, None)
        return stats

    first, second = build(left, 1), build(right, 2)
    with pytest.raises(cl.CraneLensError, match=message):
        first.merge(second)
    with pytest.raises(cl.CraneLensError):
        second.merge(first)


def test_merge_accepts_what_may_differ() -> None:
    """Devices, method order, identities only one side recorded, and the data itself."""
    a = _stats({"en": 2}, seed=1, blocks_sha256="x", langs=["en"], batch_size=4)
    b = _stats({"en": 2, "vi": 1}, seed=2, spec=_spec(device="cuda:1"),
               methods=("mean_activation", "kojima"), blocks_sha256="y", langs=["en", "vi"],
               batch_size=4)  # fmt: skip
    del b.config["model_fingerprint"], b.config["tokenizer_sha256"]
    merged = a + b
    assert merged.methods == a.methods and merged.langs == ["en", "vi"]


def test_merge_keeps_every_shards_provenance() -> None:
    a = _stats({"en": 2}, seed=1, blocks_sha256="x", batch_size=4)
    b = _stats({"en": 3, "vi": 1}, seed=2, blocks_sha256="y", batch_size=8)
    c = _stats({"vi": 2}, seed=3, blocks_sha256="z", batch_size=4)
    merged = (a + b) + c
    assert [s["config"]["blocks_sha256"] for s in merged.config["shards"]] == ["x", "y", "z"]
    assert [s["n_tokens"] for s in merged.config["shards"]] == [a.n_tokens, b.n_tokens, c.n_tokens]
    assert merged.config["shards"][1]["versions"] == b.versions
    assert merged.config["shards"][0]["config"] == a.config
    # Common settings stay; what differs (data, batch size) lives in the shards only.
    assert merged.config["seq_len"] == SEQ_LEN and merged.config["tokenizer_sha256"] == "t1"
    assert "blocks_sha256" not in merged.config and "batch_size" not in merged.config
    assert merged.versions == {"crane_lens": "1"}  # torch differs between the shards
    assert merged.n_tokens == {"en": 5 * (SEQ_LEN - 1), "vi": 3 * (SEQ_LEN - 1)}
    assert (a + (b + c)).config["shards"] == merged.config["shards"]
    with pytest.raises(cl.CraneLensError, match="same token blocks"):
        merged + _stats({"en": 1}, seed=4, blocks_sha256="y")  # b's blocks again
    json.dumps(merged.metadata())  # saved as JSON


def test_merge_shifts_block_ids_past_the_first_shards_blocks() -> None:
    a = _stats({"en": 6, "vi": 2}, kept={"en": [1, 4], "vi": [0, 1]}, seed=1, blocks_sha256="x")
    b = _stats({"en": 3, "vi": 2}, kept={"en": [0, 2], "vi": [1]}, seed=2, blocks_sha256="y")
    merged = a.merge(b)
    assert merged.block_ids["en"].tolist() == [1, 4, 6, 8]
    assert merged.block_ids["vi"].tolist() == [0, 1, 3]
    assert merged.block_means["en"].equal(torch.cat([a.block_means["en"], b.block_means["en"]]))
    torch.testing.assert_close(
        merged.scores("kojima"), _reference_kojima(merged), rtol=0, atol=1e-6
    )


def _halves_and_whole(
    n_blocks: int = 6, seq_len: int = 8
) -> tuple[list[cl.TokenBlocks], cl.TokenBlocks]:
    generator = torch.Generator().manual_seed(0)
    rows = {
        lang: torch.randint(2, 300, (n_blocks, seq_len), generator=generator)
        for lang in ("en", "vi")
    }
    for tensor in rows.values():
        tensor[:, 0] = 0  # BOS
    whole = cl.TokenBlocks(rows, seq_len=seq_len, bos_token_id=0, seed=0)
    cut = n_blocks // 2
    halves = [cl.TokenBlocks({lang: t[part] for lang, t in rows.items()}, seq_len, 0, 0)
              for part in (slice(0, cut), slice(cut, None))]  # fmt: skip
    return halves, whole


def test_merged_halves_equal_the_whole(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    """Oracle: the statistics of two disjoint halves of the blocks, merged, are those of all."""
    model = cl.load_model(tiny_checkpoints["llama"], dtype="float32")
    methods = ["crane", "attribution", "lape", "kojima", "plnd"]
    halves, whole = _halves_and_whole()
    run = lambda blocks: compute_stats(model, blocks, methods, batch_size=2, progress=False)  # noqa: E731
    merged, reference = run(halves[0]) + run(halves[1]), run(whole)
    assert merged.n_tokens == reference.n_tokens
    for lang in reference.langs:
        for name, total in reference.sums[lang].items():
            torch.testing.assert_close(merged.sums[lang][name], total, rtol=1e-4, atol=1e-5)
        assert merged.block_ids_of(lang).equal(reference.block_ids_of(lang))
        torch.testing.assert_close(merged.block_means[lang], reference.block_means[lang])
    for name in merged.statistics:
        torch.testing.assert_close(
            merged.scores(name), reference.scores(name), rtol=1e-4, atol=1e-5
        )
    assert len(merged.config["shards"]) == 2 and merged.config["seq_len"] == 8
