"""A finished run for people: a self-contained HTML report and figure files.

* :func:`write_report` / :func:`report_html` — ``crane-lens report RUN_DIR`` (also written at
  the end of every ``crane-lens run``): settings, summary tables, conclusions, caveats and every
  figure in one offline HTML file.
* :func:`write_figures` / :func:`export_figures` — ``crane-lens figures RUN_DIR``: each figure
  as PNG/SVG/PDF through kaleido and a Chromium-based browser already on the machine.

docs/report.md describes both.
"""

from crane_lens.evaluation.findings import method_conclusion, run_warnings
from crane_lens.report.export import (
    FORMATS,
    ExporterUnavailableError,
    check_exporter,
    export_figures,
    find_browser,
    write_figures,
)
from crane_lens.report.html import REPORT_FILE, report_html, write_report
from crane_lens.report.run_folder import check_run_folder

__all__ = [
    "FORMATS",
    "REPORT_FILE",
    "ExporterUnavailableError",
    "check_exporter",
    "check_run_folder",
    "export_figures",
    "find_browser",
    "method_conclusion",
    "report_html",
    "run_warnings",
    "write_figures",
    "write_report",
]
