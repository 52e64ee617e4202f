"""``crane-lens steer`` on a finished crane-tiny run: results in the run folder, a steering
section and figures in the report, bad options refused before the model is loaded, and a
re-run that reads what is there."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from crane_lens.cli import main
from crane_lens.evaluation import steering as steering_module
from crane_lens.runs import RunResult

pytestmark = pytest.mark.integration
STEER = ["--to", "vi", "--from", "en,zh", "--strength", "1,3", "--random-seeds", "1",
         "--prompts", "3", "--max-new-tokens", "6", "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def steered(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("steer") / "run"
    shutil.copytree(tiny_run, folder)  # the shared run stays as the other tests expect it
    assert main(["steer", str(folder), *STEER]) == 0
    return folder


def test_steer_writes_each_methods_result_and_a_report_section(steered: Path) -> None:
    result = RunResult.load(steered)
    assert sorted(result.steering) == ["crane-replace", "lape-replace"]
    crane = result.steering["crane-replace"]
    assert crane.targets == ["vi"] and crane.sources == ["en", "zh"]
    assert crane.strengths == [1.0, 3.0] and crane.method == "crane"
    page = (steered / "report.html").read_text(encoding="utf-8")
    assert '<section id="steering">' in page and 'href="#steering"' in page
    summary = crane.summary()
    row = summary[(summary.condition == "selected") & (summary.strength == 3.0)
                  & (summary.target == "all")].iloc[0]  # fmt: skip
    assert f"{row.success:.2f} [{row.success_low:.2f}, {row.success_high:.2f}]" in page
    for name in ("steering-success-replace", "steering-strength-replace"):
        assert f"fig-{name}" in page


def test_a_rerun_reads_the_results_without_generating(steered: Path, monkeypatch: Any) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("generated again")

    monkeypatch.setattr(steering_module, "greedy_generate", never)
    assert main(["steer", str(steered), *STEER]) == 0


@pytest.mark.parametrize(("options", "message"), [
    (["--to", "fr"], "--to fr: this run covers en, zh, vi"),
    (["--to", "vi", "--methods", "kojima"], "--methods kojima: this run selected crane, lape"),
    (["--to", "vi", "--strength", "0"], "--strength must be > 0"),
    (["--to", "vi", "--strength", "x"], "comma-separated numbers"),
    (["--to", "vi", "--from", "vi"], "add another --from language"),
    (["--to", "vi", "--statistic", "median"], "needs Kojima's per-block responses"),
])  # fmt: skip
def test_bad_options_fail_before_the_model_loads(tiny_run: Path, options: list[str], message: str,
                                                 monkeypatch: Any, capsys: Any) -> None:  # fmt: skip
    import crane_lens.model.loader

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("loaded the model before checking the options")

    monkeypatch.setattr(crane_lens.model.loader, "load_model", never)
    assert main(["steer", str(tiny_run), *options, "-q"]) == 2
    assert message in capsys.readouterr().err
    assert not (tiny_run / "steering").exists()


def test_steer_needs_a_finished_run(tmp_path: Path, capsys: Any) -> None:
    assert main(["steer", str(tmp_path), "--to", "vi"]) == 2
    assert "holds no complete crane-lens run" in capsys.readouterr().err


def test_other_settings_on_a_steered_folder_are_refused_before_the_model_loads(
    steered: Path, monkeypatch: Any, capsys: Any
) -> None:
    import crane_lens.model.loader

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("loaded the model before checking the folder")

    monkeypatch.setattr(crane_lens.model.loader, "load_model", never)
    other = [x if x != "1,3" else "2" for x in STEER]
    assert main(["steer", str(steered), *other]) == 2
    err = capsys.readouterr().err
    assert "crane's steering with other settings (strengths differ)" in err
