"""The footprint view: candles split into price rows, per-candle delta and volume, and a CVD pane.

:func:`footprint_columns` turns a :class:`compute.footprint.FootprintResult`
(shared per process) into the columns of the view's sources; it is a pure
function, memoised per process by the page. :class:`FootprintChart` owns the
Bokeh figures (footprint, a two-row strip with each candle's delta and volume,
the CVD pane), which share one time axis.

Each candle occupies its interval ``[open, open + interval)``: a thin
candle (wick and body) on the left, the cells in the middle and the
stacked-imbalance marks on the right edge. Cells show ``bid x ask``
(taker-sell x taker-buy volume), ``delta`` or ``total`` volume; their fill
encodes delta (bid x ask, delta) or volume (total). A diagonal imbalance
(reference b5, ratio :attr:`DashboardSettings.imbalance_ratio`) makes the
number bold and coloured (buy green, sell red) with an outline; the candle's
POC row is outlined in the POC colour. CVD (reference b6) is drawn per
unbroken stretch: it restarts after a data gap and the line is broken there.
"""

from __future__ import annotations

import numpy as np
import param
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, DatetimeTickFormatter, HoverTool, NumeralTickFormatter, Range1d, Span
from bokeh.plotting import figure

from compute.grid import decimals_for

from . import fmt
from .chart import style_figure
from .profile_bars import signed_strength
from .profile_layer import ProfileLayer
from .sources import empty, update_source
from .theme import HEAT, THEMES, colours, delta_palette

CELL_COLUMNS = ("x", "y", "w", "h", "fill", "fill_alpha", "text", "text_imb", "text_colour", "line",
                "bid", "ask", "volume", "delta", "trades", "price_low", "price_high", "imb")
BAR_COLUMNS = ("x", "wx", "time", "open", "high", "low", "close", "top", "bottom", "colour", "delta", "volume",
               "delta_text", "volume_text", "delta_colour", "poc", "poc_x", "poc_w", "poc_h")
STACK_COLUMNS = ("x", "y0", "y1", "colour")
CVD_COLUMNS = ("x", "cvd")


def _num(v: float) -> str:
    """Compact cell number: 0 -> ``0``, 0.123 -> ``.123``, 12.5 -> ``12.5``, 1234 -> ``1.23K``."""
    if v == 0:
        return "0"
    s = fmt.volume(v)
    return s[1:] if s.startswith("0.") else s


def _signed(v: float) -> str:
    """``+12.5``, ``-.3``, ``0``."""
    return ("+" if v > 0 else "-" if v < 0 else "") + _num(abs(v))


def _cell_look(mode: str, bid, ask, vol, delta, theme: str) -> tuple[list[str], list[str], np.ndarray]:
    """Each cell's text, fill colour and fill alpha for ``mode`` (``bidask`` | ``delta`` | ``total``)."""
    n = len(vol)
    if mode == "bidask":
        text = [f"{_num(b)} × {_num(a)}" for b, a in zip(bid.tolist(), ask.tolist(), strict=True)]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(vol > 0, delta / vol, 0.0)
        fill = colours(delta_palette(theme), 0.5 + 0.5 * ratio)
        mxv = float(vol.max()) if n else 1.0
        fill_alpha = 0.18 + 0.5 * (vol / mxv if mxv > 0 else vol)
    elif mode == "delta":
        text = [_signed(d) for d in delta.tolist()]
        mx = float(np.abs(delta).max()) if n else 1.0
        fill = colours(delta_palette(theme), 0.5 + 0.5 * signed_strength(delta, mx))
        fill_alpha = np.full(n, 0.7)
    elif mode == "total":
        text = [_num(v) for v in vol.tolist()]
        mx = float(vol.max()) if n else 1.0
        fill = colours(HEAT, vol / mx if mx > 0 else vol * 0)
        fill_alpha = np.full(n, 0.75)
    else:
        raise ValueError(f"unknown footprint mode {mode!r}")
    return text, fill, np.asarray(fill_alpha, dtype=np.float64)


def _cell_columns(res, mode: str, theme: str) -> dict:
    """The cells' columns: placed in the middle 80 % of their candle's interval, imbalanced ones marked."""
    th = THEMES[theme]
    iv = float(res.interval_ms)
    cells = res.cells
    n = len(cells)
    t = cells["time"].to_numpy(dtype=np.float64)
    lo = cells["price_low"].to_numpy(dtype=np.float64)
    hi = cells["price_high"].to_numpy(dtype=np.float64)
    bid = cells["bid"].to_numpy(dtype=np.float64)
    ask = cells["ask"].to_numpy(dtype=np.float64)
    vol = cells["volume"].to_numpy(dtype=np.float64)
    delta = cells["delta"].to_numpy(dtype=np.float64)
    bi = cells["buy_imbalance"].to_numpy(dtype=bool)
    si = cells["sell_imbalance"].to_numpy(dtype=bool)
    rs = float(res.row_size)
    text, fill, fill_alpha = _cell_look(mode, bid, ask, vol, delta, theme)
    imb = np.where(bi & si, "both", np.where(bi, "buy", np.where(si, "sell", "")))
    text_colour = np.where(bi & ~si, th["buy"], np.where(si & ~bi, th["sell"],
                                                           np.where(bi & si, th["highlight"], th["text"]))).tolist()
    line = np.where(bi | si, text_colour, "rgba(0,0,0,0)").tolist()
    return {
        "x": t + iv * 0.52, "y": (lo + hi) / 2, "w": np.full(n, iv * 0.8), "h": np.full(n, rs * 0.94),
        "fill": fill, "fill_alpha": fill_alpha,
        # plain cells in "text", imbalanced ones (drawn bold) in "text_imb": a per-row font style field
        # proved fragile in BokehJS, two text renderers are not
        "text": np.where(bi | si, "", np.asarray(text, dtype=object)).tolist(),
        "text_imb": np.where(bi | si, np.asarray(text, dtype=object), "").tolist(),
        "text_colour": text_colour, "line": line,
        "bid": bid, "ask": ask, "volume": vol, "delta": delta, "trades": cells["trades"].to_numpy(dtype=np.int64),
        "price_low": lo, "price_high": hi, "imb": imb.tolist(),
    }


def _bar_columns(res, th: dict) -> dict:
    """Per candle: the thin candle at 3-9 % of its interval, its delta and volume texts, its POC row's outline."""
    iv = float(res.interval_ms)
    rs = float(res.row_size)
    c = res.candles
    ct = c["time"].to_numpy(dtype=np.float64)
    o, cl = c["open"].to_numpy(dtype=np.float64), c["close"].to_numpy(dtype=np.float64)
    cd = c["delta"].to_numpy(dtype=np.float64)
    cv = c["volume"].to_numpy(dtype=np.float64)
    m = len(c)
    return {
        "x": ct + iv / 2, "wx": ct + iv * 0.06, "time": ct, "open": o, "high": c["high"].to_numpy(dtype=np.float64),
        "low": c["low"].to_numpy(dtype=np.float64), "close": cl, "top": np.maximum(o, cl), "bottom": np.minimum(o, cl),
        "colour": np.where(cl >= o, th["up"], th["down"]).tolist(), "delta": cd, "volume": cv,
        "delta_text": ["Δ " + fmt.volume(d, signed=True) for d in cd.tolist()],
        "volume_text": [fmt.volume(v) for v in cv.tolist()],
        "delta_colour": np.where(cd > 0, th["buy"], np.where(cd < 0, th["sell"], th["muted"])).tolist(),
        "poc": c["poc"].to_numpy(dtype=np.float64), "poc_x": ct + iv * 0.52, "poc_w": np.full(m, iv * 0.8),
        "poc_h": np.full(m, rs * 0.94),
    }


def _stack_columns(res, th: dict) -> dict:
    """The stacked-imbalance marks, at 96 % of their candle's interval."""
    s = res.stacked
    return {
        "x": s["time"].to_numpy(dtype=np.float64) + float(res.interval_ms) * 0.965,
        "y0": s["price_low"].to_numpy(dtype=np.float64), "y1": s["price_high"].to_numpy(dtype=np.float64),
        "colour": np.where(s["side"].to_numpy() == "buy", th["buy"], th["sell"]).tolist(),
    }


def _cvd_columns(res) -> dict:
    """The CVD line at each candle's close, broken (a NaN point) where a data gap restarts it."""
    c = res.candles
    ct = c["time"].to_numpy(dtype=np.float64)
    cvd = c["cvd"].to_numpy(dtype=np.float64)
    seg = c["cvd_segment"].to_numpy()
    breaks = np.flatnonzero(np.diff(seg) != 0) + 1
    x = np.insert(ct + float(res.interval_ms), breaks, np.nan)
    y = np.insert(cvd, breaks, np.nan)
    return {"x": x, "cvd": y}


def footprint_columns(res, mode: str, theme: str) -> dict:
    """Columns of the footprint sources from a FootprintResult: ``{"cells", "bars", "stacks", "cvd"}``.

    ``mode``: ``bidask`` | ``delta`` | ``total``. Cells are placed in the middle 80 % of
    their candle's interval, the thin candle at 3-9 %, stacked marks at 96 %.
    """
    th = THEMES[theme]
    return {"cells": _cell_columns(res, mode, theme), "bars": _bar_columns(res, th),
            "stacks": _stack_columns(res, th), "cvd": _cvd_columns(res)}


class FootprintChart(param.Parameterized):
    """Footprint figure + delta/volume strip + CVD pane on one shared time axis.

    Made as before with ``FootprintChart(theme, profile, liquidations=None)``. The session's
    :class:`ProfileLayer` is attached to the footprint figure too (same sources, model
    names prefixed ``fp_``), so the profile, its lines and the clicked-row highlight show
    in this view as well. :attr:`layout` holds the three figures; :attr:`theme` is the
    colour dict of :data:`dashboard.theme.THEMES` for :attr:`theme_name`.
    """

    theme_name = param.Selector(default="dark", objects=list(THEMES), constant=True,
                                doc="Colour theme (the constructor's ``theme``: dark or light), fixed once built.")
    profile = param.ClassSelector(class_=ProfileLayer, instantiate=False, constant=True,
                                  doc="The session's profile layer, attached to the footprint figure.")
    liquidations = param.ClassSelector(class_=ColumnDataSource, default=None, allow_None=True, instantiate=False,
                                       constant=True, doc="The price chart's liquidation markers, drawn here too "
                                                          "(None: none).")

    def __init__(self, theme: str, profile: ProfileLayer, liquidations: ColumnDataSource | None = None, **params):
        th = THEMES[theme]
        super().__init__(theme_name=theme, profile=profile, liquidations=liquidations, **params)
        self.theme = th
        self.cells = ColumnDataSource(empty(CELL_COLUMNS), name="fp_cells")
        self.bars = ColumnDataSource(empty(BAR_COLUMNS), name="fp_candles")
        self.stacks = ColumnDataSource(empty(STACK_COLUMNS), name="fp_stacks")
        self.cvd = ColumnDataSource(empty(CVD_COLUMNS), name="fp_cvd")
        self.x_range = Range1d(0, 1, name="fp_x_range")
        self.y_range = Range1d(0, 1, name="fp_y_range")
        self.cvd_range = Range1d(-1, 1, name="fp_cvd_range")
        common = dict(background_fill_color=th["bg"], border_fill_color=th["bg"], outline_line_color=th["grid"],
                      x_range=self.x_range, x_axis_type="datetime", y_axis_location="right")
        self.figure = self._footprint_figure(common, profile, liquidations)
        self.strip = self._strip_figure(common)
        self.cvd_figure = self._cvd_figure(common)
        self.layout = column(self.figure, self.strip, self.cvd_figure, sizing_mode="stretch_both",
                             name="footprint_layout")

    def _footprint_figure(self, common: dict, profile: ProfileLayer, liquidations: ColumnDataSource | None):
        """The footprint: cells with their numbers, POC outlines, thin candles, stacked marks, liquidations, profile."""
        th = self.theme
        p = figure(y_range=self.y_range, sizing_mode="stretch_both", min_height=260,
                   tools="xpan,xwheel_zoom,reset,save", active_drag="xpan", active_scroll="xwheel_zoom",
                   toolbar_location="above", name="footprint_chart", **common)
        p.xaxis.visible = False
        p.yaxis.formatter = NumeralTickFormatter(format="0,0.00")
        style_figure(p, th)
        cells = p.rect(x="x", y="y", width="w", height="h", source=self.cells, fill_color="fill",
                       fill_alpha="fill_alpha", line_color="line", line_width=1, name="fp_cell_rects")
        for col, style in (("text", "normal"), ("text_imb", "bold")):
            p.text(x="x", y="y", text=col, source=self.cells, text_color="text_colour", text_font_style=style,
                   text_font_size="10px", text_align="center", text_baseline="middle", name=f"fp_cell_{col}")
        p.rect(x="poc_x", y="poc", width="poc_w", height="poc_h", source=self.bars, fill_color=None,
               line_color=th["poc"], line_width=1.5, name="fp_poc")
        p.segment(x0="wx", x1="wx", y0="high", y1="low", source=self.bars, line_color="colour", line_width=1)
        p.vbar(x="wx", top="top", bottom="bottom", width=1, source=self.bars, fill_color="colour",
               line_color="colour", name="fp_bodies")
        p.segment(x0="x", x1="x", y0="y0", y1="y1", source=self.stacks, line_color="colour", line_width=4,
                  line_cap="round", name="fp_stacked")
        if liquidations is not None:
            p.scatter(x="t", y="price", size="size", marker="marker", fill_color="colour", line_color=th["bg"],
                      fill_alpha=0.85, source=liquidations)
        p.add_tools(HoverTool(renderers=[cells], tooltips=[
            ("row", "@price_low{0,0.00} – @price_high{0,0.00}"), ("bid × ask", "@bid{0,0.[000]} × @ask{0,0.[000]}"),
            ("delta", "@delta{+0,0.[000]}"), ("volume", "@volume{0,0.[000]}"), ("trades", "@trades"),
            ("imbalance", "@imb"),
        ], name="fp_hover"))
        # percentile lines over the profile's strip only: never over the cells
        self.profile_parts = profile.attach(p, prefix="fp_", percentile_spans=False)
        self._body_renderer = [r for r in p.renderers if r.name == "fp_bodies"][0]
        return p

    def _strip_figure(self, common: dict):
        """The two-row strip under the footprint: each candle's delta (coloured by sign) and volume."""
        th = self.theme
        strip = figure(height=44, sizing_mode="stretch_width", y_range=Range1d(0, 2), toolbar_location=None,
                       tools="", name="footprint_strip", **common)
        strip.xaxis.visible = False
        strip.yaxis.visible = False
        strip.grid.visible = False
        strip.text(x="x", y=1.5, text="delta_text", source=self.bars, text_color="delta_colour",
                   text_font_size="10px", text_align="center", text_baseline="middle")
        strip.text(x="x", y=0.5, text="volume_text", source=self.bars, text_color=th["muted"],
                   text_font_size="10px", text_align="center", text_baseline="middle")
        style_figure(strip, th)
        return strip

    def _cvd_figure(self, common: dict):
        """The CVD pane (with its zero line), which carries the shared time axis."""
        th = self.theme
        cvd = figure(height=130, sizing_mode="stretch_width", y_range=self.cvd_range, toolbar_location=None,
                     tools="", name="cvd_chart", **common)
        cvd.line(x="x", y="cvd", source=self.cvd, line_color=th["va"], line_width=1.5, name="cvd_line")
        cvd.add_layout(Span(location=0, dimension="width", line_color=th["muted"], line_dash="dotted"))
        cvd.xaxis.formatter = DatetimeTickFormatter(hours="%H:%M", minutes="%H:%M", days="%b %d")
        cvd.yaxis.axis_label = "CVD"
        cvd.yaxis.axis_label_text_color = th["muted"]
        cvd.yaxis.axis_label_text_font_size = "10px"
        style_figure(cvd, th)
        return cvd

    def set_tick(self, tick: float) -> None:
        """Prices on the axis with the tick's decimals (the axis formatter belongs to the profile layer)."""
        self.profile.set_decimals(decimals_for(tick))

    def update(self, cols: dict | None, interval_ms: int) -> None:
        """Show the columns of :func:`footprint_columns` (None clears)."""
        if cols is None:
            for src, c in ((self.cells, CELL_COLUMNS), (self.bars, BAR_COLUMNS), (self.stacks, STACK_COLUMNS),
                           (self.cvd, CVD_COLUMNS)):
                if len(next(iter(src.data.values()), [])):
                    src.data = empty(c)
            return
        self._body_renderer.glyph.width = interval_ms * 0.04
        update_source(self.cells, cols["cells"])
        update_source(self.bars, cols["bars"])
        update_source(self.stacks, cols["stacks"])
        update_source(self.cvd, cols["cvd"])
        y = cols["cvd"]["cvd"]
        fin = y[np.isfinite(y)] if len(y) else y
        if len(fin):
            lo, hi = float(fin.min()), float(fin.max())
            pad = max((hi - lo) * 0.1, 1e-9)
            lo, hi = min(lo, 0.0) - pad, max(hi, 0.0) + pad
            if (self.cvd_range.start, self.cvd_range.end) != (lo, hi):
                self.cvd_range.update(start=lo, end=hi)

    def set_ranges(self, x0: float, x1: float, y0: float, y1: float) -> None:
        if (self.x_range.start, self.x_range.end) != (x0, x1):
            # the reset tool returns here (then the page follows the live edge again)
            self.x_range.update(start=x0, end=x1, reset_start=x0, reset_end=x1)
        if (self.y_range.start, self.y_range.end) != (y0, y1):
            self.y_range.update(start=y0, end=y1)
