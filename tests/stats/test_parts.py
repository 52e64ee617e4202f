"""Per-part sums (``compute_stats(..., parts=True)``): halves and nested prefixes of each
language's blocks, accumulated in the same pass, and :meth:`NeuronStats.part`."""

from __future__ import annotations

import math

import pytest
import torch

import crane_lens as cl
from crane_lens.stats import METHODS, NeuronStats, compute_stats
from crane_lens.stats.results import FRACTIONS, MIN_FIELDS, N_PARTS, block_parts, parts_of

ALL_METHODS = list(METHODS)


def _blocks(n_blocks: int = 8, seq_len: int = 8, langs=("en", "vi")):  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(0)
    blocks = {}
    for lang in langs:
        rows = torch.randint(2, 300, (n_blocks, seq_len), generator=generator)
        rows[:, 0] = 0
        blocks[lang] = rows
    return cl.TokenBlocks(blocks, seq_len=seq_len, bos_token_id=0, seed=0)


def _keep(blocks: cl.TokenBlocks, rows: slice | torch.Tensor) -> cl.TokenBlocks:
    return cl.TokenBlocks({lang: t[rows] for lang, t in blocks.blocks.items()},
                          blocks.seq_len, blocks.bos_token_id, blocks.seed)  # fmt: skip


def _is_part_key(key: str) -> bool:
    return "/part/" in key or key.endswith(("/part_tokens", "/block_parts"))


@pytest.fixture(scope="module")
def llama(tiny_checkpoints):  # type: ignore[no-untyped-def]
    return cl.load_model(tiny_checkpoints["llama"])


@pytest.fixture(scope="module")
def every_method(llama):  # type: ignore[no-untyped-def]
    """Every method (exact ablation on layer 1 only) on 8 blocks per language, 3 per batch:
    batches straddle the parts."""
    return compute_stats(llama, _blocks(), ALL_METHODS, batch_size=3, ablation_layers=[1],
                         progress=False)  # fmt: skip


@pytest.mark.parametrize("n", [*range(1, 40), 100, 257])
def test_block_parts_make_interleaved_halves_and_nested_prefixes(n: int) -> None:
    part = block_parts(n)
    index = torch.arange(n)
    assert torch.equal(part % 2, index % 2)  # half = i % 2
    for fraction in FRACTIONS:
        inside = torch.isin(part, torch.tensor(parts_of("fraction", fraction)))
        size = math.ceil(n * fraction)
        assert size >= 1 and torch.equal(inside, index < size), fraction  # a non-empty prefix
    assert int(part.max()) < N_PARTS


def test_parts_sum_to_the_totals(every_method) -> None:  # type: ignore[no-untyped-def]
    stats = every_method
    assert stats.has_parts and stats.config["parts"] is True
    for lang in stats.langs:
        assert set(stats.part_sums[lang]) == set(stats.sums[lang])
        assert sum(stats.part_tokens[lang]) == stats.n_tokens[lang]
        for name, total in stats.sums[lang].items():
            parts = stats.part_sums[lang][name]
            assert parts.shape == (N_PARTS, *total.shape)
            if name in MIN_FIELDS:
                assert torch.equal(parts.amin(dim=0), total), name
            else:
                torch.testing.assert_close(parts.sum(dim=0), total, rtol=1e-5, atol=1e-5)
        # Kojima keeps every block here: each row's part is its block's.
        assert torch.equal(stats.block_parts[lang], block_parts(8)[stats.block_ids[lang]])
    assert stats.sums["en"]["ablation_sum"][1].abs().sum() > 0  # a real ablation was split


def test_totals_are_the_same_with_and_without_parts(llama, every_method) -> None:  # type: ignore[no-untyped-def]
    without = compute_stats(llama, _blocks(), ALL_METHODS, batch_size=3, ablation_layers=[1],
                            progress=False, parts=False)  # fmt: skip
    assert not without.has_parts and without.config["parts"] is False
    assert not any(_is_part_key(key) for key in without.tensors())
    for name in every_method.statistics:  # the same reductions: bitwise equal
        assert torch.equal(without.scores(name), every_method.scores(name)), name
    with pytest.raises(cl.CraneLensError, match=r"parts=True"):
        without.part("half", 0)


@pytest.mark.parametrize(
    ("kind", "which", "rows"),
    [("half", 0, slice(0, None, 2)), ("half", 1, slice(1, None, 2)),
     ("fraction", 1 / 4, slice(0, 2)), ("fraction", 1 / 2, slice(0, 4))],
)  # fmt: skip
def test_a_part_equals_a_run_on_its_blocks_alone(llama, every_method, kind, which, rows) -> None:  # type: ignore[no-untyped-def]
    alone = compute_stats(llama, _keep(_blocks(), rows), ALL_METHODS, batch_size=3,
                          ablation_layers=[1], progress=False)  # fmt: skip
    part = every_method.part(kind, which)
    assert part.n_tokens == alone.n_tokens and not part.has_parts
    assert part.config["subset"]["parts"] == parts_of(kind, which)
    for name in alone.statistics:  # up to float32 summation order
        torch.testing.assert_close(part.scores(name), alone.scores(name), rtol=1e-4, atol=1e-5)


def test_every_part_is_the_full_statistics(every_method) -> None:  # type: ignore[no-untyped-def]
    whole = every_method.part("fraction", 1)
    assert whole.n_tokens == every_method.n_tokens
    for name in every_method.statistics:
        assert torch.equal(whole.scores(name), every_method.scores(name)), name
    assert whole.config["subset"]["label"] == "fraction 1"


def test_bad_parts_are_refused(every_method) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="1/16, 1/8"):
        every_method.part("fraction", 0.3)
    with pytest.raises(ValueError, match="0 or 1"):
        every_method.part("half", 2)
    with pytest.raises(ValueError, match="non-empty"):
        every_method.subset([10])


def test_a_language_without_tokens_in_a_part_is_refused(llama) -> None:  # type: ignore[no-untyped-def]
    stats = compute_stats(llama, _blocks(1), ["lape"], progress=False)
    assert stats.part("fraction", 1 / 16).n_tokens == stats.n_tokens  # one block: every prefix
    with pytest.raises(cl.CraneLensError, match=r"'en' has no tokens in parts \[1, 3, 5, 7, 9\]"):
        stats.part("half", 1)


def test_save_load_and_older_folders_without_parts(every_method, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file, save_file

    folder = every_method.save(tmp_path / "s")
    loaded = NeuronStats.load(folder)
    assert loaded.has_parts and loaded.part_tokens == every_method.part_tokens
    for lang in every_method.langs:
        for name, values in every_method.part_sums[lang].items():
            assert torch.equal(loaded.part_sums[lang][name], values)
        assert torch.equal(loaded.block_parts[lang], every_method.block_parts[lang])
    half = loaded.part("half", 1)
    for name in every_method.statistics:
        assert torch.equal(half.scores(name), every_method.part("half", 1).scores(name)), name
    # A folder written before parts existed still loads; its parts are reported as missing.
    tensors = {k: v for k, v in load_file(str(folder / "stats.safetensors")).items()
               if not _is_part_key(k)}  # fmt: skip
    save_file(tensors, str(folder / "stats.safetensors"))
    old = NeuronStats.load(folder)
    assert not old.has_parts and old.part_sums == {}
    assert torch.equal(old.scores("crane"), every_method.scores("crane"))
    with pytest.raises(cl.CraneLensError, match=r"no per-part sums: recompute .*parts=True"):
        old.part("fraction", 1 / 2)


def test_merged_shards_add_their_parts(llama) -> None:  # type: ignore[no-untyped-def]
    blocks, methods = _blocks(), ["crane", "kojima", "plnd"]
    shards = [compute_stats(llama, _keep(blocks, rows), methods, batch_size=3, progress=False)
              for rows in (slice(0, 4), slice(4, 8))]  # fmt: skip
    merged = shards[0] + shards[1]
    assert merged.has_parts
    for lang in merged.langs:
        pairs = zip(shards[0].part_tokens[lang], shards[1].part_tokens[lang], strict=True)
        assert merged.part_tokens[lang] == [a + b for a, b in pairs]
        torch.testing.assert_close(merged.part_sums[lang]["rel_sum"],
                                   shards[0].part_sums[lang]["rel_sum"]
                                   + shards[1].part_sums[lang]["rel_sum"])  # fmt: skip
        assert torch.equal(merged.part_sums[lang]["abs_mean_min"],
                           torch.minimum(shards[0].part_sums[lang]["abs_mean_min"],
                                         shards[1].part_sums[lang]["abs_mean_min"]))  # fmt: skip
        # Half 0 of the merge: each shard's even blocks (ids shifted past the first shard's).
        assert merged.part("half", 0).block_ids[lang].tolist() == [0, 2, 4, 6]
    # A shard without parts: the merge has none.
    plain = compute_stats(llama, _keep(blocks, slice(4, 8)), methods, batch_size=3,
                          progress=False, parts=False)  # fmt: skip
    assert not (shards[0] + plain).has_parts


def test_an_output_dir_without_parts_says_how_to_reuse_it(llama, tmp_path) -> None:  # type: ignore[no-untyped-def]
    compute_stats(llama, _blocks(2), ["lape"], output_dir=tmp_path, progress=False, parts=False)
    with pytest.raises(cl.CraneLensError, match=r"parts differ.*pass parts=False to reuse"):
        compute_stats(llama, _blocks(2), ["lape"], output_dir=tmp_path, progress=False)
    # A folder from before parts existed (no "parts" in its config) counts as parts=False.
    stats = NeuronStats.load(tmp_path)
    del stats.config["parts"]
    stats.save(tmp_path)
    again = compute_stats(llama, _blocks(2), ["lape"], output_dir=tmp_path, progress=False,
                          parts=False)  # fmt: skip
    assert "parts" not in again.config
