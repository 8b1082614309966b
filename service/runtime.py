"""What one server process runs besides the Panel sessions: Redis client, views, ingest lease, metrics.

``serve.py`` builds one :class:`Runtime` before the server starts (and before
Tornado forks for ``--num-procs``); :meth:`Runtime.start` runs in each process
on its own event loop and opens its own Redis connections there.
"""

from __future__ import annotations

import asyncio
import logging

import param

from engine.view import ViewRegistry
from store import keys
from store.alert_store import AlertStore
from store.ingest import IngestService
from store.redis_store import RedisStore, connect, mask_url

from .alerts import AlertBook
from .lease import IngestLease, IngestSupervisor
from .ratelimit import DEFAULT_BURST, DEFAULT_RATE

log = logging.getLogger(__name__)


class Runtime(param.Parameterized):
    """The process-wide state shared by sessions and HTTP handlers, and the owner of every background task.

    Parameters
    ----------
    symbols : iterable of str
        Exchange symbols of ``market`` this process ingests and shows.
    make_source : callable
        ``make_source(symbol, resume_after_id)`` -> a source for the ingest service.
    redis_url : str
        Redis URL (``redis://``, ``rediss://``, with a password if any). It is kept
        out of the parameters so no repr, log line or route dump can print it; the
        masked form is :attr:`redis_url_shown`.
    api_token : str, optional
        Token of the REST API's write endpoints (:mod:`service.api_alerts`); kept out of the
        parameters like the URL. None turns writing off.

    Every task the process runs besides the Panel sessions (views, ingest
    supervisors, the metrics refresh, the garbage-collector freezer, the warm-up)
    is started through :meth:`spawn` or :meth:`start` and ended by :meth:`stop`.
    """

    ingest = param.Boolean(default=True, doc="Take part in ingest (through the lease); False for --no-ingest.")
    market = param.Selector(default="usdm", objects=list(keys.MARKETS),
                            doc="Binance market of the symbols; part of every Redis key.")
    tick = param.Number(default=0.01, bounds=(0, None), inclusive_bounds=(False, True), allow_None=True,
                        doc="Tick of the symbols; None lets the ingest service infer it from the prices.")
    source_note = param.String(default="", doc="Why the source is what it is (e.g. the live fallback's reason).")
    update_ms = param.Integer(default=250, bounds=(50, 5000), doc="Update period; shared results are keyed on it.")
    retention_ms = param.Integer(default=24 * 3600_000, bounds=(60_000, 30 * 24 * 3600_000),
                                 doc="Exchange time of trades, candles and liquidations kept in Redis and in memory (ms).")
    lease_ttl_ms = param.Integer(default=6000, bounds=(500, 120_000), doc="Ingest lease lifetime (ms).")
    lease_renew_ms = param.Integer(default=2000, bounds=(100, 60_000), doc="Ingest lease renewal period (ms).")
    api_rate = param.Number(default=DEFAULT_RATE, bounds=(0, None),
                            doc="REST requests/s per client address (token bucket, service/ratelimit.py); 0 = off.")
    api_burst = param.Integer(default=DEFAULT_BURST, bounds=(1, None), doc="REST burst per client address (requests).")
    max_heartbeat_age_s = param.Number(default=15.0, bounds=(1, 3600), doc="/health fails when ingest is silent longer (s).")

    def __init__(self, symbols, make_source, redis_url: str = "", api_token: str | None = None, **params):
        super().__init__(**params)
        self.symbols = {s.upper() for s in symbols}
        self.make_source = make_source
        self._redis_url = redis_url
        self._api_token = api_token
        self.evaluators: list = []
        #: the rules of this process's symbols (:class:`service.alerts.AlertBook`), made by :meth:`connect`
        self.alerts = None
        self.store: RedisStore | None = None
        self.registry: ViewRegistry | None = None
        self.supervisors: list[IngestSupervisor] = []
        self.server = None
        self._tasks: set[asyncio.Task] = set()
        from .ops import Metrics

        self.metrics = Metrics()

    @property
    def redis_url_shown(self) -> str:
        """The Redis URL with its password masked (:func:`store.redis_store.mask_url`)."""
        return mask_url(self._redis_url)

    def session_count(self) -> int:
        if self.server is None:
            return 0
        return sum(1 for _ in self.server.get_sessions())

    def connect(self) -> None:
        """Create this process's Redis client, store and views (no I/O yet)."""
        if self.store is None:
            self.store = RedisStore(connect(self._redis_url), retention_ms=self.retention_ms, market=self.market)
            self.registry = ViewRegistry(self.store, period_ms=self.update_ms, retention_ms=self.retention_ms)
            self.alerts = AlertBook(AlertStore(self.store.r, self.market), self.registry, self.market, self.symbols,
                                    self._api_token)

    def spawn(self, coro, name: str) -> asyncio.Task:
        """Run ``coro`` as a task this runtime owns: :meth:`stop` cancels and awaits it. Errors are logged."""
        task = asyncio.ensure_future(coro)
        task.set_name(f"flowlens-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def start(self) -> None:
        """Start the views, the ingest supervisors (unless --no-ingest) and the metrics refresh."""
        from .ops import refresh_loop

        self.connect()
        for sym in sorted(self.symbols):
            self.registry.get(sym).start()
            if self.ingest:
                lease = IngestLease(self.store.r, sym, ttl_ms=self.lease_ttl_ms, market=self.market)
                sup = IngestSupervisor(
                    lease, self.store, lambda last_id, s=sym: self.make_source(s, last_id),
                    lambda source, s=sym: self._make_ingest(source, s),
                    renew_ms=self.lease_renew_ms,
                )
                sup.start()
                self.supervisors.append(sup)
        self.spawn(refresh_loop(self), "metrics")
        self._start_alerts()

    def _start_alerts(self) -> None:
        """One alert evaluator (and webhook dispatcher) per symbol in every process that takes part in ingest; the
        alert lease picks the one that evaluates. A ``--no-ingest`` process (pages and API) evaluates nothing, so
        an ingest-only process (``--no-pages``) keeps the alerts away from the pages."""
        if not self.ingest:
            return
        from .alerts import AlertEvaluator
        from .webhooks import WebhookDispatcher

        store = self.alerts.store
        for sym in sorted(self.symbols):
            lease = IngestLease(self.store.r, sym, ttl_ms=self.lease_ttl_ms, market=self.market,
                                key=keys.alerts_lease(self.market, sym))
            ev = AlertEvaluator(store, self.registry.get(sym), lease, self.metrics, renew_ms=self.lease_renew_ms)
            ev.start()
            self.evaluators.append(ev)
            hooks = WebhookDispatcher(store, ev, self.metrics)
            hooks.start()
            self.evaluators.append(hooks)

    def _make_ingest(self, source, symbol: str) -> IngestService:
        return IngestService(source, self.store, symbol=symbol, tick=self.tick, source_note=self.source_note)

    async def stop(self) -> None:
        """Cancel and await every owned task, stop the supervisors and views, close Redis."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sup in self.supervisors:
            await sup.stop()
        for ev in self.evaluators:
            await ev.stop()
        if self.registry is not None:
            await self.registry.stop()
        if self.store is not None:
            try:
                await self.store.r.aclose()
            except Exception:  # noqa: BLE001 - a dead connection must not stop the shutdown
                pass
