"""Seed a symbol's history at start-up from data.binance.vision (``serve.py --backfill-hours N``).

The daily aggTrades archives covering the last N hours are downloaded, verified
and converted by :func:`feeds.backfill.backfill` (resuming what an earlier run
left), read back from its Parquet folder, cut to the N hours, and handed to the
ingest service *before* the live stream through :class:`SeededSource`, so the
candles, the Redis stream and every view start with that history. The live
client then starts right after the last seeded id; whatever REST cannot fill in
between is recorded as a gap (Binance publishes a day's archive the next day).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import numpy as np

from compute.batch import TradeBatch
from feeds.backfill import backfill
from feeds.recorder import read_trades

log = logging.getLogger(__name__)

CHUNK_MS = 60_000  #: exchange time per batch handed to the ingest service


async def load_history(market: str, symbol: str, hours: float, out, vision_base: str | None = None,
                       end_ms: int | None = None) -> tuple[TradeBatch, list]:
    """Trades of ``symbol`` in [end - hours, end) from the daily archives (downloaded into ``out`` as needed).

    Returns the batch (sorted by aggregate trade id) and the per-day results of the backfill.
    """
    end_ms = int(end_ms if end_ms is not None else time.time() * 1000)
    start_ms = end_ms - int(hours * 3600_000)
    d0 = dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC).date()
    d1 = dt.datetime.fromtimestamp((end_ms - 1) / 1000, dt.UTC).date()
    days = await backfill(market, symbol, d0, d1, out, vision_base, progress=True)
    df = read_trades(out, market, [symbol.upper()])
    if not len(df):
        return TradeBatch.empty(symbol), days
    df = df[(df["time"] >= start_ms) & (df["time"] < end_ms)]
    b = TradeBatch(df["time"].to_numpy(), df["price"].to_numpy(), df["qty"].to_numpy(),
                   df["is_buyer_maker"].to_numpy(), df["agg_trade_id"].to_numpy(), symbol)
    order = np.argsort(b.trade_id, kind="stable")
    return b.take(order), days


class SeededSource:
    """History first (in ``CHUNK_MS`` batches, at once), then the wrapped live source."""

    def __init__(self, history: TradeBatch, live, note: str = ""):
        self.live = live
        self.note = note
        t = history.time
        keys = t // CHUNK_MS
        cuts = np.flatnonzero(np.diff(keys)) + 1 if len(t) else np.empty(0, int)
        self._chunks = [history.take(ix) for ix in np.split(np.arange(len(history)), cuts)] if len(t) else []

    def __getattr__(self, name):  # ingest, status, symbol ... of the live source
        return getattr(self.live, name)

    def __setattr__(self, name, value):
        if name == "ingest":
            setattr(self.live, name, value)
        object.__setattr__(self, name, value)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._chunks:
            return self._chunks.pop(0)
        return await self.live.__anext__()

    async def next_due(self):
        if self._chunks:
            out, self._chunks = self._chunks[:100], self._chunks[100:]
            return out
        return await self.live.next_due()

    def describe(self) -> str:
        return self.live.describe() + (f" · {self.note}" if self.note else "")

    async def aclose(self) -> None:
        await self.live.aclose()
