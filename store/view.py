"""A process-local mirror of one symbol's data in Redis, shared by every session of the process.

One :class:`SymbolView` per symbol and server process tails the Redis trade
stream (``XREAD BLOCK``), reads the candles the new batches touched and the
ingest status, and publishes an immutable :class:`Snapshot`. Sessions (which
Bokeh may run on worker threads) only read the current snapshot: the asyncio
task replaces it whole, so a reader never sees a half-updated state.

Profiles for a time range are computed from the snapshot's trades, once per
(range, parameters, data version) for the whole process, under a per-key lock
(single flight within the process).
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
from compute.footprint import footprint
from compute.heatmap import heatmap
from compute.levels import developing_levels
from compute.profile import volume_profile
from compute.split import split_profile
from compute.store import ProfileStore
from compute.timeweighted import recency_profile, tpo_profile

from .cache import SharedCache, quantize
from .ingest import REDIS_ERRORS
from .redis_store import RedisStore, unpack_candles
from .tasks import TaskOwner

log = logging.getLogger(__name__)


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
    """

    def __init__(self, store: RedisStore, symbol: str, interval_ms: int = 60_000,
                 retention_ms: int = 24 * 3600_000, period_ms: int = 250, cache: SharedCache | None = None):
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
        while True:
            try:
                rtt = await self.store.ping() * 1000
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
                new = bool(len(batch) or len(liq))
                self.snapshot = Snapshot(
                    self.symbol, self._trades(), candles, meta,
                    self.snapshot.version + (1 if new else 0), True, None,
                    rtt, self._liq,
                )
                if new:
                    self._notify()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as e:
                s = self.snapshot
                if s.redis_ok:
                    log.warning("Redis unreachable for %s view: %s", self.symbol, type(e).__name__)
                self.snapshot = Snapshot(s.symbol, s.trades, s.candles, s.meta, s.version, False,
                                         s.stale_since or time.time(), None, s.liquidations)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

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
    def compute(self, kind: str, start: int, end: int, snapshot: Snapshot | None = None, **params):
        """Result of ``kind`` over the trades in [start, end) (UTC ms) of ``snapshot`` (default: current).

        ``kind`` is a key of :data:`KINDS` (``volume``, ``recency``, ``tpo``, ``split``,
        ``developing``, ``footprint``, ``heatmap``); ``params`` go to its function with
        the snapshot's tick. Computed once per (kind, range, params, data version) for
        the whole process; concurrent callers of one key wait for the first.
        Returns None when the range holds no trades.

        Raises
        ------
        KeyError
            Unknown kind.
        ValueError
            Bad parameters (e.g. a row size that is not a whole number of ticks).
        """
        func = KINDS[kind]
        snap = snapshot or self.snapshot
        key = (kind, int(start), int(end), tuple(sorted(params.items())), snap.version)
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
            trades = snap.trades.time_slice(start, end)
            if not len(trades):
                result = None
            elif kind in STORE_KINDS and self.pstore is not None and self.pstore.tick == snap.tick:
                result = self._from_store(kind, int(start), int(end), params)
            else:
                result = func(trades, snap.tick, int(start), int(end), **params)
            with self._lock:
                self.computations += 1
                self._cache[key] = result
                self._locks.pop(key, None)
                while len(self._cache) > 256:
                    self._cache.popitem(last=False)
            return result

    def _from_store(self, kind: str, start: int, end: int, params: dict):
        """Answer a profile kind from the incremental :class:`compute.store.ProfileStore` (identical results)."""
        p = dict(params)
        if "value_area_method" in p:
            p["method"] = p.pop("value_area_method")
        if kind == "developing":
            return self.pstore.developing(start, end, **p)
        if "block_ms" in p:
            p["tpo_block_ms"] = p.pop("block_ms")
        return self.pstore.profile(start, end, kind=kind, **p)

    async def compute_async(self, kind: str, start: int, end: int, snapshot: Snapshot | None = None, **params):
        """Like :meth:`compute`, but shared by every process through Redis (:class:`store.cache.SharedCache`).

        The range is quantized outwards to :attr:`period_ms`; the trades used are those
        of [start_q, min(end_q, last trade + 1)) (``result.start``/``result.end`` say
        which; a heat-map keeps the whole [start_q, end_q) as its time axis). Within the
        process, concurrent callers of one key share one Redis round trip; across
        processes, one computes and the others wait for its result.
        Returns None when the range holds no trades.
        """
        snap = snapshot or self.snapshot
        s_q, e_q = quantize(start, end, self.period_ms)
        last = int(snap.trades.time[-1]) + 1 if len(snap.trades) else s_q
        live = e_q > last
        lkey = (kind, s_q, e_q, tuple(sorted(params.items())))
        now = time.monotonic()
        hit = self._shared.get(lkey)
        if hit is not None and (not live or now - hit[0] < self.cache.live_ttl_s):
            self.cache_hits += 1
            return hit[1]
        fut = self._inflight.get(lkey)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = self._inflight[lkey] = asyncio.get_running_loop().create_future()
        try:
            data_end = e_q if kind == "heatmap" else max(s_q, min(e_q, last))

            async def run():
                return await asyncio.to_thread(self.compute, kind, s_q, data_end, snap, **params)

            result = await self.cache.get_or_compute(self.symbol, kind, params, s_q, e_q, run, live=live)
            self._shared[lkey] = (time.monotonic(), result)
            while len(self._shared) > 256:
                self._shared.popitem(last=False)
            fut.set_result(result)
            return result
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            self._inflight.pop(lkey, None)

    def profile(self, start: int, end: int, row_size: float, value_area: float = 0.7, snapshot=None):
        """The VPVR (``kind="volume"``) of [start, end); see :meth:`compute`."""
        return self.compute("volume", start, end, snapshot=snapshot, row_size=float(row_size),
                            value_area=float(value_area))


def _with_range(func):
    def call(trades, tick, start, end, **params):
        return func(trades, tick=tick, start=start, end=end, **params)
    call.__doc__ = func.__doc__
    return call


def _heatmap(trades, tick, start, end, **params):
    return heatmap(trades, start=start, end=end, **params)


#: Kinds the ProfileStore answers without reading the raw trades of the range's interior.
STORE_KINDS = frozenset({"volume", "recency", "tpo", "split", "developing"})

#: Every result kind a session can ask the view for: name -> f(trades, tick, start, end, **params).
KINDS = {
    "volume": _with_range(volume_profile),
    "recency": _with_range(recency_profile),
    "tpo": _with_range(tpo_profile),
    "split": _with_range(split_profile),
    "developing": _with_range(developing_levels),
    "footprint": _with_range(footprint),
    "heatmap": _heatmap,
}


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
