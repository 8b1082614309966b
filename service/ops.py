"""Operations endpoints: ``/health`` and ``/metrics`` (Prometheus text format via prometheus_client).

Metrics are kept with prometheus_client's multiprocess mode when
``PROMETHEUS_MULTIPROC_DIR`` is set (serve.py sets it before any import, so
``--num-procs N`` reports the sum over processes): counters add up, gauges
report the most recent value or the live sum. A per-process task refreshes
the gauges every second from the process's state and the ingest status in
Redis, and turns the shared cache's counts into counters.

``/health`` answers 200 ``{"status": "ok", ...}`` when Redis answers a PING
within a second and every ingested symbol's ingest heartbeat is younger than
``max_heartbeat_age_s``; otherwise 503 ``{"status": "fail", "reasons": [...]}``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prom_mp
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from tornado.web import RequestHandler

from store.ingest import REDIS_ERRORS

log = logging.getLogger(__name__)

MP = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def _gauge(name, doc, labels=(), mode="mostrecent"):
    kw = {"multiprocess_mode": mode} if MP else {}
    return Gauge(name, doc, labels, **kw)


class Metrics:
    """The flowlens metrics of this process (created once per process)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            self = cls._instance = super().__new__(cls)
            self.trades_per_second = _gauge("flowlens_trades_per_second", "Trades ingested per second", ["symbol"])
            self.ingest_lag = _gauge("flowlens_ingest_lag_seconds",
                                     "Wall time since the ingest service last wrote a batch", ["symbol"])
            self.trade_age = _gauge("flowlens_last_trade_age_seconds",
                                    "Wall time minus the last trade's exchange time", ["symbol"])
            self.sessions = _gauge("flowlens_open_sessions", "Open browser sessions", mode="livesum")
            self.redis_rtt = _gauge("flowlens_redis_rtt_seconds", "Round trip of a Redis PING")
            self.redis_up = _gauge("flowlens_redis_up", "1 when Redis answered the last PING", mode="min")
            self.computations = Counter("flowlens_computations_total", "Results computed", ["kind"])
            self.cache_hits = Counter("flowlens_cache_hits_total", "Results served from the shared cache", ["kind"])
            self.reconnects = _gauge("flowlens_feed_reconnects", "Feed reconnects since start", ["symbol"])
            self.gaps = _gauge("flowlens_feed_gaps", "Trade id gaps since start", ["symbol", "state"])
            self.api_errors = Counter("flowlens_api_errors_total", "REST requests refused with 400", ["handler"])
            self.refreshes = Counter("flowlens_page_refreshes_total",
                                     "Page refreshes: 'own' computed and applied by the page, 'shared' a leader's "
                                     "refresh sent to a follower page of the same view", ["how"])
            self.followers = _gauge("flowlens_share_followers", "Pages following a leader page's refresh",
                                    mode="livesum")
            self.gc_pauses = Histogram("flowlens_gc_pause_seconds",
                                       "Pauses of the cyclic garbage collector, generations 1 and 2 (service/gcpause.py)",
                                       ["generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
            self._seen = collections.Counter()
        return cls._instance

    def absorb_gc_pauses(self) -> None:
        """The garbage collector's pauses recorded since the last call (:data:`service.gcpause.PAUSES`)."""
        from service.gcpause import PAUSES

        while PAUSES:
            generation, seconds = PAUSES.popleft()
            self.gc_pauses.labels(str(generation)).observe(seconds)

    def absorb_share_stats(self) -> None:
        """Page refreshes (own / shared) and followers from :mod:`dashboard.share`."""
        from dashboard import share

        for how in ("own", "shared"):
            d = share.STATS[how] - self._seen[("refresh", how)]
            if d > 0:
                self._seen[("refresh", how)] = share.STATS[how]
                self.refreshes.labels(how).inc(d)
        self.followers.set(share.followers())

    def absorb_cache_stats(self, stats: collections.Counter) -> None:
        """Turn the shared cache's cumulative counts into counter increments."""
        for (kind, what), n in list(stats.items()):
            d = n - self._seen[(kind, what)]
            if d <= 0:
                continue
            self._seen[(kind, what)] = n
            if what in ("computed", "local"):
                self.computations.labels(kind).inc(d)
            else:
                self.cache_hits.labels(kind).inc(d)


async def refresh_loop(runtime, period_s: float = 1.0) -> None:
    """Refresh this process's gauges every ``period_s`` until cancelled."""
    m = runtime.metrics
    while True:
        try:
            t0 = time.perf_counter()
            await runtime.store.ping()
            m.redis_rtt.set(time.perf_counter() - t0)
            m.redis_up.set(1)
            now = time.time()
            for sym in runtime.symbols:
                meta = await runtime.store.meta(sym)
                if "tps" in meta:
                    m.trades_per_second.labels(sym).set(float(meta["tps"]))
                if "heartbeat" in meta:
                    m.ingest_lag.labels(sym).set(max(0.0, now - int(meta["heartbeat"]) / 1000))
                if "last_trade_time" in meta:
                    m.trade_age.labels(sym).set(max(0.0, now - int(meta["last_trade_time"]) / 1000))
                for k, label in (("reconnects", None), ("gaps_filled", "filled"), ("gaps_unfilled", "unfilled")):
                    if k in meta:
                        (m.reconnects.labels(sym) if label is None else m.gaps.labels(sym, label)).set(float(meta[k]))
        except asyncio.CancelledError:
            raise
        except REDIS_ERRORS:
            m.redis_up.set(0)
        except Exception:  # noqa: BLE001 - metrics must never take the server down
            log.exception("metrics refresh failed")
        m.absorb_cache_stats(runtime.registry.cache.stats)
        m.absorb_share_stats()
        m.absorb_gc_pauses()
        m.sessions.set(runtime.session_count())
        await runtime.registry.refresh_symbols()
        await asyncio.sleep(period_s)


class MetricsHandler(RequestHandler):
    """``GET /metrics``: Prometheus text exposition."""

    def initialize(self, runtime):
        self.runtime = runtime

    def get(self):
        self.runtime.metrics.absorb_cache_stats(self.runtime.registry.cache.stats)
        self.runtime.metrics.absorb_share_stats()
        self.runtime.metrics.absorb_gc_pauses()
        if MP:
            reg = CollectorRegistry()
            prom_mp.MultiProcessCollector(reg)
            body = generate_latest(reg)
        else:
            body = generate_latest()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(body)


class HealthHandler(RequestHandler):
    """``GET /health``: 200 when Redis and the feeds are fine, 503 with the reasons when not."""

    def initialize(self, runtime):
        self.runtime = runtime

    async def get(self):
        reasons, detail = [], {}
        try:
            rtt = await asyncio.wait_for(self.runtime.store.ping(), 1.0)
            detail["redis_rtt_ms"] = round(rtt * 1000, 2)
            now_ms = time.time() * 1000
            for sym in sorted(self.runtime.symbols):
                meta = await self.runtime.store.meta(sym)
                hb = meta.get("heartbeat")
                age = (now_ms - int(hb)) / 1000 if hb else None
                detail[sym] = {"source": meta.get("source"), "heartbeat_age_s": None if age is None else round(age, 1),
                               "last_trade_time": int(meta["last_trade_time"]) if "last_trade_time" in meta else None}
                if age is None:
                    reasons.append(f"{sym}: no ingest heartbeat yet")
                elif age > self.runtime.max_heartbeat_age_s:
                    reasons.append(f"{sym}: ingest silent for {age:.0f} s")
                for st in orjson.loads(meta.get("streams", "[]")):
                    if not st.get("connected", True):
                        reasons.append(f"{sym}: stream {st.get('stream')} disconnected")
        except (TimeoutError, *REDIS_ERRORS) as e:
            reasons.append(f"redis unreachable: {type(e).__name__}")
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.set_status(503 if reasons else 200)
        self.finish(orjson.dumps({"status": "fail" if reasons else "ok", "reasons": reasons, **detail}))


def routes(runtime) -> list:
    kw = {"runtime": runtime}
    return [(r"/health", HealthHandler, kw), (r"/metrics", MetricsHandler, kw)]
