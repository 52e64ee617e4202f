"""Open a page in headless Chromium through choreographer (kaleido's driver) and report what a
user would see: JavaScript errors, network requests, the plotly figures drawn, a screenshot."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Per plotly figure div: whether plotly.js built it and how many drawn SVG elements it holds.
INSPECT = """JSON.stringify({
  divs: document.querySelectorAll('.plotly-graph-div').length,
  figures: Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({
    id: d.id,
    plotted: d.classList.contains('js-plotly-plot'),
    svg: d.querySelectorAll('svg.main-svg').length,
    drawn: d.querySelectorAll('.main-svg .plot *, .main-svg .trace, .main-svg image').length,
    traces: (d._fullData || []).length,
  })),
  width: document.documentElement.scrollWidth,
  height: document.documentElement.scrollHeight,
})"""


# Per figure, the boxes ([left, top, right, bottom], CSS px) of what must neither overflow the
# page nor overlap: the figure, its container, its title lines, plotly's toolbar (modebar), the
# colour bars' titles and tick labels.
LAYOUT = """JSON.stringify(Array.from(document.querySelectorAll('figure')).map(f => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const all = (d, s) => Array.from(d.querySelectorAll(s)).map(box);
  const plot = f.querySelector('.plot'), div = f.querySelector('.plotly-graph-div');
  return {id: div.id, plot: box(plot), div: box(div), main: box(document.querySelector('main')),
    scroll: plot.scrollWidth, client: plot.clientWidth,
    titles: all(div, '.gtitle, .gtitle-subtitle'), modebar: all(div, '.modebar'),
    colorbars: Array.from(div.querySelectorAll('.colorbar')).map(c => ({
      title: all(c, '.cbtitle text'), ticks: all(c, '.cbaxis text')}))};
}))"""


@dataclass
class PageReport:
    errors: list[str]
    requests: list[str]
    divs: int
    figures: list[dict[str, Any]]
    size: tuple[int, int]
    screenshot: bytes
    viewport: int = 0  # the page's width without a scroll bar (CSS px)
    layout: list[dict[str, Any]] | None = None  # LAYOUT, when asked for


async def _inspect(url: str, browser: str, *, width: int, scale: float, timeout: float,
                   region: tuple[int, int] | None, layout: bool) -> PageReport:  # fmt: skip
    from choreographer import Browser

    errors: list[str] = []
    requests: list[str] = []

    async def exception(event: dict[str, Any]) -> None:
        details = event["params"]["exceptionDetails"]
        errors.append(f"exception: {details.get('exception', {}).get('description') or details}")

    async def console(event: dict[str, Any]) -> None:
        if event["params"]["type"] in ("error", "assert"):
            errors.append(f"console.{event['params']['type']}: {event['params']['args']}")

    async def log_entry(event: dict[str, Any]) -> None:
        entry = event["params"]["entry"]
        if entry["level"] == "error":
            errors.append(
                f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}"
            )

    async def request(event: dict[str, Any]) -> None:
        requests.append(event["params"]["request"]["url"])

    async with Browser(path=browser, headless=True) as chrome:
        tab = await chrome.create_tab("", window=True)
        for name, callback in (("Runtime.exceptionThrown", exception),
                               ("Runtime.consoleAPICalled", console),
                               ("Log.entryAdded", log_entry),
                               ("Network.requestWillBeSent", request)):  # fmt: skip
            tab.subscribe(name, callback)
        for domain in ("Page", "Runtime", "Log", "Network"):
            await tab.send_command(f"{domain}.enable")
        await tab.send_command("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": 900, "deviceScaleFactor": 1,
                                "mobile": False})  # fmt: skip
        loaded = tab.subscribe_once("Page.loadEventFired")
        await tab.send_command("Page.navigate", {"url": url})
        await asyncio.wait_for(loaded, timeout)
        state: dict[str, Any] = {}
        for _ in range(int(timeout / 0.1)):  # plotly draws asynchronously after the load event
            reply = await tab.send_command("Runtime.evaluate",
                                           {"expression": INSPECT, "returnByValue": True})  # fmt: skip
            state = json.loads(reply["result"]["result"]["value"])
            if all(f["plotted"] and f["drawn"] for f in state["figures"]):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # late console errors
        boxes, viewport = None, 0
        if layout:
            for expression in (LAYOUT, "JSON.stringify(document.documentElement.clientWidth)"):
                reply = await tab.send_command("Runtime.evaluate",
                                               {"expression": expression, "returnByValue": True})  # fmt: skip
                value = json.loads(reply["result"]["result"]["value"])
                boxes, viewport = (value, viewport) if expression == LAYOUT else (boxes, value)
        top, height = region or (0, state["height"])
        clip = {"x": 0, "y": top, "width": width, "height": height, "scale": scale}
        shot = await tab.send_command("Page.captureScreenshot",
                                      {"format": "png", "clip": clip,
                                       "captureBeyondViewport": True})  # fmt: skip
    return PageReport(errors, requests, state["divs"], state["figures"],
                      (state["width"], state["height"]),
                      base64.b64decode(shot["result"]["data"]), viewport, boxes)  # fmt: skip


def inspect_page(path: Path, browser: str, *, width: int = 1400, scale: float = 0.25,
                 timeout: float = 60, region: tuple[int, int] | None = None,
                 layout: bool = False) -> PageReport:  # fmt: skip
    """Load ``path`` (a local HTML file) and report on it; the screenshot covers ``region``
    (top, height in CSS pixels; default the whole page) at ``scale`` × its CSS pixels;
    ``layout``: also measure every figure (:data:`LAYOUT`)."""
    return asyncio.run(_inspect(path.resolve().as_uri(), browser, width=width, scale=scale,
                                timeout=timeout, region=region, layout=layout))  # fmt: skip
