"""When a page refreshes: on new data and on the viewer's changes (throttled), and on a background timer."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import panel as pn

from . import bokeh_adapter as bk
from .link import SessionLink
from .settings import DashboardSettings

#: The periodic refresh (status bar, anything missed) runs at least this often, whatever update_ms (ms).
STATUS_MS = 1000


class RefreshSchedule:
    """Schedules one page's refreshes on its session's event loop.

    The page refreshes when its view announces new data (``SymbolView.on_new_data``), at
    most once per ``update_ms`` (a throttle: the first new batch is shown at once, the
    ones that follow within the period together at its end), and when the viewer changes
    a setting or the range (:meth:`poke`). A background periodic callback (every
    ``max(update_ms, STATUS_MS)``) keeps the status bar current (lag, ``stale since``) and
    catches anything missed. It does not turn the page's busy indicator on.

    Parameters
    ----------
    settings : DashboardSettings
    link : SessionLink
    refresh : coroutine function
        The page's refresh.
    following : callable() -> bool
        True while a leader page refreshes for this one (:mod:`dashboard.share`).
    registry : engine.view.ViewRegistry
    """

    def __init__(self, settings: DashboardSettings, link: SessionLink, refresh: Callable[[], Awaitable],
                 following: Callable[[], bool], registry):
        self.settings, self.link, self.registry = settings, link, registry
        self._refresh, self._following = refresh, following
        #: When the latest refresh started (``time.monotonic()``), or a leader's refresh arrived.
        self.last_refresh = 0.0
        self._cb = None
        self._poke_pending = False
        self._subscribed: set[str] = set()

    def start(self) -> None:
        """Start the background refresh and subscribe to new data (call inside a served session)."""
        self._cb = bk.background_periodic_callback(self._tick, self.status_period())
        doc = self.link.doc = pn.state.curdoc
        if doc is not None:
            # one more refresh as soon as the page is shown, as a locked next-tick callback of the document
            pn.state.onload(lambda: self._on_load(doc))
        self.subscribe()

    def _on_load(self, doc) -> None:
        # the browser has pulled and drawn this session's document: from now on a leader's messages apply to it
        # (joined earlier, the pull would overwrite the join with this session's own, older state)
        self.link.loaded = True
        doc.add_next_tick_callback(self._refresh)

    async def _tick(self) -> None:
        """The periodic refresh: skipped when a refresh ran within the period (data keeps the status current)."""
        if (time.monotonic() - self.last_refresh) * 1000 < self.status_period() * 0.9:
            return
        await self._refresh()

    def status_period(self) -> int:
        """Period of the background refresh (ms)."""
        return max(int(self.settings.update_ms), STATUS_MS)

    def period_changed(self) -> None:
        """``update_ms`` changed: the background refresh follows."""
        if self._cb is not None:
            self._cb.period = self.status_period()

    def subscribe(self) -> None:
        """Ask the current symbol's view to poke this session when new data arrives (once per symbol)."""
        sym = self.settings.symbol
        if sym in self._subscribed or self.link.doc is None:
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
        doc = self.link.doc
        if self._following():
            return  # the group's leader refreshes for this page
        if not self.link.connected():
            if self.link.leading():
                self.link.group.close()  # a leader whose browser went away: its followers go on without it
            return
        if doc is None or self._poke_pending:
            return
        wait_ms = int(self.settings.update_ms - (time.monotonic() - self.last_refresh) * 1000)
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
        await self._refresh()
