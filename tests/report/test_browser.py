"""The report and the figure files in a real headless Chromium (Debian's `chromium`): no
JavaScript error, no network request, every figure drawn, a screenshot that is not blank.

Skipped without a browser, unless CRANE_LENS_BROWSER=1 (CI), which makes that a failure."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from crane_lens.cli import main
from crane_lens.pipeline import RunConfig, RunResult
from crane_lens.plots.run import run_figures
from crane_lens.report import report_html
from crane_lens.selection import select_language_neurons
from tests.plots.test_heatmap import toy_stats
from tests.plots.test_matrix import LANGS17, toy_matrix
from tests.report.browser import inspect_page
from tests.report.png import read_png

pytestmark = pytest.mark.integration


def test_the_png_reader_reads_what_chromium_draws(browser: str, tmp_path: Path) -> None:
    """The screenshot check below rests on this reader: a known page decodes to its colours."""
    page = tmp_path / "known.html"
    page.write_text('<html><body style="margin:0;background:#123456"><div style="position:'
                    'absolute;left:20px;top:10px;width:40px;height:30px;background:#ff8000">'
                    "</div></body></html>")  # fmt: skip
    shot = read_png(inspect_page(page, browser, width=200, scale=1, region=(0, 100)).screenshot)
    assert (shot.width, shot.height) == (200, 100)

    def pixel(x: int, y: int) -> bytes:
        i = (y * shot.width + x) * shot.channels
        return shot.pixels[i : i + 3]

    assert pixel(5, 5) == bytes([0x12, 0x34, 0x56]) == pixel(199, 99)
    assert pixel(20, 10) == bytes([0xFF, 0x80, 0x00]) == pixel(59, 39)
    assert pixel(60, 40) == bytes([0x12, 0x34, 0x56])
    background = shot.pixels[: shot.channels]
    assert shot.share_not(background) == pytest.approx(40 * 30 / (200 * 100))


def test_the_report_renders_offline_without_errors(tiny_run: Path, browser: str) -> None:
    figures = run_figures(RunResult.load(tiny_run))
    seen = inspect_page(tiny_run / "report.html", browser, width=1400, scale=0.25)
    assert seen.errors == []
    # The page itself and the images plotly makes in memory: nothing else, no network.
    assert seen.requests[0] == (tiny_run / "report.html").resolve().as_uri()
    assert [r for r in seen.requests[1:] if not r.startswith("data:")] == []
    # Every figure is on the page, and plotly drew each one, trace by trace.
    assert seen.divs == len(figures) == len(seen.figures)
    for shown, figure in zip(seen.figures, figures, strict=True):
        assert shown["id"] == f"fig-{figure.name}"
        assert shown["plotted"] and shown["svg"] >= 1 and shown["drawn"] >= 1, shown
        assert shown["traces"] == len(figure.figure.data), shown
    # A quarter-scale screenshot of the whole page: text, tables and colour, not one colour.
    shot = read_png(seen.screenshot)
    assert shot.width == 1400 / 4 and shot.height == pytest.approx(seen.size[1] / 4, abs=1)
    white = b"\xff" * shot.channels
    assert len(shot.colours(step=2)) > 200
    assert 0.03 < shot.share_not(white, step=2) < 0.9


def _overlap(a: list[float], b: list[float]) -> bool:
    """Whether two boxes [left, top, right, bottom] share more than a pixel's sliver."""
    return min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1


def test_a_17_language_report_fits_a_1400_px_window(tiny_run: Path, browser: str, tmp_path: Path) -> None:  # fmt: skip
    """The figures of a 17-language run (the widest: ablation matrices, CRANE specificity,
    selectivity) in a 1400-px browser window: each fits the page's content column, plotly's
    toolbar covers no title, and no colour bar title covers a tick label."""
    stats = toy_stats(LANGS17, 4, 1024)
    neurons = {"crane": select_language_neurons(stats, "crane", k=41),
               "lape": select_language_neurons(stats, "activation_probability", k=60)}  # fmt: skip
    matrices = {m: toy_matrix(m, LANGS17, seeds=2) for m in neurons}
    figures = run_figures(RunResult(tmp_path, RunConfig(langs=LANGS17), stats, neurons, matrices))
    page = tmp_path / "report.html"
    page.write_text(report_html(RunResult.load(tiny_run), figures), encoding="utf-8")
    for path in (page, tiny_run / "report.html"):
        seen = inspect_page(path, browser, width=1400, scale=0.1, layout=True)
        assert seen.errors == [] and seen.layout is not None
        assert seen.size[0] <= seen.viewport  # no horizontal scroll bar on the page
        for box in seen.layout:
            where = (path.name, box["id"])
            # Inside its figure's column, which is inside the window: nothing cut, no scrolling.
            assert box["div"][2] <= box["plot"][2] + 0.5 <= seen.viewport + 0.5, where
            assert box["scroll"] <= box["client"], where
            assert box["titles"] and box["modebar"], where
            assert not any(_overlap(m, t) for m in box["modebar"] for t in box["titles"]), where
            for bar in box["colorbars"]:
                assert not any(_overlap(t, k) for t in bar["title"] for k in bar["ticks"]), where


def test_figures_command_writes_png_svg_and_pdf(tiny_run: Path, browser: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    figures = run_figures(RunResult.load(tiny_run))
    out = tmp_path / "figs"
    assert main(["figures", str(tiny_run), "--format", "png,svg,pdf", "--out", str(out),
                 "--scale", "0.5"]) == 0  # fmt: skip
    printed = capsys.readouterr().out.split()
    expected = [out / f"{f.name}.{fmt}" for f in figures for fmt in ("png", "svg", "pdf")]
    assert printed == [str(p) for p in expected]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in expected
    )  # no temp files
    for figure in figures:
        png = (out / f"{figure.name}.png").read_bytes()
        width, height = struct.unpack(">II", png[16:24])
        layout = figure.figure.layout
        # at --scale 0.5 an odd width is a half pixel: the browser rounds it either way
        assert abs(width - (layout.width or 700) / 2) <= 0.5 and abs(height - (layout.height or 500) / 2) <= 0.5  # fmt: skip
        image = read_png(png)
        assert len(image.colours(step=2)) > 20  # drawn, not blank
        svg = (out / f"{figure.name}.svg").read_text(encoding="utf-8")
        assert svg.lstrip().startswith("<svg") and svg.rstrip().endswith("</svg>") and len(svg) > 2000  # fmt: skip
        pdf = (out / f"{figure.name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-64:] and len(pdf) > 2000
