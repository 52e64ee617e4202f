"""Notebook display: plotly figures that also show where no JavaScript runs.

A plotly figure in a notebook is drawn by JavaScript. A code host (GitHub, GitLab) shows a
committed notebook without running any, so its figures vanish there; plotly's default notebook
renderer also embeds plotly.js (4.6 MB) in the file. :func:`static_figures` makes every figure
one output holding two forms: plotly's figure JSON, which JupyterLab, Notebook 7 and VS Code
draw interactively with their own plotly.js, and a PNG, which everything else shows.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

INTERACTIVE = "plotly_mimetype"
WITH_STATIC = "plotly_mimetype+png"


def static_figures() -> str:
    """Show each plotly figure interactively *and* as a static PNG, in one notebook output.

    The PNG needs kaleido and a Chromium-based browser (``pip install 'crane_lens[figures]'``;
    Debian/Ubuntu: ``apt install chromium``). One tiny export checks that they work (a few
    seconds, once); without them figures stay interactive only, and a one-line warning says so.

    Returns:
        The plotly renderer now in use: ``"plotly_mimetype+png"``, or ``"plotly_mimetype"``
        without static images.
    """
    import plotly.graph_objects as go
    import plotly.io as pio

    try:
        pio.to_image(go.Figure(), format="png", width=10, height=10)
    except Exception as exc:  # kaleido missing, no browser, a browser that fails to start...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("Figures are interactive only, no static PNG (%s).", reason)
        pio.renderers.default = INTERACTIVE
    else:
        pio.renderers.default = WITH_STATIC
    return str(pio.renderers.default)
