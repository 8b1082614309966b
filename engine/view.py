"""A process-local mirror of one symbol's data in Redis, shared by every session of the process.

One :class:`SymbolView` per symbol and server process tails the Redis trade
stream (``XREAD BLOCK``), reads the candles the new batches touched and the
ingest status, and publishes an immutable :class:`Snapshot`. Sessions (which
Bokeh may run on worker threads) only read the current snapshot: the asyncio
task replaces it whole, so a reader never sees a half-updated state.

Results are asked for as :class:`compute.query.ProfileQuery` objects and computed by the
kind's engine (:mod:`compute.kinds`: the incremental store where it has one, else the
in-memory function on the snapshot's trades), once per (query, data version) for the whole
process, under a per-key lock (single flight within the process); :meth:`SymbolView.result_async`
shares them across processes through Redis.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field

import pandas as pd

from compute.batch import TradeBatch
from compute.coverage import Coverage, coverage
from compute.incremental import ProfileStore
from compute.query import ProfileQuery
from store.alert_store import AlertStore
from store.ingest import REDIS_ERRORS
from store.redis_store import RedisStore, unpack_candles
from store.tasks import TaskOwner

from .cache import SharedCache, quantize

log = logging.getLogger(__name__)

#: Results (and coverages) a view keeps per process, least recently used dropped first.
CACHE_ENTRIES = 256
#: Alert signals a snapshot carries (the newest).
SIGNALS_KEPT = 500


@dataclass(frozen=True)
class Snapshot:
    """What a session may read: the data of one symbol at one version.

    ``trades`` is sorted by time (UTC ms); ``candles`` has the columns of
    :data:`store.redis_store.CANDLE_DTYPE`; ``meta`` is the ingest status hash.
    ``version`` grows with every new batch; ``stale_since`` is the wall time
    (s) since which Redis has not answered, or None.
    """

    symbol: str
    trades: TradeBatch
    candles: pd.DataFrame
    meta: dict = field(default_factory=dict)
    version: int = 0
    redis_ok: bool = True
    stale_since: float | None = None
    redis_rtt_ms: float | None = None
    #: liquidations kept (Binance forceOrder snapshots; columns of feeds.decode.LIQUIDATION_COLUMNS), or None
    liquidations: pd.DataFrame | None = None
    #: the latest alert signals (:mod:`service.alerts`; dicts, oldest first, at most ``SIGNALS_KEPT``) with their
    #: stream id under ``"id"``
    signals: tuple = ()

    @property
    def tick(self) -> float:
        return float(self.meta.get("tick", 0.01))


class SymbolView(TaskOwner):
    """Tail one symbol's Redis data into memory for the sessions of this process.

    Parameters
    ----------
    store : RedisStore
    symbol : str
    interval_ms : int
        Candle interval to read (ms).
    retention_ms : int
        Exchange time of trades kept in memory behind the last trade (ms).
    period_ms : int
        Update period: shared results are keyed on ranges quantized to it (ms).
    cache : SharedCache, optional
        The Redis result cache (default: one on ``store``'s client).
    read_floor_ms : int
        Shortest time between two reads of the stream (ms). A fast feed writes many small
        batches; reading them together costs one set of round trips and one candle merge
        instead of one per write, and delays new data by at most this (pages refresh every
        ``period_ms``). 0 reads after every write.
    """

    #: How often the view measures its Redis round trip (PING), in seconds.
    PING_EVERY_S = 1.0

    def __init__(self, store: RedisStore, symbol: str, interval_ms: int = 60_000,
                 retention_ms: int = 24 * 3600_000, period_ms: int = 250, cache: SharedCache | None = None,
                 read_floor_ms: int = 50):
        self.store = store
        self.symbol = symbol.upper()
        self.interval_ms = interval_ms
        self.retention_ms = retention_ms
        self.snapshot = Snapshot(self.symbol, TradeBatch.empty(self.symbol), unpack_candles([]))
        self._chunks: list[TradeBatch] = []
        self._last_id: bytes | str = "0-0"
        self._liq_id: bytes | str = "-"
        self._liq: pd.DataFrame | None = None
        #: incremental per-bucket, per-tick aggregates of the trades held (answers the profile kinds)
        self.pstore: ProfileStore | None = None
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._locks: dict = {}
        self._lock = threading.Lock()
        self.computations = 0
        self.cache_hits = 0
        self.period_ms = period_ms
        self.cache = cache if cache is not None else SharedCache(store.r)
        self._shared: collections.OrderedDict = collections.OrderedDict()
        self._inflight: dict = {}
        self._listeners: list[weakref.WeakMethod] = []
        self.read_floor_ms = read_floor_ms
        self.alerts = AlertStore(store.r, store.market)
        self._sig_id = "-"
        self._rtt: tuple[float, float] | None = None  # (monotonic time of the last PING, its round trip in ms)

    def on_new_data(self, method) -> None:
        """Call the bound method ``method()`` after each new snapshot version, on the view's event loop.

        Sessions use it to refresh when data arrives instead of polling. The method is held
        weakly (a closed session's dashboard is not kept alive by the view); it must be quick
        (schedule work, do not do it) and exceptions from it are logged and ignored.
        """
        self._listeners.append(weakref.WeakMethod(method))

    def _notify(self) -> None:
        alive = []
        for ref in self._listeners:
            m = ref()
            if m is None:
                continue
            alive.append(ref)
            try:
                m()
            except Exception:  # noqa: BLE001 - one session's listener must not stop the view
                log.exception("new-data listener failed")
        self._listeners = alive

    async def run(self) -> None:
        """Bootstrap from the whole kept stream, then follow it until cancelled."""
        backoff = 0.2
        loop = asyncio.get_running_loop()
        while True:
            try:
                started = loop.time()
                if await self._read_once():
                    self._notify()
                    rest = self.read_floor_ms / 1000 - (loop.time() - started)
                    if rest > 0:  # more is on its way: read it together with what follows
                        await asyncio.sleep(rest)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as e:
                s = self.snapshot
                if s.redis_ok:
                    log.warning("Redis unreachable for %s view: %s", self.symbol, type(e).__name__)
                self.snapshot = Snapshot(s.symbol, s.trades, s.candles, s.meta, s.version, False,
                                         s.stale_since or time.time(), None, s.liquidations, s.signals)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _read_once(self) -> bool:
        """Read what the stream, the liquidations and the candles gained; publish a snapshot; True if new data."""
        now = time.monotonic()
        if self._rtt is None or now - self._rtt[0] >= self.PING_EVERY_S or not self.snapshot.redis_ok:
            self._rtt = (now, await self.store.ping() * 1000)
        batch, last = await self.store.read_after(self.symbol, self._last_id, block_ms=500)
        meta = await self.store.meta(self.symbol)
        liq, liq_last = await self.store.liquidations(self.symbol, self._liq_id)
        if len(liq):
            self._liq_id = liq_last
            self._liq = liq if self._liq is None else pd.concat([self._liq, liq], ignore_index=True).tail(5000)
        candles = self.snapshot.candles
        if len(batch):
            self._last_id = last
            lo = int(batch.time[0]) // self.interval_ms * self.interval_ms
            if not len(candles):
                fresh = await self.store.candles(self.symbol, self.interval_ms)
            else:
                times = list(range(lo, int(batch.time[-1]) + 1, self.interval_ms))
                fresh = await self.store.candles_at(self.symbol, times, self.interval_ms)
            candles = self._merge_candles(candles, fresh)
            self._append(batch, float(meta.get("tick", 0.01)))
        signals = self.snapshot.signals
        if self._sig_id == "-":  # bootstrap: the newest kept
            got = await self.alerts.latest_signals(self.symbol, SIGNALS_KEPT)
        else:
            got = await self.alerts.signals(self.symbol, self._sig_id, count=SIGNALS_KEPT)
        if got:
            self._sig_id = got[-1][0]
            signals = (*signals, *(s | {"id": i} for i, s in got))[-SIGNALS_KEPT:]
        new = bool(len(batch) or len(liq) or got)
        self.snapshot = Snapshot(self.symbol, self._trades(), candles, meta,
                                 self.snapshot.version + (1 if new else 0), True, None, self._rtt[1], self._liq,
                                 signals)
        return new

    def _merge_candles(self, old: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
        if not len(old):
            out = fresh
        elif not len(fresh):
            return old
        else:
            keep = old[old["time"] < fresh["time"].iloc[0]]
            out = pd.concat([keep, fresh], ignore_index=True)
        if len(out):
            cut = int(out["time"].iloc[-1]) - self.retention_ms
            out = out[out["time"] >= cut].reset_index(drop=True)
        return out

    def _append(self, batch: TradeBatch, tick: float) -> None:
        if self.pstore is None or self.pstore.tick != tick:  # first data, or the tick became known finer
            self.pstore = ProfileStore(tick, symbol=self.symbol)
            old = self._trades() if self._chunks else None
            if old is not None and len(old):
                self.pstore.update(old)
        self.pstore.update(batch)
        self._chunks.append(batch)
        if len(self._chunks) > 64:
            self._chunks = [self._trades()]

    def _trades(self) -> TradeBatch:
        if len(self._chunks) != 1:
            self._chunks = [TradeBatch.concat(self._chunks, self.symbol)]
        t = self._chunks[0]
        if len(t) and t.time[-1] - t.time[0] > self.retention_ms * 1.1:
            cut = int(t.time[-1]) - self.retention_ms
            t = t.time_slice(cut, None)
            self._chunks = [t]
            if self.pstore is not None:
                self.pstore.trim(cut // self.pstore.bucket_ms * self.pstore.bucket_ms)
        return t

    # -- shared computations ----------------------------------------------------------
    def query(self, kind: str, start: int, end: int, snapshot: Snapshot | None = None, **params) -> ProfileQuery:
        """A :class:`~compute.query.ProfileQuery` on this view's symbol and market.

        ``params`` are the kind's parameters (:mod:`compute.kinds`); a ``row_size`` in quote
        currency is turned into ticks with the snapshot's tick. Raises ValueError as
        :meth:`ProfileQuery.of <compute.query.ProfileQuery.of>` does.
        """
        snap = snapshot or self.snapshot
        return ProfileQuery.of(kind, start, end, symbol=self.symbol, market=self.store.market, tick=snap.tick,
                               **params)

    def coverage(self, start: int, end: int, snapshot: Snapshot | None = None, digest: bool = True) -> Coverage:
        """What the trades of ``[start, end)`` of ``snapshot`` cover (:func:`compute.coverage.coverage`): the id
        range, count, gaps and (with ``digest``) hash every result of that range was computed from. Cached per
        data version."""
        snap = snapshot or self.snapshot
        key = ("coverage", int(start), int(end), snap.version, digest)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        cov = coverage(snap.trades.time_slice(int(start), int(end)), digest)
        with self._lock:
            self._cache[key] = cov
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return cov

    def compute(self, kind: str, start: int, end: int, snapshot: Snapshot | None = None, **params):
        """Result of ``kind`` over the trades in [start, end) (UTC ms) of ``snapshot`` (default: current).

        Shorthand for :meth:`result` of :meth:`query`. Returns None when the range holds no trades.

        Raises
        ------
        ValueError
            Unknown kind, unknown or bad parameters (e.g. a row size that is not a whole number of ticks).
        """
        if int(start) >= int(end):
            return None
        return self.result(self.query(kind, start, end, snapshot, **params), snapshot)

    def result(self, query: ProfileQuery, snapshot: Snapshot | None = None):
        """The result of ``query`` on ``snapshot`` (default: current); None when its range holds no trades.

        Computed once per (query, data version) for the whole process; concurrent callers of one
        key wait for the first. The incremental store answers the kinds it has an engine for
        (:attr:`compute.kinds.Kind.incremental`), identical to the in-memory function.
        """
        snap = snapshot or self.snapshot
        key = (query, snap.version)
        with self._lock:
            if key in self._cache:
                self.cache_hits += 1
                self._cache.move_to_end(key)
                return self._cache[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._cache:
                    self.cache_hits += 1
                    return self._cache[key]
            result = self._evaluate(query, snap)
            with self._lock:
                self.computations += 1
                self._cache[key] = result
                self._locks.pop(key, None)
                while len(self._cache) > CACHE_ENTRIES:
                    self._cache.popitem(last=False)
            return result

    def _evaluate(self, query: ProfileQuery, snap: Snapshot):
        trades = snap.trades.time_slice(query.start, query.end)
        if not len(trades):
            return None
        spec = query.spec
        if spec.incremental is not None and self.pstore is not None and self.pstore.tick == snap.tick:
            return spec.run_incremental(self.pstore, query.start, query.end, query.values, trades)
        return spec.run(trades, snap.tick, query.start, query.end, query.values)

    async def compute_async(self, kind: str, start: int, end: int, snapshot: Snapshot | None = None, **params):
        """Like :meth:`compute`, but shared by every process through Redis (see :meth:`result_async`)."""
        return await self.result_async(self.query(kind, start, end, snapshot, **params), snapshot)

    async def result_async(self, query: ProfileQuery, snapshot: Snapshot | None = None):
        """Like :meth:`result`, but shared by every process through Redis (:class:`engine.cache.SharedCache`).

        The range is quantized outwards to :attr:`period_ms`; the trades used are those
        of [start_q, min(end_q, last trade + 1)) (``result.start``/``result.end`` say
        which; a kind whose axis is the range, the heat-map, keeps [start_q, end_q)). Within
        the process, concurrent callers of one key share one Redis round trip; across
        processes, one computes and the others wait for its result.
        Returns None when the range holds no trades.
        """
        snap = snapshot or self.snapshot
        s_q, e_q = quantize(query.start, query.end, self.period_ms)
        query = query.with_range(s_q, e_q)
        last = int(snap.trades.time[-1]) + 1 if len(snap.trades) else s_q
        live = e_q > last
        now = time.monotonic()
        hit = self._shared.get(query)
        if hit is not None and (not live or now - hit[0] < self.cache.live_ttl_s):
            self.cache_hits += 1
            return hit[1]
        fut = self._inflight.get(query)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = self._inflight[query] = asyncio.get_running_loop().create_future()
        try:
            data_end = e_q if query.spec.axis_is_range else max(s_q, min(e_q, last))

            async def run():
                if data_end <= s_q:
                    return None
                return await asyncio.to_thread(self.result, query.with_range(s_q, data_end), snap)

            result = await self.cache.get_or_compute(query, run, live=live)
            self._shared[query] = (time.monotonic(), result)
            while len(self._shared) > 256:
                self._shared.popitem(last=False)
            fut.set_result(result)
            return result
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            self._inflight.pop(query, None)

    def profile(self, start: int, end: int, row_size: float, value_area: float = 0.7, snapshot=None):
        """The VPVR (``kind="volume"``) of [start, end); see :meth:`compute`."""
        return self.compute("volume", start, end, snapshot=snapshot, row_size=float(row_size),
                            value_area=float(value_area))


class ViewRegistry:
    """The process's views, one per symbol, created on first use."""

    def __init__(self, store: RedisStore, **view_kwargs):
        self.store = store
        self.cache = view_kwargs.setdefault("cache", SharedCache(store.r))
        self.view_kwargs = view_kwargs
        self.views: dict[str, SymbolView] = {}
        self._known: list[str] = []

    def known_symbols(self) -> list[str]:
        """Symbols an ingest service has written (refreshed from Redis by :meth:`refresh_symbols`) plus the
        views of this process, sorted."""
        return sorted(set(self._known) | set(self.views))

    async def refresh_symbols(self) -> list[str]:
        """Read the ingested set from Redis (``fl:symbols``); keeps the last answer when Redis is away."""
        try:
            self._known = await self.store.symbols()
        except REDIS_ERRORS:
            pass
        return self.known_symbols()

    def get(self, symbol: str) -> SymbolView:
        symbol = symbol.upper()
        view = self.views.get(symbol)
        if view is None:
            view = self.views[symbol] = SymbolView(self.store, symbol, **self.view_kwargs)
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop here: the caller starts it
            else:
                view.start()
        return view

    async def stop(self) -> None:
        for v in self.views.values():
            await v.stop()
