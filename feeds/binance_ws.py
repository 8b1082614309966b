"""Live Binance trade feed over WebSocket that loses nothing: aggTrade + forceOrder, gap-filled, deduplicated.

:class:`BinanceStreamClient` (aiohttp) subscribes ``<symbol>@aggTrade`` and, on
futures, ``<symbol>@forceOrder`` for many symbols, at most
``max_streams_per_connection`` streams per connection (Binance allows 1024 on
USD-M, libraries use 200; reference d2), using the combined-stream endpoint of
the market (USD-M: the **routed** ``/market/stream`` path, reference d1).

Staying connected (reference d2):

* Binance pings every 3 min; aiohttp answers (``autoping``).  Liveness is judged
  by ping/pong (aiohttp ``heartbeat``): after ``heartbeat`` seconds without any
  incoming frame we ping, and a pong missing for another ``heartbeat / 2``
  seconds closes the connection.  Data silence alone never closes a connection
  (liquidation streams are silent for minutes); incoming frames count as proof
  of life.
* A closed or failed connection is reopened with exponential backoff and full
  jitter (:func:`backoff_delay`, driven by tenacity); a connection older than
  ``max_connection_age`` (Binance cuts at 24 h) is replaced *before* the cut:
  the new connection is opened and delivering before the old one is closed
  (``overlap`` seconds), and duplicates are dropped by id.
* A per-stream watchdog flags an aggTrade stream that is subscribed but has
  delivered nothing for unusually long (``max(stall_timeout, stall_factor x
  its usual inter-arrival time)``) - the silent failure of a wrong path - and
  replaces the connection.

No frame stops the feed: each connection's :class:`~feeds.decode.FrameDecoder`
counts and skips what cannot become a valid row (too large, too deep, malformed,
invalid, ids/times outside int64, bad prices; ``feeds.decode.REJECT_REASONS``),
keeps the rest of the batch, and never raises; a failure while handling one
connection's batch is logged and does not stop the other connections.  The
rejections per reason are in :meth:`BinanceStreamClient.frame_counts` and in
each symbol's :attr:`StreamStatus.rejected` (so the server's status line and
``/metrics`` show them).

No gaps, no duplicates (reference d3): each symbol's aggTrades pass through an
:class:`~feeds.gapfill.IdSequencer`; skipped ids and the time after a reconnect
are fetched from REST by :class:`~feeds.gapfill.GapFiller`; ids that REST cannot
deliver within ``gap_fill_timeout`` are recorded as :class:`~feeds.gapfill.Gap`
and skipped.  Trades leave the client exactly once per id, in id order.

Output::

    client = BinanceStreamClient(market="usdm", symbols=["BTCUSDT", "ETHUSDT"])
    async with client:
        async for ev in client.events():         # FeedEvent: kind "trades" | "liquidations" | "gap"
            ...
    # or one symbol as a plain TradeBatch source; with liquidations=True its LiquidationBatch es
    # come on the same path (what the ingest service reads, feeds.source):
        async for item in client.source("BTCUSDT", liquidations=True): ...
    client.status()   # {"BTCUSDT": StreamStatus(...), ...}

Split in modules: :mod:`feeds.ws_status` (status, events, backoff),
:mod:`feeds.ws_subscriptions` (the iterators), :mod:`feeds.ws_connections`
(connect, read, supervise, watchdog), :mod:`feeds.ws_datapath` (decode flushes,
sequencing, gap fill, fan-out); every public name is importable from here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time

import aiohttp
import param

from .decode import MAX_FRAME_BYTES, rejected_counts
from .gapfill import Gap, GapFiller, IdSequencer
from .markets import get_market, stream_names
from .ws_connections import Conn as _Conn  # noqa: F401 - the old private name, used by tests
from .ws_connections import ConnectionsMixin
from .ws_connections import Slot as _Slot
from .ws_datapath import DataPathMixin
from .ws_status import FeedEvent, StreamStatus, backoff_delay, own_feed, process_tag
from .ws_subscriptions import EventStream, SymbolSource

log = logging.getLogger(__name__)

__all__ = ["BinanceStreamClient", "EventStream", "FeedEvent", "StreamStatus", "SymbolSource", "backoff_delay",
           "own_feed"]

_client_ids = itertools.count(1)


class BinanceStreamClient(ConnectionsMixin, DataPathMixin, param.Parameterized):
    """Binance aggTrade (+ forceOrder) WebSocket client with reconnects, overlap rotation, watchdog and gap fill.

    Start with ``await client.start()`` (or ``async with client``), stop with
    ``await client.stop()``.  Read with :meth:`events`, :meth:`source` or the
    ``on_trades`` / ``on_liquidations`` / ``on_gap`` callbacks.  Nothing it meets
    on the network (drops, garbage, REST errors) raises out of it.
    """

    market = param.Selector(default="usdm", objects=["usdm", "coinm", "spot"], constant=True,
                            doc="Binance market: USD-M futures, COIN-M futures or spot.")
    symbols = param.List(default=["BTCUSDT"], item_type=str, constant=True, doc="Exchange symbols (any case).")
    liquidations = param.Boolean(default=True, constant=True,
                                 doc="Also subscribe <symbol>@forceOrder (futures only).")
    ws_base = param.String(default=None, allow_None=True, constant=True,
                           doc="WebSocket origin override (testnet, proxy, local server); market path is appended.")
    rest_base = param.String(default=None, allow_None=True, constant=True, doc="REST origin override.")
    subscribe_mode = param.Selector(default="url", objects=["url", "message"], constant=True,
                                    doc="Put the streams in the URL, or send paced SUBSCRIBE messages.")
    max_streams_per_connection = param.Integer(default=200, bounds=(1, 1024), constant=True,
                                               doc="Streams per connection (Binance max 1024; 200 is customary).")
    subscribe_chunk = param.Integer(default=50, bounds=(1, 200), doc="Streams per SUBSCRIBE message.")
    subscribe_interval = param.Number(default=0.25, bounds=(0.11, 10),
                                      doc="Seconds between SUBSCRIBE messages (Binance allows < 10 messages/s).")
    connect_interval = param.Number(default=0.5, bounds=(0, 60),
                                    doc="Minimum seconds between connection attempts (300 per 5 min per IP).")
    connect_timeout = param.Number(default=10.0, bounds=(0.05, 120), doc="Timeout of the WebSocket handshake (s).")
    heartbeat = param.Number(default=30.0, bounds=(0.05, 600),
                             doc="Ping after this many seconds without an incoming frame; no pong within half of it "
                                 "closes the connection.")
    reconnect_initial = param.Number(default=0.5, bounds=(0.001, 60), doc="First reconnect delay (s) before jitter.")
    reconnect_max = param.Number(default=30.0, bounds=(0.01, 600), doc="Largest reconnect delay (s).")
    max_connection_age = param.Number(default=23.5 * 3600, bounds=(0.05, 24 * 3600),
                                      doc="Replace a connection this old (Binance cuts at 24 h), with overlap.")
    overlap = param.Number(default=2.0, bounds=(0, 60),
                           doc="Seconds the old connection stays open once its replacement delivers.")
    overlap_wait = param.Number(default=10.0, bounds=(0.01, 120),
                                doc="Longest wait (s) for the replacement to deliver before the old one closes.")
    stall_timeout = param.Number(default=120.0, bounds=(0.05, 86400),
                                 doc="Minimum silence (s) of a subscribed aggTrade stream before the watchdog fires.")
    stall_factor = param.Number(default=30.0, bounds=(1, 1e4),
                                doc="Watchdog threshold in units of the stream's usual inter-arrival time.")
    flush_interval = param.Number(default=0.02, bounds=(0.001, 5), doc="Seconds between decode flushes (latency).")
    reorder_grace = param.Number(default=0.25, bounds=(0, 10),
                                 doc="Seconds a hole may close by late frames before REST is asked.")
    gap_fill_timeout = param.Number(default=5.0, bounds=(0.05, 120),
                                    doc="Longest wait (s) for REST to fill a hole before it is recorded and skipped.")
    rest_request_timeout = param.Number(default=3.0, bounds=(0.05, 60), doc="Timeout of one REST request (s).")
    start_ids = param.Dict(default={}, constant=True,
                           doc="SYMBOL -> first aggregate id wanted (resume); missing ones come from REST.")
    max_gaps_kept = param.Integer(default=1000, bounds=(1, None), doc="Gap records kept in memory.")
    on_trades = param.Callable(default=None, allow_None=True, doc="Called with (symbol, AggTrades) per release.")
    on_liquidations = param.Callable(default=None, allow_None=True, doc="Called with a liquidations DataFrame.")
    on_gap = param.Callable(default=None, allow_None=True, doc="Called with each Gap record.")
    on_frame = param.Callable(default=None, allow_None=True,
                              doc="Called with every raw frame received (str or bytes), before decoding (recorder).")
    max_frame_bytes = param.Integer(default=MAX_FRAME_BYTES, bounds=(1024, 1 << 26), constant=True,
                                    doc="Longer frames are counted 'too_large' and skipped (bytes; real aggTrade frames "
                                        "are ~200). The WebSocket reader accepts up to 4x this; a frame beyond that "
                                        "makes aiohttp end the connection (counted 'too_large' too), which is reopened.")

    def __init__(self, **params):
        super().__init__(**params)
        m = get_market(self.market)
        self._market = m
        syms = [s.upper() for s in self.symbols]
        if not syms or len(set(syms)) != len(syms):
            raise ValueError(f"symbols must be non-empty and distinct, got {self.symbols!r}")
        self._symbols = syms
        self.feed_id = f"{process_tag()}:{next(_client_ids)}"
        self._status = {s: StreamStatus(s, f"{s.lower()}@aggTrade", feed_id=self.feed_id) for s in syms}
        self._seq = {s: IdSequencer(s, self.start_ids.get(s)) for s in syms}
        self._first_seen: dict[str, float] = {}
        self._hole_since: dict[str, float] = {}
        self._fill_tasks: dict[str, asyncio.Task] = {}
        self._need_catchup: set[str] = {s for s in syms if self.start_ids.get(s) is not None}
        self._arrival: dict[str, float] = {}
        self._interval: dict[str, float] = {}
        self.gaps: collections.deque[Gap] = collections.deque(maxlen=self.max_gaps_kept)
        self.counts: collections.Counter = collections.Counter()
        self._subscribers: list[asyncio.Queue] = []
        self._sources: dict[str, list[asyncio.Queue]] = {}
        self._liq_sources: dict[str, list[asyncio.Queue]] = {}  # the sources above that also take liquidations
        self._liq_seen: collections.OrderedDict = collections.OrderedDict()
        self._slots: list[_Slot] = []
        per_sym = 2 if (self.liquidations and m.liquidations) else 1
        chunk = max(1, self.max_streams_per_connection // per_sym)
        for i in range(0, len(syms), chunk):
            group = syms[i : i + chunk]
            self._slots.append(_Slot(len(self._slots), group, stream_names(group, m, self.liquidations)))
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None
        self._filler: GapFiller | None = None
        self._running = False
        self._last_connect = 0.0
        self._connect_lock: asyncio.Lock | None = None
        #: Last connection error as one line (None once connected), for "cannot reach Binance" messages.
        self.last_error: str | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> BinanceStreamClient:
        """Open the connections and start the background tasks (returns at once)."""
        if self._running:
            return self
        self._running = True
        self._connect_lock = asyncio.Lock()
        self._session = aiohttp.ClientSession(trust_env=True)  # honours HTTPS_PROXY / WSS proxies from the env
        self._filler = GapFiller(self._session, market=self.market, rest_base=self.rest_base,
                                 request_timeout=self.rest_request_timeout)
        for slot in self._slots:
            slot.task = asyncio.create_task(self._supervise(slot), name=f"binance-ws-slot{slot.idx}")
            self._tasks.append(slot.task)
        self._tasks.append(asyncio.create_task(self._flusher(), name="binance-ws-flush"))
        return self

    async def stop(self) -> None:
        """Close every connection, cancel the tasks, end the iterators."""
        if not self._running:
            return
        self._running = False
        tasks = [*self._tasks, *self._fill_tasks.values()]
        for slot in self._slots:
            for c in slot.conns:
                if c.reader is not None:
                    tasks.append(c.reader)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # their ends are theirs; our own cancel goes on up
        for slot in self._slots:
            for c in slot.conns:
                if c.ws is not None and not c.ws.closed:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(c.ws.close(), 2.0)
                c.closed.set()
        self._flush_all()
        if self._session is not None:
            await self._session.close()
        for q in list(self._subscribers):
            q.put_nowait(None)
        for qs in self._sources.values():
            for q in list(qs):
                q.put_nowait(None)
        self._tasks.clear()

    async def __aenter__(self) -> BinanceStreamClient:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ------------------------------------------------------------------ outputs
    def events(self) -> EventStream:
        """A new async iterator over every :class:`FeedEvent` from now on (ends at :meth:`stop`).

        Events queue up until read; ``close()`` it (or use ``async with``) when done.
        """
        return EventStream(self._subscribers, asyncio.Queue())

    def source(self, symbol: str, liquidations: bool = False) -> SymbolSource:
        """An async iterator of ``symbol``'s :class:`TradeBatch` es from now on, with ``describe()``.

        With ``liquidations`` it also yields the symbol's liquidations as
        :class:`~feeds.source.LiquidationBatch` items, in-band (the ingest service's source).

        Raises
        ------
        KeyError
            If the client does not stream ``symbol``.
        """
        sym = symbol.upper()
        if sym not in self._status:
            raise KeyError(f"{sym} is not one of {self._symbols}")
        liq = self._liq_sources.setdefault(sym, []) if liquidations else None
        return SymbolSource(self, sym, self._sources.setdefault(sym, []), liq)

    def status(self) -> dict[str, StreamStatus]:
        """Per symbol :class:`StreamStatus` (``lag_ms`` computed now)."""
        now_ms = int(time.time() * 1000)
        for s, st in self._status.items():
            st.lag_ms = None if st.last_trade_time is None else now_ms - st.last_trade_time
            st.duplicates = self._seq[s].duplicates
        for slot in self._slots:
            rejected = dict(rejected_counts(self._slot_counts(slot)))
            for s in slot.symbols:
                self._status[s].rejected = rejected
        return self._status

    @property
    def connected(self) -> bool:
        """True when every connection group has an open connection."""
        return all(any(not c.closed.is_set() for c in slot.conns) for slot in self._slots)

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until :attr:`connected` (True) or ``timeout`` seconds pass (False; see :attr:`last_error`).

        For start-up checks such as "Binance cannot be reached -> fall back to replay".
        """
        end = time.monotonic() + timeout
        while not self.connected:
            if time.monotonic() >= end:
                return False
            await asyncio.sleep(0.02)
        return True

    def frame_counts(self) -> collections.Counter:
        """Frames decoded per kind over all connections so far, closed ones included (aggTrade, forceOrder,
        reply, error and the rejections ``<reason>[:<detail>]`` of :mod:`feeds.decode`).

        aggTrades and forceOrders are counted when flushed (every ``flush_interval``).
        """
        c = collections.Counter()
        for slot in self._slots:
            c.update(self._slot_counts(slot))
        return c

    def rejected_counts(self) -> collections.Counter:
        """Frames rejected so far over all connections, per reason (``feeds.decode.REJECT_REASONS``)."""
        return rejected_counts(self.frame_counts())

    @staticmethod
    def _slot_counts(slot: _Slot) -> collections.Counter:
        c = collections.Counter(slot.retired_counts)
        for conn in slot.conns:
            c.update(conn.decoder.counts)
        return c

    def describe(self) -> str:
        """``LIVE usdm BTCUSDT,ETHUSDT``."""
        return f"LIVE {self.market} {','.join(self._symbols)}"
