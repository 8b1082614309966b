"""The ingest service: one per symbol, feed -> candles -> Redis.

It reads trade batches from a source (a replay or a live feed), keeps the
1-minute candles up to date with :class:`compute.candles.CandleAccumulator`
and appends each batch, the candles it touched and the status to Redis in one
transaction (:meth:`store.redis_store.RedisStore.append`), then rings the
``updated`` doorbell. Dashboard sessions never see the source; they read Redis.

While Redis is unreachable the service keeps reading its source and holds the
batches in a bounded in-memory buffer (:attr:`IngestService.max_buffer_trades`
trades); they are written in order once Redis answers again. Only when the
buffer is full are the oldest batches dropped, and they are counted in
``dropped_trades`` and logged.
"""

from __future__ import annotations

import collections
import logging
import time

import orjson
import param
import redis.exceptions

from compute.batch import TradeBatch
from compute.candles import CandleAccumulator
from compute.grid import infer_tick

from .redis_store import RedisStore
from .tasks import TaskOwner

log = logging.getLogger(__name__)

REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class IngestService(TaskOwner, param.Parameterized):
    """Write one symbol's trades from ``source`` into Redis.

    ``source`` is an async iterable of :class:`compute.batch.TradeBatch` (in
    exchange-time order) with a ``describe()`` method giving the status text,
    e.g. ``"REPLAY BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz at 10x"``.
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
    dropped_trades = param.Integer(default=0, constant=True, doc="Trades dropped because the buffer was full.")
    redis_ok = param.Boolean(default=True, constant=True, doc="Whether the last write to Redis succeeded.")
    rejected_trades = param.Integer(default=0, constant=True, doc="Trades skipped because they were older than the open candle.")
    skip_through_id = param.Integer(default=None, allow_None=True,
                                    doc="Trades with an id <= this are already in Redis and are dropped (resume after "
                                        "failover); it then follows the last id written, so no id is written twice.")

    source_note = param.String(default="", doc="Appended to the source description (e.g. why it is a replay).")

    def __init__(self, source, store: RedisStore, **params):
        super().__init__(**params)
        self.source = source
        #: liquidations waiting to be written (DataFrames); the source's owner puts them here
        self.liquidations: collections.deque = collections.deque()
        self.store = store
        self._candles = CandleAccumulator(self.interval_ms)
        self._pending: collections.deque = collections.deque()
        self._pending_trades = 0
        self._rate: collections.deque = collections.deque()
        self._down_since: float | None = None
        self._infer_tick = self.tick is None
        self._verify = False

    def seed_candle(self, candle) -> None:
        """Continue the open candle already in Redis (see :meth:`compute.candles.CandleAccumulator.seed`)."""
        self._candles.seed(candle)

    async def stop(self) -> None:
        """Cancel the task, wait for it and close the source (when it can be closed)."""
        await self.stop_task()
        close = getattr(self.source, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # noqa: BLE001 - closing must not fail the stop
                log.exception("closing the source of %s failed", self.symbol)

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

    def _tps(self, n: int) -> float:
        now = time.monotonic()
        self._rate.append((now, n))
        while self._rate and now - self._rate[0][0] > self.tps_window_s:
            self._rate.popleft()
        span = max(now - self._rate[0][0], 1.0) if len(self._rate) > 1 else self.tps_window_s
        return sum(k for _, k in self._rate) / span

    async def _groups(self):
        """Batches from the source; everything already due is merged into one write."""
        next_due = getattr(self.source, "next_due", None)
        if next_due is None:
            async for batch in self.source:
                yield batch
            return
        while True:
            try:
                due = await next_due()
            except StopAsyncIteration:
                return
            if due:
                yield due[0] if len(due) == 1 else TradeBatch.concat(due)

    async def run(self) -> None:
        """Consume the source until it ends (a replay loops forever) or the task is cancelled."""
        registered = False
        async for batch in self._groups():
            if self.skip_through_id is not None and len(batch) and batch.trade_id[0] <= self.skip_through_id:
                batch = batch.take(batch.trade_id > self.skip_through_id)
            if len(batch):
                self.skip_through_id = int(batch.trade_id[-1])
            if not len(batch):
                continue
            try:
                candles = self._candles.update(batch)
            except ValueError as e:  # trades older than the open candle: counted, logged, skipped
                with param.edit_constant(self):
                    self.rejected_trades += len(batch)
                log.error("skipped %d out-of-order trades of %s: %s", len(batch), self.symbol, e)
                continue
            self._pending.append((batch, candles))
            self._pending_trades += len(batch)
            while self._pending_trades > self.max_buffer_trades and len(self._pending) > 1:
                old, _ = self._pending.popleft()
                self._pending_trades -= len(old)
                with param.edit_constant(self):
                    self.dropped_trades += len(old)
                log.error("ingest buffer full: dropped %d trades of %s", len(old), self.symbol)
            tps = self._tps(len(batch))
            if self._infer_tick:
                t = infer_tick(batch.price)
                if self.tick is None or t < self.tick:
                    self.tick = t
            try:
                if not registered:
                    await self.store.register_symbol(self.symbol)
                    registered = True
                await self._flush(tps)
            except REDIS_ERRORS as e:
                self._verify = True  # the failed MULTI/EXEC may have been applied with its reply lost
                if self._down_since is None:
                    self._down_since = time.time()
                    log.warning("Redis unreachable (%s); buffering trades of %s", type(e).__name__, self.symbol)
                with param.edit_constant(self):
                    self.redis_ok = False

    async def _drop_written(self) -> None:
        """After a failed write: drop what Redis already has (its meta's last_trade_id is written in the
        same transaction as the batch, so it tells exactly which batches were applied)."""
        last = (await self.store.meta(self.symbol)).get("last_trade_id")
        if last is None:
            return
        last = int(last)
        while self._pending and self._pending[0][0].trade_id[-1] <= last:
            batch, _ = self._pending.popleft()
            self._pending_trades -= len(batch)
            with param.edit_constant(self):
                self.trades_written += len(batch)
        if self._pending and self._pending[0][0].trade_id[0] <= last:
            batch, candles = self._pending.popleft()
            keep = batch.take(batch.trade_id > last)
            self._pending_trades -= len(batch) - len(keep)
            self._pending.appendleft((keep, candles))

    async def _flush(self, tps: float) -> None:
        if self._verify:
            await self._drop_written()
            self._verify = False
        while self.liquidations:
            await self.store.append_liquidations(self.symbol, self.liquidations[0])
            self.liquidations.popleft()
        while self._pending:
            batch, candles = self._pending[0]
            desc = self.source.describe() + (f" — {self.source_note}" if self.source_note else "")
            meta = {
                "source": desc, "reason": self.source_note, "tick": repr(self.tick), **self._status_meta(),
                "last_trade_time": int(batch.time[-1]), "last_trade_id": int(batch.trade_id[-1]),
                "tps": f"{tps:.1f}", "heartbeat": int(time.time() * 1000),
                "trades_written": self.trades_written + len(batch),
                "buffered_trades": self._pending_trades - len(batch),
                "dropped_trades": self.dropped_trades,
            }
            await self.store.append(batch, candles, meta, self.interval_ms)
            self._pending.popleft()
            self._pending_trades -= len(batch)
            with param.edit_constant(self):
                self.trades_written += len(batch)
                self.redis_ok = True
        if self._down_since is not None:
            log.warning("Redis reachable again after %.1f s; buffer flushed", time.time() - self._down_since)
            self._down_since = None
