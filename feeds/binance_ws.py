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
  jitter (:func:`backoff_delay`); a connection older than
  ``max_connection_age`` (Binance cuts at 24 h) is replaced *before* the cut:
  the new connection is opened and delivering before the old one is closed
  (``overlap`` seconds), and duplicates are dropped by id.
* A per-stream watchdog flags an aggTrade stream that is subscribed but has
  delivered nothing for unusually long (``max(stall_timeout, stall_factor x
  its usual inter-arrival time)``) - the silent failure of a wrong path - and
  replaces the connection.

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
    # or one symbol as a plain TradeBatch source (what the ingest service reads):
        async for batch in client.source("BTCUSDT"): ...
    client.status()   # {"BTCUSDT": StreamStatus(...), ...}
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import random
import time
import weakref
from dataclasses import asdict, dataclass

import aiohttp
import pandas as pd
import param

from compute.batch import TradeBatch

from .decode import AggTrades, FrameDecoder, liquidations_frame
from .gapfill import Gap, GapFiller, IdSequencer
from .markets import get_market, stream_names, ws_stream_url

log = logging.getLogger(__name__)

__all__ = ["BinanceStreamClient", "EventStream", "FeedEvent", "StreamStatus", "SymbolSource", "backoff_delay"]


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0.5, 1] x min(maximum, initial * 2**(attempt-1)).

    ``attempt`` counts failures since the last healthy connection (1 = first retry).
    """
    if attempt <= 0:
        return 0.0
    cap = min(maximum, initial * 2 ** min(attempt - 1, 30))
    return cap * (rng or random).uniform(0.5, 1.0)


@dataclass
class StreamStatus:
    """State of one symbol's streams, for the status line.

    ``lag_ms`` = wall-clock now minus the last trade time ``T`` (UTC ms), set by
    :meth:`BinanceStreamClient.status`.  ``state``: ``connecting``, ``live``,
    ``filling`` (a REST gap fill runs), ``stalled`` (watchdog fired, reconnecting)
    or ``disconnected``.
    """

    symbol: str
    stream: str
    connected: bool = False
    state: str = "connecting"
    lag_ms: int | None = None
    reconnects: int = 0
    gaps_filled: int = 0
    gaps_unfilled: int = 0
    trades_from_rest: int = 0
    duplicates: int = 0
    trades: int = 0
    last_trade_time: int | None = None
    last_trade_id: int | None = None
    stalls: int = 0
    liquidations: int = 0
    last_liquidation_time: int | None = None

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return asdict(self)


@dataclass
class FeedEvent:
    """One output item of :meth:`BinanceStreamClient.events`.

    ``kind == "trades"``: ``symbol`` and ``trades`` (:class:`~feeds.decode.AggTrades`,
    contiguous ids, id order; ``batch`` gives the :class:`TradeBatch`).
    ``kind == "liquidations"``: ``liquidations`` DataFrame
    (:data:`feeds.decode.LIQUIDATION_COLUMNS`), any symbols.
    ``kind == "gap"``: ``gap`` (:class:`~feeds.gapfill.Gap`), filled or not.
    """

    kind: str
    symbol: str = ""
    trades: AggTrades | None = None
    liquidations: pd.DataFrame | None = None
    gap: Gap | None = None

    @property
    def batch(self) -> TradeBatch | None:
        return self.trades.batch() if self.trades is not None else None


class _Conn:
    """One WebSocket connection of a slot."""

    _ids = itertools.count(1)

    def __init__(self, slot: _Slot, url: str):
        self.id = next(self._ids)
        self.slot = slot
        self.url = url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.decoder = FrameDecoder(f"conn{self.id}", slot.logged)
        self.opened = time.monotonic()
        self.last_agg: dict[str, float] = {}
        self.got_trade = False
        self.closed = asyncio.Event()
        self.reader: asyncio.Task | None = None
        self.close_reason = ""


class _Slot:
    """A group of streams served by one connection (two while overlapping)."""

    def __init__(self, idx: int, symbols: list[str], streams: list[str]):
        self.idx = idx
        self.symbols = symbols
        self.streams = streams
        self.conns: list[_Conn] = []
        self.current: _Conn | None = None
        self.logged: set = set()  # frame kinds already logged (log once per kind)
        self.task: asyncio.Task | None = None


class _Subscription:
    """An async iterator fed by the client through a queue; unsubscribes on close() or garbage collection."""

    def __init__(self, registry: list, queue: asyncio.Queue):
        self._q = queue
        self._registry = registry
        registry.append(queue)
        self._finalizer = weakref.finalize(self, _unsubscribe, registry, queue)

    def __aiter__(self):
        return self

    async def __anext__(self):
        item = await self._q.get()
        if item is None:
            self.close()
            raise StopAsyncIteration
        return item

    def pending(self) -> int:
        """Items waiting to be read."""
        return self._q.qsize()

    def close(self) -> None:
        """Stop receiving (pending items can still be read)."""
        self._finalizer()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()


def _unsubscribe(registry: list, queue: asyncio.Queue) -> None:
    with contextlib.suppress(ValueError):
        registry.remove(queue)


class EventStream(_Subscription):
    """Async iterator of :class:`FeedEvent` from :meth:`BinanceStreamClient.events`; ``close()`` to stop."""


class SymbolSource(_Subscription):
    """One symbol's trades as an async iterator of :class:`TradeBatch` (id order, each id once).

    Has ``describe()`` and ``status()`` so it can stand in for a replay source;
    ``close()`` (or dropping it) unsubscribes.
    """

    def __init__(self, client: BinanceStreamClient, symbol: str, registry: list):
        super().__init__(registry, asyncio.Queue())
        self.client = client
        self.symbol = symbol
        self.name = f"{client.market} {symbol}"

    def status(self) -> StreamStatus:
        return self.client.status()[self.symbol]

    async def next_due(self) -> list[TradeBatch]:
        """Wait for the next batch, then return it with every batch already queued (id order).

        Raises
        ------
        StopAsyncIteration
            When the client has stopped.
        """
        out = [await self.__anext__()]
        while not self._q.empty():
            item = self._q.get_nowait()
            if item is None:
                self._q.put_nowait(None)  # end the iteration on the next call
                break
            out.append(item)
        return out

    def describe(self) -> str:
        """E.g. ``LIVE usdm BTCUSDT`` or ``LIVE usdm BTCUSDT (reconnecting)``."""
        st = self.client.status()[self.symbol]
        extra = [] if st.connected else ["reconnecting"]
        if st.gaps_unfilled:
            extra.append(f"{st.gaps_unfilled} gaps unfilled")
        return f"LIVE {self.name}" + (f" ({', '.join(extra)})" if extra else "")


class BinanceStreamClient(param.Parameterized):
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

    def __init__(self, **params):
        super().__init__(**params)
        m = get_market(self.market)
        self._market = m
        syms = [s.upper() for s in self.symbols]
        if not syms or len(set(syms)) != len(syms):
            raise ValueError(f"symbols must be non-empty and distinct, got {self.symbols!r}")
        self._symbols = syms
        self._status = {s: StreamStatus(s, f"{s.lower()}@aggTrade") for s in syms}
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
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
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

    def source(self, symbol: str) -> SymbolSource:
        """An async iterator of ``symbol``'s :class:`TradeBatch` es from now on, with ``describe()``.

        Raises
        ------
        KeyError
            If the client does not stream ``symbol``.
        """
        sym = symbol.upper()
        if sym not in self._status:
            raise KeyError(f"{sym} is not one of {self._symbols}")
        return SymbolSource(self, sym, self._sources.setdefault(sym, []))

    def status(self) -> dict[str, StreamStatus]:
        """Per symbol :class:`StreamStatus` (``lag_ms`` computed now)."""
        now_ms = int(time.time() * 1000)
        for s, st in self._status.items():
            st.lag_ms = None if st.last_trade_time is None else now_ms - st.last_trade_time
            st.duplicates = self._seq[s].duplicates
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
        """Frames decoded per kind over all connections so far (aggTrade, forceOrder, reply, malformed, ...)."""
        c = collections.Counter({k[7:]: v for k, v in self.counts.items() if k.startswith("frames_")})
        for slot in self._slots:
            for conn in slot.conns:
                c.update(conn.decoder.counts)
        return c

    def describe(self) -> str:
        """``LIVE usdm BTCUSDT,ETHUSDT``."""
        return f"LIVE {self.market} {','.join(self._symbols)}"

    def _emit(self, ev: FeedEvent) -> None:
        for q in self._subscribers:
            q.put_nowait(ev)
        try:
            if ev.kind == "trades":
                batch = None
                for q in self._sources.get(ev.symbol, ()):
                    if batch is None:
                        batch = ev.batch
                    q.put_nowait(batch)
                if self.on_trades is not None:
                    self.on_trades(ev.symbol, ev.trades)
            elif ev.kind == "liquidations" and self.on_liquidations is not None:
                self.on_liquidations(ev.liquidations)
            elif ev.kind == "gap" and self.on_gap is not None:
                self.on_gap(ev.gap)
        except Exception:  # a consumer's bug must not stop the feed
            log.exception("%s callback failed", ev.kind)

    # ------------------------------------------------------------------ connections
    async def _connect(self, slot: _Slot) -> _Conn:
        async with self._connect_lock:
            wait = self._last_connect + self.connect_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_connect = time.monotonic()
        url = ws_stream_url(self._market, slot.streams if self.subscribe_mode == "url" else (), self.ws_base)
        conn = _Conn(slot, url)
        conn.ws = await asyncio.wait_for(
            self._session.ws_connect(url, autoping=True, heartbeat=self.heartbeat, max_msg_size=1 << 22),
            self.connect_timeout)
        conn.opened = time.monotonic()
        conn.reader = asyncio.create_task(self._read(conn), name=f"binance-ws-read{conn.id}")
        if self.subscribe_mode == "message":
            for i in range(0, len(slot.streams), self.subscribe_chunk):
                if i:
                    await asyncio.sleep(self.subscribe_interval)
                await conn.ws.send_json({"method": "SUBSCRIBE", "params": slot.streams[i : i + self.subscribe_chunk],
                                         "id": conn.id * 10_000 + i})
        return conn

    async def _read(self, conn: _Conn) -> None:
        ws = conn.ws
        feed = conn.decoder.feed
        raw_cb = self.on_frame
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT or msg.type is aiohttp.WSMsgType.BINARY:
                    if raw_cb is not None:
                        try:
                            raw_cb(msg.data)
                        except Exception:  # noqa: BLE001 - a consumer's bug must not cut the stream
                            log.exception("on_frame callback failed")
                    feed(msg.data)
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    conn.close_reason = f"error: {ws.exception()!r}"
                    break
            if not conn.close_reason:
                conn.close_reason = f"closed by server (code {ws.close_code})"
        except asyncio.CancelledError:
            conn.close_reason = conn.close_reason or "cancelled"
            raise
        except Exception as e:  # noqa: BLE001 - any failure ends only this connection
            conn.close_reason = f"{type(e).__name__}: {e}"
        finally:
            conn.closed.set()
            with contextlib.suppress(Exception):
                await ws.close()

    def _set_connected(self, slot: _Slot) -> None:
        live = any(not c.closed.is_set() for c in slot.conns)
        for s in slot.symbols:
            st = self._status[s]
            st.connected = live
            if not live:
                st.state = "disconnected"
            elif st.state in ("connecting", "disconnected", "stalled"):
                st.state = "live"

    async def _supervise(self, slot: _Slot) -> None:
        """Keep the slot connected: reconnect with backoff, rotate before the 24 h cut, react to stalls."""
        attempt = 0
        first = True
        reason = ""
        while self._running:
            try:
                conn = await self._connect(slot)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                attempt += 1
                delay = backoff_delay(attempt, self.reconnect_initial, self.reconnect_max)
                self.counts["connect_failures"] += 1
                self.last_error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                log.warning("slot %d: connect failed (%s: %s); retry %d in %.2f s", slot.idx, type(e).__name__, e,
                            attempt, delay)
                await asyncio.sleep(delay)
                continue
            log.info("slot %d: connection %d open (%s)", slot.idx, conn.id, conn.url)
            self.last_error = None
            self.counts["connections"] += 1
            old = [c for c in slot.conns if not c.closed.is_set()]
            slot.conns.append(conn)
            slot.current = conn
            if not first:
                for s in slot.symbols:
                    self._status[s].reconnects += 1
                    if not old or reason == "stall":  # nothing (useful) overlapped: ask REST what we missed
                        self._need_catchup.add(s)
            first = False
            for c in old:
                asyncio.create_task(self._retire(c, conn))
            self._set_connected(slot)
            try:
                reason = await self._watch(slot, conn)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("slot %d: watch failed", slot.idx)
                reason = "error"
            if reason == "closed":
                log.warning("slot %d: connection %d ended: %s", slot.idx, conn.id, conn.close_reason)
                self._set_connected(slot)
                attempt = 0 if conn.got_trade else attempt + 1
                await asyncio.sleep(backoff_delay(max(attempt, 1), self.reconnect_initial, self.reconnect_max))
            else:
                self.counts[f"rotations_{reason}"] += 1
                log.info("slot %d: replacing connection %d (%s) with overlap", slot.idx, conn.id, reason)
                if reason == "stall":
                    attempt = 0 if conn.got_trade else attempt + 1
                    await asyncio.sleep(backoff_delay(attempt, self.reconnect_initial, self.reconnect_max))

    async def _retire(self, old: _Conn, new: _Conn) -> None:
        """Close ``old`` once ``new`` delivers (or after ``overlap_wait``), ``overlap`` seconds later."""
        try:
            t0 = time.monotonic()
            while not new.got_trade and not new.closed.is_set() and time.monotonic() - t0 < self.overlap_wait:
                await asyncio.sleep(min(0.05, self.overlap_wait))
            if not new.closed.is_set():
                await asyncio.sleep(self.overlap)
            old.close_reason = old.close_reason or "retired after overlap"
            if old.ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(old.ws.close(), 2.0)
            if old.reader is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(old.reader, 2.0)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("retiring connection %d failed", old.id)

    async def _watch(self, slot: _Slot, conn: _Conn) -> str:
        """Return ``closed``, ``age`` (rotate before the 24 h cut) or ``stall`` (watchdog)."""
        step = max(0.01, min(0.5, self.stall_timeout / 5, self.max_connection_age / 10))
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.closed.wait(), step)
            if conn.closed.is_set():
                return "closed"
            now = time.monotonic()
            if now - conn.opened >= self.max_connection_age:
                return "age"
            for s in slot.symbols:
                last = conn.last_agg.get(s, conn.opened)
                usual = self._interval.get(s)
                limit = max(self.stall_timeout, self.stall_factor * usual) if usual else self.stall_timeout
                if now - last > limit:
                    st = self._status[s]
                    st.stalls += 1
                    st.state = "stalled"
                    self.counts["stalls"] += 1
                    log.warning("watchdog: %s@aggTrade silent for %.1f s on connection %d (subscribed, no data): "
                                "reconnecting", s.lower(), now - last, conn.id)
                    return "stall"

    # ------------------------------------------------------------------ data path
    async def _flusher(self) -> None:
        while self._running:
            await asyncio.sleep(self.flush_interval)
            try:
                self._flush_all()
            except Exception:  # noqa: BLE001 - keep flushing whatever happens
                log.exception("flush failed")

    def _flush_all(self) -> None:
        now = time.monotonic()
        liq = []
        for slot in self._slots:
            for conn in list(slot.conns):
                dec = conn.decoder
                if dec.pending:
                    out = dec.flush()
                    for sym, cols in out.trades.items():
                        if sym not in self._seq:
                            self.counts["unexpected_symbol"] += len(cols)
                            continue
                        conn.last_agg[sym] = now
                        conn.got_trade = True
                        prev = self._arrival.get(sym)
                        if prev is not None and now > prev:
                            iv = self._interval.get(sym)
                            self._interval[sym] = (now - prev) if iv is None else 0.9 * iv + 0.1 * (now - prev)
                        self._arrival[sym] = now
                        self._seq[sym].add(cols)
                        self._first_seen.setdefault(sym, now)
                    liq.extend(out.liquidations)
                if conn.closed.is_set() and not dec.pending:
                    self._forget(slot, conn)
            self._set_connected(slot)
        for sym, seq in self._seq.items():
            if not seq.started:
                first = self._first_seen.get(sym)
                if first is None or now - first < self.reorder_grace:
                    continue
                seq.start()
            self._release(sym)
            self._check_hole(sym, now)
        if liq:
            self._emit_liquidations(liq)

    def _forget(self, slot: _Slot, conn: _Conn) -> None:
        self.counts.update({f"frames_{k}": v for k, v in conn.decoder.counts.items()})
        slot.conns.remove(conn)

    def _release(self, sym: str) -> None:
        out = self._seq[sym].release()
        if not len(out):
            return
        st = self._status[sym]
        st.trades += len(out)
        st.last_trade_time = int(out.time[-1])
        st.last_trade_id = int(out.agg_id[-1])
        self._emit(FeedEvent("trades", sym, trades=out))

    def _check_hole(self, sym: str, now: float) -> None:
        seq = self._seq[sym]
        if sym in self._fill_tasks or not self._running:
            return
        hole = seq.hole()
        if hole is None and sym not in self._need_catchup:
            self._hole_since.pop(sym, None)
            return
        if hole is not None:
            since = self._hole_since.setdefault(sym, now)
            if now - since < self.reorder_grace:
                return
        if hole is None and not seq.started:
            return
        if hole is None:
            self._need_catchup.discard(sym)  # a bounded fill keeps it: the catch-up follows it
        self._fill_tasks[sym] = asyncio.create_task(self._fill(sym, hole, self._hole_since.get(sym, now)))

    async def _fill(self, sym: str, hole: tuple[int, int] | None, since: float) -> None:
        """Fill ``hole`` (or, after a reconnect, everything after the last id) from REST; skip it if REST fails."""
        seq = self._seq[sym]
        st = self._status[sym]
        st.state = "filling"
        try:
            if hole is None:  # after a reconnect: what happened while we were away
                from_id, to_id = seq.last_id + 1, None
            else:
                from_id, to_id = hole
            budget = max(0.05, self.gap_fill_timeout - (time.monotonic() - since))
            res = await self._filler.fill(sym, from_id, to_id, budget)
            st.trades_from_rest += len(res.trades)
            seq.add(res.trades)
            self._release(sym)
            if hole is None:
                if not res.complete:
                    log.warning("catch-up of %s from id %d after reconnect incomplete: %s", sym, from_id, res.reason)
                    if not res.reason.startswith("http 4"):  # transient: try again on a later flush
                        self._need_catchup.add(sym)
                return
            h = seq.hole()
            if h is None or h[0] > hole[1]:
                st.gaps_filled += 1
                self._record_gap(Gap(sym, hole[0], hole[1], int(time.time() * 1000), None, None, True,
                                     len(res.trades), "filled"))
                return
            skipped = seq.skip_hole()
            before = seq._held.time[0] if seq.held else None
            st.gaps_unfilled += 1
            self._record_gap(Gap(sym, skipped[0], skipped[1], int(time.time() * 1000), seq.last_time,
                                 int(before) if before is not None else None, False, len(res.trades), res.reason))
            log.warning("gap %s ids %d..%d not fillable (%s): recorded and skipped", sym, skipped[0], skipped[1],
                        res.reason)
            self._release(sym)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("gap fill of %s failed", sym)
        finally:
            self._fill_tasks.pop(sym, None)
            self._hole_since.pop(sym, None)
            if st.state == "filling":
                st.state = "live" if st.connected else "disconnected"

    def _record_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)
        self._emit(FeedEvent("gap", gap.symbol, gap=gap))

    def _emit_liquidations(self, msgs: list) -> None:
        fresh = []
        for m in msgs:
            o = m.o
            key = (o.s, o.T, o.S, o.z, o.ap, o.X, m.E)
            if key in self._liq_seen:
                self.counts["liquidation_duplicates"] += 1
                continue
            self._liq_seen[key] = None
            if len(self._liq_seen) > 4096:
                self._liq_seen.popitem(last=False)
            fresh.append(m)
            st = self._status.get(o.s.upper())
            if st is not None:
                st.liquidations += 1
                st.last_liquidation_time = max(st.last_liquidation_time or 0, o.T)
        if fresh:
            self._emit(FeedEvent("liquidations", liquidations=liquidations_frame(fresh)))
