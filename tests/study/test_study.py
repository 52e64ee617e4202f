"""A short study on crane-tiny: its stages, resuming without recomputing, its checks and page."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest

import crane_lens as cl
from crane_lens.cli import build_parser, main
from crane_lens.study import StudyConfig, StudyResult, study, write_page
from crane_lens.study import stages as stages_module

pytestmark = pytest.mark.integration

TINY = {"model": "crane-tiny", "max_tokens_per_lang": 512, "eval_tokens_per_lang": 320,
        "eval_seq_len": 64, "random_seeds": 2, "sweep": [0.03], "causal_neurons": 6,
        "causal_layers": [3], "mc_items": 4, "mc_origins": ["libreoffice-help"],
        "sets": ["lape (top_rate 0.01)", "crane (CP-LRP)", "plnd"], "steer_strengths": [4.0],
        "steer_prompts": 2, "steer_random_seeds": 1}  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("study")
    stages = ["stats", "matrices", "sweep", "mean", "causality", "steering"]
    return study(StudyConfig(**TINY, stages=stages), folder, progress=False)  # type: ignore[arg-type]


def test_every_stage_is_saved_and_read_back_without_computing(finished, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a finished study computed again")

    for name in ("ablation_matrix", "select_language_neurons"):
        monkeypatch.setattr(stages_module, name, refuse)
    monkeypatch.setattr("crane_lens.evaluation.steering.greedy_generate", refuse)
    monkeypatch.setattr("crane_lens.stats.engine.compute_stats", refuse)
    monkeypatch.setattr("crane_lens.evaluation.ablation.conditions_nll", refuse)
    config = StudyConfig(
        **TINY, stages=["stats", "matrices", "sweep", "mean", "causality", "steering"]
    )  # type: ignore[arg-type]
    again = study(config, finished.folder, progress=False)
    assert again.missing == []
    for label, matrix in finished.matrices.items():
        assert again.matrices[label].to_dict() == matrix.to_dict()
    assert again.parts["causality"] == finished.parts["causality"]
    for label, steered in finished.parts["steering"].items():
        assert again.parts["steering"][label].records.equals(steered.records)
    loaded = StudyResult.load(finished.folder)  # read-only: the stages not run are missing
    assert loaded.missing == ["benchmarks"]  # transfer: no chat model, nothing to do
    assert loaded.summary().equals(finished.summary())


def test_the_matrices_are_the_library_calls_with_the_studys_settings(finished) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model("crane-tiny")
    held_out = cl.load_corpus("builtin", split="eval", langs=["en", "zh", "vi"])
    crane = finished.matrices["crane"]
    direct = cl.ablation_matrix(model, held_out, finished.neurons("crane"), random_seeds=2,
                                seq_len=64, max_tokens_per_lang=320, progress=False)  # fmt: skip
    assert crane.per_block == direct.per_block
    # LAPE at its published budget: 1 % of all neurons in total, not per language.
    published = finished.neurons("lape (top_rate 0.01)")
    assert published.config["top_rate"] == 0.01
    # Random control sets for CRANE and both LAPE budgets only; p-values with them.
    seeded = {k for k, m in finished.matrices.items() if m.random_nll}
    assert seeded == {"crane", "lape", "lape (top_rate 0.01)"}
    assert finished.summary().loc["crane", "p_max"] <= 1.0
    assert math.isnan(finished.summary().loc["plnd", "p_max"])
    # The CP-LRP row uses lxt's full rules, not the attention-only variant.
    assert finished.stats("cp").config["attention"] == "cp"
    assert set(finished.parts["sweep"]) == {0.01, 0.03}
    # Only the sets asked for (CRANE and LAPE always), only the statistics they need.
    assert set(finished.matrices) == {"crane", "lape", "lape (top_rate 0.01)", "crane (CP-LRP)",
                                      "plnd"}  # fmt: skip
    assert not (finished.folder / "stats_logprob").exists()
    assert finished.parts["mean"]["crane"].mode == "mean"


def test_a_later_command_adds_sets_and_recomputes_nothing(finished, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    import shutil

    folder = tmp_path / "study"
    shutil.copytree(finished.folder, folder)
    real, measured = stages_module.ablation_matrix, []

    def counted(model, corpus, sets, **kwargs):  # type: ignore[no-untyped-def]
        measured.append(sets.method)
        return real(model, corpus, sets, **kwargs)

    monkeypatch.setattr(stages_module, "ablation_matrix", counted)
    more = study(StudyConfig(**TINY | {"sets": ["kojima"]}, stages=["matrices"]), folder,  # type: ignore[arg-type]
                 progress=False)  # fmt: skip
    assert measured == ["kojima"]  # the earlier sets are read back, not measured again
    assert set(more.matrices) == {"crane", "lape", "kojima"}  # this command's sets
    # the folder holds them all, and its page shows them all
    assert set(StudyResult.load(folder).matrices) == set(finished.matrices) | {"kojima"}
    assert StudyConfig.load(folder).sets == ["crane", "lape", "lape (top_rate 0.01)",
                                             "crane (CP-LRP)", "kojima", "plnd"]  # fmt: skip


def test_the_steering_stage_is_the_library_call_with_the_studys_settings(finished) -> None:  # type: ignore[no-untyped-def]
    steered = finished.parts["steering"]
    assert list(steered) == ["crane", "lape", "kojima"]
    model = cl.load_model("crane-tiny")
    direct = cl.steering_matrix(model, finished.neurons("kojima"), finished.stats(),
                                targets=["en", "zh", "vi"], strengths=[4.0], random_seeds=1,
                                statistic="median", n_prompts=2, progress=False)  # fmt: skip
    assert direct.records.equals(steered["kojima"].records)
    assert set(steered["crane"].records.condition) == {"none", "selected", "random-0"}


def test_an_interrupted_matrix_resumes_from_its_checkpoint(finished, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from crane_lens.evaluation import ablation

    real, calls = ablation.conditions_nll, []

    def crash_on_second(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    folder = tmp_path / "study"
    for sub in ("study.json", "stats", "stats_cp"):
        source = finished.folder / sub
        target = folder / sub
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes()) if source.is_file() else _copy(source, target)
    config = StudyConfig(**TINY, stages=["stats", "matrices"])  # type: ignore[arg-type]
    monkeypatch.setattr(ablation, "conditions_nll", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        study(config, folder, progress=False)
    assert (folder / "matrices" / "crane_0.01" / "ablation_checkpoint.json").is_file()
    monkeypatch.setattr(ablation, "conditions_nll", real)
    resumed = study(config, folder, progress=False)
    assert resumed.matrices["crane"].per_block == finished.matrices["crane"].per_block


def _copy(source: Path, target: Path) -> None:
    import shutil

    shutil.copytree(source, target)


def test_bad_input_fails_before_any_work_and_leaves_no_folder(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "new"
    # cl.study is callable although crane_lens.study, the package, is imported by now
    with pytest.raises(cl.CraneLensError, match="xx"):
        cl.study(cl.StudyConfig(**TINY | {"langs": ["en", "xx"]}), folder, progress=False)  # type: ignore[arg-type]
    assert not folder.exists()
    assert main(["study", "--langs", "en,zz", "--out", str(folder)]) == 2
    assert "zz" in capsys.readouterr().err and not folder.exists()
    with pytest.raises(ValueError, match="preset"):
        StudyConfig(preset="everything")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stages"):
        StudyConfig(stages=["stats", "plots"])
    with pytest.raises(ValueError, match="budget"):
        StudyConfig(budget=2.0)
    with pytest.raises(cl.CraneLensError, match="--mc-origins nope"):
        cl.study(StudyConfig(**TINY | {"mc_origins": ["nope"]}), folder, progress=False)  # type: ignore[arg-type]
    assert not folder.exists()
    with pytest.raises(ValueError, match="Unknown sets"):
        StudyConfig(sets=["crane (CP)"])


def test_a_folder_of_other_settings_is_refused(finished) -> None:  # type: ignore[no-untyped-def]
    other = StudyConfig(**TINY | {"budget": 0.02}, stages=["stats"])  # type: ignore[arg-type]
    with pytest.raises(cl.OutputExistsError, match="budget"):
        study(other, finished.folder, progress=False)


def test_the_page_keeps_hand_written_text_and_fills_every_finished_section(finished, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    exported: list[str] = []
    monkeypatch.setattr("crane_lens.report.export.export_figures",
                        lambda figures, folder, *a, **k: exported.extend(f.name for f in figures))  # fmt: skip
    page = tmp_path / "results.md"
    page.write_text("# Mine\n\nHand-written.\n\n<!-- command: x -->\nSTALE\n<!-- /command -->\n")
    result = StudyResult.load(finished.folder)
    write_page(result, page, "crane-lens study --model crane-tiny")
    text = page.read_text()
    assert text.startswith("# Mine\n\nHand-written.") and "STALE" not in text
    assert "crane-lens study --model crane-tiny" in text and "Not finished yet: benchmarks" in text
    for section in ("comparison", "crane-matrix", "layers", "stability", "sweep", "variants",
                    "causality", "steering"):  # fmt: skip
        assert f"<!-- {section}:" in text
    assert "benchmarks:" not in text  # nothing measured, no empty section
    # Each section states the settings it ran with (here 2 random sets per matrix, 1 per target).
    assert "5 random sets" not in text and "Random sets: 1 per target" in text
    assert "crane-tiny-ablation-matrices" in exported and "[" in text  # intervals in tables
    size = finished.neurons("crane").count("en")  # set sizes as counted, not 41.000
    assert f"| {size} " in text and f"{size}.000" not in text
    write_page(result, page, "crane-lens study --model crane-tiny")
    assert page.read_text() == text  # idempotent


def test_study_help_and_command_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_:
        main(["study", "--help"])
    assert exit_.value.code == 0
    assert "--preset {paper,full}" in capsys.readouterr().out
    from crane_lens.study.cli import study_command

    config = StudyConfig(model="gemma-3-270m", preset="full", budget=0.001, sweep=[0.003, 0.01])
    assert study_command(config, "p.md") == ("crane-lens study --model gemma-3-270m --preset full "
                                             "--budget 0.001 --sweep 0.003,0.01 --write-docs p.md")  # fmt: skip
    # The command quoted is the study's own: parsed back, it gives the same settings.
    tiny = StudyConfig(**TINY)  # type: ignore[arg-type]
    from crane_lens.study.cli import config_from_args

    argv = shlex.split(study_command(tiny))[1:]
    assert config_from_args(build_parser().parse_args(argv)) == tiny


def test_docs_only_redraws_the_page_from_the_folder_without_computing(finished, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    monkeypatch.setattr("crane_lens.report.export.check_exporter", lambda: "chromium")
    monkeypatch.setattr("crane_lens.report.export.export_figures", lambda *a, **k: [])
    monkeypatch.setattr("crane_lens.study.run.study", None)  # computing would fail
    page = tmp_path / "page.md"
    argv = ["study", "--out", str(finished.folder), "--write-docs", str(page), "--docs-only",
            "--max-tokens", "512", "--eval-tokens", "320", "--eval-seq-len", "64"]  # fmt: skip
    assert main(argv) == 0
    text = page.read_text()  # the study's own settings, not the redrawing command's
    assert "--max-tokens 512" in text and "--random-seeds 2" in text and "--causal-layers 3" in text
    # the fixture ran six stages; the page quotes the command that finishes all it shows
    assert "--stages" not in text and "Not finished yet: benchmarks" in text
    assert main(["study", "--docs-only", "--out", str(finished.folder)]) == 2  # needs --write-docs


def test_a_partial_study_names_its_unfinished_stages_and_keeps_its_dtype(finished, tmp_path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    import shutil

    folder = tmp_path / "partial"
    shutil.copytree(finished.folder, folder)
    shutil.rmtree(folder / "matrices" / "plnd_0.01")  # one matrix of the stage not finished
    partial = StudyResult.load(folder)
    assert "matrices" in partial.missing and "plnd" not in partial.matrices
    assert "crane" in partial.matrices  # what is finished is still shown
    saved = json.loads((folder / "study.json").read_text())
    assert saved["dtype"] == "torch.float32"  # recorded when the model was first loaded
    (folder / "study.json").write_text(json.dumps(saved | {"dtype": "torch.bfloat16"}))
    config = StudyConfig(**TINY, stages=["stats", "matrices"])  # type: ignore[arg-type]
    with pytest.raises(cl.CraneLensError, match="--dtype bfloat16"):
        study(config, folder, progress=False)


def test_the_pool_stage_compares_sets_selected_against_three_languages_or_all(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    config = StudyConfig(**TINY | {"langs": ["en", "zh", "vi", "de"], "sets": []},
                         stages=["stats", "pool"])  # type: ignore[arg-type]  # fmt: skip
    found = study(config, tmp_path / "pool", progress=False).parts["pool"]
    assert sorted(found) == [0.01, 0.03]  # the main budget and the sweep's
    stats = cl.NeuronStats.load(tmp_path / "pool" / "stats")
    model = cl.load_model("crane-tiny")
    held_out = cl.load_corpus("builtin", split="eval", langs=["en", "zh", "vi"])
    for budget, parts in found.items():
        among_all = cl.select_language_neurons(stats, "crane", budget=budget)
        among_three = cl.select_language_neurons(stats, "crane", budget=budget,
                                                 langs=["en", "zh", "vi"])  # fmt: skip
        for key, sets in (
            ("all", among_all.select_langs(["en", "zh", "vi"])),
            ("paper", among_three),
        ):
            direct = cl.ablation_matrix(model, held_out, sets, random_seeds=0, seq_len=64,
                                        max_tokens_per_lang=320, progress=False)  # fmt: skip
            assert parts[key].per_block == direct.per_block
            assert parts[key].masked == parts[key].evaluated == ["en", "zh", "vi"]
        # Competing with German changes what counts as specific to the other three.
        assert parts["jaccard"].loc["en", "en"] < 1 or parts["jaccard"].loc["vi", "vi"] < 1
    monkeypatch.setattr(stages_module, "ablation_matrix", None)  # read back, not recomputed
    loaded = StudyResult.load(tmp_path / "pool")
    assert loaded.parts["pool"][0.01]["paper"].to_dict() == found[0.01]["paper"].to_dict()
    page = tmp_path / "page.md"
    monkeypatch.setattr("crane_lens.report.export.export_figures", lambda *a, **k: [])
    write_page(loaded, page, "crane-lens study")
    text = page.read_text()
    assert "<!-- pool:" in text and "| all 4 " in text and "| these only " in text
    # A study of the three languages alone has nothing to compare.
    paper = StudyConfig(**TINY | {"sets": []}, stages=["stats", "pool"])  # type: ignore[arg-type]
    assert study(paper, tmp_path / "paper", progress=False).parts["pool"] == {}
