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

from compute.batch import LiquidationBatch, TradeBatch
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
    """History first (in ``CHUNK_MS`` batches, at once; ``liquidations``, a DataFrame of them, interleaved in time
    order), then the wrapped live source's items.

    An ingest source (:mod:`feeds.source`): ``history`` is a :class:`TradeBatch` sorted by
    trade id; ``live`` is a source such as :class:`service.live.LiveSource`, whose trade
    and liquidation batches follow unchanged. ``note`` is appended to ``describe()``.
    """

    def __init__(self, history: TradeBatch, live, note: str = "", liquidations=None):
        self.live = live
        self.note = note
        t = history.time
        keys = t // CHUNK_MS
        cuts = np.flatnonzero(np.diff(keys)) + 1 if len(t) else np.empty(0, int)
        self._chunks = [history.take(ix) for ix in np.split(np.arange(len(history)), cuts)] if len(t) else []
        if liquidations is not None and len(liquidations):  # each chunk's liquidations just before its trades
            liq = LiquidationBatch.of(liquidations, history.symbol or live.symbol)
            items = [(int(c.time[0]), 1, c) for c in self._chunks]
            minutes = liq.frame["time"].to_numpy() // CHUNK_MS
            for m in np.unique(minutes):
                items.append((int(m) * CHUNK_MS, 0, LiquidationBatch(liq.symbol, liq.frame[minutes == m])))
            self._chunks = [it for _, _, it in sorted(items, key=lambda x: (x[0], x[1]))]

    @property
    def symbol(self) -> str:
        """The live source's symbol."""
        return self.live.symbol

    def status(self):
        """The live source's status."""
        return self.live.status()

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._chunks:
            return self._chunks.pop(0)
        return await self.live.__anext__()

    async def next_due(self):
        """Up to 100 history chunks at once while they last, then the live source's ``next_due()``."""
        if self._chunks:
            out, self._chunks = self._chunks[:100], self._chunks[100:]
            return out
        return await self.live.next_due()

    def describe(self) -> str:
        """The live source's description, with the note."""
        return self.live.describe() + (f" · {self.note}" if self.note else "")

    async def aclose(self) -> None:
        """Close the live source."""
        await self.live.aclose()


def read_history(folder, market: str, symbol: str) -> tuple[TradeBatch, object]:
    """The trades (sorted by trade id) and liquidations of ``symbol`` recorded under ``folder``
    (``serve.py --history``: what ``python -m feeds record`` or ``--backfill-dir`` wrote)."""
    from feeds.history import load_history, load_liquidations

    try:
        df = load_history(folder, market, symbol, dask=False, progress=False)
        trades = TradeBatch.from_frame(df, symbol.upper()) if len(df) else TradeBatch.empty(symbol.upper())
    except FileNotFoundError:
        trades = TradeBatch.empty(symbol.upper())
    if len(trades):
        trades = trades.take(np.argsort(trades.trade_id, kind="stable"))
    return trades, load_liquidations(folder, market, symbol)
