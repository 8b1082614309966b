"""Export results to files: profile levels, footprints and candles to CSV/Parquet, a chart to PNG.

This is the one module of :mod:`compute` that writes files (the notebook and the
dashboard's download button share it); the results themselves stay pure.

Tables
------
:func:`tables` names the tables of a result:

* :class:`~compute.result.ProfileResult` (every profile kind) -> ``levels``
  (``price_low, price_high, volume, buy, sell, delta, trades`` + the kind's columns);
* :class:`~compute.levels.DevelopingResult` -> ``levels`` and ``developing``;
* :class:`~compute.footprint.FootprintResult` -> ``candles``, ``cells``, ``stacked``, ``levels``;
* a pandas DataFrame (candles, trades, ...) -> ``data``.

CSV keeps every float exactly (shortest round-trip text, read back exactly by
:func:`read_table`). Parquet additionally keeps
the dtypes and the result's summary (POC, VAH, VAL, totals, settings) as
``DataFrame.attrs["flowlens"]``, which pandas stores in the file's metadata.

PNG
---
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
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "FORMATS", "export", "export_all", "png_bytes", "read_table", "summary", "table_bytes", "tables", "to_csv",
    "to_html", "to_parquet", "to_png",
]

#: Table formats by file suffix.
FORMATS = ("csv", "parquet")
#: Key of the summary in ``DataFrame.attrs`` (and so in the Parquet metadata).
ATTRS_KEY = "flowlens"


# -- tables -------------------------------------------------------------------------------
def tables(obj) -> dict[str, pd.DataFrame]:
    """The named tables of a result (see the module docstring). Raises TypeError for other objects."""
    from .footprint import FootprintResult
    from .levels import DevelopingResult
    from .result import ProfileResult

    if isinstance(obj, ProfileResult):
        return {"levels": obj.levels}
    if isinstance(obj, DevelopingResult):
        return {"levels": obj.levels, "developing": obj.developing}
    if isinstance(obj, FootprintResult):
        return {"candles": obj.candles, "cells": obj.cells, "stacked": obj.stacked, "levels": obj.levels}
    if isinstance(obj, pd.DataFrame):
        return {"data": obj}
    raise TypeError(f"cannot export {type(obj).__name__}: expected a profile, footprint, developing result or DataFrame")


def _plain(x):
    """JSON-able copy (numpy scalars to Python, NaN to None)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def summary(obj) -> dict | None:
    """The JSON-able summary values of a result (None for a DataFrame)."""
    from .footprint import FootprintResult

    if isinstance(obj, FootprintResult):
        d = {k: v for k, v in obj.to_dict().items() if k not in ("candles", "cells", "stacked", "levels")}
        return _plain({"kind": "footprint", **d})
    if hasattr(obj, "summary") and callable(obj.summary):
        return _plain(obj.summary())
    return None


def _table(obj, part: str | None) -> tuple[str, pd.DataFrame]:
    t = tables(obj)
    if part is None:
        part = "cells" if "cells" in t else next(iter(t))
    if part not in t:
        raise ValueError(f"{type(obj).__name__} has no table {part!r}; tables: {sorted(t)}")
    return part, t[part]


def _fmt(path, fmt: str | None) -> str:
    f = (fmt or Path(path).suffix.lstrip(".")).lower()
    if f == "pq":
        f = "parquet"
    if f not in FORMATS:
        raise ValueError(f"unknown table format {f!r} (from {path}); expected one of {FORMATS}")
    return f


def _write(df: pd.DataFrame, target, fmt: str, meta: dict | None) -> None:
    if fmt == "csv":
        df.to_csv(target, index=False)
    else:
        df = df.copy()
        df.attrs = {ATTRS_KEY: meta} if meta is not None else {}
        df.to_parquet(target, index=False, engine="pyarrow")


def to_csv(obj, path, part: str | None = None) -> Path:
    """Write one table of ``obj`` as CSV (header, no index, exact floats); returns the path.

    ``part`` names the table (default: ``cells`` for a footprint, else the first).
    Raises TypeError/ValueError for an unknown object or part.
    """
    _, df = _table(obj, part)
    path = Path(path)
    _write(df, path, "csv", None)
    return path


def to_parquet(obj, path, part: str | None = None) -> Path:
    """Write one table of ``obj`` as Parquet with the result's summary in ``attrs["flowlens"]``; returns the path."""
    name, df = _table(obj, part)
    path = Path(path)
    meta = summary(obj)
    _write(df, path, "parquet", None if meta is None else {**meta, "table": name})
    return path


def export(obj, path, part: str | None = None, **png_kw) -> Path:
    """Write ``obj`` by the suffix of ``path``: ``.csv``, ``.parquet``, ``.png`` (a chart) or ``.html`` (a chart)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return to_png(obj, path, **png_kw)
    if suffix in (".html", ".htm"):
        return to_html(obj, path)
    return (to_csv if _fmt(path, None) == "csv" else to_parquet)(obj, path, part)


def export_all(obj, folder, stem: str, formats=FORMATS) -> dict[str, Path]:
    """Write every table of ``obj`` in every format as ``folder/<stem>-<table>.<fmt>``; returns ``{"table.fmt": path}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in tables(obj):
        for fmt in formats:
            p = folder / f"{stem}-{name}.{_fmt('x.' + fmt, fmt)}"
            (to_csv if fmt == "csv" else to_parquet)(obj, p, name)
            out[f"{name}.{fmt}"] = p
    return out


def table_bytes(obj, fmt: str = "csv", part: str | None = None) -> bytes:
    """One table of ``obj`` as CSV or Parquet bytes (for a download button)."""
    name, df = _table(obj, part)
    f = _fmt("x." + fmt, fmt)
    if f == "csv":
        return df.to_csv(index=False).encode()
    buf = io.BytesIO()
    meta = summary(obj)
    _write(df, buf, f, None if meta is None else {**meta, "table": name})
    return buf.getvalue()


def read_table(path) -> pd.DataFrame:
    """Read a table written by this module (CSV with exact floats, or Parquet with its ``attrs``)."""
    path = Path(path)
    if _fmt(path, None) == "csv":
        # pandas >= 3 parses floats round-trip by default (and deprecates the option)
        kw = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
        return pd.read_csv(path, **kw)
    df = pd.read_parquet(path, engine="pyarrow")
    if ATTRS_KEY in df.attrs and isinstance(df.attrs[ATTRS_KEY], str):
        df.attrs[ATTRS_KEY] = json.loads(df.attrs[ATTRS_KEY])
    return df


# -- charts ---------------------------------------------------------------------------------
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
    from playwright.sync_api import sync_playwright

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
