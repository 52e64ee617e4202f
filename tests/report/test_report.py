"""report.html of a real (tiny) run: written by `crane-lens run` and `crane-lens report`, offline,
with the run's numbers, every figure once and plotly.js once."""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import plotly.graph_objects as go
import pytest

from crane_lens.cli import main
from crane_lens.pipeline import RunResult, lape_budget
from crane_lens.plots.run import NamedFigure, run_figures
from crane_lens.report import report_html
from crane_lens.report.html import _mode
from tests.report.conftest import RUN_ARGS

pytestmark = pytest.mark.integration


class Page(HTMLParser):
    """Tags with their attributes, table rows by section, and the text of inline scripts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: dict[str, list[list[str]]] = {}
        self.scripts: list[str] = []
        self._section, self._cell, self._row, self._in_script = "", None, None, False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "section":
            self._section = dict(attrs)["id"] or ""
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.setdefault(self._section, []).append(self._row)
            self._row = None
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        elif self._cell is not None:
            self._cell += data


def numbers(cell: str) -> list[float]:
    """The numbers of a table cell, typographic minus signs read as minus."""
    return [float(x) for x in re.findall(r"-?\d+\.\d+", cell.replace("−", "-"))]


@pytest.fixture(scope="module")
def page(tiny_run: Path) -> Page:
    return Page((tiny_run / "report.html").read_text(encoding="utf-8"))


def test_run_writes_the_report_after_its_results(tiny_run: Path) -> None:
    report = tiny_run / "report.html"
    assert report.is_file()
    # Written last: the tables and the completed config are older or as old.
    for name in ("selectivity.csv", "summary.md", "run_config.json"):
        assert (tiny_run / name).stat().st_mtime_ns <= report.stat().st_mtime_ns
    assert not list(tiny_run.glob(".report.html.*"))  # no temporary file left


def test_the_tables_show_the_runs_numbers(tiny_run: Path, page: Page) -> None:
    result = RunResult.load(tiny_run)
    sel = result.selectivity()
    rows = page.rows["selectivity"][1:]  # header first
    assert len(rows) == len(sel)
    for (method, lang), row in zip(sel.index, rows, strict=True):
        cells = row[-9:]  # the method cell spans its group's rows
        assert cells[0].startswith(f"{lang} · ")
        assert int(cells[1]) == sel.loc[(method, lang), "n_neurons"]
        # A number, then its interval on a second line: "0.210[0.205, 0.216]".
        own, own_low, own_high = numbers(cells[2])
        others = numbers(cells[3])[0]
        assert own == pytest.approx(sel.loc[(method, lang), "own"], abs=5e-4)
        assert own_low == pytest.approx(sel.loc[(method, lang), "own_low"], abs=5e-4)
        assert own_high == pytest.approx(sel.loc[(method, lang), "own_high"], abs=5e-4)
        assert others == pytest.approx(sel.loc[(method, lang), "others"], abs=5e-4)
        assert numbers(cells[5])[0] == pytest.approx(sel.loc[(method, lang), "index"], abs=5e-3)
        assert numbers(cells[8])[0] == pytest.approx(sel.loc[(method, lang), "p_value"], abs=5e-3)
    assert [r[0] for r in page.rows["selectivity"][1:] if r[0] in result.matrices] == [
        "crane",
        "lape",
    ]
    # Per language, methods side by side: exclusive/shared counts equal the sets' own counts,
    # relevance shares the relevance metric's.
    overlap = page.rows["overlap"][2:]  # two header rows
    relevance = page.rows["relevance"][2:]
    shares = result.relevance()
    assert [r[0][:2] for r in overlap] == [r[0][:2] for r in relevance] == result.config.langs
    for i, method in enumerate(result.config.methods):
        counts = result.neurons[method].overlap_counts().query("layer == 'all'")
        shown = [[int(x) for x in r[1 + 3 * i : 4 + 3 * i]] for r in overlap]
        assert shown == counts[["selected", "exclusive", "shared"]].values.tolist()
        own = [float(r[1 + 3 * i].removesuffix(" %")) / 100 for r in relevance]
        assert own == pytest.approx(shares.xs(method)["own_share"].tolist(), abs=5e-4)
    jaccard = result.jaccard()
    shown = [float(r[1]) for r in page.rows["jaccard"][1:]]
    assert shown == pytest.approx(jaccard["jaccard"].tolist(), abs=5e-3)
    # The configuration names what run_config.json holds.
    config = dict((r[0], r[1]) for r in page.rows["configuration"][1:])
    versions = json.loads((tiny_run / "run_config.json").read_text())["versions"]
    assert all(f"{k} {v}" in config["package versions"] for k, v in versions.items())
    assert config["random control seeds"] == "2" and config["intervention (mode)"] == "zero"
    # LAPE's budget in words: sets matched to k = 41 per language on average.
    assert config["LAPE budget"] == lape_budget(result.config, result.neurons["lape"])
    assert "per language, matched to k = 41 (1 % per language)" in config["LAPE budget"]
    assert result.neurons["lape"].config["mean_set_size"] >= 41
    assert _mode(dataclasses.replace(result.config, mode="scale", factor=0.5)) == "scale × 0.5"


def test_the_run_name_heads_the_report_and_the_summary(tiny_run: Path, tmp_path: Path) -> None:
    """`crane-lens run --name my_study`: the folder's name, not the settings' default name."""
    result = RunResult.load(tiny_run)
    assert result.config.name == "crane-tiny_en-zh-vi_1pct_zero" != tiny_run.name == "run"
    assert "<title>crane-lens report: run</title>" in (tiny_run / "report.html").read_text()
    assert (tiny_run / "summary.md").read_text().startswith("# crane-lens run: run\n")
    named = dataclasses.replace(result, folder=tmp_path / "my_study")
    page = report_html(named, figures=[])
    assert "<title>crane-lens report: my_study</title>" in page
    header = page[page.index("<header>") : page.index("</header>")]
    assert '<p class="run">my_study <span class="muted">(settings: ' \
        'crane-tiny_en-zh-vi_1pct_zero)</span></p>' in header  # fmt: skip
    assert named.summary().startswith("# crane-lens run: my_study\n")
    # Without --name the folder has the settings' name, said once.
    default = dataclasses.replace(result, folder=tmp_path / result.config.name)
    assert '<p class="run">crane-tiny_en-zh-vi_1pct_zero</p>' in report_html(default, figures=[])


def test_figures_fit_the_content_column_with_the_toolbar_above(tiny_run: Path) -> None:
    """The page's content column is as wide as the widest figure (PAGE_WIDTH), and plotly's
    toolbar gets a strip of its own above each figure (tests/report/test_browser.py measures
    both in a 1400-px window)."""
    from crane_lens.plots.matrix import PAGE_WIDTH

    text = (tiny_run / "report.html").read_text(encoding="utf-8")
    assert f"main {{ max-width: {PAGE_WIDTH + 80}px; margin: 0 auto; padding: 36px 40px 72px; }}" in text  # fmt: skip
    assert "figure .plot { overflow-x: auto; padding-top: 28px; }" in text
    assert "figure .plot .modebar-container { top: -28px !important; }" in text
    assert all(f.figure.layout.width <= PAGE_WIDTH for f in run_figures(RunResult.load(tiny_run)))


def test_conclusions_and_caveats_are_there(page: Page, tiny_run: Path) -> None:
    text = (tiny_run / "report.html").read_text(encoding="utf-8")
    assert "masking a language&#x27;s 41 neurons raises its own NLL by" in text
    assert "Only 2 random control sets per language" in text  # 2 < 5 seeds
    assert "p = 0.33, the smallest p 2 random sets allow" in text  # what 2 seeds can show
    assert "95 % CI" in text and "intervals resample" in text
    assert "Set sizes differ between methods" in text  # LAPE picks its own sizes


def test_every_figure_once_and_plotly_js_once(tiny_run: Path, page: Page) -> None:
    figures = run_figures(RunResult.load(tiny_run))
    divs = [a for tag, a in page.tags if tag == "div" and "plotly-graph-div" in (a.get("class") or "")]  # fmt: skip
    assert [d["id"] for d in divs] == [f"fig-{f.name}" for f in figures]
    bundles = [s for s in page.scripts if "plotly.js v" in s[:200]]
    assert len(bundles) == 1 and len(bundles[0]) > 1_000_000  # the whole library, inline
    assert sum("Plotly.newPlot(" in s for s in page.scripts) == len(figures)
    text = (tiny_run / "report.html").read_text(encoding="utf-8")
    for number, figure in enumerate(figures, 1):
        assert (
            f"<strong>Figure {number}.</strong> {html.escape(figure.caption)}</figcaption>" in text
        )


def test_nothing_is_loaded_from_the_network(page: Page, tiny_run: Path) -> None:
    urls = [(tag, key, value) for tag, attrs in page.tags for key, value in attrs.items()
            if key in ("src", "href", "srcset", "action", "poster", "data") and value]  # fmt: skip
    remote = [u for u in urls if u[2].split(":")[0].lower() in ("http", "https") or u[2].startswith("//")]  # fmt: skip
    assert remote == []
    assert not [a for tag, a in page.tags if tag == "script" and "src" in a]
    assert not [a for tag, a in page.tags if tag == "link"]  # no stylesheet or font to fetch
    text = (tiny_run / "report.html").read_text(encoding="utf-8")
    head = text[: text.index("<script")]  # meta and style
    assert "@import" not in head and "url(" not in head and "@font-face" not in head
    assert "mathjax" not in head.lower()


def test_every_text_is_escaped(tiny_run: Path) -> None:
    result = RunResult.load(tiny_run)
    nasty = NamedFigure("x<y", 'a <script>alert("caption")</script> & b', go.Figure())
    text = report_html(result, [nasty])
    assert "<script>alert(" not in text
    assert "a &lt;script&gt;alert(&quot;caption&quot;)&lt;/script&gt; &amp; b" in text
    assert 'id="fig-x-y"' in text


def test_report_command_rebuilds_the_same_page(tiny_run: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "again.html"
    assert main(["report", str(tiny_run), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    # From the folder alone, the same page the run wrote from memory.
    assert out.read_text(encoding="utf-8") == (tiny_run / "report.html").read_text(encoding="utf-8")


def test_report_refuses_a_folder_without_a_finished_run(tiny_run: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    meta = json.loads((tiny_run / "run_config.json").read_text()) | {"complete": False}
    (unfinished / "run_config.json").write_text(json.dumps(meta))
    assert main(["report", str(unfinished)]) == 2
    err = capsys.readouterr().err
    assert "holds an unfinished crane-lens run" in err and "Re-run the `crane-lens run`" in err
    assert main(["report", str(tmp_path)]) == 2
    assert "not a crane-lens run folder (no run_config.json)" in capsys.readouterr().err
    assert list(tmp_path.rglob("*.html")) == []


def test_a_continued_run_writes_the_report(tiny_run: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "run"
    shutil.copytree(tiny_run, folder)
    (folder / "report.html").unlink()
    meta = json.loads((folder / "run_config.json").read_text()) | {"complete": False}
    (folder / "run_config.json").write_text(json.dumps(meta))  # as after a crash in the last stage
    assert main([*RUN_ARGS, "--out", str(tmp_path), "--name", "run"]) == 0
    # The last line printed names the report, as `crane-lens report` does.
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == (
        f"Report written to {folder / 'report.html'}"
    )
    assert (folder / "report.html").read_text().replace(str(folder), "") == (
        tiny_run / "report.html"
    ).read_text().replace(str(tiny_run), "")


def test_a_report_failure_keeps_the_results(tiny_run: Path, tmp_path: Path, monkeypatch, caplog, capsys) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    import crane_lens.report.html

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("plotly broke")

    folder = tmp_path / "run"
    shutil.copytree(tiny_run, folder)
    for name in ("report.html", "summary.md", "selectivity.csv"):
        (folder / name).unlink()
    meta = json.loads((folder / "run_config.json").read_text()) | {"complete": False}
    (folder / "run_config.json").write_text(json.dumps(meta))
    monkeypatch.setattr(crane_lens.report.html, "report_html", broken)
    with caplog.at_level(logging.ERROR, logger="crane_lens"):
        assert main([*RUN_ARGS, "--out", str(tmp_path), "--name", "run"]) == 0
    assert "could not write" in caplog.text and "plotly broke" in caplog.text
    assert "Report written" not in capsys.readouterr().out
    assert "crane-lens report" in caplog.text
    assert (folder / "summary.md").is_file() and (folder / "selectivity.csv").is_file()
    assert json.loads((folder / "run_config.json").read_text())["complete"] is True
    assert not (folder / "report.html").exists() and not list(folder.glob(".report.html.*"))
    RunResult.load(folder)  # the folder is a finished run: `crane-lens report` can retry


def test_only_a_report_this_run_wrote_is_announced(tiny_run: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    """An older report.html in the folder is not this run's: when rewriting it fails (and the
    error says so), no 'Report written' line claims it."""
    import crane_lens.report.html

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("plotly broke")

    folder = tmp_path / "run"
    shutil.copytree(tiny_run, folder)  # report.html of the earlier call stays
    meta = json.loads((folder / "run_config.json").read_text()) | {"complete": False}
    (folder / "run_config.json").write_text(json.dumps(meta))
    monkeypatch.setattr(crane_lens.report.html, "report_html", broken)
    assert main([*RUN_ARGS, "--out", str(tmp_path), "--name", "run"]) == 0
    assert (folder / "report.html").is_file()
    assert "Report written" not in capsys.readouterr().out


def test_a_single_method_without_random_sets(tiny_run: Path) -> None:
    """The sections that need a second method or random sets say so instead of breaking."""
    from dataclasses import replace

    result = RunResult.load(tiny_run)
    crane = replace(result.matrices["crane"], random_nll={})
    result = replace(result, neurons={"crane": result.neurons["crane"]}, matrices={"crane": crane})
    page = Page(report_html(result, figures=[]))
    assert page.rows["selectivity"][0] == ["method", "masked set", "neurons", "own", "others", "ratio", "index"]  # fmt: skip
    text = report_html(result, figures=[])
    assert "One method only: no two sets to compare." in text
    assert "No random control sets (--random-seeds 0)" in text
    assert "random control" not in text[text.index('id="conclusions"') : text.index('id="caveats"')]
    assert "No figures." in text
