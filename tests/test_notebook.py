"""static_figures: a PNG beside each interactive figure where kaleido works, one line where not."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import plotly.graph_objects as go
import plotly.io as pio
import pytest

from crane_lens.utils.notebook import INTERACTIVE, WITH_STATIC, static_figures

PNG = b"\x89PNG\r\n\x1a\n tiny"


@pytest.fixture(autouse=True)
def keep_renderer() -> Iterator[None]:
    before = pio.renderers.default
    yield
    pio.renderers.default = before


def test_each_figure_is_one_output_with_both_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pio, "to_image", lambda *a, **k: PNG)
    monkeypatch.setattr("plotly.io._base_renderers.to_image", lambda *a, **k: PNG)  # the renderer
    assert static_figures() == WITH_STATIC
    bundle = go.Figure(go.Bar(y=[1, 2]))._repr_mimebundle_()
    assert set(bundle) == {"application/vnd.plotly.v1+json", "image/png"}
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["y"] == [1, 2]
    assert "text/html" not in bundle  # no embedded plotly.js (4.6 MB per notebook)


def test_without_a_browser_figures_stay_interactive_with_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_browser(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("Kaleido requires Google Chrome to be installed.\nInstall it with ...")

    monkeypatch.setattr(pio, "to_image", no_browser)
    with caplog.at_level(logging.WARNING, "crane_lens.utils.notebook"):
        assert static_figures() == INTERACTIVE
    assert [r.getMessage() for r in caplog.records] == [
        "Figures are interactive only, no static PNG (Kaleido requires Google Chrome to be "
        "installed.)."
    ]
    assert set(go.Figure()._repr_mimebundle_()) == {"application/vnd.plotly.v1+json"}
