"""Download buttons: the current view's profile levels, footprint and candles as CSV or Parquet, and the chart as PNG.

Issue 7 item 5 (export from the dashboard). Every file is made when its button is
clicked (Panel ``FileDownload`` callbacks), from the session's latest refresh
(the :class:`dashboard.plan.RefreshPlan` the page shows, handed in by the page), and
written by :mod:`export` (the notebook's export functions):

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
  :func:`export.png_bytes` in headless Chromium from a standalone copy of the
  session's Bokeh models (never a screenshot of the user's browser): the profile pinned at
  the right as on screen (its layout runs in that Chromium too), without the toolbar, with a
  title stamp (symbol, market, range in UTC, source; :func:`stamp_text`).

When nothing is computed yet (no trades in the range) a click shows a message on the
page and raises :class:`NothingToDownload` (Panel logs it; nothing is sent).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import re
from collections.abc import Callable

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

import export
from compute.extras import missing

from . import fmt as _fmt
from .plan import RefreshPlan
from .theme import THEMES

#: Table formats offered (label -> :mod:`export` format).
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


class Downloads(Viewer):
    """The download widgets of one page: the CSV/Parquet choice over one ``FileDownload`` per file.

    The page hands in what the files are made of; nothing here reaches into it:

    ``shown_plan``
        returns the :class:`dashboard.plan.RefreshPlan` the page shows (None before its first refresh);
    ``footprint_of``
        coroutine function: the footprint result of a plan's range (:meth:`dashboard.plan.Planner.footprint_of`);
    ``chart_model``
        returns the Bokeh model drawn for a plan (price chart or footprint), for the PNG;
    ``show_messages``
        shows plain-text messages on the page (a refused click).

    ``buttons`` maps each key of :data:`BUTTONS` to its ``pn.widgets.FileDownload``;
    ``format`` is the widget of :attr:`table_format`. The callbacks (:meth:`table_file`,
    :meth:`png_file`) are coroutines returning ``io.BytesIO`` and set the button's
    ``filename`` (``flowlens-<SYMBOL>-<what>-<from>-<to>.<ext>``, UTC).
    """

    table_format = param.Selector(default="CSV", objects=list(TABLE_FORMATS), doc="File format of the tables.")
    symbol = param.String(default="BTCUSDT", allow_refs=True,
                          doc="Symbol named in the file names (kept to [A-Za-z0-9_-]); may follow another parameter.")

    def __init__(self, shown_plan: Callable, footprint_of: Callable, chart_model: Callable, show_messages: Callable,
                 coverage_of: Callable | None = None, **params):
        super().__init__(**params)
        self._shown_plan, self._footprint_of = shown_plan, footprint_of
        self._chart_model, self._show_messages = chart_model, show_messages
        self._coverage_of = coverage_of
        self.jupyter_button = pn.widgets.Button(label="Open in Jupyter (code cell)", color="light",
                                                description="Python that rebuilds this profile in a notebook from the "
                                                            "same trades (their hash is checked)")
        self.jupyter_button.on_click(self.open_in_jupyter)
        self.jupyter_code = pn.widgets.TextAreaInput(value="", rows=12, visible=False, label="Code cell",
                                                     sizing_mode="stretch_width")
        self.format = pn.widgets.RadioButtonGroup.from_param(self.param.table_format, options=list(TABLE_FORMATS),
                                                             label="Table format",
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

    def __panel__(self) -> pn.Column:
        """The format choice over the buttons, then "Open in Jupyter" and its code cell."""
        return pn.Column(self.format, *self.buttons.values(), self.jupyter_button, self.jupyter_code,
                         sizing_mode="stretch_width", name="downloads")

    def open_in_jupyter(self, _event=None) -> str | None:
        """Fill the code cell that rebuilds the shown profile in a notebook from the same trades (and return it)."""
        from .jupyter import notebook_cell

        try:
            plan = self._plan()
            res = self.profile()
        except NothingToDownload:
            return None
        cov = self._coverage_of(plan) if self._coverage_of is not None else None
        if cov is None:
            self._show_messages(["Open in Jupyter: this view cannot say which trades it used"])
            return None
        code = notebook_cell(res, plan.symbol or self.symbol, plan.market or "usdm", cov)
        self.jupyter_code.value = code
        self.jupyter_code.visible = True
        return code

    panel = __panel__

    # -- what is shown -----------------------------------------------------------------
    def _plan(self) -> RefreshPlan:
        plan = self._shown_plan()
        if plan is None:
            self._refuse("nothing to download yet: the page has not computed its view")
        return plan

    def _refuse(self, text: str):
        self._show_messages([text])
        raise NothingToDownload(text)

    def profile(self):
        """The profile of the current view (ProfileResult); raises NothingToDownload."""
        res = self._plan().res
        if res is None:
            self._refuse("nothing to download: no trades in the visible range")
        return res

    async def footprint(self):
        """The footprint (FootprintResult) of the current view's range; raises NothingToDownload.

        The footprint view's own result; in the chart view, computed (shared per process,
        like everything the page computes) with the footprint view's row size and settings.
        """
        res = await self._footprint_of(self._plan())
        if res is None:
            self._refuse("nothing to download: no trades in the visible range")
        return res

    def candles(self) -> pd.DataFrame:
        """The candles of the visible window at the selected interval (columns of the page's candle source)."""
        plan = self._plan()
        c = plan.candles
        if c is None or not len(c):
            self._refuse("nothing to download: no candles in the visible range")
        start, end = plan.window
        t = c["time"].to_numpy()
        vis = c[(t >= start) & (t < end)].reset_index(drop=True)
        if not len(vis):
            self._refuse("nothing to download: no candles in the visible range")
        return vis

    def _filename(self, what: str, rng, ext: str) -> str:
        sym = re.sub(r"[^A-Za-z0-9_-]", "", str(self.symbol)) or "symbol"
        return f"flowlens-{sym}-{what}-{_stamp(rng[0])}-{_stamp(rng[1])}.{ext}"

    # -- callbacks ---------------------------------------------------------------------
    async def table_file(self, key: str) -> io.BytesIO:
        """Bytes of one table (``levels``, ``key_levels``, ``footprint``, ``candles``) in the chosen format."""
        fmt = TABLE_FORMATS[self.table_format]
        plan = self._plan()
        rng = plan.range
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
            rng = plan.window
        else:
            raise KeyError(key)
        cov = self._coverage_of(plan) if self._coverage_of is not None and key != "candles" else None
        data = export.table_bytes(obj, fmt, part, None if cov is None else {"coverage": cov.to_dict()})
        self.buttons[key].filename = self._filename(key.replace("_", "-"), rng, fmt)
        return io.BytesIO(data)

    async def png_file(self) -> io.BytesIO:
        """The chart of the current view as PNG bytes (:func:`export.png_bytes`, Chromium in a thread)."""
        if (why := missing("playwright", "The PNG export")) is not None:
            self._refuse(why)
        plan = self._plan()
        copy = _standalone_copy(self._chart_model(plan))  # here, on the session's thread: live models untouched later
        for_export(copy, stamp_text(plan, str(self.symbol)))
        png = await asyncio.to_thread(export.png_bytes, copy, *PNG_SIZE)
        self.buttons["png"].filename = self._filename(plan.view, plan.range, "png")
        return io.BytesIO(png)


def stamp_text(plan: RefreshPlan, symbol: str = "") -> str:
    """The PNG's title stamp: ``BTCUSDT · usdm · 2020-02-22 00:00:00 UTC → 2020-02-22 00:30:00 UTC · source: …``."""
    start, end = plan.range
    parts = [plan.symbol or symbol or "?"]
    if plan.market:
        parts.append(plan.market)
    parts.append(f"{_fmt.utc(start, False)} → {_fmt.utc(end, False)}")
    if plan.source:
        parts.append(f"source: {plan.source}")
    return " · ".join(parts)


def for_export(model, stamp: str) -> None:
    """Make a standalone copy of the chart look like the screen, for a picture: no toolbar on any figure, and the
    title stamp above the first figure (the profile, its labels and legends stay where the screen has them)."""
    from bokeh.models import Plot, Title

    plots = list(model.select({"type": Plot}))
    for p in plots:
        p.toolbar_location = None
    if plots:
        main = next((p for p in plots if p.name in ("price_chart", "footprint_chart")), plots[0])
        theme = "light" if main.background_fill_color == "#ffffff" else "dark"
        main.add_layout(Title(text=stamp, text_font_size="12px", text_color=THEMES[theme]["text"], align="left",
                              name="export_stamp"), "above")


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


__all__ = ["BUTTONS", "PNG_SIZE", "TABLE_FORMATS", "Downloads", "NothingToDownload", "for_export", "key_levels",
           "stamp_text"]
