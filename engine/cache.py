"""Results computed once for every viewer: a Redis cache with a single-flight lock.

A result is stored under ``fl:{market:SYMBOL}:res:`` + :meth:`compute.query.ProfileQuery.key`
(``<kind>:<params hash>:<start>:<end>``), where ``[start, end)`` is the requested range
quantized outwards to the update period, so sessions that follow the live edge ask for the
same key by construction. The first asker takes a short lock (``SET … NX PX``), computes,
and stores the encoded result (:mod:`store.codec`, msgpack + numpy bytes) with a TTL;
everyone else waits for the entry (polling every few ms) instead of computing it again.
While the holder computes it renews its lock every third of ``lock_ms`` (only if the lock
is still its own), so a computation slowed by a loaded machine keeps the single flight;
a holder that dies stops renewing, its lock expires within ``lock_ms`` and a waiter
computes. Waiters give up after ``max_wait_ms`` in any case. Entries whose range reaches the live edge live
``live_ttl_s``; entries of a closed range (all its data in) live ``closed_ttl_s``.

When Redis does not answer, :meth:`SharedCache.get_or_compute` computes locally
and says so in its counters: a page never waits on a dead cache.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

import param

from compute.query import ProfileQuery
from store import codec, keys
from store.ingest import REDIS_ERRORS

log = logging.getLogger(__name__)

MISSING = object()


def result_key(query: ProfileQuery) -> str:
    """The Redis key of one query's result (within its market and symbol's hash tag)."""
    return f"{keys.results_prefix(query.market, query.symbol)}:{query.key()}"


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
    max_wait_ms = param.Integer(default=60_000, bounds=(50, 600_000),
                                doc="Longest a waiter waits for a holder that keeps renewing its lock (ms).")

    def __init__(self, client, **params):
        """``client``: a redis.asyncio client (the market and symbol of a key come from its query)."""
        super().__init__(**params)
        self.r = client
        self.stats = collections.Counter()  # (kind, "computed"|"hit"|"waited"|"local") -> n

    async def get_or_compute(self, query: ProfileQuery, compute, live: bool = True):
        """Return the cached result of ``query``, or compute it once (``await compute()`` -> result).

        ``compute`` is an async callable run by exactly one caller per key while the
        lock holds. Redis errors fall back to computing locally. ``live``: the range reaches
        the live edge (the result lives ``live_ttl_s``, else ``closed_ttl_s``).
        """
        key, kind = result_key(query), query.kind
        try:
            raw = await self.r.get(key)
            if raw is not None:
                self.stats[(kind, "hit")] += 1
                return codec.decode(raw)
            token = f"{id(self)}:{time.monotonic_ns()}"
            if await self.r.set(key + ":lock", token, nx=True, px=self.lock_ms):
                return await self._compute_holding(key, kind, token, compute, live)
            raw = await self._wait_for(key)
            if raw is not None:
                self.stats[(kind, "waited")] += 1
                return codec.decode(raw)
            log.warning("gave up waiting for %s; computing it here", key)
        except REDIS_ERRORS as e:
            log.debug("cache unavailable (%s); computing %s locally", type(e).__name__, kind)
        self.stats[(kind, "local")] += 1
        return await compute()

    async def _compute_holding(self, key: str, kind: str, token: str, compute, live: bool):
        """Compute under the lock ``token`` holds (renewed meanwhile), store the result, release the lock."""
        raw = await self.r.get(key)  # the previous holder may have finished between GET and SET NX
        if raw is not None:
            await self.r.delete(key + ":lock")
            self.stats[(kind, "hit")] += 1
            return codec.decode(raw)
        renewer = asyncio.ensure_future(self._renew(key + ":lock", token))
        try:
            result = await compute()
            self.stats[(kind, "computed")] += 1
            renewer.cancel()
            ttl = self.live_ttl_s if live else self.closed_ttl_s
            async with self.r.pipeline(transaction=True) as p:
                p.set(key, codec.encode(result), px=int(ttl * 1000))
                p.delete(key + ":lock")
                await p.execute()
            return result
        except REDIS_ERRORS:
            raise
        except BaseException:
            await self.r.delete(key + ":lock")
            raise
        finally:
            renewer.cancel()

    async def _renew(self, lock: str, token: str) -> None:
        """Extend ``lock`` to ``lock_ms`` every third of it while it is still ``token``'s."""
        while True:
            await asyncio.sleep(self.lock_ms / 3000)
            try:
                if await self.r.get(lock) != token.encode():
                    return
                await self.r.pexpire(lock, self.lock_ms)
            except REDIS_ERRORS:
                return

    async def _wait_for(self, key: str) -> bytes | None:
        """Poll for ``key``'s result while its lock is held (at most ``max_wait_ms``); None when given up."""
        deadline = time.monotonic() + self.max_wait_ms / 1000
        while time.monotonic() < deadline:
            await asyncio.sleep(self.poll_ms / 1000)
            async with self.r.pipeline(transaction=False) as p:
                p.exists(key + ":lock")
                p.get(key)
                locked, raw = await p.execute()
            if raw is None and not locked:  # the holder may have finished between the two reads
                raw = await self.r.get(key)
            if raw is not None or not locked:
                return raw
        return None
