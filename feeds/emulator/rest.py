"""The emulator's REST endpoints (``aggTrades``, ``ping``, ``time``), mixed into :class:`LocalBinance`.

``GET /fapi/v1/aggTrades`` (USD-M data), ``/dapi/v1/aggTrades`` (COIN-M) and
``/api/v3/aggTrades`` (spot) take ``symbol, fromId, startTime, endTime, limit`` and
return only trades that have already happened on the symbol's exchange clock, with
Binance's error codes and the ``X-MBX-USED-WEIGHT-1M`` header; ``/ping`` and
``/time`` answer on each prefix. ``faults.rest_fail_next`` injects 429/418/451/5xx.
"""

from __future__ import annotations

import math
import time

import orjson
from aiohttp import web

#: REST path prefix -> market whose data it serves.
REST_PREFIX = {"/fapi/v1": "usdm", "/dapi/v1": "coinm", "/api/v3": "spot"}
#: Request weight of one aggTrades call and the per-minute weight limit, per market.
AGGTRADES_WEIGHT = {"usdm": 20, "coinm": 20, "spot": 4}
WEIGHT_LIMIT_1M = {"usdm": 2400, "coinm": 2400, "spot": 6000}
_BINANCE_451_MSG = (
    "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you received this message in error."
)


class RestEndpoints:
    """REST handlers of :class:`LocalBinance` (a mixin: uses ``feeds``, ``faults``, ``stats``, ``_log``)."""

    @staticmethod
    def _json(obj, status: int = 200, headers: dict | None = None, raw: bytes | None = None) -> web.Response:
        return web.Response(body=raw if raw is not None else orjson.dumps(obj), status=status,
                            content_type="application/json", headers=headers)

    def _make_rest(self, market: str, fn):
        async def handler(request: web.Request) -> web.Response:
            self.stats["rest_calls"] += 1
            fl = self.faults
            if fl.rest_fail_next:
                if fl.rest_fail_next > 0:
                    fl.rest_fail_next -= 1
                self.stats["rest_failures"] += 1
                st = fl.rest_fail_status
                hdr = {"Retry-After": str(fl.rest_retry_after)} if st in (418, 429) or st >= 500 else None
                body = {451: {"code": 0, "msg": _BINANCE_451_MSG},
                        429: {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is exceeded."},
                        418: {"code": -1003, "msg": "Way too many requests; IP(127.0.0.1) banned."}}.get(
                    st, {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."})
                self._log(request, st)
                return self._json(body, st, hdr)
            resp = await fn(request, market)
            self._log(request, resp.status)
            return resp

        return handler

    async def _rest_ping(self, request, market):
        return self._json({})

    async def _rest_time(self, request, market):
        return self._json({"serverTime": int(time.time() * 1000)})

    def _use_weight(self, market: str, w: int) -> tuple[int, float | None]:
        now = time.monotonic()
        win = self.rest_weight_window
        st = self._weight.setdefault(market, [now, 0])
        if now - st[0] >= win:
            st[0], st[1] = now, 0
        st[1] += w
        limit = self.rest_weight_limit or WEIGHT_LIMIT_1M[market]
        if st[1] > limit:
            return int(st[1]), max(0.0, win - (now - st[0]))
        return int(st[1]), None

    async def _rest_aggtrades(self, request: web.Request, market: str) -> web.Response:
        q = request.query
        used, wait = self._use_weight(market, AGGTRADES_WEIGHT[market])
        hdr = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if wait is not None:
            hdr["Retry-After"] = str(max(1, math.ceil(wait)))
            self.stats["rest_failures"] += 1
            return self._json({"code": -1003, "msg": "Too many requests; request weight limit exceeded."}, 429, hdr)
        sym = q.get("symbol")
        if not sym:
            return self._json({"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, "
                               "or malformed."}, 400, hdr)
        feed = self.feeds.get((market, sym))
        if feed is None:
            return self._json({"code": -1121, "msg": "Invalid symbol."}, 400, hdr)
        ints = {}
        for name in ("fromId", "startTime", "endTime", "limit"):
            if name in q:
                try:
                    ints[name] = int(q[name])
                except ValueError:
                    return self._json({"code": -1100, "msg": f"Illegal characters found in parameter '{name}'; "
                                       "legal range is '^[0-9]{1,20}$'."}, 400, hdr)
        limit = ints.get("limit", 500)
        if not 1 <= limit <= 1000:
            return self._json({"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}, 400, hdr)
        start, end = ints.get("startTime"), ints.get("endTime")
        if start is not None and end is not None and (end < start or end - start > 3_600_000):
            return self._json({"code": -1127, "msg": "More than 1 hours between startTime and endTime."}, 400, hdr)
        cursor = feed.published
        if "fromId" in ints:
            v0 = feed.vindex_of_id(ints["fromId"])
            if start is not None:
                v0 = max(v0, feed.vindex_of_time(start))
        elif start is not None:
            v0 = feed.vindex_of_time(start)
        elif end is not None:
            v0 = max(0, min(cursor, feed.vindex_of_time(end + 1)) - limit)
        else:
            v0 = max(0, cursor - limit)
        v1 = min(cursor, v0 + limit)
        if end is not None:
            v1 = min(v1, feed.vindex_of_time(end + 1))
        rows = feed.rest_rows(v0, max(v0, v1))
        return self._json(None, 200, hdr, raw=b"[" + b",".join(rows) + b"]")

    # -- data.binance.vision -----------------------------------------------------------
