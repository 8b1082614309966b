"""Ingest runs once per symbol across every process: a lease in Redis with a TTL.

Every server process runs an :class:`IngestSupervisor` per symbol. The one that
holds ``fl:{market:SYMBOL}:lease`` (``SET … NX PX ttl``, renewed every ``renew_ms``
by a compare-and-expire script) runs the ingest service; the others try to
take the lease every ``renew_ms``. When the holder dies its lease expires
after at most ``ttl_ms`` and another process takes it, reads the last trade id
from Redis and resumes right after it (the source's ``resume_after_id``), so
no trade is lost or doubled. Failover time <= ttl_ms + renew_ms.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import uuid

import param

from store import keys
from store.ingest import REDIS_ERRORS, IngestService
from store.tasks import TaskOwner

log = logging.getLogger(__name__)

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


def owner_id() -> str:
    """A lease owner id naming this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class IngestLease(param.Parameterized):
    """One symbol's ingest lease held by ``owner`` (see module docstring)."""

    ttl_ms = param.Integer(default=6000, bounds=(500, 120_000), doc="Lease lifetime without renewal (ms).")

    def __init__(self, client, symbol: str, owner: str | None = None, market: str = "usdm", key: str | None = None,
                 **params):
        """``key``: the lease's Redis key (default the ingest lease, :func:`store.keys.lease`)."""
        super().__init__(**params)
        self.r = client
        self.symbol = symbol.upper()
        self.key = key or keys.lease(market, symbol)
        self.owner = owner or owner_id()

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        return bool(await self.r.set(self.key, self.owner, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        """Extend the lease if we still hold it; False when it was lost."""
        return bool(await self.r.eval(_RENEW, 1, self.key, self.owner, self.ttl_ms))

    async def release(self) -> None:
        """Give the lease up (only if we hold it)."""
        await self.r.eval(_RELEASE, 1, self.key, self.owner)

    async def holder(self) -> str | None:
        v = await self.r.get(self.key)
        return v.decode() if v else None


class IngestSupervisor(TaskOwner, param.Parameterized):
    """Run the ingest service for one symbol while this process holds the lease.

    ``make_source(resume_after_id)`` builds a fresh source positioned after the
    given trade id (None = from its start). ``make_ingest(source)`` builds the
    :class:`store.ingest.IngestService`.
    """

    renew_ms = param.Integer(default=2000, bounds=(100, 60_000), doc="Renewal / takeover attempt period (ms).")
    holding = param.Boolean(default=False, constant=True, doc="Whether this process ingests the symbol now.")
    takeovers = param.Integer(default=0, constant=True, doc="Times this process took the lease.")

    def __init__(self, lease: IngestLease, store, make_source, make_ingest, **params):
        super().__init__(**params)
        self.lease = lease
        self.symbol = lease.symbol
        self.store = store
        self.make_source = make_source
        self.make_ingest = make_ingest
        self.ingest: IngestService | None = None

    async def stop(self) -> None:
        await self.stop_task()
        await self._drop()
        try:
            await self.lease.release()
        except REDIS_ERRORS:
            pass

    async def _drop(self) -> None:
        self.store.fences.pop(self.symbol, None)
        if self.ingest is not None:
            await self.ingest.stop()
            self.ingest = None
        with param.edit_constant(self):
            self.holding = False

    async def _begin(self) -> None:
        meta = await self.store.meta(self.symbol)
        last = meta.get("last_trade_id")
        last_id = int(last) if last else None
        source = self.make_source(last_id)
        if inspect.isawaitable(source):
            source = await source
        self.ingest = self.make_ingest(source)
        self.store.fences[self.symbol] = (self.lease.key, self.lease.owner)  # its writes need the lease
        if last_id is not None:
            self.ingest.skip_through_id = last_id
            t = int(meta["last_trade_time"])
            iv = self.ingest.interval_ms
            open_candle = await self.store.candles_at(self.symbol, [t // iv * iv], iv)
            if len(open_candle):
                self.ingest.seed_candle(open_candle)
        self.ingest.start()
        with param.edit_constant(self):
            self.holding = True
            self.takeovers += 1
        log.info("took the ingest lease for %s (%s), resuming after id %s", self.lease.key, self.lease.owner, last_id)

    async def run(self) -> None:
        while True:
            try:
                if self.holding:
                    # a lapsed lease nobody else took (e.g. Redis restarted empty) is simply taken back,
                    # keeping the running ingest and its buffer; only another holder makes us stop
                    if not await self.lease.renew() and not await self.lease.acquire():
                        log.warning("lost the ingest lease %s to %s", self.lease.key, await self.lease.holder())
                        await self._drop()
                elif await self.lease.acquire():
                    await self._begin()
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as e:
                # keep ingesting (it buffers) while Redis is away; the lease may lapse meanwhile
                log.debug("lease check failed: %s", type(e).__name__)
            await asyncio.sleep(self.renew_ms / 1000)
