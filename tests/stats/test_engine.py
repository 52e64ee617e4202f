"""The streaming engine: exactness oracles, streaming/merging/resuming, every architecture."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import crane_lens as cl
from crane_lens.stats import METHODS, NeuronStats, compute_stats
from crane_lens.stats import engine as engine_module
from tests.stats.interrupt import interrupt_after, record_items

ALL_METHODS = list(METHODS)


def _blocks(n_blocks: int = 6, seq_len: int = 10, vocab: int = 300, langs=("en", "vi")):  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(0)
    blocks = {}
    for lang in langs:
        rows = torch.randint(2, vocab, (n_blocks, seq_len), generator=generator)
        rows[:, 0] = 0
        blocks[lang] = rows
    return cl.TokenBlocks(blocks, seq_len=seq_len, bos_token_id=0, seed=0)


@pytest.fixture(scope="module")
def linear_readout_model():  # type: ignore[no-untyped-def]
    """One layer, no norms: the gold logit is exactly linear in every MLP neuron."""
    from transformer_lens import TransformerBridge, TransformerBridgeConfig

    cfg = TransformerBridgeConfig(d_model=16, d_head=4, n_heads=4, n_layers=1, n_ctx=16,
                                  d_vocab=40, d_mlp=24, act_fn="gelu", normalization_type=None,
                                  seed=0)  # fmt: skip
    return TransformerBridge.boot_native(cfg)


def test_attribution_equals_exact_ablation_on_a_linear_readout(linear_readout_model) -> None:  # type: ignore[no-untyped-def]
    blocks = _blocks(4, 8, vocab=40)
    stats = compute_stats(linear_readout_model, blocks, ["attribution", "ablation"],
                          objective="logit", batch_size=2, progress=False)  # fmt: skip
    exact, estimate = stats.scores("ablation"), stats.scores("attribution")
    assert exact.abs().max() > 1e-2  # real effects, not zeros
    torch.testing.assert_close(estimate, exact, atol=1e-5, rtol=1e-4)


def test_attribution_is_only_first_order_for_nll(linear_readout_model) -> None:  # type: ignore[no-untyped-def]
    """With the NLL (non-linear in the logits) the estimate is close, not exact."""
    stats = compute_stats(linear_readout_model, _blocks(4, 8, vocab=40),
                          ["attribution", "ablation"], batch_size=2, progress=False)  # fmt: skip
    exact, estimate = stats.scores("ablation").flatten(), stats.scores("attribution").flatten()
    assert not torch.allclose(exact, estimate, atol=1e-6)
    assert torch.corrcoef(torch.stack([exact, estimate]))[0, 1] > 0.9


def _assert_same(a: NeuronStats, b: NeuronStats, exact: bool) -> None:
    assert a.n_tokens == b.n_tokens
    for name in a.statistics:
        if exact:
            assert torch.equal(a.scores(name), b.scores(name)), name
        else:
            torch.testing.assert_close(a.scores(name), b.scores(name), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def llama(tiny_checkpoints):  # type: ignore[no-untyped-def]
    return cl.load_model(tiny_checkpoints["llama"])


def test_streaming_in_batches_equals_one_shot(llama) -> None:  # type: ignore[no-untyped-def]
    blocks = _blocks()
    streamed = compute_stats(llama, blocks, ALL_METHODS, batch_size=1, progress=False)
    one_shot = compute_stats(llama, blocks, ALL_METHODS, batch_size=6, progress=False)
    _assert_same(streamed, one_shot, exact=False)


def test_two_merged_shards_equal_the_whole(llama) -> None:  # type: ignore[no-untyped-def]
    blocks = _blocks()
    halves = [cl.TokenBlocks({lang: t[part] for lang, t in blocks.blocks.items()}, 10, 0, 0)
              for part in (slice(0, 3), slice(3, 6))]  # fmt: skip
    whole = compute_stats(llama, blocks, ALL_METHODS, batch_size=3, progress=False)
    shards = [compute_stats(llama, h, ALL_METHODS, batch_size=3, progress=False) for h in halves]
    merged = shards[0] + shards[1]
    _assert_same(merged, whole, exact=False)
    # Kojima keeps every block: the merged shards hold exactly the whole run's blocks.
    assert torch.equal(merged.block_means["en"], whole.block_means["en"])


def test_interrupted_run_resumes_to_the_uninterrupted_result(llama, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    blocks = _blocks()
    methods = ["crane", "attribution", "ablation", "kojima", "plnd"]
    reference = compute_stats(llama, blocks, methods, batch_size=2, progress=False)

    calls = interrupt_after(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        compute_stats(llama, blocks, methods, batch_size=2, output_dir=tmp_path,
                      checkpoint_every=2, progress=False)  # fmt: skip
    assert (tmp_path / "checkpoint.json").is_file() and not (tmp_path / "stats.json").exists()
    resumed_items = record_items(monkeypatch)
    resumed = compute_stats(llama, blocks, methods, batch_size=2, output_dir=tmp_path,
                            checkpoint_every=2, progress=False)  # fmt: skip
    assert resumed_items and resumed_items[0] == calls[4]  # item 5 was lost, items 1–4 were not
    _assert_same(resumed, reference, exact=True)
    # The per-part sums (set stability) resume exactly too.
    assert resumed.part_tokens == reference.part_tokens
    for lang in reference.langs:
        for name, values in reference.part_sums[lang].items():
            assert torch.equal(resumed.part_sums[lang][name], values), name
        assert torch.equal(resumed.block_parts[lang], reference.block_parts[lang])
    assert not (tmp_path / "checkpoint.json").exists()
    # Re-running a finished run loads it; the folder reloads through the API too.
    _assert_same(NeuronStats.load(tmp_path), reference, exact=True)
    again = compute_stats(llama, blocks, methods, batch_size=2, output_dir=tmp_path, progress=False)
    _assert_same(again, reference, exact=True)


def test_output_dir_of_another_run_is_refused(llama, tmp_path) -> None:  # type: ignore[no-untyped-def]
    compute_stats(llama, _blocks(), ["lape"], output_dir=tmp_path, progress=False)
    # the message names what differs (here: the methods)
    with pytest.raises(cl.CraneLensError, match=r"different run \(methods differ"):
        compute_stats(llama, _blocks(), ["crane"], output_dir=tmp_path, progress=False)


def test_save_load_top_and_dataframe(llama, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stats = compute_stats(llama, _blocks(), ["crane", "lape"], progress=False)
    loaded = NeuronStats.load(stats.save(tmp_path / "s"))
    _assert_same(loaded, stats, exact=True)
    assert loaded.config["blocks_sha256"] == stats.config["blocks_sha256"]
    assert set(loaded.versions) >= {"crane_lens", "transformer_lens", "transformers", "torch"}
    top = loaded.top(5, "vi")
    scores = loaded.scores("crane")[1].flatten()
    assert list(top["score"]) == sorted(scores.tolist(), reverse=True)[:5]
    layer, neuron = int(top["layer"][0]), int(top["neuron"][0])
    assert float(loaded.scores("crane")[1, layer, neuron]) == top["score"][0]
    frame = loaded.to_dataframe()
    assert len(frame) == 2 * loaded.spec.n_neurons
    assert {"crane", "crane_abs", "activation_probability"} <= set(frame.columns)


def test_bad_inputs_have_clear_errors(llama, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="choose from"):
        compute_stats(llama, _blocks(), ["lrp"], progress=False)
    with pytest.raises(cl.MissingLanguageError, match="cover"):
        compute_stats(llama, _blocks(), ["crane"], langs=["zh"], progress=False)
    with pytest.raises(cl.UnknownLanguageError):
        compute_stats(llama, _blocks(), ["crane"], langs=["klingon"], progress=False)
    with pytest.raises(ValueError, match="out of range"):
        compute_stats(llama, _blocks(), ["ablation"], ablation_layers=[7], progress=False)
    stats = compute_stats(llama, _blocks(), ["lape"], progress=False)
    with pytest.raises(KeyError, match="did not compute"):
        stats.scores("crane")
    with pytest.raises(cl.UnknownLanguageError, match="cover"):
        stats.top(3, "zh")
    with pytest.raises(cl.CraneLensError, match="no neuron statistics"):
        NeuronStats.load(tmp_path)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral", "gemma2", "gpt2", "bloom"])
def test_every_method_runs_on_every_architecture(tiny_checkpoints, arch) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints[arch])
    stats = compute_stats(model, _blocks(4, 8), ALL_METHODS, batch_size=2, progress=False)
    spec = cl.get_spec(model)
    for name in stats.statistics:
        values = stats.scores(name)
        assert values.shape == (2, spec.n_layers, spec.d_mlp), name
        assert torch.isfinite(values).all(), name
    probs = stats.scores("activation_probability")
    assert ((probs >= 0) & (probs <= 1)).all()
    # Zero-ablation attribution tracks the exact effect on every architecture.
    exact, estimate = stats.scores("ablation").flatten(), stats.scores("attribution").flatten()
    assert torch.corrcoef(torch.stack([exact, estimate]))[0, 1] > 0.8


def test_bf16_model_accumulates_in_float32(tiny_checkpoints, llama) -> None:  # type: ignore[no-untyped-def]
    half = cl.load_model(tiny_checkpoints["llama"], dtype="bf16")
    methods = ["crane", "attribution", "lape"]
    low = compute_stats(half, _blocks(), methods, progress=False)
    full = compute_stats(llama, _blocks(), methods, progress=False)
    for name in ("crane", "attribution", "activation_probability"):
        assert low.scores(name).dtype == torch.float32
        rho = torch.corrcoef(torch.stack([low.scores(name).flatten(), full.scores(name).flatten()]))
        assert rho[0, 1] > 0.95, name


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2", "bloom"])
def test_chunked_head_equals_full_logits(tiny_checkpoints, arch, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The runner applies the unembedding itself, in vocabulary chunks (soft-capped on Gemma 2,
    biased on BLOOM...): CRANE (gold logit) and attribution (gradient of the log-probability
    through the chunked log-normaliser) must equal the model's own full logits."""
    from crane_lens.model import runner

    model = cl.load_model(tiny_checkpoints[arch])
    blocks = _blocks(4, 8)
    assert runner._head(model, blocks.blocks["en"]).exact  # the chunked path is taken
    kwargs = {"batch_size": 2, "progress": False}
    fast = compute_stats(model, blocks, ["crane", "attribution"], **kwargs)  # type: ignore[arg-type]
    with monkeypatch.context() as patch:  # 7 vocabulary entries per chunk, forward and backward
        patch.setattr(runner, "_chunk_size", lambda n_rows, vocab, chunk: 7)
        tiny_chunks = compute_stats(model, blocks, ["crane", "attribution"], **kwargs)  # type: ignore[arg-type]
    real_head = runner._head

    def full_logits(model, probe):  # type: ignore[no-untyped-def]
        return dataclasses.replace(real_head(model, probe), exact=False)

    monkeypatch.setattr(runner, "_head", full_logits)
    full = compute_stats(model, blocks, ["crane", "attribution"], **kwargs)  # type: ignore[arg-type]
    for name in ("crane", "attribution"):
        for other in (tiny_chunks, full):
            torch.testing.assert_close(fast.scores(name), other.scores(name), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_one_shared_forward_equals_separate_passes(tiny_checkpoints, arch) -> None:  # type: ignore[no-untyped-def]
    """crane + attribution share one forward pass (LRP and ordinary gradient paths selected per
    backward pass); each must equal its own pass alone, and the activation sums too."""
    model = cl.load_model(tiny_checkpoints[arch])
    blocks = _blocks(4, 8)
    both = compute_stats(
        model, blocks, ["crane", "attribution", "grad_act", "lape"], progress=False
    )
    crane = compute_stats(model, blocks, ["crane"], progress=False)
    grads = compute_stats(model, blocks, ["attribution", "grad_act"], progress=False)
    acts = compute_stats(model, blocks, ["lape"], progress=False)
    for name, alone in [("crane", crane), ("crane_abs", crane), ("attribution", grads),
                        ("attribution_mean", grads), ("grad_act", grads),
                        ("activation_probability", acts)]:  # fmt: skip
        torch.testing.assert_close(both.scores(name), alone.scores(name), rtol=1e-5, atol=1e-7)


def test_a_crash_between_the_checkpoint_files_does_not_count_twice(
    llama, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The tensor file is replaced before the JSON marker; killed in between, the marker still
    names the older checkpoint. The tensor file carries its own count, so the resumed run
    neither repeats nor loses work."""
    blocks = _blocks()
    methods = ["crane", "lape", "kojima"]
    reference = compute_stats(llama, blocks, methods, batch_size=2, progress=False)
    real_write, writes = engine_module.write_json, []

    def die_on_second_marker(path, data):  # type: ignore[no-untyped-def]
        writes.append(path)
        if len(writes) == 2:
            raise KeyboardInterrupt
        real_write(path, data)

    monkeypatch.setattr(engine_module, "write_json", die_on_second_marker)
    with pytest.raises(KeyboardInterrupt):
        compute_stats(llama, blocks, methods, batch_size=2, output_dir=tmp_path,
                      checkpoint_every=2, progress=False)  # fmt: skip
    monkeypatch.setattr(engine_module, "write_json", real_write)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["done"] == 2  # stale marker
    resumed = compute_stats(llama, blocks, methods, batch_size=2, output_dir=tmp_path,
                            checkpoint_every=2, progress=False)  # fmt: skip
    _assert_same(resumed, reference, exact=True)


def test_massive_bos_activations_do_not_leak_into_the_sums(llama) -> None:  # type: ignore[no-untyped-def]
    """Activation statistics exclude BOS. With a BOS activation 10⁴ times the others (as in
    models with attention sinks), the sums must still equal float64 sums over positions 1…T−1."""
    blocks = _blocks(4, 8)
    name = "blocks.0.mlp.hook_post"

    def massive_bos(x, hook):  # type: ignore[no-untyped-def]
        x = x.clone()
        x[:, 0] = 3000.0
        return x

    with llama.hooks(fwd_hooks=[(name, massive_bos)]):
        stats = compute_stats(llama, blocks, ["mean_activation", "plnd"], progress=False)
        for index, lang in enumerate(stats.langs):
            _, cache = llama.run_with_cache(blocks.blocks[lang], names_filter=[name])
            h = cache[name][:, 1:].double()
            torch.testing.assert_close(stats.scores("mean_activation")[index, 0],
                                       h.mean(dim=(0, 1)).float(), rtol=1e-5, atol=1e-7)  # fmt: skip
            plnd_min = h.abs().mean(dim=1).min(dim=0).values * stats.w_down_norm[0].double()  # type: ignore[index]
            torch.testing.assert_close(stats.scores("plnd_min")[index, 0], plnd_min.float(),
                                       rtol=1e-5, atol=1e-7)  # fmt: skip


def test_tokenizer_fingerprint_is_cached_and_follows_changes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Hashed once per tokenizer (it costs a second on a 262 k vocabulary), again after a change."""
    from transformers import AutoTokenizer

    from crane_lens.model.loader import builtin_model_dir
    from crane_lens.stats import engine

    tokenizer = AutoTokenizer.from_pretrained(builtin_model_dir("crane-tiny"))
    first = engine.tokenizer_fingerprint(tokenizer)
    calls: list[int] = []
    real = type(tokenizer).get_vocab
    type(tokenizer).get_vocab = lambda self: calls.append(1) or real(self)  # type: ignore[method-assign]
    try:
        assert engine.tokenizer_fingerprint(tokenizer) == first and calls == []
        tokenizer.add_tokens(["<new-token>"])
        changed = engine.tokenizer_fingerprint(tokenizer)
    finally:
        type(tokenizer).get_vocab = real  # type: ignore[method-assign]
    assert calls == [1] and changed != first
    fresh = AutoTokenizer.from_pretrained(builtin_model_dir("crane-tiny"))
    assert engine.tokenizer_fingerprint(fresh) == first  # the same vocabulary, the same hash
