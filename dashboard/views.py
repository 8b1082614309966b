"""The page's drawing area: the price chart or the footprint, with the profile layer both share.

:class:`ViewArea` owns the Bokeh models a refresh changes (through
:class:`dashboard.chart.PriceChart`, :class:`dashboard.footprint.FootprintChart` and
:class:`dashboard.profile_layer.ProfileLayer`) and applies a
:class:`dashboard.plan.RefreshPlan` to them, synchronously (the page calls it inside
one document hold). Style settings reach the models through ``param.depends``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import panel as pn
import param
from bokeh.events import DoubleTap, Reset, SelectionGeometry, Tap
from bokeh.models import ColumnDataSource
from panel.viewable import Viewer

from compute.coverage import rows_over_gaps
from compute.grid import decimals_for

from .chart import PriceChart
from .footprint import FootprintChart
from .plan import RefreshPlan
from .profile_layer import ProfileLayer
from .session_layer import SessionLayer
from .settings import MAX_FIXED_RANGES, DashboardSettings
from .signal_layer import SignalLayer
from .sources import update_source
from .status import StatusBar
from .theme import THEMES


class ViewArea(Viewer):
    """The active view (chart or footprint) and the profile drawn on it.

    Parameters
    ----------
    settings : DashboardSettings
    theme : str
    status : StatusBar
        Where the profile's summary line goes.
    on_user_range : callable()
        Called when the viewer pans or zooms (not for ranges this area set itself).
    on_tap : callable(x_range, event)
        A click on the chart or the footprint.
    on_reset : callable()
        The reset tool was used.
    """

    settings = param.ClassSelector(class_=DashboardSettings, doc="What the viewer has chosen.")
    theme = param.Selector(default="dark", objects=list(THEMES), doc="Colour theme of the charts.")
    band = param.Range(default=None, allow_None=True, doc="Highlighted price band [low, high) (None: none).")

    def __init__(self, status: StatusBar, on_user_range: Callable, on_tap: Callable, on_reset: Callable, **params):
        super().__init__(**params)
        s = self.settings
        self.status = status
        self._on_user_range, self._on_tap_cb, self._on_reset_cb = on_user_range, on_tap, on_reset
        self.profile = ProfileLayer(self.theme)
        self.profile.width = s.max_width
        self.chart = PriceChart(interval_ms=s.interval_ms, theme=self.theme, profile=self.profile)
        self.footprint: FootprintChart | None = None
        self.sessions = SessionLayer(self.chart.figure, theme=self.theme)
        self._session_style()
        #: Alert signals of the visible window (source ``signals``), over everything else but the profile's labels.
        self.signals = SignalLayer(self.chart.figure, theme=self.theme)
        th = THEMES[self.theme]
        #: Profile rows computed over an unfilled gap (compute.coverage.rows_over_gaps), hatched in the strip.
        self.gap_rows = ColumnDataSource({"bottom": [], "top": []}, name="gap_rows")
        self.chart.figure.quad(left=0, right=1, bottom="bottom", top="top", source=self.gap_rows, x_range_name="vp",
                               fill_alpha=0, hatch_pattern="x", hatch_color=th["warn"], hatch_alpha=0.55,
                               line_color=th["warn"], line_alpha=0.8, name="gap_row_marks")
        self.chart_pane = pn.pane.Bokeh(self.chart.figure, sizing_mode="stretch_both", min_height=300)
        self.fp_pane: pn.pane.Bokeh | None = None
        self.area = pn.Column(self.chart_pane, sizing_mode="stretch_both", min_height=300)
        #: The latest labels of the profile's levels (POC, VAH, VAL, VA) and the window shown.
        self.labels: dict = {}
        self.visible_range: tuple[int, int] | None = None
        #: The x range this area set last (a change to it is not the viewer's).
        self.set_x: tuple = ()
        self._ignore_range_until = 0.0
        self._last_tick = None
        self._watch(self.chart.figure, self.chart.x_range)
        self.apply_style()

    def _watch(self, fig, x_range) -> None:
        x_range.on_change("start", self._range_changed)
        x_range.on_change("end", self._range_changed)
        fig.on_event(Tap, lambda e: self._on_tap_cb(x_range, e))
        fig.on_event(Reset, self._reset)
        fig.on_event(SelectionGeometry, self._range_selected)
        fig.on_event(DoubleTap, self._anchor_at)

    def _range_selected(self, event) -> None:
        """A drag of the fixed-range tool: add its time span (whole candles) as a fixed-range profile."""
        g = event.geometry or {}
        if not event.final or g.get("type") != "rect" or g.get("x0") is None:
            return
        iv = self.settings.interval_ms
        a, b = sorted((float(g["x0"]), float(g["x1"])))
        a, b = int(a // iv * iv), int(-(-b // iv) * iv)
        if b > a:
            s = self.settings
            s.fixed_ranges = [*s.fixed_ranges, (a, b)][-MAX_FIXED_RANGES:]

    def _anchor_at(self, event) -> None:
        """A double click: anchor the VWAP at the open of the candle under the pointer."""
        if event.x is not None:
            iv = self.settings.interval_ms
            self.settings.anchor = int(event.x // iv * iv)

    def _range_changed(self, attr, old, new) -> None:
        # Range changes made by a refresh arrive here too (when its document hold is released),
        # so a change to the value the page itself set is not the user's.
        if new in self.set_x or time.monotonic() < self._ignore_range_until:
            return
        self._on_user_range()

    def _reset(self, event) -> None:
        self._ignore_range_until = time.monotonic() + 1.0
        self._on_reset_cb()

    # -- settings ----------------------------------------------------------------------
    @param.depends("settings.dim_candles", "settings.show_profile", "settings.developing", "settings.heatmap",
                   "settings.hatch", watch=True)
    def apply_style(self) -> None:
        """Candle dimming, profile visibility and hatching, developing levels and heat-map on or off."""
        s = self.settings
        self.chart.set_style(dim=s.dim_candles, show_profile=s.show_profile, developing=s.developing,
                             heatmap=s.heatmap)
        self.profile.set_visible(s.show_profile, s.hatch)

    @param.depends("settings.sessions", "settings.naked_pocs", "settings.vwap", watch=True)
    def _session_style(self) -> None:
        s = self.settings
        self.sessions.param.update(show_sessions=s.sessions != "off", show_naked=s.naked_pocs, show_vwap=s.vwap)

    @param.depends("settings.max_width", watch=True)
    def _max_width(self) -> None:
        self.profile.width = self.settings.max_width

    @param.depends("settings.interval", watch=True)
    def _interval(self) -> None:
        self.chart.set_interval(self.settings.interval_ms)

    @param.depends("settings.symbol", watch=True)
    def _symbol(self) -> None:
        self._last_tick = None
        self.highlight(None)
        self.chart.set_interval(self.settings.interval_ms)
        self.profile.clear()

    @param.depends("settings.view", watch=True)
    def show_view(self) -> None:
        """Put the selected view (chart or footprint) in the area."""
        if self.settings.view == "footprint":
            self.ensure_footprint()
            self.area.objects = [self.fp_pane]
        else:
            self.area.objects = [self.chart_pane]

    def ensure_footprint(self) -> FootprintChart:
        """The footprint chart (made on first use: a page that never shows it never builds it)."""
        if self.footprint is None:
            self.footprint = FootprintChart(self.theme, self.profile, liquidations=self.chart.liquidations)
            self._watch(self.footprint.figure, self.footprint.x_range)
            self.fp_pane = pn.pane.Bokeh(self.footprint.layout, sizing_mode="stretch_both", min_height=400)
            self.apply_style()
        return self.footprint

    def x_range(self):
        """The x range of the selected view (the footprint's is made if needed)."""
        return self.ensure_footprint().x_range if self.settings.view == "footprint" else self.chart.x_range

    def range_key(self):
        """What the visible range depends on: None (the live edge), the fixed range, or the view's x range."""
        s = self.settings
        if s.follow:
            return None
        if s.range_start is not None:
            return (s.range_start, s.range_end)
        xr = self.footprint.x_range if (s.view == "footprint" and self.footprint) else self.chart.x_range
        return (xr.start, xr.end)

    def model_for(self, plan: RefreshPlan):
        """The Bokeh model drawn for a plan: the footprint's layout or the price chart's figure."""
        fp = self.footprint
        return fp.layout if plan.view == "footprint" and fp is not None else self.chart.figure

    def highlight(self, band: tuple[float, float] | None) -> None:
        """Highlight the price band ``[low, high)`` across the candles and the footprint (None clears)."""
        self.band = band
        self.profile.set_highlight(band)

    def band_at(self, x_range, event) -> tuple[float, float] | None:
        """The profile row under a click (None: the click was not on a profile bar)."""
        try:
            x0, x1 = float(x_range.start), float(x_range.end)
            frac = (float(event.x) - x0) / (x1 - x0)
            y = float(event.y)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        if frac < 1 - self.settings.max_width - 0.002:
            return None
        d = self.profile.source.data
        lo = np.asarray(d["price_low"], dtype=np.float64)
        hi = np.asarray(d["price_high"], dtype=np.float64)
        i = np.flatnonzero((lo <= y) & (y < hi))
        return (float(lo[i[0]]), float(hi[i[0]])) if len(i) else None

    # -- applying a plan ---------------------------------------------------------------
    def set_tick(self, tick: float) -> None:
        """Price formats for the symbol's tick (only when it changed)."""
        if tick == self._last_tick:
            return
        self._last_tick = tick
        self.chart.set_tick(tick)
        if self.footprint is not None:
            self.footprint.set_tick(tick)
        self.profile.set_mode_style(self.settings.mode, decimals_for(tick))

    def apply(self, plan: RefreshPlan) -> None:
        """Draw a plan (call inside the refresh's document hold)."""
        self.set_tick(plan.tick)
        if plan.view == "footprint":
            self._apply_footprint(plan)
        else:
            self._apply_chart(plan)

    def _follow_x(self, start: int, end: int, room: float) -> tuple[float, float] | None:
        """The x range to set when following or fixed, else None; ``room``: share of the window added
        on the right (the chart: none, its profile lies over the candles; the footprint: the profile's
        strip, so that the profile never covers cells)."""
        s = self.settings
        if not (s.follow or s.range_start is not None):
            return None
        self.set_x = (float(start), float(end + (end - start) * room))
        return self.set_x

    def _apply_chart(self, plan: RefreshPlan) -> None:
        ch = self.chart
        tick = plan.tick
        ch.update_candles(plan.candles)
        self.visible_range = plan.window
        vis = plan.vis
        if not len(vis):
            self.profile.clear()
            self.status.summary.object = "no trades in the visible range"
            return
        lo, hi = plan.lo, plan.hi
        pad = max((hi - lo) * 0.06, tick * 5)
        pad_low = max((hi - lo) * 0.28, tick * 5)  # the volume bars take the bottom fifth: keep candles above them
        ch.set_volume_scale(float(vis["volume"].max()))
        x = self._follow_x(*self.visible_range, room=0.0)  # the window fills the width; the profile is pinned over it
        if x is not None:
            ch.set_ranges(*x, lo - pad_low, hi + pad)
        else:
            ch.set_y(lo - pad_low, hi + pad)
        if not plan.profiled:  # nothing traded yet in the window
            self.profile.clear()
            return
        self._draw_profile(plan, hi - lo + pad + pad_low)
        dev = plan.dev.developing if plan.dev is not None else None
        ch.update_developing(dev)
        last = None if dev is None or not len(dev) or not self.settings.show_profile else {
            k: float(dev[k].iloc[-1]) for k in ("poc", "vah", "val")}
        self.profile.set_developing(last, tick)
        ch.update_heatmap(plan.heat)
        self.sessions.update(plan.sessions, plan.vwap, plan.range[1])
        self.sessions.update_anchored(plan.fixed, plan.anchored)

    def _apply_footprint(self, plan: RefreshPlan) -> None:
        fp = self.ensure_footprint()
        iv = self.settings.interval_ms
        start, end = self.visible_range = plan.window
        if plan.fp is None:
            fp.update(None, iv)
            self.profile.clear()
            return
        fp.update(plan.fp, iv)
        lo, hi = plan.lo, plan.hi
        pad = plan.row_size * 1.5
        w = self.settings.max_width
        x = self._follow_x(start, end, room=w / (1 - w) * 1.08 if self.settings.show_profile else 0.02)
        if x is not None:
            fp.set_ranges(*x, lo - pad, hi + pad)
        else:
            fp.set_ranges(fp.x_range.start, fp.x_range.end, lo - pad, hi + pad)
        self._draw_profile(plan, hi - lo + 2 * pad)

    def _draw_profile(self, plan: RefreshPlan, y_span: float) -> None:
        s = self.settings
        res = plan.res
        if res is None or not s.show_profile:
            self.profile.clear()
            self.status.summary.object = "no trades in the visible range" if res is None else ""
            return
        self.profile.set_mode_style(s.mode, decimals_for(plan.tick))
        self.profile.set_columns(*plan.cols)
        self.labels = self.profile.set_levels(res, plan.tick, y_span)
        self.status.show_summary(res, plan.row_size, plan.tick, self.labels, s.mode, plan.coverage)
        marked = rows_over_gaps(res.price_low, res.price_high, plan.coverage) if plan.coverage is not None else ()
        update_source(self.gap_rows, {"bottom": res.price_low[marked] if len(marked) else [],
                                      "top": res.price_high[marked] if len(marked) else []})

    def __panel__(self) -> pn.Column:
        return self.area
