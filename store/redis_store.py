"""The thin Redis layer: trade batches, candles, ingest status and the update doorbell.

Layout (keys in :mod:`store.keys`, all tagged with ``{SYMBOL}``):

* ``trades`` — a Redis Stream, one entry per trade batch. The entry id is
  ``<time of the batch's last trade, ms>-<seq>`` so the stream is ordered by
  exchange time and ``XTRIM MINID`` trims it by time. Fields: ``d`` (the
  batch packed as :data:`compute.batch.RECORD_DTYPE` bytes), ``n``, ``id0``,
  ``id1`` (first and last trade id).
* ``candles:<interval>`` — a Hash, candle open time -> packed candle record.
* ``meta`` — a Hash of ingest status (strings).
* ``updated`` — a pub/sub channel; the message is the last trade id.

All values are binary-safe bytes (``decode_responses=False``).
"""

from __future__ import annotations

import logging
import time

import msgspec
import numpy as np
import pandas as pd
import redis.asyncio as aioredis

from compute.batch import TradeBatch

from . import keys

log = logging.getLogger(__name__)

#: Packed layout of one candle in the candles hash.
CANDLE_DTYPE = np.dtype(
    [
        ("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
        ("volume", "<f8"), ("buy_volume", "<f8"), ("sell_volume", "<f8"), ("trades", "<i8"),
    ]
)
CANDLE_COLUMNS = list(CANDLE_DTYPE.names)


def pack_candles(df: pd.DataFrame) -> dict[bytes, bytes]:
    """Candles DataFrame (columns of :data:`CANDLE_DTYPE`) -> {open time: packed bytes}."""
    rec = np.empty(len(df), dtype=CANDLE_DTYPE)
    for c in CANDLE_COLUMNS:
        rec[c] = df[c].to_numpy()
    return {str(int(t)).encode(): rec[i : i + 1].tobytes() for i, t in enumerate(rec["time"])}


def unpack_candles(values) -> pd.DataFrame:
    """Packed candle records (iterable of bytes) -> DataFrame sorted by time."""
    values = [v for v in values if v]
    if not values:
        return pd.DataFrame({c: np.empty(0, CANDLE_DTYPE[c]) for c in CANDLE_COLUMNS})
    rec = np.frombuffer(b"".join(values), dtype=CANDLE_DTYPE)
    df = pd.DataFrame({c: rec[c] for c in CANDLE_COLUMNS})
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def connect(url: str, **kwargs) -> aioredis.Redis:
    """Create one asyncio client (with its own pool) for ``url``.

    ``redis://``, ``rediss://`` (TLS) and URLs with user/password work as
    redis-py parses them. Create one per process and share it.
    """
    kwargs.setdefault("socket_connect_timeout", 2.0)
    kwargs.setdefault("socket_timeout", 5.0)
    kwargs.setdefault("health_check_interval", 10)
    kwargs.setdefault("client_name", "flowlens")
    return aioredis.from_url(url, decode_responses=False, **kwargs)


class RedisStore:
    """Read and write one Redis database in flowlens's layout.

    Parameters
    ----------
    client : redis.asyncio.Redis
        A client created with ``decode_responses=False`` (see :func:`connect`).
    retention_ms : int
        How much exchange time of trades and candles to keep (UTC ms).
    """

    def __init__(self, client: aioredis.Redis, retention_ms: int = 24 * 3600_000):
        self.r = client
        self.retention_ms = int(retention_ms)
        self._last_stream_ms: dict[str, int] = {}

    async def ping(self) -> float:
        """Round-trip time of a PING in seconds. Raises redis errors when unreachable."""
        t0 = time.perf_counter()
        await self.r.ping()
        return time.perf_counter() - t0

    async def register_symbol(self, symbol: str) -> None:
        """Add ``symbol`` to the set of ingested symbols."""
        await self.r.sadd(keys.symbols(), symbol.upper())

    async def symbols(self) -> list[str]:
        """Symbols an ingest service has written, sorted."""
        return sorted(s.decode() for s in await self.r.smembers(keys.symbols()))

    async def append(self, batch: TradeBatch, candles: pd.DataFrame | None, meta: dict | None = None,
                     interval_ms: int = 60_000) -> str:
        """Append one batch, upsert the candles it touched, update meta and ring the doorbell.

        One MULTI/EXEC on keys of one hash tag, so readers never see the batch
        without its candles. Returns the stream entry id.
        """
        sym = batch.symbol
        t_last = int(batch.time[-1])
        ms = max(t_last, self._last_stream_ms.get(sym, 0))
        self._last_stream_ms[sym] = ms
        fields = {
            b"d": batch.to_bytes(), b"n": str(len(batch)).encode(),
            b"id0": str(int(batch.trade_id[0])).encode(), b"id1": str(int(batch.trade_id[-1])).encode(),
        }
        async with self.r.pipeline(transaction=True) as p:
            p.xadd(keys.trades(sym), fields, id=f"{ms}-*", minid=str(ms - self.retention_ms), approximate=True)
            if candles is not None and len(candles):
                p.hset(keys.candles(sym, interval_ms), mapping=pack_candles(candles))
            if meta:
                p.hset(keys.meta(sym), mapping={k: str(v) for k, v in meta.items()})
            p.publish(keys.updated(sym), str(int(batch.trade_id[-1])))
            res = await p.execute()
        entry = res[0]
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    async def append_liquidations(self, symbol: str, df: pd.DataFrame) -> int:
        """Append liquidations (columns of :data:`feeds.decode.LIQUIDATION_COLUMNS`, any subset) to the
        symbol's liquidation stream, trimmed by time like the trades. Returns how many were written."""
        if df is None or not len(df):
            return 0
        key = keys.liquidations(symbol)
        async with self.r.pipeline(transaction=True) as p:
            for rec in df.to_dict(orient="records"):
                rec = {k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
                t = int(rec["time"])
                p.xadd(key, {b"m": msgspec.msgpack.encode(rec)}, id=f"{t}-*",
                       minid=str(t - self.retention_ms), approximate=True)
            p.publish(keys.updated(symbol), b"liquidation")
            await p.execute()
        return len(df)

    async def liquidations(self, symbol: str, after_id: bytes | str = "-", count: int = 10_000
                           ) -> tuple[pd.DataFrame, bytes | None]:
        """Liquidations after stream entry ``after_id`` (exclusive; "-" = all) and the last entry id."""
        lo = after_id if after_id == "-" else b"(" + (after_id if isinstance(after_id, bytes) else after_id.encode())
        entries = await self.r.xrange(keys.liquidations(symbol), lo, "+", count=count)
        rows = [msgspec.msgpack.decode(f[b"m"]) for _, f in entries]
        return pd.DataFrame(rows), (entries[-1][0] if entries else None)

    async def trim_candles(self, symbol: str, before_ms: int, interval_ms: int = 60_000) -> int:
        """Delete candles that open before ``before_ms``; returns how many."""
        key = keys.candles(symbol, interval_ms)
        old = [f for f in await self.r.hkeys(key) if int(f) < before_ms]
        if old:
            await self.r.hdel(key, *old)
        return len(old)

    async def set_meta(self, symbol: str, **meta) -> None:
        """Set ingest status fields (values stored as strings)."""
        await self.r.hset(keys.meta(symbol), mapping={k: str(v) for k, v in meta.items()})

    async def meta(self, symbol: str) -> dict[str, str]:
        """The ingest status hash as ``str -> str``."""
        raw = await self.r.hgetall(keys.meta(symbol))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def candles(self, symbol: str, interval_ms: int = 60_000, since_ms: int | None = None) -> pd.DataFrame:
        """All kept candles (or those opening at or after ``since_ms``), sorted by time."""
        raw = await self.r.hgetall(keys.candles(symbol, interval_ms))
        vals = raw.values() if since_ms is None else [v for k, v in raw.items() if int(k) >= since_ms]
        return unpack_candles(vals)

    async def candles_at(self, symbol: str, times: list[int], interval_ms: int = 60_000) -> pd.DataFrame:
        """The candles opening at the given times (missing ones are left out)."""
        if not times:
            return unpack_candles([])
        vals = await self.r.hmget(keys.candles(symbol, interval_ms), [str(int(t)) for t in times])
        return unpack_candles(vals)

    @staticmethod
    def _decode_entries(symbol: str, entries) -> tuple[TradeBatch, bytes | None]:
        batches, last = [], None
        for eid, fields in entries:
            batches.append(TradeBatch.from_bytes(fields[b"d"], symbol))
            last = eid
        return TradeBatch.concat(batches, symbol), last

    async def read_range(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None,
                         count: int | None = None) -> tuple[TradeBatch, bytes | None]:
        """Trades of the batches whose last trade is in [start_ms, end_ms]; returns (batch, last entry id).

        The batch is not cut to the range: callers slice by time themselves.
        """
        lo = "-" if start_ms is None else str(int(start_ms))
        hi = "+" if end_ms is None else str(int(end_ms))
        entries = await self.r.xrange(keys.trades(symbol), lo, hi, count=count)
        return self._decode_entries(symbol, entries)

    async def read_after(self, symbol: str, last_id: bytes | str, block_ms: int | None = 1000,
                         count: int = 1000) -> tuple[TradeBatch, bytes | None]:
        """Batches appended after entry ``last_id`` (``"$"`` = only new ones), waiting up to ``block_ms``."""
        res = await self.r.xread({keys.trades(symbol): last_id}, count=count, block=block_ms)
        if not res:
            return TradeBatch.empty(symbol), None
        _, entries = res[0]
        return self._decode_entries(symbol, entries)
