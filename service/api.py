"""REST API for integrators and researchers, served by the same Tornado server as the page.

    GET /api/v1/vpvr?symbol=&from=&to=&row_size=&kind=&value_area=[&half_life=][&percentiles=]
    GET /api/v1/candles?symbol=&interval=&from=&to=
    GET /api/v1/trades?symbol=&from=&to=&limit=
    GET /api/v1/liquidations?symbol=&from=&to=

Times are UTC milliseconds (``from`` inclusive, ``to`` exclusive), prices quote
currency, quantities base asset. Answers are JSON, gzip-compressed when the
client sends ``Accept-Encoding: gzip``. Profiles come from the shared Redis
cache (:meth:`store.view.SymbolView.compute_async`), the same results the pages
show. A bad parameter gives HTTP 400 and ``{"error": ..., "parameter": name}``;
nothing is unbounded (see the ``MAX_*`` limits).
"""

from __future__ import annotations

import gzip
import logging
import math

import numpy as np
import orjson
import pandas as pd
from tornado.web import RequestHandler

from compute import grid

log = logging.getLogger(__name__)

MAX_RANGE_MS = 7 * 24 * 3600_000  #: longest range one request may ask for
MAX_ROWS = 5000  #: most profile rows one answer may hold
MAX_TRADES = 10_000  #: most trades one answer may hold
DEFAULT_RANGE_MS = 3600_000  #: range when ``from`` is not given (the last hour)
KINDS = ("volume", "recency", "tpo", "split")
INTERVALS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000,
             "4h": 14_400_000, "1d": 86_400_000}


class BadParameter(ValueError):
    """A query parameter that cannot be used; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


class ApiHandler(RequestHandler):
    """Base: parameter parsing, JSON/gzip answers, errors as JSON."""

    def initialize(self, runtime):
        self.runtime = runtime

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    # -- parameters --------------------------------------------------------------------
    def arg(self, name: str, default=None, required: bool = False) -> str | None:
        v = self.get_query_argument(name, None)
        if v is None or v == "":
            if required:
                raise BadParameter(name, f"parameter {name!r} is required")
            return default
        if len(v) > 64:
            raise BadParameter(name, f"parameter {name!r} is too long")
        return v

    def int_arg(self, name: str, default=None, lo=None, hi=None, required=False) -> int | None:
        v = self.arg(name, None, required)
        if v is None:
            return default
        try:
            x = int(v)
        except ValueError:
            raise BadParameter(name, f"parameter {name!r} must be an integer, got {v!r}") from None
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            raise BadParameter(name, f"parameter {name!r} must be in [{lo}, {hi}], got {x}")
        return x

    def float_arg(self, name: str, default=None, lo=None, hi=None) -> float | None:
        v = self.arg(name)
        if v is None:
            return default
        try:
            x = float(v)
        except ValueError:
            raise BadParameter(name, f"parameter {name!r} must be a number, got {v!r}") from None
        if not math.isfinite(x) or (lo is not None and x < lo) or (hi is not None and x > hi):
            raise BadParameter(name, f"parameter {name!r} must be in [{lo}, {hi}], got {v}")
        return x

    def symbol_view(self):
        sym = self.arg("symbol", required=True).upper()
        if sym not in self.runtime.symbols:
            raise BadParameter("symbol", f"unknown symbol {sym!r}; ingested: {', '.join(sorted(self.runtime.symbols))}")
        view = self.runtime.registry.get(sym)
        if not len(view.snapshot.trades):
            raise BadParameter("symbol", f"no data for {sym} yet")
        return sym, view

    def time_range(self, snap) -> tuple[int, int]:
        last = int(snap.trades.time[-1]) + 1
        to = self.int_arg("to", last, lo=0, hi=2**62)
        frm = self.int_arg("from", to - DEFAULT_RANGE_MS, lo=0, hi=2**62)
        if to <= frm:
            raise BadParameter("to", f"'to' ({to}) must be after 'from' ({frm})")
        if to - frm > MAX_RANGE_MS:
            raise BadParameter("from", f"range of {(to - frm) / 3600_000:.1f} h exceeds the limit of {MAX_RANGE_MS // 3600_000} h")
        return frm, to

    # -- answers -----------------------------------------------------------------------
    def answer(self, obj, status: int = 200) -> None:
        body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
        self.set_status(status)
        if "gzip" in self.request.headers.get("Accept-Encoding", "") and len(body) > 512:
            body = gzip.compress(body, 5)
            self.set_header("Content-Encoding", "gzip")
            self.set_header("Vary", "Accept-Encoding")
        self.finish(body)

    async def get(self):
        try:
            await self.respond()
        except BadParameter as e:
            self.runtime.metrics.api_errors.labels(self.__class__.__name__).inc()
            self.answer({"error": str(e), "parameter": e.parameter}, 400)

    def write_error(self, status_code, **kwargs):  # never a traceback page
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"error": self._reason, "status": status_code}))

    async def respond(self):  # pragma: no cover - overridden
        raise NotImplementedError


class VpvrHandler(ApiHandler):
    """Volume profile of a range: ``kind`` volume|recency|tpo|split, POC/VAH/VAL, levels, percentiles."""

    async def respond(self):
        sym, view = self.symbol_view()
        snap = view.snapshot
        frm, to = self.time_range(snap)
        kind = self.arg("kind", "volume")
        if kind not in KINDS:
            raise BadParameter("kind", f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        va = self.float_arg("value_area", 0.7, 0.5, 0.95)
        tick = snap.tick
        trades = snap.trades.time_slice(frm, to)
        if not len(trades):
            raise BadParameter("from", f"no trades of {sym} in [{frm}, {to})")
        lo, hi = float(trades.price.min()), float(trades.price.max())
        row_size = self.float_arg("row_size", None, lo=tick, hi=1e9)
        if row_size is None:
            row_size = grid.auto_row_size(lo, hi, tick, 120)
        try:
            grid.ticks_per_row(row_size, tick)
        except ValueError as e:
            raise BadParameter("row_size", str(e)) from None
        rows = math.floor(hi / row_size) - math.floor(lo / row_size) + 1
        if rows > MAX_ROWS:
            raise BadParameter("row_size", f"row size {row_size:g} gives {rows} rows over this range; the limit is {MAX_ROWS}")
        params = {"row_size": float(row_size), "value_area": va}
        if kind == "recency":
            params["half_life_s"] = self.float_arg("half_life", None, lo=0.001, hi=30 * 86400)
        pct = self.arg("percentiles")
        if pct is not None:
            try:
                ps = tuple(float(x) for x in pct.split(","))
            except ValueError:
                raise BadParameter("percentiles", f"percentiles must be numbers separated by commas, got {pct!r}") from None
            if not ps or len(ps) > 20 or any(not 0 < p < 1 for p in ps):
                raise BadParameter("percentiles", "percentiles must be 1-20 numbers in (0, 1)")
            params["percentiles"] = ps
        try:
            res = await view.compute_async(kind, frm, to, **params)
        except ValueError as e:
            raise BadParameter("row_size", str(e)) from None
        out = res.to_dict()
        out.update(symbol=sym, kind=kind, start=int(res.start), end=int(res.end), row_size=row_size,
                   value_area=va, tick=tick)
        self.answer(out)


class CandlesHandler(ApiHandler):
    """OHLCV candles with taker buy/sell volume, aggregated from the 1-minute candles."""

    async def respond(self):
        sym, view = self.symbol_view()
        snap = view.snapshot
        frm, to = self.time_range(snap)
        name = self.arg("interval", "1m")
        if name not in INTERVALS:
            raise BadParameter("interval", f"interval must be one of {', '.join(INTERVALS)}, got {name!r}")
        iv = INTERVALS[name]
        c = snap.candles
        c = c[(c["time"] >= frm // iv * iv) & (c["time"] < to)]
        out = aggregate_candles(c, iv)
        self.answer({"symbol": sym, "interval": name, "candles": out.to_dict(orient="records")})


class TradesHandler(ApiHandler):
    """Trades of a range (oldest first), at most ``limit`` (<= 10,000)."""

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


def aggregate_candles(c: pd.DataFrame, interval_ms: int) -> pd.DataFrame:
    """Merge 1-minute candles (columns of the Redis candles) into ``interval_ms`` candles."""
    if interval_ms == 60_000 or not len(c):
        return c.reset_index(drop=True)
    g = c.groupby(c["time"].to_numpy() // interval_ms * interval_ms, sort=True)
    out = pd.DataFrame({
        "time": np.asarray(list(g.groups.keys()), dtype=np.int64), "open": g["open"].first().to_numpy(),
        "high": g["high"].max().to_numpy(), "low": g["low"].min().to_numpy(), "close": g["close"].last().to_numpy(),
        "volume": g["volume"].sum().to_numpy(), "buy_volume": g["buy_volume"].sum().to_numpy(),
        "sell_volume": g["sell_volume"].sum().to_numpy(), "trades": g["trades"].sum().to_numpy(),
    })
    return out


def routes(runtime) -> list:
    """Tornado routes of the API for ``pn.serve(extra_patterns=...)``."""
    kw = {"runtime": runtime}
    return [
        (r"/api/v1/vpvr", VpvrHandler, kw), (r"/api/v1/candles", CandlesHandler, kw),
        (r"/api/v1/trades", TradesHandler, kw), (r"/api/v1/liquidations", LiquidationsHandler, kw),
    ]
