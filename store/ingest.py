"""The ingest service: one per symbol, feed -> candles -> Redis.

It reads trade and liquidation batches from one source (a replay or a live
feed, :mod:`feeds.source`), keeps the 1-minute candles up to date with
:class:`compute.candles.CandleAccumulator` and appends the trade batches queued
since the last write, the candles they touched and the status to Redis in one
transaction (:meth:`store.redis_store.RedisStore.append_many`; group commit: one
batch a write at live pace, many when catching up); liquidation batches go to the
symbol's liquidation stream. Dashboard sessions never see the source; they read Redis.

While Redis is unreachable the service keeps reading its source and holds the
batches in a bounded in-memory buffer (:attr:`IngestService.max_buffer_trades`
trades); they are written in order once Redis answers again. Only when the
buffer is full are the oldest batches dropped, and they are counted in
``dropped_trades`` and logged.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd
import param
import redis.exceptions

from compute.batch import LiquidationBatch, TradeBatch
from compute.candles import CandleAccumulator
from compute.grid import infer_tick

from .redis_store import LeaseLost, RedisStore
from .tasks import TaskOwner

log = logging.getLogger(__name__)

#: Errors after which a write is kept and tried again (a lost lease too: the supervisor stops the ingest then).
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, LeaseLost)


class IngestService(TaskOwner, param.Parameterized):
    """Write one symbol's trades and liquidations from ``source`` into Redis.

    ``source`` is a :class:`feeds.source.Source`: an async iterable of
    :class:`compute.batch.TradeBatch` (in exchange-time order) and
    :class:`feeds.source.LiquidationBatch` items, with a ``describe()`` method
    giving the status text, e.g. ``"REPLAY BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz
    at 10x"``. Liquidations are written with
    :meth:`store.redis_store.RedisStore.append_liquidations` before the trades of
    the same step, and held like the trades while Redis is unreachable.
    """

    symbol = param.String(default="BTCUSDT", doc="Exchange symbol, upper case.")
    tick = param.Number(default=0.01, bounds=(0, None), inclusive_bounds=(False, True), allow_None=True,
                        doc="Tick size of the symbol in quote currency; None infers it from the prices "
                            "(the coarsest 10**-d every price so far is a multiple of, only ever refined).")
    interval_ms = param.Integer(default=60_000, bounds=(1000, None), doc="Candle interval kept in Redis (ms).")
    max_buffer_trades = param.Integer(default=2_000_000, bounds=(1000, None),
                                      doc="Trades held in memory while Redis is down before the oldest are dropped.")
    tps_window_s = param.Number(default=5.0, bounds=(0.5, 60), doc="Window of the trades-per-second figure (s).")

    trades_written = param.Integer(default=0, constant=True, doc="Trades appended to Redis so far.")
    liquidations_written = param.Integer(default=0, constant=True,
                                         doc="Liquidations appended to Redis so far (a repeat of one kept is not).")
    dropped_trades = param.Integer(default=0, constant=True, doc="Trades dropped because the buffer was full.")
    redis_ok = param.Boolean(default=True, constant=True, doc="Whether the last write to Redis succeeded.")
    rejected_trades = param.Integer(default=0, constant=True, doc="Trades skipped because they were older than the open candle.")
    skip_through_id = param.Integer(default=None, allow_None=True,
                                    doc="Trades with an id <= this are already in Redis and are dropped (resume after "
                                        "failover); it then follows the last id written, so no id is written twice.")

    flush_trades = param.Integer(default=65_536, bounds=(1, None),
                                 doc="Most trades one transaction writes; while Redis answers, the reader waits "
                                     "once this many are queued.")
    entry_ms = param.Integer(default=60_000, bounds=(1, None),
                             doc="Most exchange time (ms) one stream entry covers: batches queued together are "
                                 "merged into entries of at most this span.")

    source_note = param.String(default="", doc="Appended to the source description (e.g. why it is a replay).")

    def __init__(self, source, store: RedisStore, **params):
        super().__init__(**params)
        self.source = source
        self.store = store
        self._candles = CandleAccumulator(self.interval_ms)
        self._incoming: list[TradeBatch] = []  # admitted, not yet sealed into entries (no candles yet)
        self._pending: collections.deque[_Unit] = collections.deque()  # sealed transactions not yet written
        self._liquidations: collections.deque[pd.DataFrame] = collections.deque()  # frames not yet written
        self._pending_trades = 0  # trades in _incoming and _pending
        self._rate = _Rate(self.tps_window_s)
        self._down_since: float | None = None
        self._infer_tick = self.tick is None
        self._verify = False
        self._registered = False
        self._ok = True  # plain copies of parameters read per batch (a param read costs ~1 µs)
        self._open_ms: int | None = None  # open time of the newest candle admitted (UTC ms)
        self._symbol, self._iv, self._skip = self.symbol, self.interval_ms, self.skip_through_id
        self._max_buffer, self._flush_trades, self._entry_ms = self.max_buffer_trades, self.flush_trades, self.entry_ms
        self._wake, self._room = asyncio.Event(), asyncio.Event()

    @property
    def buffered_trades(self) -> int:
        """Trades read from the source and not yet written to Redis."""
        return self._pending_trades

    def seed_candle(self, candle) -> None:
        """Continue the open candle already in Redis (see :meth:`compute.candles.CandleAccumulator.seed`)."""
        self._candles.seed(candle)
        t = candle["time"].iloc[-1] if isinstance(candle, pd.DataFrame) else candle["time"]
        self._open_ms = int(t)

    async def stop(self) -> None:
        """Cancel the task, wait for it and close the source (when it can be closed)."""
        await self.stop_task()
        close = getattr(self.source, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # noqa: BLE001 - closing must not fail the stop
                log.exception("closing the source of %s failed", self.symbol)

    def _publish(self, **values) -> None:
        """Set constant status parameters (``trades_written``, ``redis_ok``, ...): unlocks only those, where
        ``param.edit_constant`` unlocks every parameter (90 µs a flush at live pace)."""
        for name, value in values.items():
            p = self.param[name]
            p.constant = False
            try:
                setattr(self, name, value)
            finally:
                p.constant = True

    def _status_meta(self) -> dict:
        """Per-stream state of a live source for the page (JSON in ``streams``) and /metrics."""
        status = getattr(self.source, "status", None)
        if status is None or not callable(status):
            return {}
        st = status()
        if not hasattr(st, "to_dict"):
            return {}
        d = st.to_dict()
        return {"streams": orjson.dumps([d]).decode(), "reconnects": d.get("reconnects", 0),
                "gaps_filled": d.get("gaps_filled", 0), "gaps_unfilled": d.get("gaps_unfilled", 0),
                "lag_ms": d.get("lag_ms") if d.get("lag_ms") is not None else ""}

    async def _groups(self):
        """``(trades, liquidations)`` per step: the source's items already due, their trade batches merged into
        one write (None if there are none) and their liquidation batches in order (see :mod:`feeds.source`)."""
        next_due = getattr(self.source, "next_due", None)
        if next_due is None:
            async for item in self.source:
                yield _split([item])
            return
        while True:
            try:
                due = await next_due()
            except StopAsyncIteration:
                return
            if due:
                yield _split(due)

    def _admit(self, batch: TradeBatch) -> TradeBatch | None:
        """Queue ``batch`` for writing; returns what of it was queued, or None.

        Drops ids already written (resume after failover), skips (counts in ``rejected_trades``, logs)
        a batch with trades older than the open candle, and bounds the buffer (the oldest batches are
        dropped and counted). Reads only plain attributes: it runs once per source item.
        """
        skip = self._skip
        if skip is not None and len(batch) and batch.trade_id[0] <= skip:
            batch = batch.take(batch.trade_id > skip)
        n = len(batch)
        if not n:
            return None
        t_min, t_max = int(batch.time.min()), int(batch.time.max())
        if self._open_ms is not None and t_min // self._iv * self._iv < self._open_ms:
            self._publish(rejected_trades=self.rejected_trades + n)
            log.error("skipped %d out-of-order trades of %s: trades at %d are older than the open candle %d (UTC ms)",
                      n, self._symbol, t_min, self._open_ms)
            return None
        self._open_ms = max(self._open_ms or 0, t_max // self._iv * self._iv)
        self._skip = int(batch.trade_id[-1])
        self._incoming.append(batch)
        self._pending_trades += n
        self._rate.add(n)
        if self._pending_trades > self._max_buffer:
            self._drop_oldest()
        return batch

    def _drop_oldest(self) -> None:
        """Drop the oldest queued transactions (counted in ``dropped_trades``) until the buffer fits again."""
        self._seal()
        while self._pending_trades > self._max_buffer and len(self._pending) > 1:
            old = self._pending.popleft()
            self._pending_trades -= old.n
            self._publish(dropped_trades=self.dropped_trades + old.n)
            log.error("ingest buffer full: dropped %d trades of %s", old.n, self._symbol)

    def _seal(self) -> None:
        """Turn the admitted batches into transactions (:class:`_Unit`) of at most ``flush_trades`` trades,
        made of stream entries of at most ``entry_ms`` of exchange time, with the candles they touch
        (:meth:`compute.candles.CandleAccumulator.update_records`: one pass per transaction)."""
        if not self._incoming:
            return
        entries, group, t_first = [], [], 0
        for b in self._incoming:
            if group and int(b.time[-1]) - t_first >= self._entry_ms:
                entries.append(group[0] if len(group) == 1 else TradeBatch.concat(group, self._symbol))
                group = []
            if not group:
                t_first = int(b.time[0])
            group.append(b)
        entries.append(group[0] if len(group) == 1 else TradeBatch.concat(group, self._symbol))
        self._incoming = []
        unit, n = [], 0
        for e in entries:
            if unit and n + len(e) > self._flush_trades:
                self._seal_unit(unit, n)
                unit, n = [], 0
            unit.append(e)
            n += len(e)
        self._seal_unit(unit, n)

    def _seal_unit(self, entries: list[TradeBatch], n: int) -> None:
        whole = entries[0] if len(entries) == 1 else TradeBatch.concat(entries, self._symbol)
        self._pending.append(_Unit(entries, self._candles.update_records(whole), n))  # in order: _admit checked

    async def run(self) -> None:
        """Consume the source until it ends (a replay loops forever) or the task is cancelled.

        A reader task takes the source's items into the buffer while this loop writes whatever has
        queued up since the last write in one transaction (group commit): at live pace that is each
        batch as it comes, when catching up (or after Redis was down) many batches per round trip.
        While Redis answers the reader waits once ``flush_trades`` trades are queued; while it does
        not, the reader keeps reading into the bounded buffer.
        """
        self._symbol, self._iv, self._skip = self.symbol, self.interval_ms, self.skip_through_id
        self._max_buffer, self._flush_trades, self._entry_ms = self.max_buffer_trades, self.flush_trades, self.entry_ms
        self._rate.window = self.tps_window_s
        reader = asyncio.ensure_future(self._read())
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                done = reader.done()
                if self._incoming or self._pending or self._liquidations:
                    await self._write()
                if done:
                    break
            reader.result()  # the source's error, if it failed
        finally:
            if not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _read(self) -> None:
        """Admit the source's items into the buffer; wake the writer after each and when the source ends."""
        try:
            async for trades, liquidations in self._groups():
                self._liquidations.extend(lb.frame for lb in liquidations if len(lb))
                if trades is not None and self._admit(trades) is not None and self._infer_tick:
                    t = infer_tick(trades.price)
                    if self.tick is None or t < self.tick:
                        self.tick = t
                self._wake.set()
                while self._ok and self._pending_trades >= self._flush_trades:
                    self._room.clear()
                    await self._room.wait()
        finally:
            self._wake.set()

    async def _write(self) -> None:
        """One write attempt of everything queued; a Redis error marks the service down (the data stays queued)."""
        try:
            if not self._registered:
                await self.store.register_symbol(self._symbol)
                self._registered = True
            await self._flush()
        except REDIS_ERRORS as e:
            self._verify = True  # the failed write may have been applied with its reply lost
            if self._down_since is None:
                self._down_since = time.time()
                log.warning("Redis unreachable (%s); buffering trades of %s", type(e).__name__, self._symbol)
            self._ok = False
            self._publish(redis_ok=False)
        finally:
            self._room.set()

    async def _drop_written(self) -> None:
        """After a failed write: drop what Redis already has (its meta's last_trade_id is written in the
        same transaction as the entries, so it tells exactly which entries were applied)."""
        last = (await self.store.meta(self._symbol)).get("last_trade_id")
        if last is None:
            return
        last = int(last)
        self._seal()
        written = 0
        while self._pending and self._pending[0].entries[-1].trade_id[-1] <= last:
            unit = self._pending.popleft()
            self._pending_trades -= unit.n
            written += unit.n
        if self._pending and self._pending[0].entries[0].trade_id[0] <= last:  # another writer got part of it
            unit, keep = self._pending[0], []
            for e in unit.entries:
                if e.trade_id[0] <= last:
                    e = e.take(e.trade_id > last)
                if len(e):
                    keep.append(e)
            n = sum(len(e) for e in keep)
            self._pending_trades -= unit.n - n
            unit.entries, unit.n = keep, n
            if not keep:
                self._pending.popleft()
        self._publish(trades_written=self.trades_written + written)

    async def _flush(self, tps: float | None = None) -> None:
        """Write the queued liquidations, then every queued trade in transactions of up to ``flush_trades``."""
        if self._verify:
            await self._drop_written()
            self._verify = False
        while self._liquidations:
            n = await self.store.append_liquidations(self._symbol, self._liquidations[0])
            self._liquidations.popleft()
            self._publish(liquidations_written=self.liquidations_written + int(n or 0))
        self._seal()
        while self._pending:
            unit = self._pending[0]
            await self.store.append_many(unit.entries, unit.candles, self._meta(unit.entries[-1], unit.n, tps),
                                         self._iv)
            self._pending.popleft()
            self._pending_trades -= unit.n
            self._publish(trades_written=self.trades_written + unit.n)
            if not self._ok:
                self._publish(redis_ok=True)
                self._ok = True
        if self.skip_through_id != self._skip:
            self.skip_through_id = self._skip
        if self._down_since is not None:
            log.warning("Redis reachable again after %.1f s; buffer flushed", time.time() - self._down_since)
            self._down_since = None

    def _meta(self, last: TradeBatch, n: int, tps: float | None) -> dict:
        """The status written with a transaction of ``n`` trades ending with batch ``last``."""
        desc = self.source.describe() + (f" — {self.source_note}" if self.source_note else "")
        return {
            "source": desc, "reason": self.source_note, "tick": repr(self.tick), **self._status_meta(),
            "last_trade_time": int(last.time[-1]), "last_trade_id": int(last.trade_id[-1]),
            "tps": f"{self._rate.value() if tps is None else tps:.1f}", "heartbeat": int(time.time() * 1000),
            "trades_written": self.trades_written + n, "buffered_trades": self._pending_trades - n,
            "dropped_trades": self.dropped_trades,
        }


@dataclass
class _Unit:
    """One transaction's worth: stream entries (batches in order), the candles they touched, their trades."""

    entries: list[TradeBatch]
    candles: np.ndarray
    n: int


class _Rate:
    """Trades per second over the last ``window`` seconds (monotonic clock), O(1) per update."""

    def __init__(self, window: float):
        self.window = window
        self._items: collections.deque = collections.deque()
        self._sum = 0

    def add(self, n: int) -> None:
        now = time.monotonic()
        self._items.append((now, n))
        self._sum += n
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._items and now - self._items[0][0] > self.window:
            self._sum -= self._items.popleft()[1]

    def value(self) -> float:
        """Trades per second: the window's sum over its span (at least 1 s; the window itself for one item)."""
        if not self._items:
            return 0.0
        span = max(self._items[-1][0] - self._items[0][0], 1.0) if len(self._items) > 1 else self.window
        return self._sum / span

def _split(items: list) -> tuple[TradeBatch | None, list[LiquidationBatch]]:
    """A source's due items as (their trade batches merged into one, or None; their liquidation batches)."""
    trades = [x for x in items if not isinstance(x, LiquidationBatch)]
    liquidations = [x for x in items if isinstance(x, LiquidationBatch)]
    if not trades:
        return None, liquidations
    return (trades[0] if len(trades) == 1 else TradeBatch.concat(trades)), liquidations
