"""The price chart: candlesticks with the VPVR on the right edge of the same price axis.

Only Bokeh models live here. :class:`PriceChart` owns one figure and its
ColumnDataSources; the session feeds it computed results (a candles DataFrame,
a :class:`compute.profile.ProfileResult`) and it turns them into
``stream``/``patch`` calls or a replaced profile source. Nothing is rebuilt.

The profile is drawn in its own x range (``"vp"``, in volume units) laid
over the chart, so its bars stay anchored to the right edge whatever the
time axis shows: a row's bar spans ``[E - volume, E]`` where ``E`` is the end
of that range, and ``E = max row volume / width_fraction``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from bokeh.models import (
    ColumnDataSource,
    CrosshairTool,
    DatetimeTickFormatter,
    HoverTool,
    Label,
    NumeralTickFormatter,
    Range1d,
    Span,
)
from bokeh.plotting import figure

from . import fmt
from .theme import THEMES

CANDLE_COLUMNS = ("t", "open", "high", "low", "close", "top", "bottom", "color", "volume", "buy", "sell")
PROFILE_COLUMNS = ("y", "h", "price_low", "price_high", "volume", "buy", "sell", "delta", "trades",
                   "buy_left", "sell_left", "right", "alpha", "buy_pct", "sell_pct")


def _empty(cols) -> dict:
    return {c: [] for c in cols}


class PriceChart:
    """Candles plus VPVR on one Bokeh figure.

    Parameters
    ----------
    interval_ms : int
        Candle interval (ms); candle bodies are 70 % of it wide.
    theme : str
        ``"dark"`` or ``"light"`` (see :mod:`dashboard.theme`).
    width_fraction : float
        Share of the plot width the longest profile bar takes (0.05-0.6).
    rollover : int
        Most candles kept in the browser.
    """

    def __init__(self, interval_ms: int = 60_000, theme: str = "dark", width_fraction: float = 0.25,
                 rollover: int = 2880):
        self.interval_ms = interval_ms
        self.theme = THEMES[theme]
        self.width_fraction = width_fraction
        self.rollover = rollover
        th = self.theme
        self.candles = ColumnDataSource(_empty(CANDLE_COLUMNS), name="candles")
        self.profile = ColumnDataSource(_empty(PROFILE_COLUMNS), name="profile")
        self.x_range = Range1d(0, 1, name="x_range")
        self.y_range = Range1d(0, 1, name="y_range")
        self.vp_range = Range1d(0, 1, name="vp_range")
        p = figure(
            x_axis_type="datetime", x_range=self.x_range, y_range=self.y_range,
            sizing_mode="stretch_both", min_height=360, tools="xpan,xwheel_zoom,box_zoom,reset,save",
            active_drag="xpan", active_scroll="xwheel_zoom", toolbar_location="above",
            background_fill_color=th["bg"], border_fill_color=th["bg"], outline_line_color=th["grid"],
            name="price_chart",
        )
        p.extra_x_ranges = {"vp": self.vp_range}
        p.xaxis.formatter = DatetimeTickFormatter(hours="%H:%M", minutes="%H:%M", days="%b %d")
        p.yaxis.formatter = NumeralTickFormatter(format="0,0.00")
        p.yaxis.axis_label = None
        for ax in (p.xaxis, p.yaxis):
            ax.axis_line_color = th["grid"]
            ax.major_label_text_color = th["text"]
            ax.major_tick_line_color = th["grid"]
            ax.minor_tick_line_color = None
        p.grid.grid_line_color = th["grid"]
        p.grid.grid_line_alpha = 0.6
        p.toolbar.logo = None
        p.add_tools(CrosshairTool(line_color=th["muted"], line_alpha=0.5))

        # candles
        p.segment("t", "high", "t", "low", source=self.candles, color="color", line_width=1)
        self.bodies = p.vbar("t", width=interval_ms * 0.7, top="top", bottom="bottom", source=self.candles,
                             fill_color="color", line_color="color", fill_alpha=0.8, line_alpha=0.8)

        # profile bars (sell nearest the edge, buy stacked to its left)
        kw = dict(source=self.profile, y="y", height="h", x_range_name="vp", line_color=None)
        self.sell_bars = p.hbar(left="sell_left", right="right", fill_color=th["sell"], fill_alpha="alpha", **kw)
        self.buy_bars = p.hbar(left="buy_left", right="sell_left", fill_color=th["buy"], fill_alpha="alpha", **kw)
        hover = HoverTool(
            renderers=[self.sell_bars, self.buy_bars], mode="hline", point_policy="follow_mouse",
            tooltips=[
                ("price", "@price_low{0,0.00} – @price_high{0,0.00}"), ("volume", "@volume{0,0.000}"),
                ("buy", "@buy{0,0.000} (@buy_pct{0.0}%)"), ("sell", "@sell{0,0.000} (@sell_pct{0.0}%)"),
                ("delta", "@delta{+0,0.000}"), ("trades", "@trades{0,0}"),
            ],
        )
        p.add_tools(hover)

        # POC / VAH / VAL
        self.spans = {
            "poc": Span(location=np.nan, dimension="width", line_color=th["poc"], line_width=2),
            "vah": Span(location=np.nan, dimension="width", line_color=th["va"], line_width=1, line_dash="dashed"),
            "val": Span(location=np.nan, dimension="width", line_color=th["va"], line_width=1, line_dash="dashed"),
        }
        self.labels = {
            k: Label(x=0, y=0, x_range_name="vp", text="", text_font_size="11px", text_align="right",
                     text_baseline="middle", text_color=s.line_color, background_fill_color=th["bg"],
                     background_fill_alpha=0.7, visible=False, name=f"{k}_label")
            for k, s in self.spans.items()
        }
        for k in self.spans:
            p.add_layout(self.spans[k])
            p.add_layout(self.labels[k])
        self.figure = p
        self._last_candle_time: int | None = None

    # -- candles ---------------------------------------------------------------------
    def _candle_data(self, df: pd.DataFrame) -> dict:
        o, c = df["open"].to_numpy(), df["close"].to_numpy()
        th = self.theme
        return {
            "t": df["time"].to_numpy(dtype=np.float64) + self.interval_ms / 2,
            "open": o, "high": df["high"].to_numpy(), "low": df["low"].to_numpy(), "close": c,
            "top": np.maximum(o, c), "bottom": np.minimum(o, c),
            "color": np.where(c >= o, th["up"], th["down"]).tolist(),
            "volume": df["volume"].to_numpy(), "buy": df["buy_volume"].to_numpy(), "sell": df["sell_volume"].to_numpy(),
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
        self.candles.patch({k: [(n - 1, v[0])] for k, v in row.items()})
        new = df.iloc[i + 1 :]
        if len(new):
            self.candles.stream(self._candle_data(new), rollover=self.rollover)
            self._last_candle_time = int(new["time"].iloc[-1])

    # -- profile ---------------------------------------------------------------------
    def clear_profile(self) -> None:
        self.profile.data = _empty(PROFILE_COLUMNS)
        for k in self.spans:
            self.spans[k].location = np.nan
            self.labels[k].visible = False

    def update_profile(self, res, tick: float) -> None:
        """Draw a :class:`compute.profile.ProfileResult` (or clear when None)."""
        if res is None:
            self.clear_profile()
            return
        vol = np.asarray(res.volume, dtype=np.float64)
        buy = np.asarray(res.buy, dtype=np.float64)
        sell = np.asarray(res.sell, dtype=np.float64)
        low = np.asarray(res.price_low, dtype=np.float64)
        vmax = float(vol.max()) if len(vol) else 1.0
        end = (vmax if vmax > 0 else 1.0) / self.width_fraction
        self.vp_range.update(start=0, end=end)
        rs = float(res.row_size)
        in_va = (low >= res.val - 1e-9) & (low + rs <= res.vah + 1e-9)
        with np.errstate(invalid="ignore", divide="ignore"):
            buy_pct = np.where(vol > 0, buy / vol * 100, 0.0)
        self.profile.data = {
            "y": low + rs / 2, "h": np.full(len(vol), rs * 0.88),
            "price_low": low, "price_high": low + rs, "volume": vol, "buy": buy, "sell": sell,
            "delta": buy - sell, "trades": np.asarray(res.trades_per_row, dtype=np.int64),
            "buy_left": end - vol, "sell_left": end - sell, "right": np.full(len(vol), end),
            "alpha": np.where(in_va, 0.85, 0.4), "buy_pct": buy_pct, "sell_pct": 100.0 - buy_pct,
        }
        x_lab = end * (1 - self.width_fraction) - end * 0.01
        texts = {
            "poc": f"POC {fmt.price(res.poc, tick, sep='')}",
            "vah": f"VAH {fmt.price(res.vah, tick, sep='')}",
            "val": f"VAL {fmt.price(res.val, tick, sep='')}",
        }
        for k, text in texts.items():
            y = float(getattr(res, k))
            self.spans[k].location = y
            self.labels[k].update(x=x_lab, y=y, text=text, visible=True)

    # -- ranges ----------------------------------------------------------------------
    def set_ranges(self, x0: float, x1: float, y0: float, y1: float) -> None:
        """Set both axes (UTC ms, quote currency)."""
        self.x_range.update(start=x0, end=x1)
        self.y_range.update(start=y0, end=y1)
