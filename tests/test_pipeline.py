"""The main job end to end: CLI, results folder, reload, and resumption after a hard kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import crane_lens as cl
from crane_lens.cli import main
from crane_lens.pipeline import RunResult

pytestmark = pytest.mark.integration
# Small enough for a test, large enough that the run takes several seconds per stage.
ARGS = ["run", "--max-tokens", "1024", "--eval-tokens", "768", "--random-seeds", "2",
        "--batch-size", "4", "-q"]  # fmt: skip


def _assert_same_results(a: Path, b: Path) -> None:
    first, second = RunResult.load(a), RunResult.load(b)
    assert first.config == second.config
    for method in first.config.methods:
        assert first.neurons[method].to_dict() == second.neurons[method].to_dict()
        assert first.matrices[method].to_dict() == second.matrices[method].to_dict()
    for name, tensor in first.stats.tensors().items():
        torch.testing.assert_close(second.stats.tensors()[name], tensor, rtol=0, atol=0)

    def summary(folder: Path) -> str:  # its heading names the folder (--name): not a result
        text = (folder / "summary.md").read_text().replace(str(folder), "")
        return text.replace(f"# crane-lens run: {folder.name}\n", "# crane-lens run: …\n", 1)

    assert summary(a) == summary(b)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main([*ARGS, "--out", str(out), "--name", "run"]) == 0
    return out / "run"


def test_run_writes_a_folder_that_reloads(uninterrupted: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    result = RunResult.load(uninterrupted)
    assert result.config.langs == ["en", "zh", "vi"] and result.config.methods == ["crane", "lape"]
    for name in ("run_config.json", "summary.md", "selectivity.csv", "jaccard.csv",
                 "relevance_share.csv", "neurons/crane.json", "neurons/lape.lape.pt",
                 "ablation/crane/delta.csv", "stats/stats.safetensors"):  # fmt: skip
        assert (uninterrupted / name).is_file(), name
    assert not list(uninterrupted.rglob("*checkpoint*"))  # finished runs keep no checkpoints
    lape = cl.LanguageNeurons.from_lape(uninterrupted / "neurons/lape.lape.pt", result.config.langs,
                                        result.stats.spec)  # fmt: skip
    assert all(torch.equal(lape.mask(x), result.neurons["lape"].mask(x)) for x in lape.langs)
    # Re-running the finished command recomputes nothing and prints the same summary.
    assert main([*ARGS, "--out", str(uninterrupted.parent), "--name", "run"]) == 0
    out = capsys.readouterr().out
    assert "## Selectivity" in out and "| crane    | zh " in out


def test_a_run_killed_midway_resumes_to_the_same_results(uninterrupted: Path, tmp_path: Path) -> None:  # fmt: skip
    command = [
        sys.executable,
        "-m",
        "crane_lens.cli",
        *ARGS,
        "--out",
        str(tmp_path),
        "--name",
        "run",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    marker = tmp_path / "run" / "ablation" / "crane" / "ablation_checkpoint.json"
    deadline = time.monotonic() + 600
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed midway"
    with pytest.raises(cl.CraneLensError, match="no complete crane-lens run"):
        RunResult.load(tmp_path / "run")
    assert main([*ARGS, "--out", str(tmp_path), "--name", "run"]) == 0
    _assert_same_results(uninterrupted, tmp_path / "run")


def test_interrupt_inside_the_statistics_stage_resumes(uninterrupted: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    from crane_lens.stats import engine

    real, calls = engine._Engine.run, []

    def crash_after_five(self, item):  # type: ignore[no-untyped-def]
        calls.append(item)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(self, item)

    monkeypatch.setattr(engine._Engine, "run", crash_after_five)
    capsys.readouterr()
    # Ctrl-C: one line saying what is saved and the command that continues, exit code 130.
    assert main([*ARGS, "--out", str(tmp_path), "--name", "run"]) == 130
    assert capsys.readouterr().err == (
        f"crane-lens: interrupted; saved in {tmp_path / 'run'}: part of the statistics "
        f"(checkpoint). Continue with: crane-lens {' '.join(ARGS)} --out {tmp_path} --name run\n"
    )
    assert (tmp_path / "run" / "stats" / "checkpoint.safetensors").is_file()
    monkeypatch.setattr(engine._Engine, "run", real)
    assert main([*ARGS, "--out", str(tmp_path), "--name", "run"]) == 0
    _assert_same_results(uninterrupted, tmp_path / "run")


def test_a_folder_of_other_settings_is_never_overwritten(uninterrupted: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    before = (uninterrupted / "run_config.json").read_text()
    code = main(
        [*ARGS[:-1], "--budget", "0.02", "--out", str(uninterrupted.parent), "--name", "run"]
    )
    assert code == 2
    assert "holds a run with other settings (budget differ)" in capsys.readouterr().err
    assert (uninterrupted / "run_config.json").read_text() == before
    assert main(["run", "--methods", "crane,magic"]) == 2
    assert "Unknown selection methods ['magic']" in capsys.readouterr().err


def test_stats_from_reuses_stage_one_exactly(uninterrupted: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    """A new budget and mode on the statistics of a finished run: stage 1 is copied, not
    recomputed, and every later stage equals a run that computed it afresh."""
    import crane_lens.stats.engine as engine

    new = ["--budget", "0.02", "--mode", "mean", "--eval-batch-size", "3"]
    assert main([*ARGS, *new, "--out", str(tmp_path), "--name", "fresh"]) == 0
    calls: list[int] = []
    original = engine._Engine.run
    monkeypatch.setattr(engine._Engine, "run", lambda self, item: calls.append(1) or original(self, item))  # fmt: skip
    assert main([*ARGS, *new, "--out", str(tmp_path), "--name", "reused",
                 "--stats-from", str(uninterrupted)]) == 0  # fmt: skip
    assert calls == []  # no statistics batch ran
    _assert_same_results(tmp_path / "fresh", tmp_path / "reused")
    capsys.readouterr()
    # Statistics of other settings are refused before anything is written.
    assert main([*ARGS, "--max-tokens", "2048", "--out", str(tmp_path), "--name", "other",
                 "--stats-from", str(uninterrupted)]) == 2  # fmt: skip
    assert "max_tokens_per_lang" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    assert main([*ARGS, "--out", str(tmp_path), "--name", "none", "--stats-from", str(tmp_path)]) == 2  # fmt: skip
    assert "no finished statistics" in capsys.readouterr().err
    # Its own folder, replaced with --overwrite, would lose the statistics first: refused.
    assert main([*ARGS, *new, "--out", str(uninterrupted.parent), "--name", uninterrupted.name,
                 "--overwrite", "--stats-from", str(uninterrupted)]) == 2  # fmt: skip
    assert "another --name" in capsys.readouterr().err
    assert (uninterrupted / "stats" / "stats.json").is_file()


def test_eval_rows_are_a_memory_knob() -> None:
    from crane_lens.pipeline import RunConfig

    assert RunConfig().eval_rows() == 8  # no vocabulary term: logits are never materialised
    assert RunConfig(eval_batch_size=2).eval_rows() == 2
    # A memory knob only: resuming with another value is the same run.
    assert RunConfig(eval_batch_size=2).comparable() == RunConfig().comparable()
    with pytest.raises(
        ValueError, match=r"eval_batch_size \(--eval-batch-size\) must be a positive"
    ):
        RunConfig(eval_batch_size=0)


def test_scale_mode_and_the_published_lape_budget(uninterrupted: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    """--mode scale --factor 0 is zero ablation exactly; --lape-top-rate 0.01 keeps LAPE's
    published 1 % of all neurons in total, and the summary says which LAPE budget was used."""
    zero = RunResult.load(uninterrupted)
    assert (
        "LAPE budget: mean set size 4" in (uninterrupted / "summary.md").read_text()
        and "per language, matched to k = 41 (1 % per language)"
        in (uninterrupted / "summary.md").read_text()
    )
    reuse = ["--out", str(tmp_path), "--stats-from", str(uninterrupted)]
    assert main([*ARGS, "--mode", "scale", "--factor", "0", *reuse, "--name", "scale0"]) == 0
    scaled = RunResult.load(tmp_path / "scale0")
    for method in ("crane", "lape"):
        assert scaled.matrices[method].config["mode"] == "scale"
        assert scaled.matrices[method].delta().equals(zero.matrices[method].delta())
    assert main([*ARGS, "--mode", "scale", "--factor", "0.5", "--lape-top-rate", "0.01", *reuse,
                 "--name", "half"]) == 0  # fmt: skip
    half = RunResult.load(tmp_path / "half")
    assert half.config.factor == 0.5 and half.matrices["crane"].config["factor"] == 0.5
    own_half = np.diag(half.matrices["crane"].delta().to_numpy())
    own_zero = np.diag(zero.matrices["crane"].delta().to_numpy())
    assert (own_half < own_zero).all()  # the same sets, halved: a milder edit than zeroing
    lape = half.neurons["lape"]
    assert lape.config["top_rate"] == 0.01
    kept = torch.stack([lape.mask(lang) for lang in lape.langs]).any(0).sum()
    assert 0 < int(kept) <= round(0.01 * 4096)  # 41 in total, shared out among the languages
    assert (
        "LAPE budget: top_rate 0.01 in total, LAPE's own budget (the published recipe's budget; "
        "41 of the 4096" in capsys.readouterr().out
    )


def test_a_run_records_what_it_computed_on(uninterrupted: Path) -> None:
    """The device and dtype used (not the option's words) reach run_config.json and the report."""
    result = RunResult.load(uninterrupted)
    assert result.resolved == {
        "device": "cpu",
        "dtype": "float32",
        "dtype_choice": "float32 (auto: the checkpoint's, on the CPU)",
    }
    page = (uninterrupted / "report.html").read_text(encoding="utf-8")
    assert "cpu, float32 (auto: the checkpoint" in page
    assert "default (CUDA when available)" not in page


def test_auto_continues_in_the_dtype_a_run_started_in(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A run begun in bfloat16 (say on a GPU) and continued with --dtype auto elsewhere keeps
    bfloat16 (its statistics refuse to mix dtypes); another explicit dtype is another run; a
    folder saved before "auto" existed (dtype null: the checkpoint's) says which --dtype
    continues it."""
    import json
    from dataclasses import asdict

    from crane_lens.pipeline import RunConfig

    class Stop(Exception):
        pass

    asked: list[object] = []

    def fake_load(name, device=None, dtype=None):  # type: ignore[no-untyped-def]
        asked.append(dtype)
        raise Stop

    monkeypatch.setattr("crane_lens.model.load_model", fake_load)
    folder = tmp_path / "run"
    folder.mkdir()
    saved = {"config": {**asdict(RunConfig())}, "complete": False,
             "resolved": {"device": "cuda:0", "dtype": "bfloat16", "dtype_choice": "..."}}  # fmt: skip
    (folder / "run_config.json").write_text(json.dumps(saved))
    with pytest.raises(Stop):
        cl.run(RunConfig(), out=tmp_path, name="run")
    assert asked == ["bfloat16"]
    with pytest.raises(cl.OutputExistsError, match="dtype differ"):  # another setting
        cl.run(RunConfig(dtype="float32"), out=tmp_path, name="run")
    with pytest.raises(Stop):  # --overwrite starts afresh: auto decides again
        cl.run(RunConfig(), out=tmp_path, name="run", overwrite=True)
    assert asked == ["bfloat16", "auto"]
    saved["config"]["dtype"] = None  # written before dtype="auto"
    (folder / "run_config.json").write_text(json.dumps(saved))
    assert RunConfig.from_saved(saved["config"]).dtype == "checkpoint"
    with pytest.raises(
        cl.OutputExistsError, match=r"dtype differ \(that run's: --dtype checkpoint\)"
    ):
        cl.run(RunConfig(), out=tmp_path, name="run")


def test_one_spelling_per_dtype(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """dtype=None is "auto" and "bf16"/"BF16"/torch.bfloat16 are "bfloat16", in a new config and
    in a saved one: a run started with --dtype bf16 continues with --dtype bfloat16, and one
    started with dtype=None continues with the default."""
    import json
    from dataclasses import asdict

    from crane_lens.pipeline import RunConfig

    assert RunConfig(dtype=None).dtype == "auto"  # type: ignore[arg-type]
    assert {RunConfig(dtype=d).dtype for d in ("bf16", "BF16", torch.bfloat16)} == {"bfloat16"}  # type: ignore[arg-type]
    assert RunConfig.from_saved({"dtype": "bf16"}).dtype == "bfloat16"
    with pytest.raises(cl.ModelLoadError, match="Unknown dtype 'bf17'"):  # refused as before
        RunConfig(dtype="bf17").validate()

    class Stop(Exception):
        pass

    monkeypatch.setattr("crane_lens.model.load_model", lambda *a, **k: (_ for _ in ()).throw(Stop))
    for started, continued in (("bf16", "bfloat16"), (None, "auto")):
        folder = tmp_path / str(started)
        folder.mkdir()
        saved = {"config": {**asdict(RunConfig()), "dtype": started}, "complete": False}
        if started is None:
            saved["config"]["dtype"] = RunConfig(dtype=None).dtype  # type: ignore[arg-type]
        (folder / "run_config.json").write_text(json.dumps(saved))
        with pytest.raises(Stop):  # the same run: it gets as far as loading the model
            cl.run(RunConfig(dtype=continued), out=tmp_path, name=folder.name)
