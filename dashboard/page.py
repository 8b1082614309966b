"""The flowlens page: one :class:`Dashboard` per browser session, composed of small components.

Data flows one way. A session reads only the process's :class:`engine.view.SymbolView`
snapshot (a mirror of Redis), at most once per :attr:`DashboardSettings.update_ms`
(:mod:`dashboard.schedule`), never from a feed. Everything heavy is asked of the view by
the :class:`dashboard.plan.Planner` (once per process for all sessions); a session only
turns the resulting :class:`dashboard.plan.RefreshPlan` into updates of its own Bokeh
sources, inside one document hold, and only when the data version, a setting or the
visible range changed.

Components: :class:`dashboard.messages.MessageBox`, :class:`dashboard.status.StatusBar`,
:class:`dashboard.views.ViewArea` (chart, footprint, profile layer),
:class:`dashboard.panels.SidePanels` (tape, liquidations),
:class:`dashboard.controls.Controls`, :class:`dashboard.download.Downloads` and
:class:`dashboard.alerts_card.AlertsCard` (alert signals: :mod:`dashboard.signal_layer`);
:class:`dashboard.link.SessionLink` holds the served session and the share group.
"""

from __future__ import annotations

import logging
import time

import panel as pn
import param
from panel.viewable import Viewer

from compute.candles import INTERVALS as CANDLE_INTERVALS
from compute.candles import resample

from . import bokeh_adapter as bk
from .alerts_card import AlertsCard
from .controls import Controls, sync_url
from .data import shared
from .download import Downloads
from .link import SessionLink
from .messages import MessageBox
from .panels import SidePanels
from .plan import Planner
from .schedule import RefreshSchedule
from .settings import DashboardSettings
from .signal_layer import SignalToasts
from .status import StatusBar
from .theme import THEMES, css_for
from .views import ViewArea

log = logging.getLogger(__name__)

#: Below this width (px) the page is a phone's: the sidebar is a drawer and the side panels go under the chart.
PHONE_MAX_PX = 767.98

#: The chart beside the side panels; on a phone the panels go under the chart, which keeps the full width.
BODY_CSS = f"""
@media (max-width: {PHONE_MAX_PX}px) {{
  :host {{ flex-direction: column !important; height: auto !important; min-height: 0 !important; }}
  .fl-chart-area {{ width: 100% !important; height: max(340px, calc(100vh - 150px)) !important;
    flex: 0 0 auto !important; }}
  .fl-side {{ width: 100% !important; height: auto !important; flex: 0 0 auto !important; }}
}}
"""
#: The page's main column: on a phone it grows with its content (the main area scrolls).
MAIN_CSS = f"""
@media (max-width: {PHONE_MAX_PX}px) {{
  :host {{ height: auto !important; }}
  .fl-body {{ height: auto !important; flex: 0 0 auto !important; }}
}}
"""

#: How often a page looks for new alert signals to toast (ms).
ALERTS_MS = 1000


class Dashboard(Viewer):
    """One session's page: chart or footprint, profile, tape, liquidations and status.

    Parameters
    ----------
    registry : engine.view.ViewRegistry
        The process's views (``registry.get(symbol)`` -> SymbolView).
    settings : DashboardSettings
    symbols : list of str
        The ingested symbols offered in the symbol control.
    messages : list of str
        Plain-text messages to show (e.g. refused URL values); escaped when shown.
    alerts : service.alerts.AlertBook, optional
        The process's alert rules: the sidebar gets an "Alerts" card (none without it). Signals are
        drawn on the chart and toasted either way.
    """

    settings = param.ClassSelector(class_=DashboardSettings, doc="What the viewer has chosen.")
    symbols = param.List(default=[], item_type=str, doc="Ingested symbols offered in the symbol control.")
    defaults = param.Dict(default={}, doc="The server's settings (values equal to them stay out of the URL).")
    url_sync = param.Boolean(default=False, doc="Keep the browser's URL query in step with the settings "
                                                "(off for script embeds, whose URL is the host page's).")

    def __init__(self, registry, settings: DashboardSettings | None = None, symbols=None, messages=(),
                 interval_ms: int | None = None, alerts=None, **params):
        s = params["settings"] = settings or DashboardSettings()
        offered = list(symbols or [s.symbol])
        params["symbols"] = offered if s.symbol in offered else sorted({*offered, s.symbol})
        super().__init__(**params)
        if interval_ms is not None:
            s.interval = next((k for k, v in CANDLE_INTERVALS.items() if v == interval_ms), s.interval)
        self.registry = registry
        self.theme = s.theme
        css = css_for(s.theme)
        self.alerts = MessageBox(css, messages=list(messages))
        self.message, self.message_box = self.alerts.pane, self.alerts.box
        self.bar = StatusBar(css, theme=s.theme)
        self.status, self.summary = self.bar.status, self.bar.summary
        self.side_panels = SidePanels(css, settings=s, theme=s.theme)
        self.tape, self.liqs = self.side_panels.tape, self.side_panels.liqs
        self.views = ViewArea(self.bar, self._on_user_range, self._on_tap, self._on_reset, settings=s, theme=s.theme)
        self.chart, self.profile = self.views.chart, self.views.profile
        self.planner = Planner(s, s.theme, registry)
        self.link = SessionLink()
        self.schedule = RefreshSchedule(s, self.link, self.refresh, self._following, registry)
        #: The latest refresh's results for the current view (what the download buttons export).
        self.last_plan = None
        self.downloads: Downloads | None = None
        self._seen = None
        self._rev = 0
        self._busy = self._again = False
        self._key_cache: tuple | None = None
        #: The session's ``pn.state.location`` (set by create_page), where :meth:`sync_url` writes.
        self.location = None
        self.controls_view: Controls | None = None
        self._url_dirty = False
        #: The URL's from/to, shown as the view's x range until the viewer pans (see :meth:`_open_url_range`).
        self.url_range: tuple[int, int] | None = None
        self._open_url_range()
        if s.highlight is not None:
            self.views.highlight(tuple(s.highlight))
        self.views.param.watch(self._on_band, "band")
        #: The sidebar's alerts card (None without an AlertBook) and which signals this session has toasted.
        self.alerts_card = AlertsCard(alerts, symbol=s.symbol, theme=s.theme) if alerts is not None else None
        self.toasts = SignalToasts()
        if self.alerts_card is not None:
            s.param.watch(lambda e: setattr(self.alerts_card, "symbol", e.new), "symbol")
        s.param.watch(self._on_settings, [p for p in s.param if p not in ("name", "update_ms")])

    def _open_url_range(self) -> None:
        """Show the URL's ``from``/``to`` as the chart's x range, exactly as the page that wrote them showed it.

        A page that does not follow the live edge writes its visible x range as ``from``/``to``
        (:meth:`view_range`); reopened, the same range is set on the view's x axis and the
        window (candles, profile) is computed from it, as after a pan (a fixed window of the
        settings would add room on the right for the profile, and show another range).
        Until the viewer pans, pages with the same URL still share one refresh (:meth:`share_key`).
        """
        s = self.settings
        if s.range_start is None or s.range_end is None:
            return
        self.url_range = (int(s.range_start), int(s.range_end))
        s.param.update(range_start=None, range_end=None, follow=False)
        x0, x1 = map(float, self.url_range)
        self.views.set_x = (x0, x1)  # not the viewer's change
        for xr in {id(r): r for r in (self.chart.x_range, self.views.x_range())}.values():
            xr.update(start=x0, end=x1)

    # -- components shown elsewhere ------------------------------------------------------
    @property
    def footprint(self):
        """The footprint chart (None until the footprint view was first shown)."""
        return self.views.footprint

    @property
    def visible_range(self) -> tuple[int, int] | None:
        """The window ``[start, end)`` shown by the latest refresh."""
        return self.views.visible_range

    @property
    def messages(self) -> list[str]:
        return self.alerts.messages

    def show_messages(self, messages: list[str]) -> None:
        """Show plain-text messages (escaped) above the chart; the last 8 are kept."""
        self.alerts.show(messages)

    def dismiss_messages(self) -> None:
        self.alerts.dismiss()

    # -- events ----------------------------------------------------------------------
    def _on_user_range(self) -> None:
        s = self.settings
        self.url_range = None
        self._key_cache = None
        if s.follow or s.range_start is not None:
            s.param.update(follow=False, range_start=None, range_end=None)
        self._rev += 1
        self._url_dirty = True  # written by the next refresh (a drag moves the range many times)
        self.poke()

    def _on_reset(self) -> None:
        self.settings.param.update(follow=True, range_start=None, range_end=None)
        self._rev += 1
        self.poke()

    def _on_tap(self, x_range, event) -> None:
        """A click on a profile row highlights its price band; a click on the highlighted row clears it.
        An alt-click puts the price under the pointer in the alerts card's level field."""
        if (getattr(event, "modifiers", None) or {}).get("alt"):
            self._level_at(event)
            return
        # a follower's own ranges and profile source are not kept current: what is on its screen is its leader's
        src = self.link.group.leader if self._following() else self
        if src is not self:
            x_range = src.chart.x_range if x_range is self.chart.x_range else src.footprint.x_range
        band = src.views.band_at(x_range, event)
        if band is not None:
            self.highlight(None if self.views.band == band else band)

    def _level_at(self, event) -> None:
        if self.alerts_card is None or event.y is None:
            return
        self.alerts_card.set_level(float(event.y), self.registry.get(self.settings.symbol).snapshot.tick)

    def highlight(self, band: tuple[float, float] | None) -> None:
        """Highlight the price band ``[low, high)`` across the candles and the footprint (None clears)."""
        self._key_cache = None
        self.views.highlight(band)

    def _on_band(self, event) -> None:
        """The highlighted row is a setting too (``hl`` in the URL), whoever changed it (a click, a new symbol)."""
        band = tuple(event.new) if event.new is not None else None
        if self.settings.highlight != band:
            self.settings.highlight = band

    def _on_settings(self, *events) -> None:
        """Any setting but ``update_ms`` changed (the components restyle themselves): refresh soon."""
        s = self.settings
        self._rev += 1
        self._key_cache = None
        if any(e.name == "follow" for e in events) and s.follow and s.range_start is not None:
            s.param.update(range_start=None, range_end=None)
        if any(e.name == "follow" for e in events) and s.follow:
            self.url_range = None
        self.sync_url()
        self.schedule.subscribe()
        self.poke()

    @param.depends("settings.update_ms", watch=True)
    def _on_update_ms(self) -> None:
        self._key_cache = None
        self.schedule.period_changed()
        self.sync_url()

    # -- the URL ---------------------------------------------------------------------
    def view_range(self) -> tuple[int, int] | None:
        """The visible time range (UTC ms) when the page does not follow the live edge, else None."""
        s = self.settings
        if s.follow:
            return None
        if s.range_start is not None and s.range_end is not None:
            return (s.range_start, s.range_end)
        if self.url_range is not None:
            return self.url_range
        xr = self.footprint.x_range if (s.view == "footprint" and self.footprint is not None) else self.chart.x_range
        try:
            x0, x1 = float(xr.start), float(xr.end)
        except (TypeError, ValueError):
            return None
        return (round(x0), round(x1)) if x1 > x0 > 0 else None

    def sync_url(self) -> None:
        """Write the whole view (settings, visible range, highlighted row) to the URL and the embed snippet."""
        self._url_dirty = False
        rng = self.view_range()
        if self.url_sync:
            sync_url(self.settings, self.defaults, rng, self.location)
        if self.controls_view is not None:
            self.controls_view.show_view(rng, self.location)

    # -- layout ----------------------------------------------------------------------
    def _show_view(self) -> None:
        self.views.show_view()
        self._seen = None

    def _ensure_footprint(self):
        return self.views.ensure_footprint()

    def controls(self) -> pn.Column:
        """The sidebar: one widget per setting (each bound to its ``param``), downloads, embed help."""
        self.downloads = Downloads(self.shown_plan, self.planner.footprint_of, self.views.model_for, self.show_messages,
                                   coverage_of=self.planner.coverage_of, symbol=self.settings.param.symbol)
        self.controls_view = Controls(self.downloads, self.show_messages, alerts=self.alerts_card,
                                      settings=self.settings, symbols=self.symbols, theme=self.theme,
                                      defaults=self.defaults)
        return self.controls_view.__panel__()

    def main(self) -> pn.Column:
        """Status, messages, the active view beside the side panels, and the profile summary."""
        self._show_view()
        area = self.views.area
        area.css_classes = [*area.css_classes, "fl-chart-area"]
        body = pn.Row(area, self.side_panels.__panel__(), sizing_mode="stretch_both", css_classes=["fl-body"],
                      stylesheets=[BODY_CSS])
        return pn.Column(self.message_box, self.status.pane, body, self.summary.pane, sizing_mode="stretch_both",
                         css_classes=["fl-main"], stylesheets=[MAIN_CSS])

    def embedded(self) -> pn.Column:
        """Chart only (no template): messages, a status line and the active view."""
        self._show_view()
        return pn.Column(self.message_box, self.status.pane, self.views.area, self.summary.pane,
                         sizing_mode="stretch_both", styles={"background": THEMES[self.theme]["bg"]}, margin=0)

    def __panel__(self) -> pn.Column:
        return self.embedded() if self.settings.embed else self.main()

    # -- scheduling ------------------------------------------------------------------
    def start(self) -> None:
        """Start this session's updates (call inside a served session); see :class:`dashboard.schedule.RefreshSchedule`.

        Also a background check every :data:`ALERTS_MS`: toasts for new alert signals, the alerts card's rule list.
        """
        self.schedule.start()
        s = self.settings
        self.toasts.new(s.symbol, getattr(self.registry.get(s.symbol).snapshot, "signals", ()))  # those already there are not news
        bk.background_periodic_callback(self.check_alerts, ALERTS_MS)

    async def check_alerts(self) -> list[str]:
        """Toast the signals new to this session (also while it follows a leader), ring the alerts card's bell
        (sound, browser notification: when ticked); reload the card's rule list when it is due. Returns the
        toasts' texts."""
        if not self.link.connected():
            return []
        snap = self.registry.get(self.settings.symbol).snapshot
        fresh = self.toasts.new(self.settings.symbol, getattr(snap, "signals", ()))
        texts = self.toasts.show(fresh, snap.tick, pn.state.notifications) if fresh else []
        if self.alerts_card is not None:
            self.alerts_card.bell.ring(texts)
            self.alerts_card.tick = snap.tick
            await self.alerts_card.load_rules()
        return texts

    def poke(self) -> None:
        """Schedule a refresh (throttled to one per ``update_ms``); see :meth:`RefreshSchedule.poke`."""
        self.schedule.poke()

    # -- refresh ---------------------------------------------------------------------
    async def refresh(self) -> None:
        """Bring this session up to date with the view's current snapshot (never raises).

        Runs as a locked callback of the session (Bokeh holds the document lock across its
        awaits). Shared results come from ``view.compute_async`` (the Redis-backed,
        cross-process cache) when the view has it, else from ``view.compute``. Pages that
        look the same share one refresh (:mod:`dashboard.share`).
        """
        if self._busy:
            self._again = True  # new data came in during this refresh: one more right after it
            return
        if not self.link.connected():
            return
        if self._url_dirty:
            self.sync_url()
        self.schedule.last_refresh = time.monotonic()
        if self._following():
            return
        self._busy, self._again = True, False
        _t0 = time.perf_counter()
        try:
            if await self.link.refresh(self, self.share_key() if self.link.loaded else None, self._refresh):
                log.debug("refresh %.0f ms (mode %s, view %s)", (time.perf_counter() - _t0) * 1000,
                          self.settings.mode, self.settings.view)
        except Exception as e:  # noqa: BLE001 - one bad refresh must not end the session's updates
            log.exception("dashboard refresh failed")
            self.bar.show_error(e)
        finally:
            self._busy = False
            if self._again and self.link.doc is not None:
                self._again = False
                self.poke()

    async def _refresh(self) -> None:
        # Two phases: first every shared result is awaited (no model is touched), then all
        # model changes are made in one synchronous hold, sent as one message. (Awaiting inside
        # a hold let other writers interleave, and patches could reach the browser before
        # the data they patch.)
        s = self.settings
        view = self.registry.get(s.symbol)
        snap = view.snapshot
        key = (snap.symbol, snap.version, self._rev, self.views.range_key())
        plan = None
        if len(snap.candles) and key != self._seen:
            self._seen = key
            iv = s.interval_ms
            candles = snap.candles if iv == 60_000 else shared(
                ("candles", snap.symbol, snap.version, iv, id(snap.candles)), lambda: resample(snap.candles, iv))
            gather = self.planner.footprint if s.view == "footprint" else self.planner.chart
            plan = await gather(view, snap, candles, snap.tick, self.views.x_range())
        with self.link.held():
            self.bar.show_snapshot(snap)
            if plan is None:
                return
            self.views.apply(plan)
            self.views.signals.update(getattr(snap, "signals", ()), plan.window)
            self.last_plan = plan
            self.side_panels.update(snap, plan.tick, plan.range, self.chart)

    def fill(self) -> None:
        """Fill the page with the current data before it is sent (so the first paint has the chart).

        Runs one refresh synchronously with the view's process-local ``compute`` (no Redis
        round trip, no await); the periodic refresh takes over once the page is shown.
        """
        self.planner.sync = True
        try:
            coro = self.refresh()
            try:
                coro.send(None)
            except StopIteration:
                pass
            else:  # it waited on something: finish it on the loop instead
                coro.close()
        finally:
            self.planner.sync = False

    # -- sharing one refresh between the sessions of one share key ---------------------
    def share_key(self):
        """What makes two pages of this process look the same (None: this page cannot share).

        Pages share when their settings are equal (URL and controls, theme, embedding) and
        nothing is the viewer's own: the range follows the live edge or is the URL's
        (``from``/``to``, not panned since), and no row is highlighted. Only served sessions share.
        """
        if self._key_cache is not None:
            return self._key_cache[0]
        s = self.settings
        if self.link.session() is None:
            return None
        key = None
        if self.views.band is None and (s.follow or s.range_start is not None or self.url_range is not None):
            values = {k: v for k, v in s.param.values().items() if k != "name"}
            key = (repr(sorted(values.items())), self.theme, self.url_sync, None if s.follow else self.url_range)
        self._key_cache = (key,)
        return key

    def _following(self) -> bool:
        """True while this page is a follower whose leader refreshes for it."""
        return self.link.member is not None and self.link.following(self.share_key())

    def followed(self) -> None:
        """The leader sent this follower a refresh (its status is current: the periodic refresh skips)."""
        self.schedule.last_refresh = time.monotonic()

    def share_roots(self) -> list:
        """The Bokeh models this page's refreshes change, as roots to walk (chart, footprint, text boxes)."""
        fp = self.footprint
        return [self.chart.figure, self.status.div, self.summary.div, self.tape.div, self.liqs.div,
                *([fp.layout] if fp is not None else [])]

    def shown_plan(self):
        """The results this page shows: its own latest plan, or its leader's while it follows one."""
        if self._following():
            return self.link.group.leader.last_plan
        return self.last_plan
