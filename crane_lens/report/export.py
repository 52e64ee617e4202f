"""Figure files (PNG, SVG, PDF...) of a run through kaleido, offline.

kaleido 1.x renders plotly figures in a Chromium-based browser that is already on the machine
(on Debian/Ubuntu ``apt install chromium``; or ``BROWSER_PATH=/path/to/chrome``). crane_lens
checks that kaleido imports and a browser is found before any work, and never lets kaleido
download one. Every figure is exported in one browser session (its start costs seconds), with
plotly.js from the installed plotly package and MathJax off: the page loads nothing from the
network.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crane_lens.errors import CraneLensError
from crane_lens.report.run_folder import check_run_folder
from crane_lens.runs import RunResult
from crane_lens.utils.install import install_command
from crane_lens.utils.io import atomic_path

if TYPE_CHECKING:
    from crane_lens.plots.run import NamedFigure

log = logging.getLogger(__name__)

FORMATS = ("png", "svg", "pdf", "jpg", "webp")
# Names of Chromium-based browsers on PATH, when choreographer's own search is unavailable.
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
                 "chrome", "msedge", "microsoft-edge", "brave-browser")  # fmt: skip
INSTALL_HINT = ("install one (Debian/Ubuntu: `sudo apt install chromium`; or Google Chrome) or "
                "point BROWSER_PATH at its executable")  # fmt: skip


class ExporterUnavailableError(CraneLensError, RuntimeError):
    """Figure export needs kaleido 1.x and a Chromium-based browser; one is missing."""


def _executable(path: str) -> bool:
    return Path(path).is_file() and os.access(path, os.X_OK)


def find_browser() -> str | None:
    """The Chromium-based browser kaleido would drive: ``BROWSER_PATH`` if set, else the one
    choreographer (kaleido's browser driver) finds on PATH or in its usual places.

    Returns:
        Its executable, or ``None`` (also when ``BROWSER_PATH`` names no executable file).
    """
    if env := os.environ.get("BROWSER_PATH"):
        return env if _executable(env) else None
    try:
        from choreographer.browsers.chromium import Chromium

        found = Chromium.find_browser(skip_local=False)
    except Exception:  # choreographer missing or changed: search PATH ourselves
        found = next((p for name in BROWSER_NAMES if (p := shutil.which(name))), None)
    return found if found and _executable(found) else None


def check_exporter() -> str:
    """Check that figures can be exported, before any work.

    Returns:
        The browser's executable.

    Raises:
        ExporterUnavailableError: kaleido (1.x) is not installed, or no browser is found; the
            message says what to install.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        import kaleido  # noqa: F401

        major = int(version("kaleido").split(".")[0])
    except (ImportError, PackageNotFoundError):
        raise ExporterUnavailableError(
            f"Exporting figures needs kaleido: {install_command('figures')}."
        ) from None
    if major < 1:
        raise ExporterUnavailableError(
            f"kaleido {version('kaleido')} is too old (figure export uses kaleido 1.x and a "
            f"browser on this machine): {install_command('figures')}."
        )
    browser = find_browser()
    if browser is None:
        if env := os.environ.get("BROWSER_PATH"):
            raise ExporterUnavailableError(
                f"BROWSER_PATH={env} is not an executable file. Point it at a Chromium-based "
                "browser's executable, or unset it to search PATH."
            )
        raise ExporterUnavailableError(
            "Exporting figures needs a Chromium-based browser and none was found: "
            f"{INSTALL_HINT}. crane_lens never downloads one."
        )
    return browser


def kaleido_options(browser: str) -> dict[str, Any]:
    """Options of kaleido's browser session: this browser, plotly.js from the plotly package,
    no MathJax (kaleido would load it from a CDN)."""
    import plotly

    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    options: dict[str, Any] = {"path": browser, "mathjax": False}
    if plotly_js.is_file():
        options["plotlyjs"] = plotly_js.as_uri()
    return options


def parse_formats(value: str | Sequence[str]) -> list[str]:
    """``"png,svg"`` → ``["png", "svg"]``, checked against :data:`FORMATS`.

    Example:
        >>> parse_formats("PNG, svg,pdf")
        ['png', 'svg', 'pdf']
        >>> parse_formats("png,tiff")
        Traceback (most recent call last):
        crane_lens.errors.CraneLensError: Unknown figure format 'tiff'; choose from png, svg, pdf, jpg, webp.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    formats = list(dict.fromkeys(x.strip().lower().lstrip(".") for x in items if x.strip()))
    for fmt in formats:
        if fmt not in FORMATS:
            raise CraneLensError(
                f"Unknown figure format {fmt!r}; choose from {', '.join(FORMATS)}."
            )
    if not formats:
        raise CraneLensError(f"No figure format given; choose from {', '.join(FORMATS)}.")
    return formats


def export_figures(
    figures: Sequence[NamedFigure],
    folder: str | os.PathLike[str],
    formats: Sequence[str] = ("png",),
    *,
    scale: float = 2.0,
    browser: str | None = None,
) -> list[Path]:
    """Write each figure as ``<folder>/<name>.<format>`` in one kaleido session.

    The files appear together at the end: each is written to a temporary file first and all
    replace their targets once every export succeeded (a failure leaves the old files).

    Args:
        figures: E.g. :func:`crane_lens.plots.run_figures` of a run.
        folder: Where the files go (created if needed).
        formats: Any of :data:`FORMATS`.
        scale: Pixel density of raster formats (2 = sharp on high-resolution screens); the size
            in CSS pixels is each figure's layout width and height.
        browser: The browser's executable (default: :func:`check_exporter`'s).

    Returns:
        The files written, figure by figure, in the order of ``formats``.

    Raises:
        ExporterUnavailableError: No kaleido 1.x or no browser.
    """
    formats = parse_formats(formats)
    browser = browser or check_exporter()
    import kaleido

    folder = Path(folder)
    targets = [folder / f"{f.name}.{fmt}" for f in figures for fmt in formats]
    if not targets:
        return []
    with contextlib.ExitStack() as stack:
        jobs = []
        for target, (figure, fmt) in zip(targets, ((f, x) for f in figures for x in formats),
                                         strict=True):  # fmt: skip
            tmp = stack.enter_context(atomic_path(target))
            jobs.append(
                {"fig": figure.figure, "path": tmp, "opts": {"format": fmt, "scale": scale}}
            )
        log.info("exporting %d files with %s", len(jobs), browser)
        kaleido.write_fig_from_object_sync(jobs, kopts=kaleido_options(browser),
                                           cancel_on_error=True)  # fmt: skip
    return targets


def write_figures(
    run_dir: str | os.PathLike[str],
    formats: Sequence[str] | str = ("png",),
    out: str | os.PathLike[str] | None = None,
    *,
    scale: float = 2.0,
) -> list[Path]:
    """``crane-lens figures``: every figure of a finished run as files.

    Checks the formats, the folder and the exporter before loading anything.

    Args:
        run_dir: A finished run folder.
        formats: E.g. ``"png,svg,pdf"``.
        out: Folder of the files (default: ``<run_dir>/figures``).
        scale: See :func:`export_figures`.

    Returns:
        The files written.

    Raises:
        CraneLensError: Unknown format, no finished run, or (ExporterUnavailableError) no
            kaleido 1.x or browser.
    """
    from crane_lens.plots.run import run_figures

    formats = parse_formats(formats)
    folder = check_run_folder(run_dir)
    browser = check_exporter()
    figures = run_figures(RunResult.load(folder))
    target = Path(out) if out is not None else folder / "figures"
    return export_figures(figures, target, formats, scale=scale, browser=browser)
