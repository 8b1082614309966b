"""What one server process runs besides the Panel sessions: Redis client, views, ingest lease, metrics.

``serve.py`` builds one :class:`Runtime` before the server starts (and before
Tornado forks for ``--num-procs``); :meth:`Runtime.start` runs in each process
on its own event loop and opens its own Redis connections there.
"""

from __future__ import annotations

import asyncio
import logging

import param

from store.ingest import IngestService
from store.redis_store import RedisStore, connect
from store.view import ViewRegistry

from .lease import IngestLease, IngestSupervisor

log = logging.getLogger(__name__)


class Runtime(param.Parameterized):
    """The process-wide state shared by sessions and HTTP handlers."""

    redis_url = param.String(doc="Redis URL (redis://, rediss://, with password if any).")
    ingest = param.Boolean(default=True, doc="Take part in ingest (through the lease); False for --no-ingest.")
    tick = param.Number(default=0.01, bounds=(0, None), inclusive_bounds=(False, True), allow_None=True,
                        doc="Tick of the symbols; None lets the ingest service infer it from the prices.")
    source_note = param.String(default="", doc="Why the source is what it is (e.g. the live fallback's reason).")
    update_ms = param.Integer(default=250, bounds=(50, 5000), doc="Update period; shared results are keyed on it.")
    lease_ttl_ms = param.Integer(default=6000, bounds=(500, 120_000), doc="Ingest lease lifetime (ms).")
    lease_renew_ms = param.Integer(default=2000, bounds=(100, 60_000), doc="Ingest lease renewal period (ms).")
    max_heartbeat_age_s = param.Number(default=15.0, bounds=(1, 3600), doc="/health fails when ingest is silent longer (s).")

    def __init__(self, symbols, make_source, **params):
        super().__init__(**params)
        self.symbols = {s.upper() for s in symbols}
        self.make_source = make_source
        self.store: RedisStore | None = None
        self.registry: ViewRegistry | None = None
        self.supervisors: list[IngestSupervisor] = []
        self.server = None
        self._tasks: list[asyncio.Task] = []
        from .ops import Metrics

        self.metrics = Metrics()

    def session_count(self) -> int:
        if self.server is None:
            return 0
        return sum(1 for _ in self.server.get_sessions())

    def connect(self) -> None:
        """Create this process's Redis client, store and views (no I/O yet)."""
        if self.store is None:
            self.store = RedisStore(connect(self.redis_url))
            self.registry = ViewRegistry(self.store, period_ms=self.update_ms)

    async def start(self) -> None:
        """Start the views, the ingest supervisors (unless --no-ingest) and the metrics refresh."""
        from .ops import refresh_loop

        self.connect()
        for sym in sorted(self.symbols):
            self.registry.get(sym).start()
            if self.ingest:
                lease = IngestLease(self.store.r, sym, ttl_ms=self.lease_ttl_ms)
                sup = IngestSupervisor(
                    lease, self.store, lambda last_id, s=sym: self.make_source(s, last_id),
                    lambda source, s=sym: self._make_ingest(source, s),
                    renew_ms=self.lease_renew_ms,
                )
                sup.start()
                self.supervisors.append(sup)
        self._tasks.append(asyncio.ensure_future(refresh_loop(self)))

    def _make_ingest(self, source, symbol: str) -> IngestService:
        ing = IngestService(source, self.store, symbol=symbol, tick=self.tick, source_note=self.source_note)
        if hasattr(source, "ingest"):
            source.ingest = ing  # the live source hands its liquidations to this service
        return ing

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for sup in self.supervisors:
            await sup.stop()
        if self.registry is not None:
            await self.registry.stop()
        if self.store is not None:
            try:
                await self.store.r.aclose()
            except Exception:  # noqa: BLE001 - a dead connection must not stop the shutdown
                pass
