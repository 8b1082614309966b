"""The flowlens page: one :class:`Dashboard` per browser session.

A session reads only the process's :class:`store.view.SymbolView` snapshot
(itself a mirror of Redis) on its own periodic callback (default 250 ms),
never once per trade. Each callback streams/patches the candles, asks the view
for the VPVR of the visible range (computed once per process for every session
on the same range and data version) and redraws the profile, lines, labels and
the status line.
"""

from __future__ import annotations

import html
import logging
import time

import panel as pn
import param

from compute.grid import auto_row_size

from . import fmt
from .chart import PriceChart
from .theme import THEMES

log = logging.getLogger(__name__)


class DashboardSettings(param.Parameterized):
    """What a viewer can change; every control of the page is one of these parameters."""

    symbol = param.String(default="BTCUSDT", doc="Symbol shown (one of the ingested set).")
    window_minutes = param.Integer(default=120, bounds=(5, 2880), doc="Time range shown while following the live edge (minutes).")
    row_ticks = param.Integer(default=0, bounds=(0, 1_000_000), doc="Ticks per profile row; 0 picks the row size automatically (about 120 rows).")
    value_area = param.Number(default=0.7, bounds=(0.5, 0.95), step=0.01, doc="Share of the range's volume in the value area.")
    update_ms = param.Integer(default=250, bounds=(50, 5000), doc="Period of this session's refresh callback (ms).")
    follow = param.Boolean(default=True, doc="Follow the live edge; panning or zooming the chart turns it off.")
    theme = param.Selector(default="dark", objects=["dark", "light"], doc="Colour theme.")


class Dashboard(param.Parameterized):
    """One session's page: chart, profile and status, refreshed from a :class:`store.view.ViewRegistry`."""

    settings = param.ClassSelector(class_=DashboardSettings)

    def __init__(self, registry, interval_ms: int = 60_000, **params):
        params.setdefault("settings", DashboardSettings())
        super().__init__(**params)
        self.registry = registry
        self.interval_ms = interval_ms
        s = self.settings
        self.chart = PriceChart(interval_ms=interval_ms, theme=s.theme)
        th = THEMES[s.theme]
        self.status = pn.pane.HTML("connecting…", sizing_mode="stretch_width", name="status",
                                   styles={"color": th["text"], "font-family": "monospace", "font-size": "12px"})
        self.summary = pn.pane.HTML("", sizing_mode="stretch_width", name="summary",
                                    styles={"color": th["text"], "font-family": "monospace", "font-size": "12px"})
        self._seen = None
        self._programmatic = False
        self._profile_key = None
        self.chart.x_range.on_change("start", self._on_user_range)
        self.chart.x_range.on_change("end", self._on_user_range)
        self.settings.param.watch(self._on_settings, ["row_ticks", "value_area", "window_minutes", "follow", "symbol"])
        self._cb = None

    # -- events ----------------------------------------------------------------------
    def _on_user_range(self, attr, old, new):
        if not self._programmatic and self.settings.follow:
            self.settings.follow = False

    def _on_settings(self, *events):
        self._seen = None

    # -- layout ----------------------------------------------------------------------
    def controls(self) -> pn.Column:
        s = self.settings
        return pn.Column(
            pn.widgets.TextInput.from_param(s.param.symbol, disabled=True, name="Symbol"),
            pn.widgets.IntSlider.from_param(s.param.window_minutes, name="Window (min)", end=720),
            pn.widgets.IntInput.from_param(s.param.row_ticks, name="Ticks per row (0 = auto)"),
            pn.widgets.FloatSlider.from_param(s.param.value_area, name="Value area"),
            pn.widgets.Toggle.from_param(s.param.follow, name="Follow live edge", button_type="primary"),
            pn.widgets.IntInput.from_param(s.param.update_ms, name="Refresh (ms)"),
        )

    def main(self) -> pn.Column:
        return pn.Column(
            self.status,
            pn.pane.Bokeh(self.chart.figure, sizing_mode="stretch_both", min_height=420),
            self.summary,
            sizing_mode="stretch_both",
        )

    def start(self) -> None:
        """Start this session's periodic refresh (call inside a served session)."""
        self._cb = pn.state.add_periodic_callback(self.refresh, period=self.settings.update_ms)
        self.settings.param.watch(lambda e: setattr(self._cb, "period", e.new), "update_ms")

    # -- refresh ---------------------------------------------------------------------
    def refresh(self) -> None:
        """Bring this session up to date with the view's current snapshot."""
        view = self.registry.get(self.settings.symbol)
        snap = view.snapshot
        with pn.io.hold():
            self._update_status(snap)
            key = (snap.version, self.settings.follow, self.chart.x_range.start, self.chart.x_range.end)
            if key == self._seen or not len(snap.candles):
                return
            self._seen = key
            self.chart.update_candles(snap.candles)
            self._update_view(view, snap)

    def _visible_range(self, snap) -> tuple[int, int]:
        iv = self.interval_ms
        last_open = int(snap.candles["time"].iloc[-1])
        if self.settings.follow:
            end = last_open + iv
            first = int(snap.candles["time"].iloc[0])
            return max(end - self.settings.window_minutes * 60_000, first), end
        x0, x1 = self.chart.x_range.start, self.chart.x_range.end
        return int(x0 // iv * iv), int(-(-x1 // iv) * iv)

    def _update_view(self, view, snap) -> None:
        start, end = self._visible_range(snap)
        c = snap.candles
        vis = c[(c["time"] >= start) & (c["time"] < end)]
        if self.settings.follow and len(vis):
            lo, hi = float(vis["low"].min()), float(vis["high"].max())
            pad = max((hi - lo) * 0.06, snap.tick * 5)
            room = max(end - start, 10 * self.interval_ms) * 0.34
            self._programmatic = True
            try:
                self.chart.set_ranges(start, end + room, lo - pad, hi + pad)
            finally:
                self._programmatic = False
        if not len(vis):
            self.chart.update_profile(None, snap.tick)
            self.summary.object = "no trades in the visible range"
            return
        lo, hi = float(vis["low"].min()), float(vis["high"].max())
        tick = snap.tick
        if len(snap.trades):  # the profile covers what has arrived: [start, last trade]
            end = min(end, int(snap.trades.time[-1]) + 1)
        if self.settings.row_ticks:
            row_size = round(self.settings.row_ticks * tick, 12)
        else:
            row_size = auto_row_size(lo, hi, tick, 120)
        res = view.profile(start, end, row_size, self.settings.value_area, snapshot=snap)
        self.chart.update_profile(res, tick)
        self._update_summary(res, start, end, row_size, tick)

    def _update_summary(self, res, start, end, row_size, tick) -> None:
        if res is None:
            self.summary.object = "no trades in the visible range"
            return
        p = lambda v: fmt.price(v, tick, sep="")  # noqa: E731
        pct = round(self.settings.value_area * 100)
        delta = res.buy_volume - res.sell_volume
        text = (
            f"VPVR {fmt.utc(start, False)} → {fmt.utc(end, False)} · row {p(row_size)} · "
            f"<b>POC {p(res.poc)}</b> · VAH {p(res.vah)} ({pct} %) · VAL {p(res.val)} · "
            f"Vol {fmt.volume(res.total_volume)} · Δ {fmt.volume(delta, signed=True)} · {res.trades:,} trades"
        )
        self.summary.object = (
            f'<span class="fl-profile" data-poc="{p(res.poc)}" data-vah="{p(res.vah)}" data-val="{p(res.val)}" '
            f'data-from="{start}" data-to="{end}" data-row-size="{p(row_size)}" data-trades="{res.trades}">{text}</span>'
        )

    def _update_status(self, snap) -> None:
        th = THEMES[self.settings.theme]
        m = snap.meta
        src = html.escape(m.get("source", "waiting for the ingest service…"))
        last = m.get("last_trade_time")
        if snap.redis_ok:
            redis = f'<span style="color:{th["ok"]}">Redis OK</span>'
            if snap.redis_rtt_ms is not None:
                redis += f" ({snap.redis_rtt_ms:.1f} ms)"
        else:
            redis = f'<span style="color:{th["bad"]}">Redis unreachable · stale since {fmt.clock(snap.stale_since)}</span>'
        hb = m.get("heartbeat")
        stale = ""
        if snap.redis_ok and hb and time.time() * 1000 - int(hb) > 5000:
            stale = f' · <span style="color:{th["bad"]}">stale since {fmt.clock(int(hb) / 1000)}</span>'
        tps = m.get("tps", "0")
        text = (
            f'<span class="fl-status">{src} · {float(tps):,.1f} trades/s · last trade '
            f'{fmt.utc(int(last)) if last else "—"} · {redis}{stale}</span>'
        )
        if text != self.status.object:
            self.status.object = text


def create_page(registry, settings: DashboardSettings | None = None, interval_ms: int = 60_000):
    """Build the served page for one session: a dark template with controls, chart and status."""
    dash = Dashboard(registry, interval_ms=interval_ms, settings=settings or DashboardSettings())
    tmpl = pn.template.BootstrapTemplate(
        title="flowlens", theme="dark" if dash.settings.theme == "dark" else "default",
        sidebar=[dash.controls()], main=[dash.main()], sidebar_width=260,
        header_background=THEMES[dash.settings.theme]["panel"],
    )
    dash.start()
    return tmpl, dash


__all__ = ["Dashboard", "DashboardSettings", "create_page"]
