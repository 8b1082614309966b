"""The thin Redis layer: trade batches, candles, ingest status and liquidations.

Layout (keys in :mod:`store.keys`, all tagged with ``{market:SYMBOL}``):

* ``trades`` — a Redis Stream, one entry per trade batch. The entry id is
  ``<time of the batch's last trade, ms>-<seq>`` so the stream is ordered by
  exchange time and ``XTRIM MINID`` trims it by time. Fields: ``c`` (the
  batch packed column by column, :mod:`store.trade_codec`, about 6-10 B a trade),
  ``n``, ``id0``, ``id1`` (first and last trade id, decimal). Entries of the
  earlier layout (``d``: packed :data:`compute.batch.RECORD_DTYPE`, 25 B a trade)
  are still read.
* ``candles:<interval>`` — a Hash, candle open time -> packed candle record.
* ``meta`` — a Hash of ingest status (strings).

Readers follow the trade stream with ``XREAD BLOCK`` (no pub/sub channel: the stream itself
wakes them).

All values are binary-safe bytes (``decode_responses=False``).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import numpy as np
import pandas as pd
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from compute.batch import TradeBatch
from compute.candles import CANDLE_COLUMNS, CANDLE_DTYPE

from . import keys
from .trade_codec import TradeEncoder, decode_fields, decode_many

log = logging.getLogger(__name__)


#: Most candle intervals the retention floor may move in one append before a full ``HKEYS`` trim is used.
MAX_TRIM_STEPS = 1024

#: The write of :meth:`RedisStore.append_many` in one round trip: the lease check (when fenced) and the writes run
#: as one script (atomic like MULTI/EXEC; every key carries the symbol's hash tag, so it runs on one Redis Cluster
#: shard). KEYS: lease, trade stream, candle hash, meta hash. ARGV: owner ("" = not fenced), number of entries,
#: ``MINID`` for the last entry, 5 values an entry (id, c, n, id0, id1), the number of candles then their field/value
#: pairs, the number of expired candles then their fields, then the meta field/value pairs. Replies the entry ids,
#: or the error ``LEASELOST``.
_APPEND = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LEASELOST the ingest lease is held by another process')
end
local function chunked(cmd, key, first, last)
  for s = first, last, 4000 do redis.call(cmd, key, unpack(ARGV, s, math.min(s + 3999, last))) end
end
local n, i, ids = tonumber(ARGV[2]), 4, {}
for k = 1, n do
  if k < n then
    ids[k] = redis.call('XADD', KEYS[2], ARGV[i], 'c', ARGV[i+1], 'n', ARGV[i+2], 'id0', ARGV[i+3], 'id1', ARGV[i+4])
  else
    ids[k] = redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], ARGV[i],
                        'c', ARGV[i+1], 'n', ARGV[i+2], 'id0', ARGV[i+3], 'id1', ARGV[i+4])
  end
  i = i + 5
end
local nc = tonumber(ARGV[i]); i = i + 1
if nc > 0 then chunked('HSET', KEYS[3], i, i + 2 * nc - 1) end
i = i + 2 * nc
local no = tonumber(ARGV[i]); i = i + 1
if no > 0 then chunked('HDEL', KEYS[3], i, i + no - 1) end
i = i + no
if i <= #ARGV then chunked('HSET', KEYS[4], i, #ARGV) end
return ids
"""


def candle_records(candles) -> np.ndarray:
    """Candles as records of :data:`CANDLE_DTYPE`, shape (K,): a DataFrame with those columns, or records
    already (returned as they are)."""
    if isinstance(candles, np.ndarray):
        return candles
    rec = np.empty(len(candles), dtype=CANDLE_DTYPE)
    for c in CANDLE_COLUMNS:
        rec[c] = candles[c].to_numpy()
    return rec


def pack_candles(candles) -> dict[bytes, bytes]:
    """Candles (DataFrame with the columns of :data:`CANDLE_DTYPE`, or its records) -> {open time: packed
    bytes}; a later candle of the same open time wins."""
    rec = candle_records(candles)
    raw, size = rec.tobytes(), CANDLE_DTYPE.itemsize
    return {str(t).encode(): raw[i * size:(i + 1) * size] for i, t in enumerate(rec["time"].tolist())}


def unpack_candles(values) -> pd.DataFrame:
    """Packed candle records (iterable of bytes) -> DataFrame sorted by time."""
    values = [v for v in values if v]
    if not values:
        return pd.DataFrame({c: np.empty(0, CANDLE_DTYPE[c]) for c in CANDLE_COLUMNS})
    rec = np.frombuffer(b"".join(values), dtype=CANDLE_DTYPE)
    df = pd.DataFrame({c: rec[c] for c in CANDLE_COLUMNS})
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def mask_url(url: str | None) -> str:
    """``url`` with its password (and a user name's secret part) replaced by ``***``, for logs and reprs.

    ``redis://:s3cret@host:6379/0`` -> ``redis://:***@host:6379/0``;
    ``rediss://user:s3cret@host`` -> ``rediss://user:***@host``; a ``password=``
    query parameter (which redis-py also reads) is masked the same way. A URL
    without a password comes back unchanged; None gives ``""``.
    """
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if "password" in parts.query:
        q = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query=urlencode(q, safe="*"))
    return urlunsplit(parts)


#: URL schemes that name a Redis Cluster (any one node of it), and the plain scheme redis-py is given.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def connect(url: str, **kwargs) -> aioredis.Redis:
    """Create one asyncio client (with its own pool) for ``url``.

    ``redis://``, ``rediss://`` (TLS) and URLs with user/password work as redis-py parses
    them. ``redis+cluster://`` and ``rediss+cluster://`` (any node of a Redis Cluster) give
    redis-py's cluster client, which finds the other nodes and routes every command to the
    node of its key's slot; every flowlens key of one market's symbol shares one hash tag
    (:mod:`store.keys`), so its pipelines and transactions stay on one node. Create one per
    process and share it.
    """
    kwargs.setdefault("socket_connect_timeout", 2.0)
    kwargs.setdefault("socket_timeout", 5.0)
    kwargs.setdefault("client_name", "flowlens")
    scheme = urlsplit(url).scheme.lower()
    if scheme in CLUSTER_SCHEMES:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(CLUSTER_SCHEMES[scheme] + url[len(scheme):], decode_responses=False, **kwargs)
    kwargs.setdefault("health_check_interval", 10)
    return aioredis.from_url(url, decode_responses=False, **kwargs)


class LeaseLost(RedisError):
    """A fenced write found the ingest lease held by another process: nothing was written (a Redis error, so the
    ingest service keeps the batch and its supervisor, failing to renew, stops it)."""


class RedisStore:
    """Read and write one Redis database in flowlens's layout.

    Parameters
    ----------
    client : redis.asyncio.Redis
        A client created with ``decode_responses=False`` (see :func:`connect`).
    retention_ms : int
        How much exchange time of trades and candles to keep (UTC ms).
    market : str
        Binance market of every symbol this store reads and writes (``usdm``,
        ``coinm``, ``spot``); it is part of every key (:func:`store.keys.stream_name`),
        so the same symbol of two markets stays apart on one Redis.

    Raises
    ------
    ValueError
        If ``market`` is unknown.
    """

    def __init__(self, client: aioredis.Redis, retention_ms: int = 24 * 3600_000, market: str = "usdm"):
        keys.stream_name(market, "X")  # validates the market
        self.r = client
        self.market = market
        self.retention_ms = int(retention_ms)
        self._last_stream_ms: dict[str, int] = {}
        self._encoders: dict[str, TradeEncoder] = {}
        self._candle_floor: dict[tuple[str, int], int] = {}
        #: symbol -> (lease key, owner): :meth:`append_many` writes only while that owner holds that key (set by
        #: the ingest supervisor that holds the lease), so an ingest paused past its lease's lifetime, whose lease
        #: another process took meanwhile, writes nothing twice
        self.fences: dict[str, tuple[str, str]] = {}
        self._script = client.register_script(_APPEND)

    async def ping(self) -> float:
        """Round-trip time of a PING in seconds. Raises redis errors when unreachable."""
        t0 = time.perf_counter()
        await self.r.ping()
        return time.perf_counter() - t0

    async def register_symbol(self, symbol: str) -> None:
        """Add ``symbol`` to the set of ingested symbols."""
        await self.r.sadd(keys.symbols(), keys.stream_name(self.market, symbol))

    async def symbols(self) -> list[str]:
        """Symbols of this store's market that an ingest service has written, sorted."""
        prefix = f"{self.market}:"
        names = (s.decode() for s in await self.r.smembers(keys.symbols()))
        return sorted(n[len(prefix):] for n in names if n.startswith(prefix))

    async def append(self, batch: TradeBatch, candles=None, meta: dict | None = None,
                     interval_ms: int = 60_000) -> str:
        """Append one batch, upsert the candles it touched and update meta, in one transaction.

        ``candles`` is a DataFrame of :data:`CANDLE_COLUMNS` or records of :data:`CANDLE_DTYPE` (or None).
        See :meth:`append_many`; returns the stream entry id.
        """
        return (await self.append_many([batch], candles, meta, interval_ms))[0]

    async def append_many(self, batches: list[TradeBatch], candles=None, meta: dict | None = None,
                          interval_ms: int = 60_000) -> list[str]:
        """Append batches of one symbol (one stream entry each, in order), upsert the candles they touched and
        update meta, in one script (one round trip, :data:`_APPEND`) that first checks the symbol's ingest lease
        while :attr:`fences` holds one.

        One transaction on keys of one hash tag, so readers never see a batch
        without its candles, and a lost reply means all or none was applied. Trades
        older than ``retention_ms`` behind the last batch's last trade are trimmed
        from the stream (``MINID``, approximate) and the candles that opened before
        them are deleted in the same transaction, so both stay bounded. Returns the
        stream entry ids.

        Parameters
        ----------
        batches : list of TradeBatch
            Non-empty batches of one symbol in exchange-time order (times UTC ms).
        candles : DataFrame or ndarray of :data:`CANDLE_DTYPE`, optional
            Candles of ``interval_ms`` to upsert by open time (a later row of the same time wins).
        meta : dict, optional
            Ingest status fields, written as strings.

        Raises
        ------
        ValueError
            If ``batches`` is empty or one of them holds no trades.
        LeaseLost
            If the fencing lease is held by another process (nothing written).
        redis.exceptions.RedisError
            When Redis cannot be reached or refuses the transaction (nothing or all was applied).
        """
        if not batches:
            raise ValueError("append_many needs at least one batch")
        sym = batches[0].symbol
        enc = self._encoders.get(sym) or self._encoders.setdefault(sym, TradeEncoder())
        last_ms = self._last_stream_ms.get(sym, 0)
        stream = keys.trades(self.market, sym)
        entries = []
        for b, blob in zip(batches, enc.encode_many(batches), strict=True):
            last_ms = max(int(b.time[-1]), last_ms)
            entries.append((last_ms, {b"c": blob, b"n": b"%d" % len(b),
                                      b"id0": b"%d" % b.trade_id[0], b"id1": b"%d" % b.trade_id[-1]}))
        self._last_stream_ms[sym] = last_ms
        floor, old_candles = await self._expired_candles(sym, last_ms, interval_ms)
        rec = None if candles is None else candle_records(candles)
        if rec is not None and len(rec) and int(rec["time"][0]) < floor:
            rec = rec[rec["time"] >= floor]
        ckey = keys.candles(self.market, sym, interval_ms)
        res = await self._append_script(sym, stream, entries, ckey, rec, old_candles, meta)
        return [e.decode() if isinstance(e, bytes) else str(e) for e in res[:len(entries)]]

    async def _append_script(self, sym, stream, entries, ckey, rec, old_candles, meta) -> list:
        """:meth:`append_many`'s write: one script, one round trip (:data:`_APPEND`), fenced when :attr:`fences`
        holds the symbol's lease (a fence by ``WATCH``, ``GET`` and MULTI/EXEC took three round trips: 930 µs CPU a
        live batch against 421 µs). Raises :class:`LeaseLost` when another process holds the lease (nothing
        written)."""
        lease, owner = self.fences.get(sym) or (keys.lease(self.market, sym), "")
        args: list = [owner, len(entries), str(entries[-1][0] - self.retention_ms)]
        for ms, f in entries:
            args += (f"{ms}-*", f[b"c"], f[b"n"], f[b"id0"], f[b"id1"])
        packed = pack_candles(rec) if rec is not None and len(rec) else {}
        args.append(len(packed))
        for kv in packed.items():
            args += kv
        args.append(len(old_candles or ()))
        args += old_candles or ()
        for k, v in (meta or {}).items():
            args += (k, str(v))
        try:
            return await self._script(keys=[lease, stream, ckey, keys.meta(self.market, sym)], args=args)
        except ResponseError as e:
            if str(e).startswith("LEASELOST"):
                raise LeaseLost(f"the ingest lease of {sym} is not this process's any more: nothing written") \
                    from None
            raise

    async def append_liquidations(self, symbol: str, df: pd.DataFrame) -> int:
        """Append liquidations (columns of :data:`feeds.decode.LIQUIDATION_COLUMNS`, any subset) to the
        symbol's liquidation stream, trimmed by time like the trades. Returns how many were written.

        Only rows later than the stream's last entry are written (a stream only grows forward in time): a
        history seeded again after a restart, or a replay overlapping it, writes nothing twice. Binance sends at
        most one liquidation per symbol per second, so two rows of one millisecond are one liquidation."""
        if df is None or not len(df):
            return 0
        key = keys.liquidations(self.market, symbol)
        top = await self.r.xrevrange(key, "+", "-", count=1)
        if top:
            last_ms = int(top[0][0].split(b"-")[0])
            df = df[df["time"].to_numpy() > last_ms]
            if not len(df):
                return 0
        async with self.r.pipeline(transaction=True) as p:
            for rec in df.to_dict(orient="records"):
                rec = {k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
                t = int(rec["time"])
                p.xadd(key, {b"m": msgspec.msgpack.encode(rec)}, id=f"{t}-*",
                       minid=str(t - self.retention_ms), approximate=True)
            await p.execute()
        return len(df)

    async def liquidations(self, symbol: str, after_id: bytes | str = "-", count: int = 10_000
                           ) -> tuple[pd.DataFrame, bytes | None]:
        """Liquidations after stream entry ``after_id`` (exclusive; "-" = all) and the last entry id."""
        lo = after_id if after_id == "-" else b"(" + (after_id if isinstance(after_id, bytes) else after_id.encode())
        entries = await self.r.xrange(keys.liquidations(self.market, symbol), lo, "+", count=count)
        rows = [msgspec.msgpack.decode(f[b"m"]) for _, f in entries]
        return pd.DataFrame(rows), (entries[-1][0] if entries else None)

    async def _expired_candles(self, symbol: str, stream_ms: int, interval_ms: int) -> tuple[int, list[bytes]]:
        """The retention floor (UTC ms) and the open times (hash fields) of the candles that fell below it
        since the last append.

        Candles are kept with the trades' retention: a candle opening before
        ``floor = stream_ms - retention_ms`` (rounded down to the interval) holds no
        kept trade. The floor only moves forward, so after the first append this is
        the few minutes it moved (no scan); the first append of a process, or a jump
        of over :data:`MAX_TRIM_STEPS` intervals, trims by one ``HKEYS`` scan instead.
        """
        floor = (stream_ms - self.retention_ms) // interval_ms * interval_ms
        prev = self._candle_floor.get((symbol, interval_ms))
        self._candle_floor[(symbol, interval_ms)] = max(floor, prev or floor)
        if prev is None or floor - prev > MAX_TRIM_STEPS * interval_ms:
            await self.trim_candles(symbol, floor, interval_ms)
            return floor, []
        return floor, [str(t).encode() for t in range(prev, floor, interval_ms)]

    async def trim_candles(self, symbol: str, before_ms: int, interval_ms: int = 60_000) -> int:
        """Delete candles that open before ``before_ms`` (one ``HKEYS`` scan); returns how many."""
        key = keys.candles(self.market, symbol, interval_ms)
        old = [f for f in await self.r.hkeys(key) if int(f) < before_ms]
        if old:
            await self.r.hdel(key, *old)
        return len(old)

    async def meta(self, symbol: str) -> dict[str, str]:
        """The ingest status hash as ``str -> str``."""
        raw = await self.r.hgetall(keys.meta(self.market, symbol))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def candles(self, symbol: str, interval_ms: int = 60_000, since_ms: int | None = None) -> pd.DataFrame:
        """All kept candles (or those opening at or after ``since_ms``), sorted by time."""
        raw = await self.r.hgetall(keys.candles(self.market, symbol, interval_ms))
        vals = raw.values() if since_ms is None else [v for k, v in raw.items() if int(k) >= since_ms]
        return unpack_candles(vals)

    async def candles_at(self, symbol: str, times: list[int], interval_ms: int = 60_000) -> pd.DataFrame:
        """The candles opening at the given times (missing ones are left out)."""
        if not times:
            return unpack_candles([])
        vals = await self.r.hmget(keys.candles(self.market, symbol, interval_ms), [str(int(t)) for t in times])
        return unpack_candles(vals)

    @staticmethod
    def _decode_entries(symbol: str, entries) -> tuple[TradeBatch, bytes | None]:
        """Stream entries -> (their trades concatenated in order, the last entry id or None).

        Raises ValueError for an entry of an unknown layout (:func:`store.trade_codec.decode_fields`)."""
        if not entries:
            return TradeBatch.empty(symbol), None
        blobs = [fields.get(b"c") for _, fields in entries]
        if all(b is not None for b in blobs):
            return decode_many(blobs, symbol), entries[-1][0]
        batches = [decode_fields(fields, symbol) for _, fields in entries]  # some of the old layout
        return TradeBatch.concat(batches, symbol), entries[-1][0]

    async def read_range(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None,
                         count: int | None = None) -> tuple[TradeBatch, bytes | None]:
        """Trades of the batches whose last trade is in [start_ms, end_ms]; returns (batch, last entry id).

        The batch is not cut to the range: callers slice by time themselves.
        """
        lo = "-" if start_ms is None else str(int(start_ms))
        hi = "+" if end_ms is None else str(int(end_ms))
        entries = await self.r.xrange(keys.trades(self.market, symbol), lo, hi, count=count)
        return self._decode_entries(symbol, entries)

    async def read_after(self, symbol: str, last_id: bytes | str, block_ms: int | None = 1000,
                         count: int = 1000) -> tuple[TradeBatch, bytes | None]:
        """Batches appended after entry ``last_id`` (``"$"`` = only new ones), waiting up to ``block_ms``."""
        res = await self.r.xread({keys.trades(self.market, symbol): last_id}, count=count, block=block_ms)
        if not res:
            return TradeBatch.empty(symbol), None
        _, entries = res[0]
        return self._decode_entries(symbol, entries)
