"""REST API for integrators and researchers, served by the same Tornado server as the page.

    GET /api/v1/vpvr?symbol=&from=&to=&row_size=&kind=&value_area=[&value_area_method=][&half_life=][&percentiles=]
    GET /api/v1/candles?symbol=&interval=&from=&to=
    GET /api/v1/trades?symbol=&from=&to=&limit=
    GET /api/v1/liquidations?symbol=&from=&to=
    GET /api/v1/sessions?symbol=&from=&to=[&session_length=][&session_start=][&row_size=][&value_area=]...
    GET /api/v1/vwap?symbol=&anchor=&to=[&bands=][&interval=][&session_length=][&session_start=]

Times are UTC milliseconds (``from`` inclusive, ``to`` exclusive), prices quote
currency, quantities base asset. Every computed answer carries ``coverage``: the trade-id range, trade count,
gaps and SHA-256 of the trades it was computed from (:mod:`compute.coverage`). Answers are JSON, gzip-compressed when the
client sends ``Accept-Encoding: gzip``. Profiles come from the shared Redis
cache (:meth:`engine.view.SymbolView.compute_async`), the same results the pages
show.

Parsing is strict (:mod:`service.limits`): integers are ASCII decimal digits,
numbers plain finite decimals, no control characters, no empty, repeated or
unknown parameters, at most :data:`~service.limits.MAX_QUERY_PARAMS` parameters
in :data:`~service.limits.MAX_QUERY_CHARS` characters, times within 2017-01-01 ..
now + 1 day and ranges of at most 7 days. Every error under ``/api/`` (400, 404,
405, 429, 500) is JSON ``{"error": ..., "parameter": name or null}``. Each client
address is rate limited (:mod:`service.ratelimit`): HTTP 429 with ``Retry-After``.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math

import orjson
from tornado import httputil
from tornado.web import HTTPError, OutputTransform, RequestHandler

from compute import grid
from compute.candles import INTERVALS, resample
from compute.kinds import PROFILE_KINDS
from compute.kinds import kind as kind_of
from compute.result import VA_METHODS

from . import api_alerts, api_kinds, openapi
from .api_params import QueryParams
from .api_params import shown as _shown
from .limits import (
    DEFAULT_RANGE_MS,
    EARLIEST_MS,
    MAX_RANGE_MS,
    MAX_ROWS,
    MAX_TRADES,
    BadParameter,
    RangeError,
    check_range,
    check_time,
    now_ms,
    strict_float,
)
from .ratelimit import DEFAULT_BURST, DEFAULT_RATE, TokenBucketLimiter

log = logging.getLogger(__name__)

__all__ = ["MAX_RANGE_MS", "MAX_ROWS", "MAX_TRADES", "DEFAULT_RANGE_MS", "routes",
           "server_settings", "BadParameter"]


#: Query fields Tornado parses before any handler runs (its own default is 1,000: a query with more got a
#: bare 400 with no body); queries up to this reach the API and get a JSON 400 (:func:`server_settings`).
TORNADO_QUERY_FIELDS = 4096
#: Longest value of a parameter (characters), unless the endpoint says otherwise.
MAX_VALUE_CHARS = 64
#: Paths of the API, for the 404 message.
PATHS = ("/api/v1/vpvr", "/api/v1/candles", "/api/v1/trades", "/api/v1/liquidations", *api_kinds.PATHS,
         *api_alerts.PATHS, "/api/v1/openapi.json")


class NoSniff(OutputTransform):
    """Adds ``X-Content-Type-Options: nosniff`` to every answer of the Tornado application it is given to."""

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        headers["X-Content-Type-Options"] = "nosniff"
        return status_code, headers, chunk


def server_settings() -> dict:
    """Keyword arguments for ``pn.serve`` that the API needs; also sets Tornado's process-wide query limit.

    Returns ``{"transforms": [NoSniff]}``: Panel passes unknown keywords to Bokeh's
    server, which passes them to ``tornado.web.Application``, so every answer of the
    server (page, static files, API, ``/health``, ``/metrics``) carries
    ``X-Content-Type-Options: nosniff``. Side effect: Tornado's global cap on parsed
    query fields (``tornado.httputil.set_parse_body_config``, also the cap on fields of
    a urlencoded body) becomes :data:`TORNADO_QUERY_FIELDS`, so a query of a few
    thousand parameters reaches the API handlers and is answered in JSON.
    """
    cfg = httputil.ParseBodyConfig()
    cfg.urlencoded.max_arguments = TORNADO_QUERY_FIELDS
    httputil.set_parse_body_config(cfg)
    return {"transforms": [NoSniff]}


class ApiHandler(QueryParams, RequestHandler):
    """Base: rate limit, strict parameter parsing, JSON/gzip answers, every error as JSON.

    Subclasses list the parameters they accept in :attr:`PARAMS` (name -> longest value
    in characters) and answer in :meth:`respond`; :class:`service.api_params.QueryParams` parses them.
    """

    PARAMS: dict[str, int] = {}
    #: HTTP methods the handler answers (others get 405).
    METHODS: tuple[str, ...] = ("GET",)

    def initialize(self, runtime, limiter: TokenBucketLimiter | None = None):
        self.runtime = runtime
        self.limiter = limiter
        self.params: dict[str, str] = {}

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def rate_limited(self) -> bool:
        """Take a token of the client address's bucket; when there is none, answer 429 and return True."""
        if self.limiter is None:
            return False
        wait = self.limiter.acquire(self.request.remote_ip or "")
        if wait <= 0:
            return False
        self.runtime.metrics.api_rate_limited.inc()
        secs = max(1, math.ceil(wait))
        self.set_header("Retry-After", str(secs))
        self.answer({"error": f"rate limit of {self.limiter.rate:g} requests/s per client address "
                              f"(bursts of {self.limiter.burst}) exceeded; retry in {secs} s", "parameter": None}, 429)
        return True

    def prepare(self):
        if self.rate_limited():
            return
        if self.request.method not in self.METHODS:
            self.set_header("Allow", ", ".join(self.METHODS))
            self.answer({"error": f"method {self.request.method} not allowed; use {' or '.join(self.METHODS)}",
                         "parameter": None}, 405)
            return
        try:
            self.params = self.parse_query()
        except BadParameter as e:
            self.refuse(e)

    def symbol_view(self):
        """``(symbol, view)`` of the ``symbol`` parameter; BadParameter when unknown or without data yet."""
        sym = self.arg("symbol", required=True).upper()
        if sym not in self.runtime.symbols:
            raise BadParameter("symbol", f"unknown symbol {_shown(sym)}; ingested: "
                                         f"{', '.join(sorted(self.runtime.symbols))}")
        view = self.runtime.registry.get(sym)
        if not len(view.snapshot.trades):
            raise BadParameter("symbol", f"no data for {sym} yet")
        return sym, view

    def time_range(self, snap, start: str = "from") -> tuple[int, int]:
        """``[from, to)`` (UTC ms): given, or the last hour up to the last trade; within :mod:`service.limits`.

        ``start`` names the parameter that gives the range's start (``anchor`` for a VWAP)."""
        try:
            return self._time_range(snap, start)
        except BadParameter as e:
            if start == "from" or e.parameter != "from":
                raise
            raise BadParameter(start, str(e).replace("'from'", f"'{start}'")) from None

    def _time_range(self, snap, start: str) -> tuple[int, int]:
        last = int(snap.trades.time[-1]) + 1
        to_given = self.int_arg("to")
        frm_given = self.int_arg(start)
        now = now_ms()
        try:
            if frm_given is None and to_given is not None:
                check_time("to", to_given, now)
            if to_given is None and frm_given is not None:
                check_time("from", frm_given, now)
                if frm_given >= last:
                    raise RangeError("from", f"'from' ({frm_given}) is not before the end of the data ({last}); "
                                             "give 'to' as well")
            to = last if to_given is None else to_given
            frm = max(EARLIEST_MS, to - DEFAULT_RANGE_MS) if frm_given is None else frm_given
            check_range(frm, to, now)
        except RangeError as e:
            raise BadParameter(e.parameter, str(e)) from None
        self.range_live = to >= last  # the answer may still change as trades arrive (its cache lifetime)
        return frm, to

    # -- answers -----------------------------------------------------------------------
    #: Whether the answer's range reaches the live edge (set by :meth:`time_range`; None: not a range's answer).
    range_live: bool | None = None
    #: ``Cache-Control: max-age`` of an answer of a closed past range (s).
    CLOSED_MAX_AGE_S = 3600

    def not_modified(self, body: bytes) -> bool:
        """For a 200 answer of a range: set a weak ``ETag`` (BLAKE2b of the body) and ``Cache-Control`` (the update
        period for a live range, :attr:`CLOSED_MAX_AGE_S` for a closed one); answer 304 and return True when the
        request's ``If-None-Match`` holds that ETag."""
        if self.range_live is None:
            return False
        tag = 'W/"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
        age = max(1, round(getattr(self.runtime, "update_ms", 1000) / 1000)) if self.range_live else self.CLOSED_MAX_AGE_S
        self.set_header("ETag", tag)
        self.set_header("Cache-Control", f"public, max-age={age}")
        self.set_header("Vary", "Accept-Encoding")
        asked = self.request.headers.get("If-None-Match", "")
        if tag in (t.strip() for t in asked.split(",")) or asked.strip() == "*":
            self.set_status(304)
            self.clear_header("Content-Type")
            self.finish()
            return True
        return False

    def answer(self, obj, status: int = 200) -> None:
        """Send ``obj`` as JSON with ``status`` (gzip when accepted and worth it); a range's 200 answer is cacheable
        (:meth:`not_modified`)."""
        body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
        if status == 200 and self.not_modified(body):
            return
        self.set_status(status)
        if "gzip" in self.request.headers.get("Accept-Encoding", "") and len(body) > 512:
            body = gzip.compress(body, 5)
            self.set_header("Content-Encoding", "gzip")
            self.set_header("Vary", "Accept-Encoding")
        self.finish(body)

    def refuse(self, e: BadParameter) -> None:
        """Answer 400 ``{"error", "parameter"}`` and count it."""
        self.runtime.metrics.api_errors.labels(self.__class__.__name__).inc()
        self.answer({"error": str(e), "parameter": e.parameter}, 400)

    async def get(self):
        try:
            await self.respond()
        except BadParameter as e:
            self.refuse(e)

    def write_error(self, status_code, **kwargs):  # never a traceback page
        self.set_header("Content-Type", "application/json")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if status_code >= 500:
            msg = "internal error"
        elif isinstance(exc, HTTPError) and exc.log_message:
            msg = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            msg = self._reason
        self.finish(orjson.dumps({"error": msg, "parameter": None, "status": status_code}))

    async def respond(self):  # pragma: no cover - overridden
        raise NotImplementedError


_RANGE = {"symbol": 32, "from": 20, "to": 20}


class NotFoundHandler(ApiHandler):
    """Any other path under ``/api``: 404 in JSON (rate limited like the rest of the API)."""

    def prepare(self):
        if not self.rate_limited():
            self.answer({"error": f"no API path {_shown(self.request.path, 80)}; the paths are {', '.join(PATHS)}",
                         "parameter": None}, 404)


class VpvrHandler(ApiHandler):
    """Volume profile of a range: ``kind`` volume|recency|tpo|split, POC/VAH/VAL (single or dual), levels, percentiles."""

    PARAMS = {**_RANGE, "row_size": 32, "kind": 16, "value_area": 32, "value_area_method": 16, "half_life": 32,
              "percentiles": 400}

    async def respond(self):
        sym, view = self.symbol_view()
        snap = view.snapshot
        frm, to = self.time_range(snap)
        kind = self.choice_arg("kind", PROFILE_KINDS, "volume")
        va = self.float_arg("value_area", 0.7, 0.5, 0.95)
        method = self.choice_arg("value_area_method", VA_METHODS, "single")
        row_size, tpr = self.row_size_arg(sym, snap, frm, to)
        params = {"ticks_per_row": tpr, "value_area": va, "value_area_method": method, **self._kind_params(kind)}
        try:
            query = view.query(kind, frm, to, snap, **params)
        except ValueError as e:
            raise BadParameter("kind", str(e)) from None
        try:
            res = await view.result_async(query, snap)
        except ValueError as e:
            raise BadParameter("row_size", str(e)) from None
        if res is None:
            raise BadParameter("from", f"no trades of {sym} in [{frm}, {to})")
        out = res.to_dict()
        out.update(symbol=sym, kind=kind, start=int(res.start), end=int(res.end), row_size=row_size,
                   value_area=va, value_area_method=method, tick=snap.tick,
                   coverage=view.coverage(frm, to, snap).to_dict())
        self.answer(out)

    def row_size_arg(self, sym: str, snap, frm: int, to: int) -> tuple[float, int]:
        """``row_size`` (or the automatic one for ~120 rows) and its ticks; BadParameter past MAX_ROWS."""
        tick = snap.tick
        trades = snap.trades.time_slice(frm, to)
        if not len(trades):
            raise BadParameter("from", f"no trades of {sym} in [{frm}, {to})")
        lo, hi = float(trades.price.min()), float(trades.price.max())
        row_size = self.float_arg("row_size", None, lo=tick, hi=1e9)
        if row_size is None:
            row_size = grid.auto_row_size(lo, hi, tick, 120)
        try:
            tpr = grid.ticks_per_row(row_size, tick)
        except ValueError as e:
            raise BadParameter("row_size", str(e)) from None
        rows = math.floor(hi / row_size) - math.floor(lo / row_size) + 1
        if rows > MAX_ROWS:
            raise BadParameter("row_size", f"row size {row_size:g} gives {rows} rows over this range; the limit is {MAX_ROWS}")
        return row_size, tpr

    def _kind_params(self, kind: str) -> dict:
        """``half_life`` (only for a kind whose parameters hold ``half_life_s``) and ``percentiles``, checked."""
        params = {}
        half_life = self.float_arg("half_life", None, lo=0.001, hi=30 * 86400)
        if half_life is not None:
            if "half_life_s" not in kind_of(kind).params.names():
                takers = [k for k in PROFILE_KINDS if "half_life_s" in kind_of(k).params.names()]
                raise BadParameter("half_life", f"half_life applies to kind={'|'.join(takers)} only, not kind={kind}")
            params["half_life_s"] = half_life
        pct = self.arg("percentiles")
        if pct is not None:
            try:
                ps = tuple(strict_float(x) for x in pct.split(","))
            except ValueError:
                raise BadParameter("percentiles", f"percentiles must be decimal numbers separated by commas, "
                                                  f"got {_shown(pct)}") from None
            if len(ps) > 20 or any(not 0 < p < 1 for p in ps):
                raise BadParameter("percentiles", "percentiles must be 1-20 numbers in (0, 1)")
            params["percentiles"] = ps
        return params


def _kind_handler(name: str, params: dict, answer, base=None) -> type:
    """A handler class for one of :mod:`service.api_kinds`' answers (its docstring, its parameters)."""
    async def respond(self):
        await answer(self)
    return type(name, (base or VpvrHandler,), {"PARAMS": params, "respond": respond, "__doc__": answer.__doc__})


#: path -> handler of the registry's kinds answered by :mod:`service.api_kinds`.
KIND_HANDLERS = {
    "/api/v1/sessions": _kind_handler("SessionsHandler", {
        **_RANGE, "row_size": 32, "value_area": 32, "value_area_method": 16, **api_kinds.SESSION_PARAMS}, api_kinds.sessions),
    "/api/v1/vwap": _kind_handler("VwapHandler", {"symbol": 32, "anchor": 20, "to": 20, **api_kinds.VWAP_PARAMS},
                                  api_kinds.vwap),
    "/api/v1/footprint": _kind_handler("FootprintHandler", {**_RANGE, **api_kinds.FOOTPRINT_PARAMS}, api_kinds.footprint),
    "/api/v1/developing": _kind_handler("DevelopingHandler", {**_RANGE, **api_kinds.DEVELOPING_PARAMS},
                                        api_kinds.developing),
    "/api/v1/heatmap": _kind_handler("HeatmapHandler", {**_RANGE, **api_kinds.HEATMAP_PARAMS}, api_kinds.heatmap),
}


class CandlesHandler(ApiHandler):
    """OHLCV candles with taker buy/sell volume, aggregated from the 1-minute candles."""

    PARAMS = {**_RANGE, "interval": 8}

    async def respond(self):
        sym, view = self.symbol_view()
        snap = view.snapshot
        frm, to = self.time_range(snap)
        name = self.choice_arg("interval", tuple(INTERVALS), "1m")
        iv = INTERVALS[name]
        c = snap.candles
        c = c[(c["time"] >= frm // iv * iv) & (c["time"] < to)]
        out = resample(c.reset_index(drop=True), iv)
        self.answer({"symbol": sym, "interval": name, "candles": out.to_dict(orient="records")})


class TradesHandler(ApiHandler):
    """Trades of a range (oldest first), at most ``limit`` (<= 10,000)."""

    PARAMS = {**_RANGE, "limit": 8}

    async def respond(self):
        sym, view = self.symbol_view()
        snap = view.snapshot
        frm, to = self.time_range(snap)
        limit = self.int_arg("limit", 1000, lo=1, hi=MAX_TRADES)
        t = snap.trades.time_slice(frm, to).take(slice(0, limit))
        self.answer({"symbol": sym, "trades": {
            "trade_id": t.trade_id, "time": t.time, "price": t.price, "qty": t.qty, "is_buyer_maker": t.is_buyer_maker,
        }, "count": len(t), "truncated": len(t) == limit})


class LiquidationsHandler(ApiHandler):
    """Liquidations (Binance forceOrder, at most one per symbol per second) of a range."""

    PARAMS = dict(_RANGE)

    async def respond(self):
        sym, view = self.symbol_view()
        snap = view.snapshot
        frm, to = self.time_range(snap)
        liq = getattr(snap, "liquidations", None)
        rows = []
        if liq is not None and len(liq):
            rows = liq[(liq["time"] >= frm) & (liq["time"] < to)].to_dict(orient="records")
        self.answer({"symbol": sym, "liquidations": rows,
                     "note": "Binance pushes at most one liquidation per symbol per second; totals undercount."})


def routes(runtime, limiter: TokenBucketLimiter | None = None) -> list:
    """Tornado routes of the API for ``pn.serve(extra_patterns=...)``, the last one a JSON 404 for other /api paths.

    ``limiter`` defaults to one built from ``runtime.api_rate`` and ``runtime.api_burst``
    (a rate of 0 turns it off); it is shared by every API route of this process.
    """
    if limiter is None:
        limiter = TokenBucketLimiter(getattr(runtime, "api_rate", DEFAULT_RATE), getattr(runtime, "api_burst", DEFAULT_BURST))
    kw = {"runtime": runtime, "limiter": limiter if limiter.enabled else None}
    api = [
        (r"/api/v1/vpvr", VpvrHandler, kw), (r"/api/v1/candles", CandlesHandler, kw),
        (r"/api/v1/trades", TradesHandler, kw), (r"/api/v1/liquidations", LiquidationsHandler, kw),
        *((path, handler, kw) for path, handler in KIND_HANDLERS.items()),
        *((path, handler, kw) for path, handler in api_alerts.make_handlers(ApiHandler)),
    ]
    return [*api, (r"/api/v1/openapi\.json", OpenApiHandler, {**kw, "document": openapi.describe(api)}),
            (r"/api(?:/.*)?", NotFoundHandler, kw)]


class OpenApiHandler(ApiHandler):
    """``GET /api/v1/openapi.json``: the API's OpenAPI 3.1 description (:mod:`service.openapi`)."""

    def initialize(self, runtime, limiter=None, document=None):
        super().initialize(runtime, limiter)
        self.document = document

    async def respond(self):
        self.answer(self.document)
