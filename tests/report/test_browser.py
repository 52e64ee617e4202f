"""The report and the figure files in a real headless Chromium (Debian's `chromium`): no
JavaScript error, no network request, every figure drawn, a screenshot that is not blank.

Skipped without a browser, unless CRANE_LENS_BROWSER=1 (CI), which makes that a failure."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from crane_lens.cli import main
from crane_lens.pipeline import RunResult
from crane_lens.plots.run import run_figures
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
        assert (width, height) == (round((layout.width or 700) / 2), round((layout.height or 500) / 2))  # fmt: skip
        image = read_png(png)
        assert len(image.colours(step=2)) > 20  # drawn, not blank
        svg = (out / f"{figure.name}.svg").read_text(encoding="utf-8")
        assert svg.lstrip().startswith("<svg") and svg.rstrip().endswith("</svg>") and len(svg) > 2000  # fmt: skip
        pdf = (out / f"{figure.name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-64:] and len(pdf) > 2000
