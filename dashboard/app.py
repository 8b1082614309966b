"""The flowlens page: one :class:`Dashboard` per browser session.

Data flows one way. A session reads only the process's
:class:`store.view.SymbolView` snapshot (a mirror of Redis) on its own periodic
callback (period :attr:`DashboardSettings.update_ms`, default 250 ms), never once
per trade and never from a feed. Everything heavy is asked of the view
(``view.compute(kind, start, end, ...)``: profile, developing levels, heat-map,
footprint), which computes each result once per process for all sessions; the
small transforms for display are memoised per process too
(:func:`dashboard.data.shared`). A session only turns shared results into
``stream``/``patch``/column updates of its own Bokeh sources, inside
one document hold (sent together, in order), and only when the
data version, a setting or the visible range changed.

Entry point for ``serve.py``: ``page, dash = create_page(registry, DashboardSettings(...))``.
URL query values (see :mod:`dashboard.settings`) override the settings given,
after validation; refused values are listed in a visible message.
"""

from __future__ import annotations

import contextlib
import html
import logging
import threading
import time
import urllib.parse

import numpy as np
import panel as pn
import param
from bokeh.events import Reset, Tap

from compute.grid import auto_row_size

from . import fmt, share
from .chart import PriceChart
from .data import derived, liquidations_view, resample_candles, shared, tape_rows
from .download import Downloads
from .footprint import FootprintChart, footprint_columns
from .panels import HtmlBox, liquidations_html, tape_html
from .profile_layer import ProfileLayer, profile_columns
from .settings import (
    FOOTPRINT_MODES,
    INTERVALS,
    MAX_PROFILE_ROWS,
    MODES,
    DashboardSettings,
    parse_query,
    query_of,
)
from .status import status_html
from .theme import THEMES

log = logging.getLogger(__name__)

#: Profile rows aimed at when the row size is automatic (chart view / footprint view).
AUTO_ROWS_CHART, AUTO_ROWS_FOOTPRINT = 120, 28
#: Most candles the footprint view computes at once (panned or fixed windows are cut to the last ones).
MAX_FOOTPRINT_CANDLES = 60
#: Heat-map grid: time bins per candle and the most bins on each axis.
HEAT_BINS_PER_CANDLE, HEAT_MAX_COLS, HEAT_MAX_ROWS = 1, 480, 160

#: Rows of the time & sales tape, and the shortest interval between two updates of the side panels (s).
TAPE_ROWS, SIDE_MIN_S = 22, 0.5

_KINDS = {"buysell": "volume", "delta": "volume", "heatmap": "volume", "recency": "recency", "tpo": "tpo",
          "split": "split"}

CSS = """
:host { --fl-text: %(text)s; --fl-muted: %(muted)s; --fl-grid: %(grid)s; --fl-bg: %(bg)s; --fl-panel: %(panel)s; }
.fl-status, .fl-summary { font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: var(--fl-text);
  display: block; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.fl-status:hover, .fl-summary:hover { white-space: normal; }
.fl-badge { padding: 1px 6px; border-radius: 3px; font-weight: 700; letter-spacing: .04em; }
.fl-why, .fl-muted { color: var(--fl-muted); }
.fl-stream { white-space: nowrap; }
.fl-message { background: #4a1d1d; color: #ffd7d7; border-left: 3px solid #ef5350; padding: 6px 10px;
  font: 12px/1.5 ui-monospace, monospace; border-radius: 3px; }
.fl-message ul { margin: 2px 0 0 16px; padding: 0; }
.fl-panel-title { font: 600 12px/1.8 system-ui, sans-serif; color: var(--fl-text); border-bottom: 1px solid var(--fl-grid); }
.fl-table { width: 100%%; border-collapse: collapse; font: 11px/1.45 ui-monospace, Menlo, Consolas, monospace; }
.fl-table th { color: var(--fl-muted); font-weight: 400; text-align: left; position: sticky; top: 0; background: var(--fl-bg); }
.fl-table td, .fl-table th { padding: 0 4px; white-space: nowrap; }
.fl-table .r { text-align: right; } .fl-table .c { text-align: center; }
.fl-tape td:nth-child(2), .fl-tape td:nth-child(3) { text-align: right; } .fl-tape td:nth-child(4) { text-align: center; }
.fl-note { color: var(--fl-muted); font: 11px/1.4 system-ui, sans-serif; margin-top: 4px; }
.fl-embed pre { white-space: pre-wrap; word-break: break-all; background: var(--fl-bg); color: var(--fl-text);
  padding: 6px; border-radius: 3px; font-size: 11px; }
.fl-embed { font: 12px/1.45 system-ui, sans-serif; color: var(--fl-text); }
.fl-embed code { color: %(warn)s; }
"""

#: The periodic refresh (status bar, anything missed) runs at least this often, whatever update_ms (ms).
STATUS_MS = 1000


def css_for(theme: str) -> str:
    return CSS % THEMES[theme]


def known_symbols(registry) -> list[str]:
    """The ingested symbols this process can show.

    Uses ``registry.symbols`` / ``registry.known_symbols()`` when the registry offers
    them, else the views that are running (started by serve.py) or hold ingest status.
    """
    for attr in ("known_symbols", "symbols"):
        v = getattr(registry, attr, None)
        if callable(v):
            try:
                v = v()
            except Exception:  # noqa: BLE001 - a failing optional hook must not break the page
                v = None
        if isinstance(v, list | tuple | set | frozenset) and v:
            return sorted({str(s).upper() for s in v})
    views = getattr(registry, "views", {}) or {}
    return sorted(s for s, v in views.items() if getattr(v, "_task", None) is not None or v.snapshot.meta)


def _messages_html(messages: list[str]) -> str:
    items = "".join(f"<li>{html.escape(m)}</li>" for m in messages)
    return f'<div class="fl-message" role="alert">Some URL values were not used:<ul>{items}</ul></div>'


class Dashboard(param.Parameterized):
    """One session's page: chart or footprint, profile, tape, liquidations and status.

    Parameters
    ----------
    registry : store.view.ViewRegistry
        The process's views (``registry.get(symbol)`` -> SymbolView).
    settings : DashboardSettings
    symbols : list of str
        The ingested symbols offered in the symbol control.
    messages : list of str
        Plain-text messages to show (e.g. refused URL values); escaped when shown.
    """

    settings = param.ClassSelector(class_=DashboardSettings, doc="What the viewer has chosen.")
    symbols = param.List(default=[], item_type=str, doc="Ingested symbols offered in the symbol control.")

    def __init__(self, registry, settings: DashboardSettings | None = None, symbols=None, messages=(),
                 interval_ms: int | None = None, **params):
        params["settings"] = settings or DashboardSettings()
        s = params["settings"]
        params["symbols"] = list(symbols or [s.symbol])
        if s.symbol not in params["symbols"]:
            params["symbols"] = sorted({*params["symbols"], s.symbol})
        super().__init__(**params)
        if interval_ms is not None:
            for k, v in INTERVALS.items():
                if v == interval_ms:
                    s.interval = k
        self.registry = registry
        self.theme = s.theme
        th = THEMES[s.theme]
        css = [css_for(s.theme)]
        self.profile = ProfileLayer(s.theme)
        self.profile.width = s.max_width
        self.chart = PriceChart(interval_ms=s.interval_ms, theme=s.theme, profile=self.profile)
        self.footprint: FootprintChart | None = None
        self.chart_pane = pn.pane.Bokeh(self.chart.figure, sizing_mode="stretch_both", min_height=300)
        self.fp_pane: pn.pane.Bokeh | None = None
        self.view_area = pn.Column(self.chart_pane, sizing_mode="stretch_both", min_height=300)
        self.messages = list(messages)
        self.message = pn.pane.HTML(_messages_html(self.messages) if self.messages else "",
                                    sizing_mode="stretch_width", stylesheets=css, name="message")
        close = pn.widgets.Button(label="✕", width=34, color="light", description="Dismiss")
        self.message_box = pn.Row(self.message, close, visible=bool(self.messages), sizing_mode="stretch_width")
        close.on_click(lambda e: self.dismiss_messages())
        self.status = HtmlBox("connecting…", css[0], name="status", margin=(2, 8))
        self.summary = HtmlBox("", css[0], name="summary", margin=(2, 8))
        self.tape = HtmlBox("", css[0], name="tape", sizing_mode="stretch_both", styles={"overflow-y": "auto"})
        self.liqs = HtmlBox("", css[0], name="liquidations", styles={"overflow-y": "auto", "max-height": "360px"})
        self._th = th
        self._seen = None
        self._side_seen = None
        self._side_at = 0.0
        self._rev = 0
        self._set_x: tuple = ()
        self._ignore_range_until = 0.0
        self._band: tuple[float, float] | None = None
        self._last_symbol = s.symbol
        self._last_tick = None
        self._last_res = None
        #: The latest refresh's results for the current view (what the download buttons export).
        self.last_plan: dict | None = None
        self.downloads: Downloads | None = None
        self.last_labels: dict = {}
        self.visible_range: tuple[int, int] | None = None
        self.defaults: dict = {}
        self._doc = None
        self._cb = None
        self._sync_compute = False
        self._busy = False
        self._again = False
        self._poke_pending = False
        self._last_refresh = 0.0
        self._subscribed: set[str] = set()
        self._url_sync = False
        #: Sharing a refresh with the process's other sessions of the same key (:mod:`dashboard.share`).
        self._group: share.ShareGroup | None = None
        self._member: share.Member | None = None
        #: Every (model id, attribute) this page's refreshes changed -> (model, attribute).
        self._touched: dict[tuple[str, str], tuple] = {}
        self._key_cache: tuple | None = None
        self._loaded = False
        self.chart.x_range.on_change("start", self._on_user_range)
        self.chart.x_range.on_change("end", self._on_user_range)
        self.chart.figure.on_event(Tap, lambda e: self._on_tap(self.chart.x_range, e))
        self.chart.figure.on_event(Reset, self._on_reset)
        s.param.watch(self._on_settings, [p for p in s.param if p not in ("name", "update_ms")])
        s.param.watch(self._on_update_ms, ["update_ms"])
        self._apply_style()

    # -- events ----------------------------------------------------------------------
    def _on_user_range(self, attr, old, new):
        # Range changes made by refresh() arrive here too (when its document hold is released),
        # so a change to the value the page itself set is not the user's.
        if new in self._set_x or time.monotonic() < self._ignore_range_until:
            return
        s = self.settings
        if s.follow or s.range_start is not None:
            s.param.update(follow=False, range_start=None, range_end=None)
        self._rev += 1
        self.poke()

    def _on_reset(self, event):
        self._ignore_range_until = time.monotonic() + 1.0
        self.settings.param.update(follow=True, range_start=None, range_end=None)
        self._rev += 1
        self.poke()

    def _on_tap(self, x_range, event) -> None:
        """A click on a profile row highlights its price band; a click on the highlighted row clears it."""
        # a follower's own ranges and profile source are not kept current: what is on its screen is its leader's
        src = self._group.leader if self._following() else self
        if src is not self:
            x_range = src.chart.x_range if x_range is self.chart.x_range else src.footprint.x_range
        try:
            x0, x1 = float(x_range.start), float(x_range.end)
            frac = (float(event.x) - x0) / (x1 - x0)
            y = float(event.y)
        except (TypeError, ValueError, ZeroDivisionError):
            return
        if frac < 1 - self.settings.max_width - 0.002:
            return
        d = src.profile.source.data
        lo = np.asarray(d["price_low"], dtype=np.float64)
        hi = np.asarray(d["price_high"], dtype=np.float64)
        i = np.flatnonzero((lo <= y) & (y < hi))
        if not len(i):
            return
        band = (float(lo[i[0]]), float(hi[i[0]]))
        self.highlight(None if self._band == band else band)

    def highlight(self, band: tuple[float, float] | None) -> None:
        """Highlight the price band ``[low, high)`` across the candles and the footprint (None clears)."""
        self._band = band
        self._key_cache = None
        self.profile.set_highlight(band)

    def _on_settings(self, *events):
        s = self.settings
        names = {e.name for e in events}
        self._rev += 1
        self._key_cache = None
        if "follow" in names and s.follow and s.range_start is not None:
            s.param.update(range_start=None, range_end=None)
        if "symbol" in names and s.symbol != self._last_symbol:
            self._last_symbol = s.symbol
            self._last_tick = None
            self.highlight(None)
            self.chart.set_interval(s.interval_ms)
            self.profile.clear()
        if "interval" in names:
            self.chart.set_interval(s.interval_ms)
        if "view" in names:
            self._show_view()
        if "max_width" in names:
            self.profile.width = s.max_width
        self._apply_style()
        if self._url_sync:
            self._sync_url()
        self._subscribe()
        self.poke()

    def _on_update_ms(self, event):
        self._key_cache = None
        if self._cb is not None:
            self._cb.period = self._status_period()
        if self._url_sync:
            self._sync_url()

    def _apply_style(self) -> None:
        s = self.settings
        self.chart.set_style(dim=s.dim_candles, show_profile=s.show_profile, developing=s.developing,
                             heatmap=s.heatmap)
        self.profile.set_visible(s.show_profile, s.hatch)

    def _sync_url(self) -> None:
        loc = pn.state.location
        if loc is None:
            return
        q = query_of(self.settings, self.defaults)
        search = ("?" + urllib.parse.urlencode(q)) if q else ""
        if loc.search != search:
            loc.search = search

    # -- layout ----------------------------------------------------------------------
    def _ensure_footprint(self) -> FootprintChart:
        if self.footprint is None:
            self.footprint = FootprintChart(self.theme, self.profile, liquidations=self.chart.liquidations)
            fig = self.footprint.figure
            fig.on_event(Tap, lambda e: self._on_tap(self.footprint.x_range, e))
            fig.on_event(Reset, self._on_reset)
            self.footprint.x_range.on_change("start", self._on_user_range)
            self.footprint.x_range.on_change("end", self._on_user_range)
            self.fp_pane = pn.pane.Bokeh(self.footprint.layout, sizing_mode="stretch_both", min_height=400)
            self._apply_style()
        return self.footprint

    def _show_view(self) -> None:
        if self.settings.view == "footprint":
            self._ensure_footprint()
            self.view_area.objects = [self.fp_pane]
        else:
            self.view_area.objects = [self.chart_pane]
        self._seen = None

    def controls(self) -> pn.Column:
        """The sidebar: one widget per setting (each bound to its ``param``)."""
        s = self.settings
        W = pn.widgets
        pct = W.TextInput(label="Percentile lines (%)", value=", ".join(f"{p * 100:g}" for p in s.percentiles))

        def set_pct(event):
            try:
                vals = [float(x) / 100 for x in event.new.replace(";", ",").split(",") if x.strip()]
                if any(not (0 <= v <= 1) for v in vals) or len(vals) > 9:
                    raise ValueError
            except ValueError:
                self.show_messages([f"percentile lines {event.new[:40]!r} refused: use up to 9 numbers 0-100"])
                return
            s.percentiles = vals

        pct.param.watch(set_pct, "value")
        self.downloads = Downloads(self)
        display = pn.Column(
            W.Checkbox.from_param(s.param.show_profile, label="Volume profile"),
            W.Checkbox.from_param(s.param.heatmap, label="Heat-map behind candles"),
            W.Checkbox.from_param(s.param.developing, label="Developing POC/VAH/VAL"),
            W.Checkbox.from_param(s.param.hatch, label="Hatch bars (buys /, sells \\)"),
            W.Checkbox.from_param(s.param.dim_candles, label="Dim candles under profile"),
            W.FloatSlider.from_param(s.param.max_width, label="Max bar width"),
            pct,
        )
        footprint = pn.Column(
            W.RadioButtonGroup.from_param(s.param.footprint_mode, options={v: k for k, v in FOOTPRINT_MODES.items()},
                                          label="Cells", color="light"),
            W.IntInput.from_param(s.param.footprint_candles, label="Candles"),
            W.FloatInput.from_param(s.param.imbalance_ratio, label="Imbalance ratio (x)"),
            W.IntInput.from_param(s.param.stacked_min, label="Stacked imbalance rows"),
        )
        col = pn.Column(
            W.Select.from_param(s.param.symbol, options=self.symbols, label="Symbol"),
            W.RadioButtonGroup.from_param(s.param.interval, label="Interval", color="light"),
            W.RadioButtonGroup.from_param(s.param.view, label="View", color="light"),
            W.Select.from_param(s.param.mode, options={v: k for k, v in MODES.items()}, label="Profile mode"),
            W.IntInput.from_param(s.param.row_ticks, label="Ticks per row (0 = auto)"),
            W.FloatSlider.from_param(s.param.value_area, label="Value area"),
            W.FloatInput.from_param(s.param.half_life, label="Half-life, s (0 = auto)"),
            W.Toggle.from_param(s.param.follow, label="Follow live edge", color="primary"),
            W.IntInput.from_param(s.param.window_minutes, label="Window while following (min)"),
            pn.Card(display, title="Display", collapsed=False, sizing_mode="stretch_width"),
            pn.Card(footprint, title="Footprint", collapsed=True, sizing_mode="stretch_width"),
            pn.Card(self.downloads.panel(), title="Download", collapsed=False, sizing_mode="stretch_width"),
            W.IntInput.from_param(s.param.update_ms, label="Refresh (ms)"),
            pn.Card(pn.pane.HTML(self.embed_help(), stylesheets=[css_for(self.theme)], sizing_mode="stretch_width"),
                    title="Embed this chart", collapsed=True, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        for w in col.select(pn.widgets.Widget):
            w.sizing_mode = "stretch_width"
        return col

    def side(self) -> pn.Column:
        """Liquidations (with min-notional filter and the Binance note) over the time & sales tape."""
        s = self.settings
        W = pn.widgets
        return pn.Column(
            W.FloatInput.from_param(s.param.liq_min_notional, label="Min liquidation notional", width=170),
            self.liqs.pane,
            W.FloatInput.from_param(s.param.tape_min_size, label="Min trade size (tape)", width=170),
            self.tape.pane,
            width=330, sizing_mode="stretch_height", name="side",
        )

    def embed_help(self) -> str:
        """What an embedding site needs, as escaped HTML (iframe snippet for the current settings)."""
        loc = pn.state.location
        base = "http://localhost:5006/"
        host = "localhost:5006"
        if loc is not None and loc.hostname:
            port = f":{loc.port}" if loc.port else ""
            host = f"{loc.hostname}{port}"
            base = f"{loc.protocol or 'http:'}//{host}{loc.pathname or '/'}"
        q = dict(query_of(self.settings, self.defaults))
        q["embed"] = "1"
        src = base + "?" + urllib.parse.urlencode(q)
        snippet = f'<iframe src="{src}" width="1280" height="720" style="border:0"></iframe>'
        e = html.escape
        return (
            '<div class="fl-embed">'
            f"<pre>{e(snippet)}</pre>"
            "<p>The page's websocket only accepts the origins it was told about. Start the server with "
            f"<code>python serve.py --allow-websocket-origin={e(host)}</code> (the host:port browsers use to reach "
            "flowlens; it is allowed by default only for the address it binds). For a script embed "
            "(<code>bokeh.embed.server_document</code>) also add the embedding site's host:port.</p>"
            "<p>Every control can be set in the URL, e.g. <code>?symbol=ETHUSDT&amp;mode=heatmap&amp;row_ticks=50"
            "&amp;va=0.7&amp;theme=dark&amp;embed=1&amp;view=footprint</code>. Example page: "
            "<code>assets/embed-example.html</code>.</p></div>"
        )

    def show_messages(self, messages: list[str]) -> None:
        """Show plain-text messages (escaped) above the chart; the last 8 are kept."""
        self.messages = (self.messages + list(messages))[-8:]
        self.message.object = _messages_html(self.messages)
        self.message_box.visible = True

    def dismiss_messages(self) -> None:
        self.messages = []
        self.message_box.visible = False

    def main(self) -> pn.Column:
        """Status, messages, the active view beside the side panels, and the profile summary."""
        self._show_view()
        return pn.Column(
            self.message_box, self.status.pane,
            pn.Row(self.view_area, self.side(), sizing_mode="stretch_both"),
            self.summary.pane, sizing_mode="stretch_both",
        )

    def embedded(self) -> pn.Column:
        """Chart only (no template): messages, a status line and the active view."""
        self._show_view()
        return pn.Column(self.message_box, self.status.pane, self.view_area, self.summary.pane, sizing_mode="stretch_both",
                         styles={"background": self._th["bg"]}, margin=0)

    def start(self) -> None:
        """Start this session's updates (call inside a served session).

        The session refreshes when its view announces new data (``SymbolView.on_new_data``),
        at most once per ``update_ms`` (a throttle: the first new batch is shown at once, the
        ones that follow within the period together at its end), and when the viewer changes
        a setting or the range. A background periodic callback (every ``max(update_ms,
        STATUS_MS)``) keeps the status bar current (lag, ``stale since``) and catches
        anything missed. It does not turn the page's busy indicator on.
        """
        from panel.io.callbacks import PeriodicCallback

        self._cb = PeriodicCallback(callback=self._tick, period=self._status_period(), background=True)
        self._cb.start()
        doc = self._doc = pn.state.curdoc
        if doc is not None:
            pn.state._periodic.setdefault(doc, []).append(self._cb)
            # one more refresh as soon as the page is shown, as a locked next-tick callback of the document
            pn.state.onload(lambda: self._on_load(doc))
        self._subscribe()

    def _on_load(self, doc) -> None:
        # the browser has pulled and drawn this session's document: from now on a leader's messages apply to it
        # (joined earlier, the pull would overwrite the join with this session's own, older state)
        self._loaded = True
        doc.add_next_tick_callback(self.refresh)

    async def _tick(self) -> None:
        """The periodic refresh: skipped when a refresh ran within the period (data keeps the status current)."""
        if (time.monotonic() - self._last_refresh) * 1000 < self._status_period() * 0.9:
            return
        await self.refresh()

    def _status_period(self) -> int:
        return max(int(self.settings.update_ms), STATUS_MS)

    def _subscribe(self) -> None:
        """Ask the current symbol's view to poke this session when new data arrives (once per symbol)."""
        sym = self.settings.symbol
        if sym in self._subscribed or self._doc is None:
            return
        view = self.registry.get(sym)
        if hasattr(view, "on_new_data"):
            view.on_new_data(self.poke)
            self._subscribed.add(sym)

    def poke(self) -> None:
        """Schedule a refresh: now if the last one started ``update_ms`` ago or more, else when it has.

        Called on the server's event loop (by the view, or by a viewer's change); several pokes
        within one period give one refresh. Does nothing for a closed or disconnected page.
        """
        doc = self._doc
        if self._following():
            return  # the group's leader refreshes for this page
        if not self._connected():
            if self._group is not None and self._member is None:
                self._group.close()  # a leader whose browser went away: its followers go on without it
            return
        if doc is None or self._poke_pending:
            return
        wait_ms = int(self.settings.update_ms - (time.monotonic() - self._last_refresh) * 1000)
        self._poke_pending = True
        try:
            if wait_ms > 0:
                doc.add_timeout_callback(self._poked, wait_ms)
            else:
                doc.add_next_tick_callback(self._poked)
        except Exception:  # noqa: BLE001 - a session being destroyed refuses new callbacks
            self._poke_pending = False

    async def _poked(self) -> None:
        self._poke_pending = False
        await self.refresh()

    # -- refresh ---------------------------------------------------------------------
    async def refresh(self) -> None:
        """Bring this session up to date with the view's current snapshot (never raises).

        Runs as the session's periodic callback (Bokeh holds the document lock across
        its awaits). Shared results come from ``view.compute_async`` (the Redis-backed,
        cross-process cache) when the view has it, else from ``view.compute``.
        """
        if self._busy:
            self._again = True  # new data came in during this refresh: one more right after it
            return
        if not self._connected():
            return
        if self._following():
            self._last_refresh = time.monotonic()
            return
        self._busy = True
        self._again = False
        self._last_refresh = time.monotonic()
        _t0 = time.perf_counter()
        try:
            key = self.share_key() if self._loaded else None
            g = self._group
            if self._member is not None or (g is not None and (not g.open or key != g.key)):
                with self._held():
                    share.leave(self)
            if key is not None and self._group is None and share.join(self, key, lead=False) == "follower":
                return  # its leader's refreshes show from now on
            await self._refresh()
            share.STATS["own"] += 1
            if key is not None and self._group is None and key == self.share_key() and self._connected():
                share.join(self, key)
            log.debug("refresh %.0f ms (mode %s, view %s)", (time.perf_counter() - _t0) * 1000, self.settings.mode,
                      self.settings.view)
        except Exception as e:  # noqa: BLE001 - one bad refresh must not end the session's updates
            log.exception("dashboard refresh failed")
            self.status.object = (f'<span class="fl-status" style="color:{self._th["bad"]}">display error: '
                                  f"{html.escape(type(e).__name__)}: {html.escape(str(e))[:200]}</span>")
        finally:
            self._busy = False
            if self._again and self._doc is not None:
                self._again = False
                self.poke()

    # -- sharing one refresh between the sessions of one share key ---------------------
    def share_key(self):
        """What makes two pages of this process look the same (None: this page cannot share).

        Pages share when their settings are equal (URL and controls, theme, embedding) and
        nothing is the viewer's own: the range follows the live edge or is fixed by the
        URL, and no row is highlighted. Only served sessions share.
        """
        if self._key_cache is not None:
            return self._key_cache[0]
        s = self.settings
        if self._session() is None:
            return None
        key = None
        if self._band is None and (s.follow or s.range_start is not None):
            values = {k: v for k, v in s.param.values().items() if k != "name"}
            key = (repr(sorted(values.items())), self.theme, self._url_sync)
        self._key_cache = (key,)
        return key

    def _following(self) -> bool:
        """True while this page is a follower whose leader refreshes for it."""
        m, g = self._member, self._group
        return (m is not None and m.active and g is not None and g.open and g.leader_ok()
                and self.share_key() == g.key)

    def _followed(self) -> None:
        """The leader sent this follower a refresh (its status is current: the periodic refresh skips)."""
        self._last_refresh = time.monotonic()

    def share_roots(self) -> list:
        """The Bokeh models this page's refreshes change, as roots to walk (chart, footprint, text boxes)."""
        roots = [self.chart.figure, self.status.div, self.summary.div, self.tape.div, self.liqs.div]
        if self.footprint is not None:
            roots.append(self.footprint.layout)
        return roots

    def shown_plan(self) -> dict | None:
        """The results this page shows: its own latest plan, or its leader's while it follows one."""
        if self._following():
            return self._group.leader.last_plan
        return self.last_plan

    def _session(self):
        doc = self._doc
        ctx = getattr(doc, "session_context", None) if doc is not None else None
        return getattr(ctx, "_session", None)

    def _pending_writes(self) -> list | None:
        pending = getattr(self._session(), "_pending_writes", None)
        return pending if isinstance(pending, list) else None

    def _connections(self) -> list:
        return list(getattr(self._session(), "_subscribed_connections", ()) or ())

    @contextlib.contextmanager
    def _held(self):
        """Collect a refresh's model changes (made with no await in between) and send them as one message.

        Bokeh's own ``Document.hold("collect")``: refresh() runs as a locked callback, so on
        ``unhold`` Bokeh queues one ``PATCH-DOC`` per event in the session's pending writes,
        written in order under the connection's write lock before the document lock is
        released. :func:`dashboard.share.seal` then serializes them at once as a few messages
        with the arrays inline (a refresh makes about a dozen changes, and with many sessions
        the per-frame cost dominated the server's time). A leader's messages also go to its
        followers (:func:`dashboard.share.broadcast`).
        """
        doc = self._doc
        if doc is None or doc.session_context is None:
            yield
            return
        if doc.callbacks.hold_value:
            yield
            return
        pending = self._pending_writes()
        n0 = len(pending) if pending is not None else None
        doc.hold("collect")
        try:
            yield
        finally:
            events = list(getattr(doc.callbacks, "_held_events", ()))
            for model, attr in share.touched_pairs(events):
                self._touched[(model.id, attr)] = (model, attr)
            doc.unhold()
            sealed = share.seal(pending, n0, doc) if n0 is not None else None
            g = self._group
            if g is not None and self._member is None and g.members:
                if sealed is None:
                    g.close()
                else:
                    share.broadcast(g, sealed, events)

    def _connected(self) -> bool:
        """False while no browser is connected to this session (a closed tab waiting to expire): skip work."""
        count = getattr(self._session(), "connection_count", None)
        return count is None or count > 0

    def fill(self) -> None:
        """Fill the page with the current data before it is sent (so the first paint has the chart).

        Runs one refresh synchronously with the view's process-local ``compute`` (no Redis
        round trip, no await); the periodic refresh takes over once the page is shown.
        """
        self._sync_compute = True
        try:
            coro = self.refresh()
            try:
                coro.send(None)
            except StopIteration:
                pass
            else:  # it waited on something: finish it on the loop instead
                coro.close()
        finally:
            self._sync_compute = False

    async def _compute(self, view, kind: str, start: int, end: int, snap, **params):
        fn = None if self._sync_compute else getattr(view, "compute_async", None)
        if fn is not None:
            return await fn(kind, start, end, snapshot=snap, **params)
        return view.compute(kind, start, end, snapshot=snap, **params)

    def _range_key(self):
        s = self.settings
        if s.follow:
            return None
        if s.range_start is not None:
            return (s.range_start, s.range_end)
        xr = self.footprint.x_range if (s.view == "footprint" and self.footprint) else self.chart.x_range
        return (xr.start, xr.end)

    async def _refresh(self) -> None:
        # Two phases: first every shared result is awaited (no model is touched), then all
        # model changes are made in one synchronous hold, sent as one message. (Awaiting inside
        # a hold let other writers interleave, and patches could reach the browser before
        # the data they patch.)
        s = self.settings
        view = self.registry.get(s.symbol)
        snap = view.snapshot
        key = (snap.symbol, snap.version, self._rev, self._range_key())
        plan = None
        if len(snap.candles) and key != self._seen:
            self._seen = key
            iv = s.interval_ms
            candles = snap.candles if iv == 60_000 else shared(
                ("candles", snap.symbol, snap.version, iv, id(snap.candles)), lambda: resample_candles(snap.candles, iv))
            gather = self._gather_footprint if s.view == "footprint" else self._gather_chart
            plan = await gather(view, snap, candles, snap.tick)
        with self._held():
            self.status.object = status_html(snap, self.theme)
            if plan is None:
                return
            tick = snap.tick
            if tick != self._last_tick:
                self._last_tick = tick
                self.chart.set_tick(tick)
                if self.footprint is not None:
                    self.footprint.set_tick(tick)
                self.profile.set_mode_style(s.mode, fmt_decimals(tick))
            if plan["view"] == "footprint":
                self._apply_footprint(plan)
            else:
                self._apply_chart(plan)
            self.last_plan = plan
            self._update_side(snap, tick, plan["range"])

    # chart view
    def _window(self, candles, iv: int, max_candles: int | None = None, xr=None) -> tuple[int, int]:
        s = self.settings
        last_open = int(candles["time"].iloc[-1])
        first = int(candles["time"].iloc[0])
        if s.follow:
            end = last_open + iv
            span = s.window_minutes * 60_000 if max_candles is None else max_candles * iv
            return max(end - span, first // iv * iv), end
        if s.range_start is not None:
            start, end = s.range_start // iv * iv, -(-s.range_end // iv) * iv
        else:
            xr = xr or self.chart.x_range
            start, end = int(xr.start // iv * iv), int(-(-xr.end // iv) * iv)
        if max_candles is not None and end - start > MAX_FOOTPRINT_CANDLES * iv:
            start = end - MAX_FOOTPRINT_CANDLES * iv
        return start, max(end, start + iv)

    def _row_size(self, lo: float, hi: float, tick: float, target: int) -> float:
        s = self.settings
        rs = round(s.row_ticks * tick, 12) if s.row_ticks else auto_row_size(lo, hi, tick, target)
        if (hi - lo) / rs > MAX_PROFILE_ROWS:
            rs = auto_row_size(lo, hi, tick, MAX_PROFILE_ROWS // 2)
        return rs

    async def _profile(self, view, snap, start: int, end: int, row_size: float):
        s = self.settings
        kind = _KINDS[s.mode]
        params = {"row_size": float(row_size), "value_area": float(s.value_area),
                  "percentiles": tuple(float(p) for p in s.percentiles)}
        if kind == "recency":
            params["half_life_s"] = float(s.half_life) if s.half_life > 0 else None
        res = await self._compute(view, kind, start, end, snap, **params)
        ckey = ("profile_cols", s.mode, round(s.max_width, 4), self.theme)
        cols = None if res is None else derived(res, ckey, lambda: profile_columns(res, s.mode, s.max_width,
                                                                                   self.theme))
        return res, cols

    def _draw_profile(self, res, cols, tick: float, row_size: float, y_span: float) -> None:
        s = self.settings
        if res is None or not s.show_profile:
            self.profile.clear()
            self.summary.object = ("no trades in the visible range" if res is None else "")
            self._last_res = res
            return
        self.profile.set_mode_style(s.mode, fmt_decimals(tick))
        self.profile.set_columns(*cols)
        self.last_labels = self.profile.set_levels(res, tick, y_span)
        self._last_res = res
        self._update_summary(res, res.start, res.end, row_size, tick)

    async def _gather_chart(self, view, snap, candles, tick) -> dict:
        """Ranges and every shared result the chart view needs (nothing drawn yet)."""
        s = self.settings
        iv = s.interval_ms
        start, end = self._window(candles, iv)
        t = candles["time"].to_numpy()
        vis = candles[(t >= start) & (t < end)]
        plan = {"view": "chart", "candles": candles, "window": (start, end), "range": (start, end), "vis": vis,
                "tick": tick, "res": None}
        if not len(vis):
            return plan
        lo, hi = float(vis["low"].min()), float(vis["high"].max())
        pend = min(end, int(snap.trades.time[-1]) + 1) if len(snap.trades) else end
        plan.update(lo=lo, hi=hi, pend=pend)
        if pend <= start:
            return plan
        row_size = self._row_size(lo, hi, tick, AUTO_ROWS_CHART)
        res, cols = await self._profile(view, snap, start, pend, row_size)
        plan.update(res=res, cols=cols, row_size=row_size, range=(start, pend), dev=None, heat=None)
        if s.developing and res is not None:
            plan["dev"] = await self._compute(view, "developing", start, pend, snap, row_size=float(row_size),
                                              candle_ms=iv, value_area=float(s.value_area))
        if s.heatmap and res is not None:
            ncols = int(min(max((end - start) // iv * HEAT_BINS_PER_CANDLE, 1), HEAT_MAX_COLS))
            nrows = int(min(max(res.rows // 2, 1), HEAT_MAX_ROWS))
            plan["heat"] = await self._compute(
                view, "heatmap", start, pend, snap, price_low=float(res.price_low[0]),
                price_high=float(res.price_high[-1]), width=ncols, height=nrows, agg="volume")
        return plan

    def _apply_chart(self, plan: dict) -> None:
        s = self.settings
        ch = self.chart
        tick = plan["tick"]
        ch.update_candles(plan["candles"])
        self.visible_range = plan["window"]
        vis = plan["vis"]
        if not len(vis):
            self.profile.clear()
            self.summary.object = "no trades in the visible range"
            return
        lo, hi = plan["lo"], plan["hi"]
        pad = max((hi - lo) * 0.06, tick * 5)
        pad_low = max((hi - lo) * 0.28, tick * 5)  # the volume bars take the bottom fifth: keep candles above them
        ch.set_volume_scale(float(vis["volume"].max()))
        w_start, w_end = self.visible_range
        if s.follow or s.range_start is not None:
            room = (w_end - w_start) * (s.max_width / (1 - s.max_width) * 1.08 if s.show_profile else 0.03)
            self._set_x = (float(w_start), float(w_end + room))
            ch.set_ranges(*self._set_x, lo - pad_low, hi + pad)
        else:
            ch.set_y(lo - pad_low, hi + pad)
        if "cols" not in plan:  # nothing traded yet in the window
            self.profile.clear()
            return
        res = plan["res"]
        self._draw_profile(res, plan["cols"], tick, plan["row_size"], hi - lo + pad + pad_low)
        dev = plan.get("dev")
        ch.update_developing(dev.developing if dev is not None else None)
        ch.update_heatmap(plan.get("heat"))

    # footprint view
    async def _gather_footprint(self, view, snap, candles, tick) -> dict:
        """The footprint's range, its result and the profile for it (nothing drawn yet)."""
        s = self.settings
        iv = s.interval_ms
        fp = self._ensure_footprint()
        start, end = self._window(candles, iv, max_candles=s.footprint_candles, xr=fp.x_range)
        t = candles["time"].to_numpy()
        vis = candles[(t >= start) & (t < end)]
        pend = min(end, int(snap.trades.time[-1]) + 1) if len(snap.trades) else end
        plan = {"view": "footprint", "window": (start, end), "range": (start, end), "tick": tick, "fp": None,
                "candles": candles}
        if not len(vis) or pend <= start:
            return plan
        lo, hi = float(vis["low"].min()), float(vis["high"].max())
        row_size = self._row_size(lo, hi, tick, AUTO_ROWS_FOOTPRINT)
        res = await self._compute(view, "footprint", start, pend, snap, **self.footprint_params(row_size))
        cols = None if res is None else derived(res, ("fp_cols", s.footprint_mode, self.theme),
                                                lambda: footprint_columns(res, s.footprint_mode, self.theme))
        pres, pcols = await self._profile(view, snap, start, pend, row_size)
        plan.update(fp=cols, fp_res=res, lo=lo, hi=hi, row_size=row_size, res=pres, cols=pcols, range=(start, pend))
        return plan

    def footprint_params(self, row_size: float) -> dict:
        """Parameters of the footprint computation for the viewer's settings (row size in quote currency)."""
        s = self.settings
        return dict(row_size=float(row_size), interval_ms=s.interval_ms, imbalance_ratio=float(s.imbalance_ratio),
                    stacked_min=int(s.stacked_min))

    def _apply_footprint(self, plan: dict) -> None:
        s = self.settings
        iv = s.interval_ms
        fp = self._ensure_footprint()
        start, end = self.visible_range = plan["window"]
        if plan["fp"] is None:
            fp.update(None, iv)
            self.profile.clear()
            return
        fp.update(plan["fp"], iv)
        lo, hi, row_size = plan["lo"], plan["hi"], plan["row_size"]
        pad = row_size * 1.5
        if s.follow or s.range_start is not None:
            room = (end - start) * (s.max_width / (1 - s.max_width) * 1.08 if s.show_profile else 0.02)
            self._set_x = (float(start), float(end + room))
            fp.set_ranges(*self._set_x, lo - pad, hi + pad)
        else:
            fp.set_ranges(fp.x_range.start, fp.x_range.end, lo - pad, hi + pad)
        self._draw_profile(plan["res"], plan["cols"], plan["tick"], row_size, hi - lo + 2 * pad)

    # side panels and liquidation markers
    def _update_side(self, snap, tick: float, rng: tuple[int, int]) -> None:
        s = self.settings
        liq = getattr(snap, "liquidations", None)
        liq_id = (id(liq), len(liq)) if liq is not None else None
        start, end = rng
        lkey = ("liq", snap.symbol, liq_id, start, end, float(s.liq_min_notional))
        lv = shared(lkey, lambda: liquidations_view(liq, snap.symbol, start, end, s.liq_min_notional))
        self.chart.update_liquidations(lv)
        if s.embed:
            return
        key = (snap.symbol, snap.version, lkey, float(s.tape_min_size), self.theme)
        now = time.monotonic()
        settings_changed = key[2:] != (self._side_seen or (None,) * 5)[2:]
        if key == self._side_seen or (not settings_changed and now - self._side_at < SIDE_MIN_S):
            return
        self._side_seen, self._side_at = key, now
        tk = ("tape_html", snap.symbol, snap.version, float(s.tape_min_size), self.theme, tick)
        self.tape.object = shared(tk, lambda: tape_html(tape_rows(snap.trades, s.tape_min_size, n=TAPE_ROWS), tick,
                                                         self.theme, s.tape_min_size))
        self.liqs.object = shared(("liq_html", lkey, self.theme, tick),
                                  lambda: liquidations_html(lv, tick, self.theme, s.liq_min_notional))

    def _update_summary(self, res, start, end, row_size, tick) -> None:
        p = lambda v: fmt.price(v, tick, sep="")  # noqa: E731
        s = self.settings
        delta = res.buy_volume - res.sell_volume
        text = (
            f"VPVR {MODES[s.mode]} · {fmt.utc(start, False)} → {fmt.utc(end, False)} · row {fmt.price(row_size, tick)} · "
            f"<b>{html.escape(self.last_labels.get('poc', ''))}</b> · {html.escape(self.last_labels.get('vah', ''))} · "
            f"{html.escape(self.last_labels.get('val', ''))} · {html.escape(self.last_labels.get('va', ''))} · "
            f"Vol {fmt.volume(res.total_volume)} · Δ {fmt.volume(delta, signed=True)} · {res.trades:,} trades"
        )
        self.summary.object = (
            f'<span class="fl-profile fl-summary" data-poc="{p(res.poc)}" data-vah="{p(res.vah)}" '
            f'data-val="{p(res.val)}" data-from="{start}" data-to="{end}" data-row-size="{p(row_size)}" '
            f'data-trades="{res.trades}" data-mode="{s.mode}" data-kind="{res.kind}">{text}</span>'
        )


_WARMED = threading.Event()
_WARM_LOCK = threading.Lock()


def warm_up(registry=None, trades=None, tick: float = 0.01) -> float:
    """Run every shared computation once on a small slice of real trades; returns the seconds it took.

    The first use of datashader (heat-map) compiles numba code (~1.5 s) and the first
    profile/footprint/developing calls load their code paths; doing it once at start-up
    (in a thread) spares the first viewer that wait. Uses the last 5,000 trades of the
    first view of ``registry`` that has data, or ``trades`` (a TradeBatch). Results are
    not kept. Never raises (a failure is logged).
    """
    from store.view import KINDS

    if _WARMED.is_set() or not _WARM_LOCK.acquire(blocking=False):
        return 0.0  # done, or under way in another thread (serve.py's and the first page's may meet)
    t0 = time.perf_counter()
    try:
        if trades is None and registry is not None:
            for v in list(getattr(registry, "views", {}).values()):
                snap = v.snapshot
                if len(snap.trades):
                    trades, tick = snap.trades, snap.tick
                    break
        if trades is None or not len(trades):
            return 0.0
        tr = trades.take(slice(max(len(trades) - 5000, 0), len(trades)))
        s, e = int(tr.time[0]), int(tr.time[-1]) + 1
        lo, hi = float(tr.price.min()), float(tr.price.max())
        rs = auto_row_size(lo, hi, tick, 60)
        for kind, params in (("volume", {}), ("recency", {}), ("tpo", {}), ("split", {}),
                             ("developing", {"candle_ms": 60_000}), ("footprint", {"interval_ms": 60_000})):
            KINDS[kind](tr, tick, s, e, row_size=rs, **params)
        KINDS["heatmap"](tr, tick, s, e, price_low=lo, price_high=hi + tick, width=16, height=16, agg="volume")
        _WARMED.set()
    except Exception:  # noqa: BLE001 - warming is an optimisation only
        log.exception("warm-up failed")
    finally:
        _WARM_LOCK.release()
    return time.perf_counter() - t0


def fmt_decimals(tick: float) -> int:
    from compute.grid import decimals_for

    return decimals_for(tick)


def _session_args() -> dict:
    try:
        return dict(pn.state.session_args or {})
    except Exception:  # noqa: BLE001 - outside a server session there are no args
        return {}


def create_page(registry, settings: DashboardSettings | None = None, interval_ms: int | None = None,
                query: dict | None = None):
    """Build the served page for one session; returns ``(page, dashboard)``.

    ``settings`` are the server's defaults for this session (symbol, update period...);
    the URL query (``query``, default ``pn.state.session_args``) overrides them after
    validation (:func:`dashboard.settings.parse_query`); refused values are shown in a
    message at the top of the page. ``embed=1`` returns the chart alone (no template).
    """
    base = settings or DashboardSettings()
    symbols = known_symbols(registry) or [base.symbol]
    if base.symbol not in symbols:
        symbols = sorted({*symbols, base.symbol})
    args = _session_args() if query is None else query
    values, messages = parse_query(args, symbols, base)
    defaults = {k: v for k, v in base.param.values().items() if k != "name"}
    base.param.update(**values)
    dash = Dashboard(registry, settings=base, symbols=symbols, messages=messages, interval_ms=interval_ms)
    dash.defaults = defaults
    s = dash.settings
    autoload = any(str(k).startswith("bokeh-autoload") or str(k) == "bokeh-absolute-url" for k in args)
    dash._url_sync = not autoload
    if pn.state.curdoc is not None:
        pn.config.theme = "dark" if s.theme == "dark" else "default"
    if s.embed:
        page = dash.embedded()
    else:
        th = THEMES[s.theme]
        tmpl = pn.template.BootstrapTemplate(
            title=f"flowlens · {s.symbol}", theme="dark" if s.theme == "dark" else "default",
            sidebar=[dash.controls()], main=[dash.main()], sidebar_width=280,
            header_background=th["panel"], header_color=th["text"],
        )
        tmpl.config.raw_css.append(
            f"body, #main, .main, #content {{ background: {th['bg']} !important; }}"
            f" #sidebar {{ background: {th['panel']} !important; }}"
        )
        page = tmpl
    dash.fill()
    dash.start()
    if not _WARMED.is_set() and not _WARM_LOCK.locked():  # once per process, off the session's thread
        threading.Thread(target=warm_up, args=(registry,), name="flowlens-warm-up", daemon=True).start()
    return page, dash


__all__ = ["Dashboard", "DashboardSettings", "create_page", "known_symbols", "warm_up"]
