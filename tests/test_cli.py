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
