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
import param
from bokeh.models import (
    BoxSelectTool,
    ColorBar,
    ColumnDataSource,
    CrosshairTool,
    DatetimeTickFormatter,
    EqHistColorMapper,
    HoverTool,
    Legend,
    LegendItem,
    NumeralTickFormatter,
    Range1d,
)
from bokeh.plotting import figure

from compute.grid import decimals_for

from . import fmt
from .profile_layer import ProfileLayer
from .sources import empty, update_source
from .theme import THEMES, heatmap_palette

CANDLE_COLUMNS = ("t", "time", "open", "high", "low", "close", "top", "bottom", "color", "volume", "buy", "sell")
DEV_COLUMNS = ("t", "poc", "vah", "val")
LIQ_COLUMNS = ("t", "price", "size", "colour", "marker", "kind", "qty", "notional")
LIQ_LEGEND_COLUMNS = ("px", "py", "x", "y", "size", "marker", "text", "tdx")
#: Liquidation marker sizes (px): a marker's area is proportional to its notional (price x quantity), the
#: reference notional (:func:`liquidation_reference`) is LIQ_REF_PX wide, and sizes are clamped to LIQ_PX.
LIQ_REF_PX, LIQ_PX = 24.0, (5.0, 34.0)


def liquidation_reference(max_notional: float) -> float:
    """The legend's larger reference notional: the largest 1-2-5 x 10^k not above ``max_notional`` (1 if none)."""
    if not max_notional > 0:
        return 1.0
    k = 10 ** np.floor(np.log10(max_notional))
    return float(max(m * k for m in (1, 2, 5) if m * k <= max_notional))


def liquidation_sizes(notional: np.ndarray, ref: float) -> np.ndarray:
    """Marker sizes (px): ``LIQ_REF_PX * sqrt(notional / ref)`` (area proportional to notional), clamped to LIQ_PX."""
    return np.clip(LIQ_REF_PX * np.sqrt(np.asarray(notional, dtype=np.float64) / ref), *LIQ_PX)


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


class PriceChart(param.Parameterized):
    """Candles, volume, heat-map, developing lines, liquidations and the VPVR on one Bokeh figure.

    Made as before with ``PriceChart(interval_ms=..., theme=..., profile=..., rollover=...)``;
    :attr:`figure` is the Bokeh figure, :attr:`theme` the colour dict of
    :data:`dashboard.theme.THEMES` for :attr:`theme_name`.
    """

    interval_ms = param.Integer(default=60_000, doc="Candle interval (ms); candle bodies are 70 % of it wide. "
                                                    "Change it with set_interval.")
    theme_name = param.Selector(default="dark", objects=list(THEMES), constant=True,
                                doc="Colour theme (the constructor's ``theme``: dark or light), fixed once built.")
    profile = param.ClassSelector(class_=ProfileLayer, default=None, instantiate=False,
                                  doc="The session's profile layer, attached to this figure (a new one if not given).")
    rollover = param.Integer(default=2880, doc="Most candles kept in the browser.")

    def __init__(self, interval_ms: int = 60_000, theme: str = "dark", profile: ProfileLayer | None = None,
                 rollover: int = 2880, **params):
        colours = THEMES[theme]
        super().__init__(interval_ms=interval_ms, theme_name=theme, profile=profile, rollover=rollover, **params)
        self.theme = colours
        self.candles = ColumnDataSource(empty(CANDLE_COLUMNS), name="candles")
        self.developing = ColumnDataSource(empty(DEV_COLUMNS), name="developing")
        self.liquidations = ColumnDataSource(empty(LIQ_COLUMNS), name="liquidation_markers")
        self.heat = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []}, name="heatmap")
        self.x_range = Range1d(0, 1, name="x_range")
        self.y_range = Range1d(0, 1, name="y_range")
        self.vol_range = Range1d(0, 1, name="vol_range")
        p = self._price_figure()
        # layers back to front
        self._add_heatmap(p)
        self._add_volume(p)
        self._add_candles(p)
        self._add_developing(p)
        self._add_liquidations(p)
        if self.profile is None:  # made after the figure's models, as before (model ids follow creation order)
            self.profile = ProfileLayer(theme)
        self.profile_parts = self.profile.attach(p)
        self.profile.set_legend(p, self.liq_legend)
        self.figure = p
        self._last_candle_time: int | None = None

    def _price_figure(self):
        """The empty figure: time x price, a volume y range, TradingView-like axes, pan/zoom and crosshair."""
        th = self.theme
        p = figure(
            x_axis_type="datetime", x_range=self.x_range, y_range=self.y_range, y_axis_location="right",
            sizing_mode="stretch_both", min_height=300, tools="xpan,xwheel_zoom,reset,save",
            active_drag="xpan", active_scroll="xwheel_zoom", toolbar_location="above",
            background_fill_color=th["bg"], border_fill_color=th["bg"], outline_line_color=th["grid"],
            name="price_chart",
        )
        # "frac": a fixed [0, 1] y range (the x-only tools never move it) for marks placed in pixels
        p.extra_y_ranges = {"vol": self.vol_range, "frac": Range1d(0, 1, name="frac_range", syncable=False)}
        p.xaxis.formatter = DatetimeTickFormatter(hours="%H:%M", minutes="%H:%M", days="%b %d")
        p.yaxis.formatter = NumeralTickFormatter(format="0,0.00")
        style_figure(p, th)
        p.add_tools(CrosshairTool(line_color=th["muted"], line_alpha=0.5))
        # the fixed-range tool: a drag across the chart adds a fixed-range profile (it selects no glyph)
        p.add_tools(BoxSelectTool(dimensions="width", renderers=[], name="fixed_range_tool",
                                  description="Fixed range profile (drag across the chart; double click: anchored VWAP)"))
        return p

    def _add_heatmap(self, p) -> None:
        """Heat-map (behind everything): datashader aggregate from the shared view, coloured in the browser."""
        th = self.theme
        self.heat_mapper = EqHistColorMapper(palette=heatmap_palette(self.theme_name), nan_color=(0, 0, 0, 0))
        self.heat_image = p.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.heat,
                                  color_mapper=self.heat_mapper, global_alpha=0.5, visible=False, name="heatmap_image")
        self.heat_bar = ColorBar(color_mapper=self.heat_mapper, orientation="horizontal", location="bottom_left",
                                 formatter=NumeralTickFormatter(format="0.[00]a"),
                                 width=170, height=7, title="traded volume per cell", title_text_font_size="10px",
                                 title_text_color=th["muted"], major_label_text_color=th["muted"],
                                 major_label_text_font_size="9px", background_fill_color=th["bg"],
                                 background_fill_alpha=0.7, visible=False, padding=4, name="heatmap_colorbar")
        p.add_layout(self.heat_bar)
        p.add_tools(HoverTool(renderers=[self.heat_image], tooltips=[
            ("time", "$x{%F %H:%M}"), ("price", "$y{0,0.00}"), ("volume", "@image{0,0.[000]}"),
        ], formatters={"$x": "datetime"}, name="heatmap_hover"))

    def _add_volume(self, p) -> None:
        """Volume bars in the bottom fifth, buy and sell stacked."""
        th = self.theme
        vkw = dict(source=self.candles, x="t", width=self.interval_ms * 0.7, y_range_name="vol", line_color=None,
                   fill_alpha=th["volume_alpha"])
        self.vol_buy = p.vbar(bottom=0, top="buy", fill_color=th["buy"], **vkw)
        self.vol_sell = p.vbar(bottom="buy", top="volume", fill_color=th["sell"], **vkw)

    def _add_candles(self, p) -> None:
        """Wicks, bodies (70 % of the interval wide) and the candle hover."""
        self.wicks = p.segment("t", "high", "t", "low", source=self.candles, color="color", line_width=1)
        self.bodies = p.vbar("t", width=self.interval_ms * 0.7, top="top", bottom="bottom", source=self.candles,
                             fill_color="color", line_color="color", fill_alpha=1.0, line_alpha=1.0)
        p.add_tools(HoverTool(renderers=[self.bodies], tooltips=[
            ("open", "@time{%F %H:%M} UTC"), ("O H L C", "@open{0,0.00} @high{0,0.00} @low{0,0.00} @close{0,0.00}"),
            ("volume", "@volume{0,0.[000]} (buy @buy{0,0.[000]})"),
        ], formatters={"@time": "datetime"}, name="candle_hover"))

    def _add_developing(self, p) -> None:
        """Developing POC / VAH / VAL as step lines, VAH dashed and VAL dotted in colours of their own,
        named by a legend at the top left (and by their labels in the right-hand column)."""
        th = self.theme
        skw = dict(source=self.developing, x="t", mode="after", line_width=1.2)
        self.dev_lines = [
            p.step(y="poc", line_color=th["dev_poc"], line_alpha=0.75, name="dev_poc", **skw),
            p.step(y="vah", line_color=th["dev_vah"], line_alpha=0.7, line_dash="dashed", name="dev_vah", **skw),
            p.step(y="val", line_color=th["dev_val"], line_alpha=0.7, line_dash="dotted", name="dev_val", **skw),
        ]
        self.dev_legend = Legend(
            items=[LegendItem(label=lab, renderers=[r]) for lab, r in
                   zip(("developing POC", "developing VAH", "developing VAL"), self.dev_lines, strict=True)],
            location="top_left", orientation="horizontal", label_text_font_size="10px",
            label_text_color=th["muted"], label_height=10, glyph_height=10, glyph_width=18, spacing=6, padding=3,
            margin=4, background_fill_color=th["bg"], background_fill_alpha=0.7, border_line_alpha=0,
            name="dev_legend")
        p.add_layout(self.dev_legend)

    def _add_liquidations(self, p) -> None:
        """Liquidation markers and their hover."""
        th = self.theme
        self.liq_markers = p.scatter(x="t", y="price", size="size", marker="marker", fill_color="colour",
                                     line_color=th["bg"], fill_alpha=0.85, source=self.liquidations,
                                     name="liquidation_glyphs")
        # the size legend: two reference notionals, placed in pixels under the top-left legend
        self.liq_legend = ColumnDataSource(empty(LIQ_LEGEND_COLUMNS), name="liquidation_legend", syncable=False)
        lkw = dict(source=self.liq_legend, x="x", y="y", x_range_name="vp", y_range_name="frac")
        p.scatter(size="size", marker="marker", fill_color=th["muted"], line_color=th["text"], line_width=0.5,
                  fill_alpha=0.8, name="liquidation_legend_marks", **lkw)
        p.text(text="text", x_offset="tdx", text_font_size="10px", text_color=th["muted"], text_baseline="middle",
               text_align="left", background_fill_color=th["bg"], background_fill_alpha=0.6,
               name="liquidation_legend_text", **lkw)
        p.add_tools(HoverTool(renderers=[self.liq_markers], tooltips=[
            ("", "@kind"), ("time", "@t{%F %H:%M:%S} UTC"), ("price", "@price{0,0.00}"), ("qty", "@qty{0,0.[000]}"),
            ("notional", "@notional{0,0}"),
        ], formatters={"@t": "datetime"}, name="liquidation_hover"))

    # -- styling -----------------------------------------------------------------------
    def set_interval(self, interval_ms: int) -> None:
        """Change the candle interval (the caller then sets the candles anew)."""
        self.interval_ms = interval_ms
        for r in (self.bodies, self.vol_buy, self.vol_sell):
            r.glyph.width = interval_ms * 0.7
        self._last_candle_time = None

    def set_tick(self, tick: float) -> None:
        """Prices on the axis with the tick's decimals (the axis formatter belongs to the profile layer)."""
        self.profile.set_decimals(decimals_for(tick))

    def set_style(self, *, dim: bool, show_profile: bool, developing: bool, heatmap: bool) -> None:
        """Candle dimming, developing lines and heat-map visibility (the profile layer has its own)."""
        alpha = 0.8 if (dim and show_profile) else 1.0
        if self.bodies.glyph.fill_alpha != alpha:
            self.bodies.glyph.update(fill_alpha=alpha, line_alpha=alpha)
            self.wicks.glyph.line_alpha = alpha
        for r in self.dev_lines:
            r.visible = developing
        self.dev_legend.visible = developing
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
                self.developing.data = empty(DEV_COLUMNS)
            return
        update_source(self.developing, {
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
        """Markers at (time, price), area proportional to notional (:func:`liquidation_sizes`), colour and shape by
        side (view of :func:`dashboard.data.liquidations_view`), and the size legend for two reference notionals."""
        th = self.theme
        n = len(liq)
        if not n:
            if len(self.liquidations.data["t"]):
                self.liquidations.data = empty(LIQ_COLUMNS)
            self._liquidation_legend(None)
            return
        notional = liq["notional"].to_numpy(dtype=np.float64)
        ref = liquidation_reference(float(notional.max()))
        longs = liq["side"].to_numpy() == "SELL"
        update_source(self.liquidations, {
            "t": liq["time"].to_numpy(dtype=np.float64), "price": liq["price"].to_numpy(dtype=np.float64),
            "size": liquidation_sizes(notional, ref),
            "colour": np.where(longs, th["liq_long"], th["liq_short"]).tolist(),
            "marker": np.where(longs, "inverted_triangle", "triangle").tolist(),
            "kind": liq["kind"].astype(str).tolist(), "qty": liq["qty"].to_numpy(dtype=np.float64),
            "notional": notional,
        })
        self._liquidation_legend(ref)

    def _liquidation_legend(self, ref: float | None) -> None:
        """The size legend: ``liq. notional ▲ <ref/10> ▲ <ref>`` at the markers' own sizes (None clears it)."""
        if ref is None:
            update_source(self.liq_legend, empty(LIQ_LEGEND_COLUMNS))
            return
        small, big = (float(v) for v in liquidation_sizes(np.array([ref / 10, ref]), ref))
        py = 44.0  # px below the frame's top: under the developing levels' legend
        x_small = 92.0
        x_big = x_small + small / 2 + 44 + big / 2
        update_source(self.liq_legend, {
            "px": [6.0, x_small, x_big], "py": [py] * 3, "x": [0.0] * 3, "y": [0.0] * 3,
            "size": [0.0, small, big], "marker": ["triangle"] * 3,
            "text": ["liq. notional", fmt.volume(ref / 10), fmt.volume(ref)],
            "tdx": [0.0, small / 2 + 3, big / 2 + 3],
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
