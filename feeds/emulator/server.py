"""LocalBinance: the loopback server that speaks Binance's market-data protocol.

One port (``127.0.0.1``, port 0 by default) serves the WebSocket streams
(:mod:`.ws`), the REST endpoints (:mod:`.rest`) and the data.binance.vision
archives (:mod:`.archives`) from real recorded data (:mod:`.recording`), each
symbol played by its own exchange clock (:mod:`.clock`). Fault knobs are on
:class:`~feeds.emulator.faults.Faults`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import param
from aiohttp import web

from .archives import VisionArchives
from .clock import Frame, SymbolFeed
from .faults import Faults
from .recording import LIQUIDATION_MODE, MARKETS, TradeTable, default_data_files, load_recording, merge_tables
from .rest import REST_PREFIX, RestEndpoints
from .ws import Connection, WebSocketStreams

log = logging.getLogger(__name__)


class LocalBinance(WebSocketStreams, RestEndpoints, VisionArchives, param.Parameterized):
    """A loopback Binance market-data server (WebSocket, REST, data.binance.vision).

    Parameters are ``param`` parameters (change them while running); fault knobs
    live on :attr:`faults` (:class:`Faults`). Construct with ``data=[paths]`` (default:
    the bundled BTCUSDT recording) or ``tables=[TradeTable, ...]``.

    Attributes (after start)
    ------------------------
    ws_base, rest_base, vision_base : str
        ``ws://127.0.0.1:PORT``, ``http://127.0.0.1:PORT``, ``http://127.0.0.1:PORT``;
        a client appends Binance's paths (``/market/stream?streams=…``,
        ``/fapi/v1/aggTrades``, ``/data/futures/um/daily/…``).
    ws_bases : dict
        Market -> WS base with that market's path layout (``…/_spot`` etc.).
    tables : dict
        (market, SYMBOL) -> :class:`TradeTable` served.
    connections : list of Connection
        Every WebSocket connection accepted so far (``sent_ids``, ``closed_reason``…).
    requests : deque
        Recent HTTP requests ``{"method","path","query","status","range"}``.
    stats : dict
        Counters: connections, frames_sent, drops, pings_sent, pongs_received,
        pong_timeouts, lifetime_cuts, rest_calls, rest_failures, vision_downloads, …
    on_send : callable or None
        Called with each data :class:`~feeds.emulator.clock.Frame` right after it is
        written to a connection, on the server's loop (benchmarks stamp send times
        with it); None (the default) costs one attribute test per frame.
    """

    market = param.Selector(default="usdm", objects=list(MARKETS), doc=(
        "WebSocket path layout of the root: 'usdm' (routed /market paths; unrouted /stream is silent), "
        "'coinm' or 'spot' (/stream and /ws deliver)."))
    host = param.String("127.0.0.1", doc="Interface to bind (loopback by default).")
    port = param.Integer(0, bounds=(0, 65535), doc="TCP port; 0 picks a free one.")
    speed = param.Number(1.0, bounds=(0, None), doc=(
        "Replay speed relative to exchange time (1 = real time, 60 = a minute per second); "
        "0 = as fast as the subscribers read."))
    loop = param.Boolean(False, doc=(
        "Replay forever: after the last trade start again with ids shifted by the id span and times by the "
        "time span (ids and times keep increasing)."))
    retime = param.Boolean(False, doc=(
        "Shift trade/event times by a constant so the replay starts at the current wall time (demos)."))
    clock_start = param.Selector(default="subscribe", objects=["subscribe", "now"], doc=(
        "When a symbol's exchange clock starts: at its first subscription, or at server start."))
    pause_when_idle = param.Boolean(None, allow_None=True, doc=(
        "Pause a symbol's clock while nobody listens (None: only when speed == 0)."))
    fast_backlog = param.Integer(2048, bounds=(1, None), doc=(
        "With speed 0, the clock waits while a subscriber has more than this many frames queued."))
    max_backlog = param.Integer(200_000, bounds=(1, None), doc=(
        "A subscriber with more queued frames than this is disconnected (Binance drops slow clients)."))
    ping_interval = param.Number(180.0, bounds=(0.01, None), doc="Seconds between server pings (Binance: 180).")
    pong_timeout = param.Number(600.0, bounds=(0.01, None), doc="Close if a ping stays unanswered this long (600).")
    max_incoming_per_s = param.Integer(10, bounds=(0, None), doc=(
        "Close a connection that sends more than this many messages (text, ping, pong) in one second; 0: off."))
    max_streams = param.Integer(1024, bounds=(1, None), doc="Streams per connection (Binance USD-M: 1024).")
    liquidations = param.Selector(default=LIQUIDATION_MODE, objects=[LIQUIDATION_MODE, "none"], doc=(
        "Liquidation frames when a symbol has no real forceOrder recording: synthetic ones at real trades, "
        "or none. Read when the server starts."))
    liquidation_every_s = param.Number(5.0, bounds=(1.0, None), doc=(
        "Window (s) of synthetic liquidations: at most one per symbol per window. Read at start."))
    rest_weight_limit = param.Integer(None, allow_None=True, bounds=(1, None), doc=(
        "Weight per rest_weight_window; exceeding answers 429 (None: 2400 futures, 6000 spot)."))
    rest_weight_window = param.Number(60.0, bounds=(0.01, None), doc="Window of the REST weight limit (s).")

    def __init__(self, data: Sequence[str | os.PathLike] | str | os.PathLike | None = None, *,
                 tables: Iterable[TradeTable] | None = None, faults: Faults | None = None,
                 data_market: str | None = None, **params):
        super().__init__(**params)
        self.faults = faults or Faults()
        if isinstance(data, (str, os.PathLike)):
            data = [data]
        loaded: list[TradeTable] = list(tables or [])
        if data is None and tables is None:
            data = default_data_files()
        for p in data or []:
            loaded.extend(load_recording(p, data_market))
        self.tables: dict[tuple[str, str], TradeTable] = merge_tables(loaded)
        self.feeds: dict[tuple[str, str], SymbolFeed] = {}
        self.connections: list[Connection] = []
        self.requests: deque[dict] = deque(maxlen=20_000)
        self.stats = {k: 0 for k in ("connections", "frames_sent", "drops", "pings_sent", "pongs_received",
                                     "pong_timeouts", "lifetime_cuts", "rate_limit_cuts", "rest_calls",
                                     "rest_failures", "vision_downloads", "vision_cuts", "subscriptions")}
        self._subs: dict[tuple[str, str], set[Connection]] = {}
        self._runner: web.AppRunner | None = None
        self._site_port: int | None = None
        self._vision_cache: dict[str, bytes] = {}
        self._weight: dict[str, list[float]] = {}
        self._thread: threading.Thread | None = None
        self._tloop: asyncio.AbstractEventLoop | None = None
        self.on_send: Callable[[Frame], None] | None = None
        self.param.watch(self._on_speed, ["speed"])

    # -- URLs -----------------------------------------------------------------------
    @property
    def base_port(self) -> int:
        """The bound TCP port.

        Raises
        ------
        RuntimeError
            If the server is not running.
        """
        if self._site_port is None:
            raise RuntimeError("LocalBinance is not running")
        return self._site_port

    @property
    def ws_base(self) -> str:
        """WebSocket base of the default market (``ws://127.0.0.1:PORT``)."""
        return f"ws://{self.host}:{self.base_port}"

    @property
    def ws_bases(self) -> dict[str, str]:
        """Market -> WS base using that market's path layout."""
        return {mk: (self.ws_base if mk == self.market else f"{self.ws_base}/_{mk}") for mk in MARKETS}

    @property
    def rest_base(self) -> str:
        """REST base (``http://127.0.0.1:PORT``)."""
        return f"http://{self.host}:{self.base_port}"

    @property
    def vision_base(self) -> str:
        """data.binance.vision base (``http://127.0.0.1:PORT``)."""
        return f"http://{self.host}:{self.base_port}"

    def urls(self) -> dict[str, str]:
        """All base URLs (for printing and for configs)."""
        d = {"ws_base": self.ws_base, "rest_base": self.rest_base, "vision_base": self.vision_base}
        d.update({f"ws_base_{mk}": u for mk, u in self.ws_bases.items()})
        return d

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> LocalBinance:
        """Bind and start serving (idempotent)."""
        if self._runner is not None:
            return self
        for key, tab in self.tables.items():
            self.feeds[key] = SymbolFeed(self, tab)
        app = web.Application()
        app.router.add_route("GET", "/data/{rest:.*}", self._vision)
        for prefix, mk in REST_PREFIX.items():
            app.router.add_route("GET", prefix + "/aggTrades", self._make_rest(mk, self._rest_aggtrades))
            app.router.add_route("GET", prefix + "/ping", self._make_rest(mk, self._rest_ping))
            app.router.add_route("GET", prefix + "/time", self._make_rest(mk, self._rest_time))
        app.router.add_route("GET", "/{path:.*}", self._ws_entry)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._site_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if self.clock_start == "now":
            for f in self.feeds.values():
                if f.t.market == self.market:
                    f.start()
        log.info("LocalBinance serving %s", self.urls())
        return self

    async def aclose(self) -> None:
        """Close every connection and stop serving."""
        for f in self.feeds.values():
            if f.task is not None:
                f.task.cancel()
        for c in list(self.connections):
            if not c.ws.closed:
                try:
                    await asyncio.wait_for(c.ws.close(code=1001, message=b"server shutdown"), 1.0)
                except (TimeoutError, ConnectionError, RuntimeError):
                    pass
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for f in self.feeds.values():
            if f.task is not None:
                try:
                    await f.task
                except (asyncio.CancelledError, Exception):
                    pass

    async def __aenter__(self) -> LocalBinance:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    @classmethod
    def start_in_thread(cls, *args, **kwargs) -> LocalBinance:
        """Start a server on its own event loop in a daemon thread; ``stop()`` ends it.

        Knobs may be set from the calling thread (plain attribute writes); use
        :meth:`call` to run a coroutine on the server's loop.
        """
        srv = cls(*args, **kwargs)
        ready = threading.Event()
        err: list[BaseException] = []

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            srv._tloop = loop
            try:
                loop.run_until_complete(srv.start())
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                err.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(srv.aclose())
            loop.close()

        srv._thread = threading.Thread(target=run, name="LocalBinance", daemon=True)
        srv._thread.start()
        ready.wait()
        if err:
            raise err[0]
        return srv

    def call(self, coro_or_fn, *args):
        """Run a coroutine function / coroutine or a plain function on the server's thread loop; return its result."""
        if self._tloop is None:
            raise RuntimeError("call() is for servers started with start_in_thread()")
        if asyncio.iscoroutine(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn, self._tloop).result()
        if asyncio.iscoroutinefunction(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn(*args), self._tloop).result()

        async def _c():
            return coro_or_fn(*args)

        return asyncio.run_coroutine_threadsafe(_c(), self._tloop).result()

    def stop(self) -> None:
        """Stop a server started with :meth:`start_in_thread`."""
        if self._tloop is None or self._thread is None:
            return
        self._tloop.call_soon_threadsafe(self._tloop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> LocalBinance:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- exchange helpers for tests -------------------------------------------------
    def feed(self, symbol: str, market: str | None = None) -> SymbolFeed:
        """The exchange clock of ``symbol`` (default market: :attr:`market`).

        Raises
        ------
        KeyError
            If no recorded data for that symbol is served.
        """
        key = (market or self.market, symbol.upper())
        if key not in self.feeds:
            raise KeyError(f"no recorded data for {key}; have {sorted(self.feeds)}")
        return self.feeds[key]

    def published(self, symbol: str, market: str | None = None) -> int:
        """Number of trades of ``symbol`` that have happened so far."""
        return self.feed(symbol, market).published

    def preplay(self, symbol: str, n_trades: int | None = None, market: str | None = None) -> None:
        """Let the first ``n_trades`` trades (all if None) happen now without WS delivery (REST history)."""
        self.feed(symbol, market).preplay(n_trades)

    def start_clock(self, symbol: str, market: str | None = None) -> None:
        """Start ``symbol``'s exchange clock now (normally the first subscription does)."""
        self.feed(symbol, market).start()

    async def wait_published(self, symbol: str, n: int, market: str | None = None) -> None:
        """Return once ``n`` trades of ``symbol`` have happened (or its replay has finished)."""
        f = self.feed(symbol, market)
        while f.published < n and not f.finished.is_set():
            await asyncio.sleep(0.005)

    async def wait_finished(self, symbol: str, market: str | None = None) -> None:
        """Return once ``symbol``'s replay has played its last event (never with ``loop``)."""
        await self.feed(symbol, market).finished.wait()

    async def drop_connections(self, mode: str = "abort") -> int:
        """Drop every open WebSocket connection now; returns how many."""
        n = 0
        for c in list(self.connections):
            if not c.ws.closed:
                await c.drop(mode, "drop_connections")
                n += 1
        return n

    def open_connections(self) -> list[Connection]:
        """WebSocket connections still open."""
        return [c for c in self.connections if not c.ws.closed]

    # -- internals --------------------------------------------------------------------
    def _on_speed(self, event) -> None:
        for f in self.feeds.values():
            if f.started:
                f.rebase(event.old)

    def _log(self, request: web.Request, status: int) -> None:
        self.requests.append({"method": request.method, "path": request.path, "query": dict(request.query),
                              "status": status, "range": request.headers.get("Range")})


async def serve_forever(srv: LocalBinance, on_ready=None) -> None:
    """Start ``srv`` and serve until cancelled (used by the CLI)."""
    async with srv:
        if on_ready is not None:
            on_ready(srv)
        await asyncio.Event().wait()
