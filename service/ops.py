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
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

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


@dataclass(frozen=True)
class PageStats:
    """What a page-serving module reports to ``/metrics``.

    ``refreshes``: cumulative page refreshes by how they were made (``own``: computed and
    applied by the page; ``shared``: a leader's refresh sent to a follower page), never
    decreasing; ``followers``: pages following a leader page now.
    """

    refreshes: Mapping[str, int]
    followers: int


#: Providers of :class:`PageStats` by name. The service never imports the page: the page's
#: module registers itself here (``dashboard.share`` does at import), and ``/metrics`` reads them.
STATS_PROVIDERS: dict[str, Callable[[], PageStats]] = {}


def register_stats_provider(name: str, provider: Callable[[], PageStats]) -> None:
    """Register (or replace) the page stats provider ``name``; :meth:`Metrics.absorb_share_stats` calls it."""
    STATS_PROVIDERS[name] = provider


class Metrics:
    """The flowlens metrics of this process (created once per process)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            self = cls._instance = super().__new__(cls)
            self.trades_per_second = _gauge("flowlens_trades_per_second", "Trades ingested per second", ["symbol"])
            self.ingest_lag = _gauge("flowlens_ingest_lag_seconds",
                                     "Wall time since the ingest service last wrote a batch", ["symbol"])
            self.buffered = _gauge("flowlens_ingest_buffered_trades",
                                   "Trades the ingest service of this process holds in memory, not yet in Redis "
                                   "(grows while Redis is unreachable)", ["symbol"], mode="livesum")
            self.trade_age = _gauge("flowlens_last_trade_age_seconds",
                                    "Wall time minus the last trade's exchange time", ["symbol"])
            self.sessions = _gauge("flowlens_open_sessions", "Open browser sessions", mode="livesum")
            self.redis_rtt = _gauge("flowlens_redis_rtt_seconds", "Round trip of a Redis PING")
            self.redis_up = _gauge("flowlens_redis_up", "1 when Redis answered the last PING", mode="min")
            self.trades_total = Counter("flowlens_trades_total", "Trades this process's ingest wrote to Redis "
                                        "(rate() gives trades/s; every process's share is summed)", ["symbol", "market"])
            self.liquidations_total = Counter("flowlens_liquidations_total",
                                              "Liquidations this process's ingest wrote to Redis", ["symbol", "market"])
            self.cache_requests = Counter("flowlens_cache_requests_total",
                                          "Shared-cache lookups by result: hit (in Redis), wait (another process was "
                                          "computing it), miss (computed here)", ["kind", "result"])
            self.computations = Counter("flowlens_computations_total", "Results computed", ["kind"])
            self.cache_hits = Counter("flowlens_cache_hits_total", "Results served from the shared cache", ["kind"])
            self.reconnects = _gauge("flowlens_feed_reconnects", "Feed reconnects since start", ["symbol"])
            self.gaps = _gauge("flowlens_feed_gaps", "Trade id gaps since start", ["symbol", "state"])
            self.frames_rejected = Counter("flowlens_frames_rejected_total",
                                           "Feed frames the decoder rejected, by reason (feeds.decode.REJECT_REASONS); "
                                           "counted by the process that runs the feed", ["symbol", "reason"])
            self.api_errors = Counter("flowlens_api_errors_total", "REST requests refused with 400", ["handler"])
            self.api_rate_limited = Counter("flowlens_api_rate_limited_total",
                                            "REST requests refused with 429 by the per-address rate limit")
            self.refreshes = Counter("flowlens_page_refreshes_total",
                                     "Page refreshes: 'own' computed and applied by the page, 'shared' a leader's "
                                     "refresh sent to a follower page of the same view", ["how"])
            self.followers = _gauge("flowlens_share_followers", "Pages following a leader page's refresh",
                                    mode="livesum")
            self.gc_pauses = Histogram("flowlens_gc_pause_seconds",
                                       "Pauses of the cyclic garbage collector, generations 1 and 2 (service/gcpause.py)",
                                       ["generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
            self.alert_evaluation = Histogram(
                "flowlens_alert_evaluation_seconds", "Time to evaluate every alert rule of a symbol on one new batch",
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
            self.signals = Counter("flowlens_signals_total", "Alert firings written to the signals stream", ["symbol"])
            self.webhook_failures = Counter("flowlens_webhook_failures_total",
                                            "Signals whose webhook failed every try (kept in Redis for inspection)",
                                            ["symbol"])
            self._seen = collections.Counter()
            self._ingest_seen = weakref.WeakKeyDictionary()  # ingest service -> its counts already counted
        return cls._instance

    def absorb_gc_pauses(self) -> None:
        """The garbage collector's pauses recorded since the last call (:data:`service.gcpause.PAUSES`)."""
        from service.gcpause import PAUSES

        while PAUSES:
            generation, seconds = PAUSES.popleft()
            self.gc_pauses.labels(str(generation)).observe(seconds)

    def absorb_share_stats(self) -> None:
        """Page refreshes (own / shared) and followers, from every registered stats provider.

        The page's sharing module registers one (:func:`register_stats_provider`); with none
        registered (a process that serves no page) nothing changes.
        """
        refreshes: collections.Counter = collections.Counter()
        followers = 0
        for provider in list(STATS_PROVIDERS.values()):
            stats = provider()
            refreshes.update({how: int(stats.refreshes.get(how, 0)) for how in ("own", "shared")})
            followers += int(stats.followers)
        for how in ("own", "shared"):
            d = refreshes[how] - self._seen[("refresh", how)]
            if d > 0:
                self._seen[("refresh", how)] = refreshes[how]
                self.refreshes.labels(how).inc(d)
        self.followers.set(followers)

    def absorb_rejections(self, symbol: str, streams) -> None:
        """Turn the cumulative ``rejected`` counts of ``meta["streams"]`` into counter increments.

        Only streams whose ``feed_id`` is a client of this process are counted, so
        processes reading the same meta, or the next lease holder, never count a
        feed twice; a new client (new ``feed_id``) starts from zero.
        """
        from feeds.binance_ws import own_feed
        from feeds.decode import REJECT_REASONS

        try:
            streams = orjson.loads(streams)
        except (orjson.JSONDecodeError, TypeError):
            return
        for st in streams if isinstance(streams, list) else ():
            fid = st.get("feed_id") if isinstance(st, dict) else None
            rejected = st.get("rejected") if own_feed(fid) else None
            for reason, n in (rejected.items() if isinstance(rejected, dict) else ()):
                if not isinstance(n, int) or reason not in REJECT_REASONS:
                    continue
                key = ("rejected", fid, symbol, reason)
                d = n - self._seen[key]
                if d > 0:
                    self._seen[key] = int(n)
                    self.frames_rejected.labels(symbol, reason).inc(d)

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
            self.cache_requests.labels(kind, {"hit": "hit", "waited": "wait"}.get(what, "miss")).inc(d)

    def start_series(self, symbols, market: str) -> None:
        """Create every labelled series the README names for the configured symbols at 0, so a dashboard or an
        alert on ``rate()`` finds them before their first event."""
        from compute.kinds import KINDS
        from feeds.decode import REJECT_REASONS

        for sym in symbols:
            self.trades_total.labels(sym, market)
            self.liquidations_total.labels(sym, market)
            self.reconnects.labels(sym).set(0)
            for state in ("filled", "unfilled"):
                self.gaps.labels(sym, state).set(0)
            for reason in REJECT_REASONS:
                self.frames_rejected.labels(sym, reason)
            self.signals.labels(sym)
            self.webhook_failures.labels(sym)
        for kind in KINDS:
            self.computations.labels(kind)
            self.cache_hits.labels(kind)
            for result in ("hit", "wait", "miss"):
                self.cache_requests.labels(kind, result)

    def absorb_ingest(self, supervisors, market: str) -> None:
        """Turn each running ingest service's cumulative written counts into counter increments."""
        for sup in supervisors:
            ing = sup.ingest
            if ing is None:
                continue
            seen = self._ingest_seen.setdefault(ing, {})
            for what, counter in (("trades_written", self.trades_total), ("liquidations_written", self.liquidations_total)):
                n = int(getattr(ing, what))
                d = n - seen.get(what, 0)
                if d > 0:
                    seen[what] = n
                    counter.labels(sup.symbol, market).inc(d)


async def refresh_loop(runtime, period_s: float = 1.0) -> None:
    """Refresh this process's gauges every ``period_s`` until cancelled."""
    m = runtime.metrics
    m.start_series(sorted(runtime.symbols), runtime.market)
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
                if "streams" in meta:
                    m.absorb_rejections(sym, meta["streams"])
        except asyncio.CancelledError:
            raise
        except REDIS_ERRORS:
            m.redis_up.set(0)
        except Exception:  # noqa: BLE001 - metrics must never take the server down
            log.exception("metrics refresh failed")
        for sup in runtime.supervisors:
            m.buffered.labels(sup.symbol).set(sup.ingest.buffered_trades if sup.ingest is not None else 0)
        m.absorb_ingest(runtime.supervisors, runtime.market)
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
