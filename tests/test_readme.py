"""Every fenced code block of README.md runs as written, offline.

How each block is treated is decided by the README itself, so a new block cannot go untested
without a visible decision there:

- ```python blocks run in README order in one namespace, as a reader pastes them, in a fresh
  working directory (files they write, such as ``runs/stats`` or ``sets.json``, land there).
  Tracebacks point at README.md lines.
- ```bash / ```sh / ```shell blocks run with ``bash -euo pipefail`` (the venv's ``bin`` first
  on PATH, so ``crane-lens`` is the one under test); ```console blocks run their ``$ `` lines.
- A block preceded by ``<!-- not run by tests: REASON -->`` (installs, the network, minutes of
  work) is skipped; the reason is required. Any other fence language must carry that marker.
- A block preceded by ``<!-- run by tests with stand-in files: NAME ... -->`` runs after the
  test wrote small stand-ins of those files, cut from the embedded corpus (:data:`STAND_INS`);
  the README says so in its text.

No environment override is used: the README's examples keep token budgets small enough for
``make test`` (their comments give the budgets for real results). Everything runs offline
(tests/conftest.py sets ``HF_HUB_OFFLINE``); the whole page takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL = {"bash", "sh", "shell", "console"}
SKIP = re.compile(r"<!--\s*not run by tests:\s*(?P<reason>.*?)\s*-->")
STAND_IN = re.compile(r"<!--\s*run by tests with stand-in files:\s*(?P<names>.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")
SHELL_TIMEOUT_S = 180


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, first code line (1-based), code and README marker."""

    lang: str
    line: int
    code: str
    skip: str | None = None
    stand_ins: tuple[str, ...] = ()


def parse(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with the marker on the line just above each.

    Raises:
        ValueError: An unclosed fence, an empty skip reason, a marker that does not stand right
            above a block, a comment that mentions tests but is no marker, or a block in a
            language this test cannot run that is not marked as not run.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: tuple[int, str | None, tuple[str, ...]] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence is None:
            if line.strip():
                if pending is not None:
                    raise ValueError(
                        f"README.md:{pending[0]}: a marker must stand right above a block"
                    )
                pending = _marker(line, i + 1)
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"README.md:{i + 1}: unclosed code fence")
        lang = fence["lang"].lower()
        _, skip, stand_ins = pending or (0, None, ())
        if skip is None and lang != "python" and lang not in SHELL:
            raise ValueError(
                f"README.md:{i + 1}: a ```{lang or '(no language)'} block cannot be run; mark it "
                "<!-- not run by tests: REASON --> or give it a language this test runs"
            )
        indent = len(fence["indent"])
        code = "\n".join(row[indent:] for row in lines[i + 1 : end])
        blocks.append(Block(lang, i + 2, code, skip, stand_ins))
        pending = None
        i = end + 1
    if pending is not None:
        raise ValueError(f"README.md:{pending[0]}: a marker must stand right above a block")
    return blocks


def _marker(line: str, number: int) -> tuple[int, str | None, tuple[str, ...]] | None:
    if skip := SKIP.fullmatch(line.strip()):
        if not skip["reason"]:
            raise ValueError(f"README.md:{number}: say why the block is not run")
        return number, skip["reason"], ()
    if stand_in := STAND_IN.fullmatch(line.strip()):
        return number, None, tuple(stand_in["names"].split())
    if "<!--" in line and "test" in line.lower():  # a misspelt marker must not pass silently
        raise ValueError(f"README.md:{number}: unknown test marker {line.strip()!r}")
    return None


def run_python(blocks: list[Block], namespace: dict[str, object]) -> None:
    """Execute the python blocks in order in ``namespace``; line numbers are README lines."""
    for block in blocks:
        if block.lang == "python" and block.skip is None:
            _write_stand_ins(block.stand_ins)
            code = "\n" * (block.line - 1) + block.code
            exec(compile(code, str(README), "exec"), namespace)  # the README code itself


def run_shell(block: Block) -> subprocess.CompletedProcess[str]:
    """Run one shell block with bash -e; raises CalledProcessError when it fails."""
    code = block.code
    if block.lang == "console":  # only the commands; the other lines are their output
        code = "\n".join(row[2:] for row in code.splitlines() if row.startswith("$ "))
    _write_stand_ins(block.stand_ins)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=SHELL_TIMEOUT_S,
        check=True,
    )


@cache
def _texts() -> dict[str, list[str]]:
    import crane_lens as cl

    corpus = cl.load_corpus("builtin", langs=["en", "zh", "vi"], split="eval")
    # One text per line: the line breaks inside a text become spaces.
    return {lang: [" ".join(t.split()) for t in corpus[lang][:200]] for lang in corpus.langs}


def _text_folder(path: Path) -> None:
    path.mkdir()
    for lang, name in (("en", "en"), ("zh", "zh-Hans"), ("vi", "vi")):
        (path / f"{name}.txt").write_text("\n".join(_texts()[lang]) + "\n", encoding="utf-8")


def _jsonl(path: Path) -> None:
    rows = [{"lang": lang, "text": t} for lang, texts in _texts().items() for t in texts]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def _parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [(lang, t) for lang, texts in _texts().items() for t in texts]
    table = pa.table({"lang": [r[0] for r in rows], "text": [r[1] for r in rows]})
    pq.write_table(table, path)


#: Stand-in files a README block may ask for, written into the working directory.
STAND_INS: dict[str, Callable[[Path], None]] = {
    "my_corpus/": _text_folder,
    "texts.jsonl": _jsonl,
    "mixed.parquet": _parquet,
}


def _write_stand_ins(names: tuple[str, ...]) -> None:
    for name in names:
        if not Path(name).exists():
            STAND_INS[name](Path(name))


BLOCKS = parse(README.read_text(encoding="utf-8"))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_readme_marks_every_block_it_does_not_run() -> None:
    assert any(b.lang == "python" and b.skip is None for b in BLOCKS)
    assert any(b.lang in SHELL and b.skip is None for b in BLOCKS)
    for block in BLOCKS:
        assert set(block.stand_ins) <= set(STAND_INS), f"README.md:{block.line}: unknown stand-in"
        if block.skip is None:  # a block that runs uses no placeholder path
            assert "path/to" not in block.code, (
                f"README.md:{block.line}: placeholder in a run block"
            )


@pytest.mark.integration
def test_python_blocks_run_in_order(workdir: Path) -> None:
    namespace: dict[str, object] = {"__name__": "__readme__"}
    run_python(BLOCKS, namespace)
    # The pasted session really did the work the README describes.
    assert (workdir / "runs" / "stats").is_dir() and (workdir / "sets.json").is_file()
    matrix = namespace["matrix"]
    assert sorted(matrix.delta().index) == ["en", "vi", "zh"]  # type: ignore[attr-defined]


SHELL_BLOCKS = [b for b in BLOCKS if b.lang in SHELL and b.skip is None]


@pytest.mark.integration
@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[f"line{b.line}" for b in SHELL_BLOCKS])
def test_shell_block_runs(block: Block, workdir: Path) -> None:
    try:
        run_shell(block)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"README.md:{block.line}: exit {exc.returncode}\n{exc.stdout}\n{exc.stderr}")


# The checks above must fail when a block breaks: the same functions on small Markdown texts.


def test_a_broken_python_block_fails_with_its_readme_line() -> None:
    blocks = parse("text\n\n```python\nx = 1\n```\n\n```python\ny = x + undefined_name\n```\n")
    with pytest.raises(NameError) as info:
        run_python(blocks, {})
    assert info.traceback[-1].lineno + 1 == 8  # README line 8 (pytest counts from 0)


def test_a_broken_shell_block_fails(workdir: Path) -> None:
    (block,) = parse("```bash\ntrue\nfalse\necho never\n```\n")
    with pytest.raises(subprocess.CalledProcessError):
        run_shell(block)
    (console,) = parse("```console\n$ crane-lens no-such-command\nusage: ...\n```\n")
    with pytest.raises(subprocess.CalledProcessError):
        run_shell(console)


@pytest.mark.parametrize(
    "text",
    [
        "```text\nnot code\n```\n",  # a language this test cannot run, unmarked
        "```\nno language\n```\n",
        "<!-- not run by tests: -->\n```bash\nmake demo\n```\n",  # no reason
        "<!-- not run by tests: slow -->\n\nA paragraph.\n\n```bash\nmake demo\n```\n",
        "<!-- not run by test: slow -->\n```bash\nmake demo\n```\n",  # misspelt marker
        "```python\nx = 1\n",  # unclosed
    ],
)
def test_unmarked_or_malformed_blocks_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)


def test_markers_skip_and_name_stand_ins() -> None:
    text = (
        "<!-- not run by tests: needs the network -->\n```bash\npip install x\n```\n\n"
        "<!-- run by tests with stand-in files: my_corpus/ texts.jsonl -->\n```python\nx\n```\n"
    )
    skipped, with_files = parse(text)
    assert skipped.skip == "needs the network" and skipped.code == "pip install x"
    assert with_files.skip is None and with_files.stand_ins == ("my_corpus/", "texts.jsonl")
    assert with_files.line == 8  # the first code line
