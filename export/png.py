"""A chart to PNG or standalone HTML.

A Bokeh model (the dashboard's ``PriceChart.figure``), a HoloViews object or a Panel
object is written as standalone HTML with BokehJS inlined (no network) and
screenshotted by Chromium through Playwright (Debian's ``/usr/bin/chromium`` when
present, else Playwright's own browser). Bokeh's own ``export_png`` needs Selenium and
a chromedriver, which this environment does not have; Playwright drives the browser
directly. The browser runs in a worker thread, so this also works inside Jupyter's
event loop.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
from pathlib import Path

from compute.extras import need

__all__ = ["chromium_executable", "png_bytes", "to_html", "to_png"]

_FILL_CSS = "<style>html,body{margin:0;padding:0;width:100%;height:100%;background:#fff}</style>"
_WAIT_JS = """() => {
  if (typeof window.Bokeh === "undefined" || Bokeh.documents.length === 0) return false;
  return Bokeh.documents.every((d) => d.is_idle);
}"""


def _bokeh_model(chart):
    from bokeh.model import Model

    if isinstance(chart, Model):
        return chart
    fig = getattr(chart, "figure", None)  # dashboard.chart.PriceChart
    if isinstance(fig, Model):
        return fig
    mod = type(chart).__module__
    if mod.startswith("holoviews"):
        import holoviews as hv

        return hv.render(chart, backend="bokeh")
    return None


def _html(chart, title: str = "flowlens") -> str:
    """Standalone HTML of ``chart`` with BokehJS inlined."""
    model = _bokeh_model(chart)
    if model is not None:
        from bokeh.embed import file_html
        from bokeh.resources import INLINE

        html = file_html(model, resources=INLINE, title=title)
    elif hasattr(chart, "save") and hasattr(chart, "get_root"):  # a Panel object (no Panel import in compute/)
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "chart.html"
            chart.save(str(p), resources="inline", title=title)
            html = p.read_text(encoding="utf-8")
    else:
        raise TypeError(f"cannot render {type(chart).__name__} as a chart: expected a Bokeh, HoloViews or Panel object")
    return html.replace("</head>", _FILL_CSS + "</head>", 1)


def to_html(chart, path, title: str = "flowlens") -> Path:
    """Write ``chart`` as a standalone HTML file (BokehJS inlined, opens offline); returns the path."""
    path = Path(path)
    path.write_text(_html(chart, title), encoding="utf-8")
    return path


def chromium_executable() -> str | None:
    """Debian's chromium (``$FLOWLENS_CHROMIUM``, ``chromium`` on PATH, /usr/bin/chromium) or None (Playwright's own)."""
    env = os.environ.get("FLOWLENS_CHROMIUM")
    if env:
        return env
    return shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _shoot(html_path: Path, width: int, height: int, timeout_s: float, executable: str | None) -> bytes:
    sync_playwright = need("playwright.sync_api", "the PNG export").sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            page.goto(html_path.as_uri(), wait_until="load", timeout=timeout_s * 1000)
            page.wait_for_function(_WAIT_JS, timeout=timeout_s * 1000)
            page.wait_for_timeout(100)  # let the last canvas paint land
            return page.screenshot(type="png", full_page=True)
        finally:
            browser.close()


def png_bytes(chart, width: int = 1200, height: int = 600, timeout_s: float = 30.0) -> bytes:
    """Render ``chart`` (Bokeh model, ``PriceChart``, HoloViews or Panel object) to PNG bytes.

    The page viewport is ``width`` x ``height`` CSS pixels (scale 1); a stretching
    layout fills it, a fixed-size one keeps its size (the image grows to hold it).

    Raises
    ------
    TypeError
        Not a chart.
    ImportError
        Playwright is not installed (the ``export`` extra, :mod:`compute.extras`).
    playwright.sync_api.Error
        Chromium could not start or the chart did not render within ``timeout_s``.
    """
    html = _html(chart)
    with tempfile.TemporaryDirectory(prefix="flowlens-png-") as d:
        page = Path(d) / "chart.html"
        page.write_text(html, encoding="utf-8")
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:  # sync Playwright refuses a running loop
            return ex.submit(_shoot, page, int(width), int(height), float(timeout_s), chromium_executable()).result()


def to_png(chart, path, width: int = 1200, height: int = 600, timeout_s: float = 30.0) -> Path:
    """Write ``chart`` as a PNG file (see :func:`png_bytes`); returns the path."""
    path = Path(path)
    path.write_bytes(png_bytes(chart, width, height, timeout_s))
    return path
