"""Download buttons: the current view's profile levels, footprint and candles as CSV or Parquet, and the chart as PNG.

Issue 7 item 5 (export from the dashboard). Every file is made when its button is
clicked (Panel ``FileDownload`` callbacks), from the session's latest refresh
(:attr:`dashboard.app.Dashboard.last_plan`: the same results the page shows), and
written by :mod:`compute.export` (the notebook's export functions):

* **Profile levels**: the VPVR rows (``price_low, price_high, volume, buy, sell, delta,
  trades`` + the mode's columns) of :class:`compute.result.ProfileResult`; the Parquet
  file also carries the profile's summary (POC, VAH, VAL, percentiles, totals) in
  ``attrs["flowlens"]``;
* **Key levels**: POC, VAH, VAL and the percentile lines as a small table (:func:`key_levels`),
  so a CSV user gets them too;
* **Footprint**: the footprint cells of the visible range (the footprint view's own
  result, or in the chart view the footprint the footprint view would show for the same
  range, without its 60-candle display limit);
* **Candles**: the visible candles at the selected interval;
* **Chart (PNG)**: the chart as drawn (price chart or footprint), rendered by
  :func:`compute.export.png_bytes` in headless Chromium from a standalone copy of the
  session's Bokeh models (never a screenshot of the user's browser).

When nothing is computed yet (no trades in the range) a click shows a message on the
page and raises :class:`NothingToDownload` (Panel logs it; nothing is sent).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import re

import pandas as pd
import panel as pn

from compute import export

#: Table formats offered (label -> :mod:`compute.export` format).
TABLE_FORMATS = {"CSV": "csv", "Parquet": "parquet"}
#: Size of the chart PNG (CSS pixels at scale 1).
PNG_SIZE = (1600, 900)
#: The buttons: key -> label.
BUTTONS = {
    "levels": "Profile levels",
    "key_levels": "Key levels (POC, VA, %)",
    "footprint": "Footprint cells",
    "candles": "Candles",
    "png": "Chart (PNG)",
}


class NothingToDownload(ValueError):
    """The session has no result of that kind for its current view (yet)."""


def key_levels(res) -> pd.DataFrame:
    """POC, VAH, VAL and the percentile lines of a profile as a table.

    Parameters
    ----------
    res : compute.result.ProfileResult

    Returns
    -------
    DataFrame with one row per level: ``level`` (str: ``POC``, ``VAH``, ``VAL``, then
    ``P<percent>`` such as ``P25``), ``price`` (float64, quote currency) and ``fraction``
    (float64: the value-area fraction for VAH/VAL, the percentile as a fraction for the
    percentile lines, NaN for the POC). Definitions are those of :mod:`compute.result`
    (reference b3, b4, b9): the POC and percentile prices are row middles, VAH and VAL
    the value area's top and bottom edges.
    """
    va = float(res.value_area)
    rows = [("POC", float(res.poc), float("nan")), ("VAH", float(res.vah), va), ("VAL", float(res.val), va)]
    rows += [(f"P{p * 100:g}", float(price), float(p)) for p, price in sorted(res.percentiles.items())]
    return pd.DataFrame(rows, columns=["level", "price", "fraction"])


def _stamp(ms: int) -> str:
    return dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.UTC).strftime("%Y%m%dT%H%M%S")


class Downloads:
    """The download widgets of one :class:`dashboard.app.Dashboard` session.

    ``buttons`` maps each key of :data:`BUTTONS` to its ``pn.widgets.FileDownload``;
    ``format`` is the CSV/Parquet choice for the tables. The callbacks
    (:meth:`table_file`, :meth:`png_file`) are coroutines returning ``io.BytesIO`` and
    set the button's ``filename`` (``flowlens-<SYMBOL>-<what>-<from>-<to>.<ext>``, UTC).
    """

    def __init__(self, dash):
        self.dash = dash
        self.format = pn.widgets.RadioButtonGroup(label="Table format", options=list(TABLE_FORMATS), value="CSV",
                                                  color="light")
        self.buttons: dict[str, pn.widgets.FileDownload] = {}
        for key, label in BUTTONS.items():
            cb = self.png_file if key == "png" else self._table_callback(key)
            self.buttons[key] = pn.widgets.FileDownload(
                callback=cb, filename=f"flowlens-{key}.{'png' if key == 'png' else 'csv'}", label=label,
                color="light",
            )

    def _table_callback(self, key: str):
        async def callback() -> io.BytesIO:  # a coroutine function, so Panel awaits it on the session's loop
            return await self.table_file(key)

        return callback

    def panel(self) -> pn.Column:
        """The format choice over the buttons."""
        return pn.Column(self.format, *self.buttons.values(), sizing_mode="stretch_width", name="downloads")

    # -- what is shown -----------------------------------------------------------------
    def _plan(self) -> dict:
        plan = self.dash.shown_plan()
        if not plan:
            self._refuse("nothing to download yet: the page has not computed its view")
        return plan

    def _refuse(self, text: str):
        self.dash.show_messages([text])
        raise NothingToDownload(text)

    def profile(self):
        """The profile of the current view (ProfileResult); raises NothingToDownload."""
        res = self._plan().get("res")
        if res is None:
            self._refuse("nothing to download: no trades in the visible range")
        return res

    async def footprint(self):
        """The footprint (FootprintResult) of the current view's range; raises NothingToDownload.

        The footprint view's own result; in the chart view, computed (shared per process,
        like everything the page computes) with the footprint view's row size and settings.
        """
        d = self.dash
        plan = self._plan()
        if plan.get("fp_res") is not None:
            return plan["fp_res"]
        if "lo" not in plan or plan.get("res") is None:
            self._refuse("nothing to download: no trades in the visible range")
        from .app import AUTO_ROWS_FOOTPRINT

        s = d.settings
        view = d.registry.get(s.symbol)
        start, end = plan["range"]
        row_size = d._row_size(plan["lo"], plan["hi"], plan["tick"], AUTO_ROWS_FOOTPRINT)
        res = await d._compute(view, "footprint", start, end, view.snapshot, **d.footprint_params(row_size))
        if res is None:
            self._refuse("nothing to download: no trades in the visible range")
        return res

    def candles(self) -> pd.DataFrame:
        """The candles of the visible window at the selected interval (columns of the page's candle source)."""
        plan = self._plan()
        c = plan.get("candles")
        if c is None or not len(c):
            self._refuse("nothing to download: no candles in the visible range")
        start, end = plan["window"]
        t = c["time"].to_numpy()
        vis = c[(t >= start) & (t < end)].reset_index(drop=True)
        if not len(vis):
            self._refuse("nothing to download: no candles in the visible range")
        return vis

    def _filename(self, what: str, rng, ext: str) -> str:
        sym = re.sub(r"[^A-Za-z0-9_-]", "", str(self.dash.settings.symbol)) or "symbol"
        return f"flowlens-{sym}-{what}-{_stamp(rng[0])}-{_stamp(rng[1])}.{ext}"

    # -- callbacks ---------------------------------------------------------------------
    async def table_file(self, key: str) -> io.BytesIO:
        """Bytes of one table (``levels``, ``key_levels``, ``footprint``, ``candles``) in the chosen format."""
        fmt = TABLE_FORMATS[self.format.value]
        plan = self._plan()
        rng = plan["range"]
        if key == "levels":
            obj, part = self.profile(), "levels"
            rng = (obj.start, obj.end)
        elif key == "key_levels":
            res = self.profile()
            obj, part, rng = key_levels(res), None, (res.start, res.end)
        elif key == "footprint":
            obj, part = await self.footprint(), "cells"
        elif key == "candles":
            obj, part = self.candles(), None
            rng = plan["window"]
        else:
            raise KeyError(key)
        data = export.table_bytes(obj, fmt, part)
        self.buttons[key].filename = self._filename(key.replace("_", "-"), rng, fmt)
        return io.BytesIO(data)

    async def png_file(self) -> io.BytesIO:
        """The chart of the current view as PNG bytes (:func:`compute.export.png_bytes`, Chromium in a thread)."""
        d = self.dash
        plan = self._plan()
        model = d.footprint.layout if plan["view"] == "footprint" and d.footprint is not None else d.chart.figure
        copy = _standalone_copy(model)  # here, on the session's thread: the live models are not touched later
        png = await asyncio.to_thread(export.png_bytes, copy, *PNG_SIZE)
        self.buttons["png"].filename = self._filename(plan["view"], plan["range"], "png")
        return io.BytesIO(png)


class _NoCallbackWarning(logging.Filter):
    def filter(self, record):  # the live models' Python callbacks are not part of the copy
        return "real Python callbacks" not in record.getMessage()


def _standalone_copy(model):
    """An independent copy of a Bokeh model tree (through Bokeh's JSON), for rendering outside the session.

    Rendering the live model would briefly move it into a temporary document, while the
    session's refresh may change it from the event loop.
    """
    from bokeh.document import Document
    from bokeh.embed import json_item

    logger = logging.getLogger("bokeh.embed.util")
    flt = _NoCallbackWarning()
    logger.addFilter(flt)
    try:
        item = json_item(model)
    finally:
        logger.removeFilter(flt)
    doc = Document.from_json(item["doc"])
    return doc.get_model_by_id(item["root_id"])


__all__ = ["BUTTONS", "PNG_SIZE", "TABLE_FORMATS", "Downloads", "NothingToDownload", "key_levels"]
