"""The price chart: candlesticks with volume, the VPVR on the right edge, and what is drawn over them.

Only Bokeh models live here. :class:`PriceChart` owns one figure and its
ColumnDataSources; the session feeds it computed results (candles DataFrame,
profile, developing levels, heat-map, liquidations) and it turns them into
``stream``/``patch`` calls or column updates. Nothing is rebuilt.

Layers, back to front: the datashader heat-map of traded volume (an ``image``
glyph with a colour bar and a hover giving the cell's volume), the volume
bars (bottom fifth, buy and sell stacked), the candles, the developing
POC/VAH/VAL step lines, the liquidation markers, and the profile layer
(:class:`dashboard.profile_layer.ProfileLayer`) with its lines and labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    CrosshairTool,
    DatetimeTickFormatter,
    EqHistColorMapper,
    HoverTool,
    NumeralTickFormatter,
    Range1d,
)
from bokeh.plotting import figure

from compute.grid import decimals_for

from .profile_layer import ProfileLayer
from .theme import THEMES, heatmap_palette

CANDLE_COLUMNS = ("t", "time", "open", "high", "low", "close", "top", "bottom", "color", "volume", "buy", "sell")
DEV_COLUMNS = ("t", "poc", "vah", "val")
LIQ_COLUMNS = ("t", "price", "size", "colour", "marker", "kind", "qty", "notional")


def _empty(cols) -> dict:
    return {c: [] for c in cols}


def style_figure(p, th: dict) -> None:
    """TradingView-like axes and grid for a figure."""
    for ax in (*p.xaxis, *p.yaxis):
        ax.axis_line_color = th["grid"]
        ax.major_label_text_color = th["text"]
        ax.major_label_text_font_size = "11px"
        ax.major_tick_line_color = th["grid"]
        ax.minor_tick_line_color = None
    p.grid.grid_line_color = th["grid"]
    p.grid.grid_line_alpha = 0.5
    p.toolbar.logo = None
    p.min_border_left = 4
    p.min_border_right = 4


def price_format(tick: float) -> str:
    d = decimals_for(tick)
    return "0,0." + "0" * d if d else "0,0"


class PriceChart:
    """Candles, volume, heat-map, developing lines, liquidations and the VPVR on one Bokeh figure.

    Parameters
    ----------
    interval_ms : int
        Candle interval (ms); candle bodies are 70 % of it wide.
    theme : str
        ``"dark"`` or ``"light"`` (see :mod:`dashboard.theme`).
    profile : ProfileLayer
        The session's profile layer (attached to this figure).
    rollover : int
        Most candles kept in the browser.
    """

    def __init__(self, interval_ms: int = 60_000, theme: str = "dark", profile: ProfileLayer | None = None,
                 rollover: int = 2880):
        self.interval_ms = interval_ms
        self.theme_name = theme
        self.theme = th = THEMES[theme]
        self.rollover = rollover
        self.candles = ColumnDataSource(_empty(CANDLE_COLUMNS), name="candles")
        self.developing = ColumnDataSource(_empty(DEV_COLUMNS), name="developing")
        self.liquidations = ColumnDataSource(_empty(LIQ_COLUMNS), name="liquidation_markers")
        self.heat = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []}, name="heatmap")
        self.x_range = Range1d(0, 1, name="x_range")
        self.y_range = Range1d(0, 1, name="y_range")
        self.vol_range = Range1d(0, 1, name="vol_range")
        p = figure(
            x_axis_type="datetime", x_range=self.x_range, y_range=self.y_range, y_axis_location="right",
            sizing_mode="stretch_both", min_height=300, tools="xpan,xwheel_zoom,reset,save",
            active_drag="xpan", active_scroll="xwheel_zoom", toolbar_location="above",
            background_fill_color=th["bg"], border_fill_color=th["bg"], outline_line_color=th["grid"],
            name="price_chart",
        )
        p.extra_y_ranges = {"vol": self.vol_range}
        p.xaxis.formatter = DatetimeTickFormatter(hours="%H:%M", minutes="%H:%M", days="%b %d")
        p.yaxis.formatter = NumeralTickFormatter(format="0,0.00")
        style_figure(p, th)
        p.add_tools(CrosshairTool(line_color=th["muted"], line_alpha=0.5))

        # heat-map (behind everything): datashader aggregate from the shared view, coloured in the browser
        self.heat_mapper = EqHistColorMapper(palette=heatmap_palette(theme), nan_color=(0, 0, 0, 0))
        self.heat_image = p.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.heat,
                                  color_mapper=self.heat_mapper, global_alpha=0.5, visible=False, name="heatmap_image")
        self.heat_bar = ColorBar(color_mapper=self.heat_mapper, orientation="horizontal", location="top_left",
                                 formatter=NumeralTickFormatter(format="0.[00]a"),
                                 width=170, height=7, title="traded volume per cell", title_text_font_size="10px",
                                 title_text_color=th["muted"], major_label_text_color=th["muted"],
                                 major_label_text_font_size="9px", background_fill_color=th["bg"],
                                 background_fill_alpha=0.7, visible=False, padding=4, name="heatmap_colorbar")
        p.add_layout(self.heat_bar)
        p.add_tools(HoverTool(renderers=[self.heat_image], tooltips=[
            ("time", "$x{%F %H:%M}"), ("price", "$y{0,0.00}"), ("volume", "@image{0,0.[000]}"),
        ], formatters={"$x": "datetime"}, name="heatmap_hover"))

        # volume bars (bottom fifth)
        vkw = dict(source=self.candles, x="t", width=interval_ms * 0.7, y_range_name="vol", line_color=None,
                   fill_alpha=th["volume_alpha"])
        self.vol_buy = p.vbar(bottom=0, top="buy", fill_color=th["buy"], **vkw)
        self.vol_sell = p.vbar(bottom="buy", top="volume", fill_color=th["sell"], **vkw)

        # candles
        self.wicks = p.segment("t", "high", "t", "low", source=self.candles, color="color", line_width=1)
        self.bodies = p.vbar("t", width=interval_ms * 0.7, top="top", bottom="bottom", source=self.candles,
                             fill_color="color", line_color="color", fill_alpha=1.0, line_alpha=1.0)
        p.add_tools(HoverTool(renderers=[self.bodies], tooltips=[
            ("open", "@time{%F %H:%M} UTC"), ("O H L C", "@open{0,0.00} @high{0,0.00} @low{0,0.00} @close{0,0.00}"),
            ("volume", "@volume{0,0.[000]} (buy @buy{0,0.[000]})"),
        ], formatters={"@time": "datetime"}, name="candle_hover"))

        # developing POC / VAH / VAL as step lines
        skw = dict(source=self.developing, x="t", mode="after", line_width=1.2)
        self.dev_lines = [
            p.step(y="poc", line_color=th["dev_poc"], line_alpha=0.75, name="dev_poc", **skw),
            p.step(y="vah", line_color=th["dev_va"], line_alpha=0.5, line_dash="dotted", name="dev_vah", **skw),
            p.step(y="val", line_color=th["dev_va"], line_alpha=0.5, line_dash="dotted", name="dev_val", **skw),
        ]

        # liquidations
        self.liq_markers = p.scatter(x="t", y="price", size="size", marker="marker", fill_color="colour",
                                     line_color=th["bg"], fill_alpha=0.85, source=self.liquidations,
                                     name="liquidation_glyphs")
        p.add_tools(HoverTool(renderers=[self.liq_markers], tooltips=[
            ("", "@kind"), ("time", "@t{%F %H:%M:%S} UTC"), ("price", "@price{0,0.00}"), ("qty", "@qty{0,0.[000]}"),
            ("notional", "@notional{0,0}"),
        ], formatters={"@t": "datetime"}, name="liquidation_hover"))

        self.profile = profile or ProfileLayer(theme)
        self.profile_parts = self.profile.attach(p)
        self.figure = p
        self._last_candle_time: int | None = None

    # -- styling -----------------------------------------------------------------------
    def set_interval(self, interval_ms: int) -> None:
        """Change the candle interval (the caller then sets the candles anew)."""
        self.interval_ms = interval_ms
        for r in (self.bodies, self.vol_buy, self.vol_sell):
            r.glyph.width = interval_ms * 0.7
        self._last_candle_time = None

    def set_tick(self, tick: float) -> None:
        self.figure.yaxis.formatter.format = price_format(tick)

    def set_style(self, *, dim: bool, show_profile: bool, developing: bool, heatmap: bool) -> None:
        """Candle dimming, developing lines and heat-map visibility (the profile layer has its own)."""
        alpha = 0.8 if (dim and show_profile) else 1.0
        if self.bodies.glyph.fill_alpha != alpha:
            self.bodies.glyph.update(fill_alpha=alpha, line_alpha=alpha)
            self.wicks.glyph.line_alpha = alpha
        for r in self.dev_lines:
            r.visible = developing
        self.heat_image.visible = heatmap
        self.heat_bar.visible = heatmap

    # -- candles ---------------------------------------------------------------------
    def _candle_data(self, df: pd.DataFrame) -> dict:
        def col(name):  # writable float64 copies: the stored candles are read-only views, and patch() writes
            return np.array(df[name].to_numpy(), dtype=np.float64)

        o, c = col("open"), col("close")
        th = self.theme
        t = col("time")
        return {
            "t": t + self.interval_ms / 2, "time": t,
            "open": o, "high": col("high"), "low": col("low"), "close": c,
            "top": np.maximum(o, c), "bottom": np.minimum(o, c),
            "color": np.where(c >= o, th["up"], th["down"]).tolist(),
            "volume": col("volume"), "buy": col("buy_volume"), "sell": col("sell_volume"),
        }

    def set_candles(self, df: pd.DataFrame) -> None:
        """Show ``df`` (columns of the Redis candles) as the whole candle history, in one message."""
        df = df.tail(self.rollover)
        self.candles.data = self._candle_data(df)
        self._last_candle_time = int(df["time"].iloc[-1]) if len(df) else None

    def update_candles(self, df: pd.DataFrame) -> None:
        """Bring the browser up to date with ``df`` (all kept candles, sorted by time).

        The forming candle is patched in place, newer ones are streamed with a
        rollover; a history that does not extend the one shown is set whole.
        """
        if not len(df):
            return
        last = self._last_candle_time
        if last is None or int(df["time"].iloc[0]) > last or int(df["time"].iloc[-1]) < last:
            self.set_candles(df)
            return
        times = df["time"].to_numpy()
        i = int(np.searchsorted(times, last))
        if i >= len(times) or times[i] != last:
            self.set_candles(df)
            return
        n = len(self.candles.data["t"])
        row = self._candle_data(df.iloc[i : i + 1])
        cur = {k: v[n - 1] for k, v in self.candles.data.items()}
        patch = {k: [(n - 1, v[0])] for k, v in row.items() if cur.get(k) != v[0]}
        if patch:
            self.candles.patch(patch)
        new = df.iloc[i + 1 :]
        if len(new):
            self.candles.stream(self._candle_data(new), rollover=self.rollover)
            self._last_candle_time = int(new["time"].iloc[-1])

    def set_volume_scale(self, max_volume: float) -> None:
        """Volume bars use the bottom fifth of the plot."""
        end = max(float(max_volume), 1e-12) * 5
        if abs(self.vol_range.end - end) > 1e-9 * end:
            self.vol_range.update(start=0, end=end)

    # -- overlays --------------------------------------------------------------------
    def update_developing(self, dev: pd.DataFrame | None) -> None:
        if dev is None or not len(dev):
            if len(self.developing.data["t"]):
                self.developing.data = _empty(DEV_COLUMNS)
            return
        from .profile_layer import _update_source

        _update_source(self.developing, {
            "t": dev["time"].to_numpy(dtype=np.float64), "poc": dev["poc"].to_numpy(),
            "vah": dev["vah"].to_numpy(), "val": dev["val"].to_numpy(),
        })

    def update_heatmap(self, agg) -> None:
        """Show a :func:`compute.heatmap.heatmap` DataArray (shape (height, width)), or clear when None."""
        if agg is None:
            if len(self.heat.data["x"]):
                self.heat.data = {"image": [], "x": [], "y": [], "dw": [], "dh": []}
            return
        x0, x1 = agg.attrs["x_range"]
        y0, y1 = agg.attrs["y_range"]
        img = np.asarray(agg.values, dtype=np.float64)
        img = np.where(img > 0, img, np.nan)
        self.heat.data = {"image": [img], "x": [float(x0)], "y": [float(y0)], "dw": [float(x1 - x0)],
                          "dh": [float(y1 - y0)]}

    def update_liquidations(self, liq: pd.DataFrame) -> None:
        """Markers at (time, price), area by notional, colour and shape by side (view of :func:`dashboard.data.liquidations_view`)."""
        from .profile_layer import _update_source

        th = self.theme
        n = len(liq)
        if not n:
            if len(self.liquidations.data["t"]):
                self.liquidations.data = _empty(LIQ_COLUMNS)
            return
        notional = liq["notional"].to_numpy(dtype=np.float64)
        mx = float(notional.max()) or 1.0
        longs = liq["side"].to_numpy() == "SELL"
        _update_source(self.liquidations, {
            "t": liq["time"].to_numpy(dtype=np.float64), "price": liq["price"].to_numpy(dtype=np.float64),
            "size": 7 + 23 * np.sqrt(notional / mx),
            "colour": np.where(longs, th["liq_long"], th["liq_short"]).tolist(),
            "marker": np.where(longs, "inverted_triangle", "triangle").tolist(),
            "kind": liq["kind"].astype(str).tolist(), "qty": liq["qty"].to_numpy(dtype=np.float64),
            "notional": notional,
        })

    # -- ranges ----------------------------------------------------------------------
    def set_ranges(self, x0: float, x1: float, y0: float, y1: float) -> None:
        """Set both axes (UTC ms, quote currency); unchanged ends are not sent."""
        if (self.x_range.start, self.x_range.end) != (x0, x1):
            # the reset tool returns here (then the page follows the live edge again)
            self.x_range.update(start=x0, end=x1, reset_start=x0, reset_end=x1)
        self.set_y(y0, y1)

    def set_y(self, y0: float, y1: float) -> None:
        if (self.y_range.start, self.y_range.end) != (y0, y1):
            self.y_range.update(start=y0, end=y1)
