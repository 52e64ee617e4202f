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
