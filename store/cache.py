"""Results computed once for every viewer: a Redis cache with a single-flight lock.

A result is stored under ``fl:{SYMBOL}:res:<kind>:<params hash>:<start>:<end>``
where ``[start, end)`` is the requested range quantized outwards to the update
period, so sessions that follow the live edge ask for the same key by
construction. The first asker takes a short lock (``SET … NX PX``), computes,
stores the encoded result (:mod:`store.codec`, msgpack + numpy bytes) with a
TTL and publishes the key on ``fl:{SYMBOL}:results``; everyone else waits for
the entry (polling every few ms, bounded by the lock's lifetime) instead of
computing it again. Entries whose range reaches the live edge live
``live_ttl_s``; entries of a closed range (all its data in) live ``closed_ttl_s``.

When Redis does not answer, :meth:`SharedCache.get_or_compute` computes locally
and says so in its counters: a page never waits on a dead cache.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time

import orjson
import param

from . import codec, keys
from .ingest import REDIS_ERRORS

log = logging.getLogger(__name__)

MISSING = object()


def result_key(symbol: str, kind: str, params: dict, start: int, end: int) -> str:
    """The cache key of one result (all within the symbol's hash tag)."""
    h = hashlib.sha1(orjson.dumps(params, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return f"{keys.results_prefix(symbol)}:{kind}:{h}:{int(start)}:{int(end)}"


def quantize(start: int, end: int, period_ms: int) -> tuple[int, int]:
    """Widen [start, end) to the period grid: start down, end up (UTC ms)."""
    q = max(1, int(period_ms))
    return int(start) // q * q, -(-int(end) // q) * q


class SharedCache(param.Parameterized):
    """Get-or-compute over Redis for every process and session (see module docstring)."""

    live_ttl_s = param.Number(default=2.0, bounds=(0.05, 3600), doc="TTL of results whose range reaches the live edge (s).")
    closed_ttl_s = param.Number(default=300.0, bounds=(1, 86400), doc="TTL of results of a closed range (s).")
    lock_ms = param.Integer(default=5000, bounds=(50, 60_000), doc="Lifetime of the single-flight lock (ms).")
    poll_ms = param.Integer(default=5, bounds=(1, 1000), doc="How often a waiter looks for the result (ms).")

    def __init__(self, client, **params):
        super().__init__(**params)
        self.r = client
        self.stats = collections.Counter()  # (kind, "computed"|"hit"|"waited"|"local") -> n

    async def get_or_compute(self, symbol: str, kind: str, params: dict, start: int, end: int, compute,
                             live: bool = True):
        """Return the cached result for the key, or compute it once (``await compute()`` -> result).

        ``compute`` is an async callable run by exactly one caller per key while the
        lock holds. Redis errors fall back to computing locally.
        """
        key = result_key(symbol, kind, params, start, end)
        try:
            raw = await self.r.get(key)
            if raw is not None:
                self.stats[(kind, "hit")] += 1
                return codec.decode(raw)
            token = f"{id(self)}:{time.monotonic_ns()}"
            if await self.r.set(key + ":lock", token, nx=True, px=self.lock_ms):
                raw = await self.r.get(key)  # the previous holder may have finished between GET and SET NX
                if raw is not None:
                    await self.r.delete(key + ":lock")
                    self.stats[(kind, "hit")] += 1
                    return codec.decode(raw)
                try:
                    result = await compute()
                    self.stats[(kind, "computed")] += 1
                    ttl = self.live_ttl_s if live else self.closed_ttl_s
                    async with self.r.pipeline(transaction=True) as p:
                        p.set(key, codec.encode(result), px=int(ttl * 1000))
                        p.delete(key + ":lock")
                        p.publish(keys.results_channel(symbol), key)
                        await p.execute()
                    return result
                except REDIS_ERRORS:
                    raise
                except BaseException:
                    await self.r.delete(key + ":lock")
                    raise
            deadline = time.monotonic() + self.lock_ms / 1000
            while time.monotonic() < deadline:
                await asyncio.sleep(self.poll_ms / 1000)
                async with self.r.pipeline(transaction=False) as p:
                    p.exists(key + ":lock")
                    p.get(key)
                    locked, raw = await p.execute()
                if raw is None and not locked:  # the holder may have finished between the two reads
                    raw = await self.r.get(key)
                if raw is not None:
                    self.stats[(kind, "waited")] += 1
                    return codec.decode(raw)
                if not locked:
                    break
            log.warning("gave up waiting for %s; computing it here", key)
        except REDIS_ERRORS as e:
            log.debug("cache unavailable (%s); computing %s locally", type(e).__name__, kind)
        self.stats[(kind, "local")] += 1
        return await compute()
