import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from crane_lens.cli import main


def test_corpus_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["corpus", "summary", "--langs", "en,vi", "--split", "eval"]) == 0
    out = capsys.readouterr().out
    assert "vi   Vietnamese" in out and "eval texts" in out


def test_bad_language_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["corpus", "summary", "--langs", "xx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crane-lens: error: Unknown language 'xx'") and "Traceback" not in err


def test_report_and_figures_commands_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "report" in out and "figures" in out
    with pytest.raises(SystemExit):
        main(["figures", "--help"])
    out = capsys.readouterr().out
    assert "--format" in out and "apt install chromium" in out


def test_report_of_a_missing_folder_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crane-lens: error: ") and "is not a folder" in err
    assert "Traceback" not in err and not list(tmp_path.iterdir())


# -- crane-lens run: every option checked before any work; no debris; Ctrl-C ------------------


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model, corpus or statistics work fails the test (CLI errors are not AssertionError)."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("model or corpus work started")

    import crane_lens.data
    import crane_lens.model
    import crane_lens.stats

    monkeypatch.setattr(crane_lens.model, "load_model", forbidden)
    monkeypatch.setattr(crane_lens.data, "load_corpus", forbidden)
    monkeypatch.setattr(crane_lens.stats, "compute_stats", forbidden)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--budget", "2"], "budget (--budget) must be a fraction of all MLP neurons in (0, 1]"),
        (["--budget", "-0.1"], "got -0.1"),
        (["--budget", "nan"], "got nan"),
        (["--model", "{tmp}/missing-model"], "No such model folder"),
        (["--model", "{tmp}"], "not a Hugging Face model folder (no config.json)"),
        (["--model", "crane-tinny"], "did you mean 'crane-tiny'?"),
        (["--langs", "en,af"], "has no text for 'af'; it has ar, de, en"),
        (["--langs", "en,x1"], "'x1' is not a language tag"),
        (["--langs", "en,en"], "each once"),
        (["--langs", "all", "--budget", "2"], "got 2.0"),  # 'all' read without loading text
        (["--source", "{tmp}/texts", "--langs", "en,zh"], "has no text for 'zh'; it has en, vi"),
        (["--source", "{tmp}/texts", "--langs", "all", "--budget", "0"], "got 0.0"),
        # JSON lines list their languages only when read: the values are checked first.
        (["--source", "{tmp}/texts/c.jsonl", "--langs", "all", "--budget", "2"], "got 2.0"),
        (["--source", "{tmp}/no-corpus"], "{tmp}/no-corpus"),
        (["--methods", "crane,magic"], "Unknown selection methods ['magic']"),
        (["--mode", "scale"], "mode='scale' multiplies the chosen neurons by factor (--factor)"),
        (["--factor", "2"], "factor (--factor) is the multiplier of mode='scale'"),
        (["--mode", "fixed"], "add 'kojima' to methods"),
        (["--lape-top-rate", "1.5"], "lape_top_rate (--lape-top-rate) must be a fraction"),
        (["--lape-top-rate", "0.01", "--methods", "crane"], "add 'lape' to methods"),
        (["--budget", "1.5"], "budget (--budget) must be a fraction"),
        (["--max-tokens", "0"], "max_tokens_per_lang (--max-tokens) must be a positive"),
        (["--eval-tokens", "-5"], "eval_tokens_per_lang (--eval-tokens) must be a positive"),
        (["--batch-size", "0"], "batch_size (--batch-size) must be a positive"),
        (["--eval-batch-size", "0"], "eval_batch_size (--eval-batch-size) must be a positive"),
        (["--seq-len", "1"], "seq_len (--seq-len) must be a whole number >= 2, not 1"),
        (["--eval-seq-len", "0"], "eval_seq_len (--eval-seq-len) must be a whole number >= 2"),
        (["--eval-tokens", "100"], "eval_tokens_per_lang (--eval-tokens) is 100, below one block"),
        (["--max-tokens", "64", "--seq-len", "65"], "max_tokens_per_lang (--max-tokens) is 64"),
        (["--random-seeds", "-1"], "random_seeds (--random-seeds) must be a whole number >= 0"),
        (["--seed", "-3"], "seed (--seed) must be a whole number >= 0"),
        (["--dtype", "fp8"], "Unknown dtype 'fp8'"),
        (["--device", "tpu"], "Unknown device 'tpu'"),
        (["--out", "{tmp}/a-file/runs"], "is not a writable folder"),
    ],
)
def test_bad_run_options_fail_before_any_work_and_leave_nothing(
    options: list[str], message: str, tmp_path: Path, no_work: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "texts").mkdir()
    for lang, text in (("en", "Hello there."), ("vi", "Xin chào.")):
        (tmp_path / "texts" / f"{lang}.txt").write_text(text, encoding="utf-8")
    (tmp_path / "texts" / "c.jsonl").write_text('{"lang": "en", "text": "Hi."}\n')
    options = [x.replace("{tmp}", str(tmp_path)) for x in options]
    out = ["--out", str(tmp_path / "runs")] if "--out" not in options else []
    assert main(["run", *options, *out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crane-lens: error: ") and err.count("\n") == 1, err
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "texts"]  # no run folder


def test_an_unknown_mode_is_refused_by_the_cli_and_the_api(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from crane_lens.pipeline import RunConfig

    with pytest.raises(SystemExit) as exit_:
        main(["run", "--mode", "bogus"])
    assert exit_.value.code == 2
    assert "invalid choice: 'bogus' (choose from 'zero', 'mean', 'fixed', 'scale')" in (
        capsys.readouterr().err
    )
    with pytest.raises(ValueError, match="Unknown intervention mode 'bogus'"):
        RunConfig(mode="bogus")  # type: ignore[arg-type]


def test_validate_is_the_api_check_too(tmp_path: Path) -> None:
    """RunConfig checks values on construction; validate() also checks this machine."""
    from crane_lens.errors import ModelLoadError
    from crane_lens.pipeline import RunConfig

    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        RunConfig(budget=0)
    config = RunConfig(model=str(tmp_path / "nothing"))  # a value that only the machine refutes
    with pytest.raises(ModelLoadError, match="No such model folder"):
        config.validate()
    RunConfig(mode="scale", factor=0.5, lape_top_rate=0.01).validate()


def test_the_run_name_tells_scale_and_lape_budgets_apart() -> None:
    from crane_lens.pipeline import RunConfig

    assert RunConfig().name == "crane-tiny_en-zh-vi_1pct_zero"  # finished runs keep their folder
    assert RunConfig(mode="scale", factor=0.5).name == "crane-tiny_en-zh-vi_1pct_scale0.5"
    assert RunConfig(lape_top_rate=0.01).name == "crane-tiny_en-zh-vi_1pct_zero_lape0.01"


def test_lape_budget_states_what_was_used() -> None:
    import torch

    from crane_lens.pipeline import RunConfig, lape_budget
    from crane_lens.selection.neurons import LanguageNeurons

    sets = LanguageNeurons(4, 1024, {"en": torch.zeros(0, 2)}, method="lape",
                           config={"top_rate": 123 / 4096})  # fmt: skip
    text = lape_budget(RunConfig(), sets)
    assert text.startswith("top_rate 0.03 = 1 % per language × 3 languages (123 of the 4096")
    assert "--lape-top-rate 0.01" in text
    sets.config["top_rate"] = 0.01
    text = lape_budget(RunConfig(lape_top_rate=0.01), sets)
    assert text.startswith("top_rate 0.01 in total, LAPE's own budget (the published recipe's")
    assert "41 of the 4096" in text
    sets.config["top_rate"] = 0.02  # not the published value: not called it
    text = lape_budget(RunConfig(lape_top_rate=0.02), sets)
    assert "(the published recipe: 0.01; 82 of the 4096" in text


def test_saved_settings_load_as_they_were_and_langs_are_canonical() -> None:
    """A finished run's settings load unchecked (whatever an older crane_lens accepted); a key
    from a newer crane_lens is a clear error."""
    from crane_lens.errors import CraneLensError
    from crane_lens.pipeline import RunConfig

    old = {"langs": ["en", "zh", "vi"], "budget": 1.5, "methods": ["crane", "lape"]}
    with pytest.raises(ValueError, match="must be a fraction"):
        RunConfig(**old)
    loaded = RunConfig.from_saved(old)
    assert (loaded.budget, loaded.langs, loaded.mode) == (1.5, ["en", "zh", "vi"], "zero")
    assert loaded.comparable() == RunConfig.from_saved(old).comparable()
    with pytest.raises(CraneLensError, match="newer crane_lens"):
        RunConfig.from_saved({**old, "warp_drive": True})
    assert RunConfig(langs=["eng", "zh-TW", "cmn"]).langs == ["en", "zh-Hant", "zh"]
    with pytest.raises(ValueError, match="each once"):
        RunConfig(langs=["en", "eng"])


def _fake_run(monkeypatch: pytest.MonkeyPatch, stage: object) -> None:
    """run() with no model or text, and ``stage`` in place of stages 1-3."""
    import crane_lens.data
    import crane_lens.model
    from crane_lens.pipeline import job

    monkeypatch.setattr(crane_lens.model, "load_model", lambda *a, **k: object())
    monkeypatch.setattr(crane_lens.data, "load_corpus", lambda *a, **k: object())
    monkeypatch.setattr(job, "check_enough_text", lambda *a, **k: None)
    monkeypatch.setattr(job, "device_and_dtype", lambda model: {})  # no real model
    monkeypatch.setattr(job, "run_stages", stage)


def test_ctrl_c_prints_one_line_with_the_command_that_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted_in_stage_one(config, folder, *args):  # type: ignore[no-untyped-def]
        (folder / "stats").mkdir()
        (folder / "stats" / "checkpoint.safetensors").write_bytes(b"saved sums")
        raise KeyboardInterrupt

    _fake_run(monkeypatch, interrupted_in_stage_one)
    argv = ["run", "--budget", "0.02", "--out", str(tmp_path / "my runs"), "--overwrite", "-q"]
    assert main(argv) == 130
    captured = capsys.readouterr()
    folder = tmp_path / "my runs" / "crane-tiny_en-zh-vi_2pct_zero"
    assert captured.out == "" and captured.err == (
        f"crane-lens: interrupted; saved in {folder}: part of the statistics (checkpoint). "
        f"Continue with: crane-lens run --budget 0.02 --out '{tmp_path}/my runs' -q\n"
    )  # --overwrite dropped: it would delete what was saved
    assert (folder / "stats" / "checkpoint.safetensors").is_file()


def test_ctrl_c_while_starting_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command starts without torch (crane_lens imports lazily); Ctrl-C while the parser
    imports it for the defaults is one line too, not a traceback."""
    import subprocess
    import sys

    import crane_lens.cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(crane_lens.cli, "build_parser", interrupted)
    assert main(["run"]) == 130
    assert capsys.readouterr().err == "crane-lens: interrupted while starting; nothing was done.\n"
    code = "import sys, crane_lens.cli; print('torch' in sys.modules)"
    started = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert started.stdout == "False\n", started.stderr  # before main(): nothing heavy


def test_ctrl_c_before_anything_is_saved_removes_the_new_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    _fake_run(monkeypatch, interrupted)
    assert main(["run", "--out", str(tmp_path), "-q"]) == 130
    err = capsys.readouterr().err
    assert err == (f"crane-lens: interrupted before anything was saved; start again with: "
                   f"crane-lens run --out {tmp_path} -q\n")  # fmt: skip
    assert not list(tmp_path.iterdir())
    # --out folders that did not exist go too, up to the first that did.
    assert main(["run", "--out", str(tmp_path / "a" / "b"), "-q"]) == 130
    assert not list(tmp_path.iterdir())
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep.txt").write_text("the user's")
    assert main(["run", "--out", str(tmp_path / "a" / "b" / "c"), "-q"]) == 130
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["keep.txt"]


def test_a_failure_removes_only_an_unused_folder_it_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crane_lens.pipeline import CONFIG_FILE, RunConfig, run
    from crane_lens.runs.layout import write_config

    def fails(*args):  # type: ignore[no-untyped-def]
        raise RuntimeError("out of memory")

    _fake_run(monkeypatch, fails)
    with pytest.raises(RuntimeError):
        run(RunConfig(), out=tmp_path, name="new")
    assert not (tmp_path / "new").exists()
    # A folder this run continues is never removed, even with nothing but its settings in it.
    run_folder = tmp_path / "resumed"
    run_folder.mkdir()
    write_config(run_folder, RunConfig(), complete=False)
    with pytest.raises(RuntimeError):
        run(RunConfig(), out=tmp_path, name="resumed")
    assert (run_folder / CONFIG_FILE).is_file()

    def fails_after_a_checkpoint(config, folder, *args):  # type: ignore[no-untyped-def]
        (folder / "stats").mkdir()
        (folder / "stats" / "checkpoint.safetensors").write_bytes(b"saved sums")
        raise RuntimeError("out of memory")

    _fake_run(monkeypatch, fails_after_a_checkpoint)
    with pytest.raises(RuntimeError):
        run(RunConfig(), out=tmp_path, name="checkpointed")
    assert (tmp_path / "checkpointed" / "stats" / "checkpoint.safetensors").is_file()


# -- a corpus too small for one block: refused after reading the text, before the model -------


def _small_eval_corpus(root: Path) -> Path:
    """A folder corpus with explicit splits: plenty of training text, 3 short eval lines."""
    corpus = root / "texts"
    for split, lines in (("train", 60), ("eval", 3)):
        (corpus / split).mkdir(parents=True)
        for lang, line in (("en", "The cat sat on the mat by the door."),
                           ("vi", "Con mèo ngồi trên tấm thảm cạnh cửa.")):  # fmt: skip
            text = "\n".join(f"{line} ({i})" for i in range(lines))
            (corpus / split / f"{lang}.txt").write_text(text, encoding="utf-8")
    return corpus


@pytest.fixture
def model_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records load_model calls; each one stops the run with a recognisable error."""
    import crane_lens.model
    import crane_lens.stats
    from crane_lens.errors import ModelLoadError

    calls: list[str] = []

    def load_model(name: str, *args: object, **kwargs: object) -> None:
        calls.append(name)
        raise ModelLoadError("stop: the model would load now")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("statistics started")

    monkeypatch.setattr(crane_lens.model, "load_model", load_model)
    monkeypatch.setattr(crane_lens.stats, "compute_stats", forbidden)
    return calls


def test_a_corpus_too_small_for_one_block_fails_before_the_model_and_leaves_nothing(
    tmp_path: Path, model_loads: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Too little eval text for one block of --seq-len: one line naming each short language,
    the split, the tokens found and needed and a --seq-len that fits; no model, no folder.
    --eval-seq-len does not help (the ablation stream keeps a partial block); --seq-len does."""
    from crane_lens.data import load_corpus
    from crane_lens.data.tokens import make_token_blocks
    from crane_lens.errors import EmptyCorpusError
    from crane_lens.runs.checks import _load_tokenizer

    corpus = _small_eval_corpus(tmp_path)
    base = ["run", "--source", str(corpus), "--langs", "en,vi", "--out", str(tmp_path / "runs")]
    for extra in ([], ["--eval-seq-len", "16"]):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("crane-lens: error: ") and err.count("\n") == 1, err
        assert f"The corpus {str(corpus)!r} has too little text for one block of seq_len 128" in err
        assert "BOS + 127 tokens of text and separators, counted with crane-tiny's tokenizer" in err
        assert "'en' has " in err and "tokens in split 'eval'" in err and "'vi' has " in err
        assert "split 'train'" not in err and "lower seq_len (--seq-len)" in err
        assert model_loads == [] and sorted(p.name for p in tmp_path.iterdir()) == ["texts"]
    # The count is the stream the statistics cut: the --seq-len it advises makes one block, one
    # more token does not.
    fits = int(err.rsplit(" to ", 1)[1].split()[0])
    held_out = load_corpus(str(corpus), langs=["en", "vi"], split="eval")
    tokenizer = _load_tokenizer("crane-tiny")
    blocks = make_token_blocks(held_out, tokenizer, seq_len=fits)
    assert min(len(blocks[lang]) for lang in ("en", "vi")) == 1
    with pytest.raises(EmptyCorpusError, match="fewer than one block"):
        make_token_blocks(held_out, tokenizer, seq_len=fits + 1)
    # With that --seq-len the check passes: the model is what loads next.
    assert main([*base, "--seq-len", str(fits)]) == 2
    assert "stop: the model would load now" in capsys.readouterr().err
    assert model_loads == ["crane-tiny"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts"]


def test_the_corpus_check_counts_only_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large corpus costs one small tokenizer call per language and split, not the whole
    text."""
    from crane_lens.data.corpus import Corpus, CorpusInfo, TextRecord
    from crane_lens.pipeline import RunConfig, check_enough_text
    from crane_lens.runs.checks import _load_tokenizer

    tokenizer = _load_tokenizer("crane-tiny")
    texts: list[int] = []

    def counting(batch: list[str], **kwargs: object) -> object:
        texts.append(len(batch))
        return tokenizer(batch, **kwargs)

    counting.bos_token_id, counting.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id  # type: ignore[attr-defined]
    monkeypatch.setattr("crane_lens.runs.checks._load_tokenizer", lambda model: counting)
    rows = [TextRecord(f"Sentence number {i} of a long corpus.") for i in range(20_000)]
    big = Corpus({"en": rows, "vi": rows}, CorpusInfo("big", "train"))
    check_enough_text(RunConfig(langs=["en", "vi"]), {"train": big, "eval": big})
    assert len(texts) == 4 and sum(texts) <= 4 * 32, texts


def test_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    """Every option of every command says its default (argparse's, or in words)."""
    from crane_lens.cli import build_parser

    def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in dict.fromkeys(action.choices.values()):
                    yield from parsers(sub)

    checked = []
    for parser in parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if (
                action.nargs == 0
                or action.required
                or isinstance(action, argparse._SubParsersAction)
            ):
                continue  # flags, required arguments, sub-commands: no default to show
            text = formatter._expand_help(action)  # the text --help prints
            assert "default" in text, f"{parser.prog} {action.dest}: {text}"
            checked.append(action.dest)
    assert {"budget", "mode", "factor", "lape_top_rate", "dtype", "device"} <= set(checked)
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.01)" in out and "(default: 16384)" in out and "(default: zero)" in out
    assert "--seq-len SEQ_LEN tokens per block of the statistics" in out and "(default: 128)" in out
    assert "--eval-seq-len EVAL_SEQ_LEN" in out and "(default: 256)" in out
    assert "{zero,mean,fixed,scale}" in out and "--lape-top-rate" in out


def test_model_info_prints_one_multi_line_summary(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import logging

    import crane_lens as cl

    with caplog.at_level(logging.INFO, logger="crane_lens.model.loader"):
        cl.load_model("crane-tiny")
    loaded = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded")]
    lines = loaded[0].splitlines()
    assert lines[0] == "loaded crane-tiny" and "    n_layers      4" in lines
    assert len(lines) == 12 and ";" not in loaded[0]  # one row per fact, not one squashed line
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="crane_lens.model.loader"):
        assert main(["models", "info"]) == 0
    assert "n_neurons     4096" in capsys.readouterr().out
    assert not [r for r in caplog.records if r.getMessage().startswith("loaded")]  # printed once


def test_the_cli_page_documents_every_run_option() -> None:
    from crane_lens.cli import build_parser

    page = (Path(__file__).parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = [a.option_strings[0] for a in sub.choices["run"]._actions if a.dest != "help"]
    assert len(options) == 24 and "--factor" in options and "--eval-seq-len" in options
    assert [o for o in options if f"| `{o}` |" not in page] == []  # one table row each
