"""The emulator's data.binance.vision archives, mixed into :class:`LocalBinance`.

``/data/futures/um/daily/aggTrades/{SYM}/{SYM}-aggTrades-YYYY-MM-DD.zip`` and
``.zip.CHECKSUM`` (``"<sha256 hex>  <name>"``), also ``futures/cm``, ``spot`` and
``monthly``; HTTP ``Range`` is supported (206). Archives are built from the real
recorded trades of the UTC day or month (reference d6). Faults can fail requests,
corrupt a zip (its CHECKSUM stays the true one) or cut a download mid-body.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import re
import zipfile

import numpy as np
from aiohttp import web

from .recording import TradeTable

#: data.binance.vision folder per market.
VISION_DIR = {"usdm": "futures/um", "coinm": "futures/cm", "spot": "spot"}
VISION_MARKET = {v: k for k, v in VISION_DIR.items()}
#: USD-M / COIN-M aggTrades dump header (7 columns, reference d6).
VISION_FUTURES_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
#: Spot dumps switched to microsecond timestamps on this day (reference d6).
SPOT_MICROS_FROM = dt.date(2025, 1, 1)
_VISION_ZIPS: dict[tuple, bytes] = {}  # built archives, shared by server instances (same data -> same bytes)


def period_bounds(period: str) -> tuple[dt.date, int, int]:
    """First day and ``[t0, t1)`` bounds (UTC ms) of ``YYYY-MM-DD`` (daily) or ``YYYY-MM`` (monthly).

    Raises
    ------
    ValueError
        If ``period`` is not a valid ISO date or month.
    """
    if len(period) == 10:
        d0 = dt.date.fromisoformat(period)
        d1 = d0 + dt.timedelta(days=1)
    else:
        d0 = dt.date.fromisoformat(period + "-01")
        d1 = (d0.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    t0 = int(dt.datetime(d0.year, d0.month, d0.day, tzinfo=dt.UTC).timestamp() * 1000)
    t1 = int(dt.datetime(d1.year, d1.month, d1.day, tzinfo=dt.UTC).timestamp() * 1000)
    return d0, t0, t1


def archive_csv(tab: TradeTable, sel: np.ndarray, day0: dt.date) -> str:
    """The CSV text of rows ``sel`` of ``tab`` in data.binance.vision's aggTrades layout.

    USD-M and COIN-M: header ``VISION_FUTURES_HEADER``, 7 columns, ``true``/``false``,
    times in UTC ms. Spot: no header, 8 columns (the last the best-match flag),
    ``True``/``False``, times in µs when ``day0`` is on or after 2025-01-01.
    """
    a, p, q, f, l_ = tab.a[sel].tolist(), tab.p[sel].tolist(), tab.q[sel].tolist(), tab.f[sel].tolist(), \
        tab.l[sel].tolist()
    if tab.market == "spot":
        mult = 1000 if day0 >= SPOT_MICROS_FROM else 1
        T = (tab.T[sel] * mult).tolist()
        m = ["True" if x else "False" for x in tab.m[sel].tolist()]
        M = ["True" if x else "False" for x in (tab.M[sel] if tab.M is not None else np.ones(len(sel), bool))]
        rows = [f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{r[6]},{r[7]}\n"
                for r in zip(a, p, q, f, l_, T, m, M, strict=True)]
        return "".join(rows)
    T = tab.T[sel].tolist()
    m = ["true" if x else "false" for x in tab.m[sel].tolist()]
    rows = [f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{r[6]}\n" for r in zip(a, p, q, f, l_, T, m, strict=True)]
    return VISION_FUTURES_HEADER + "\n" + "".join(rows)


def _zip_one(name: str, text: str, day0: dt.date) -> bytes:
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(name, date_time=(day0.year, day0.month, day0.day, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, text, compresslevel=1)
    return zbuf.getvalue()


def byte_range(header: str | None, total: int) -> tuple[int, int, int] | None:
    """``(status, start, end)`` (end inclusive) for an HTTP ``Range`` header over ``total`` bytes.

    No header: ``(200, 0, total - 1)``; a satisfiable ``bytes=a-b``/``bytes=a-``/
    ``bytes=-n``: 206; anything else None (the caller answers 416).
    """
    if not header:
        return 200, 0, total - 1
    mr = re.match(r"^bytes=(\d*)-(\d*)$", header.strip())
    if not mr or (not mr.group(1) and not mr.group(2)):
        return None
    if mr.group(1):
        start = int(mr.group(1))
        end = int(mr.group(2)) if mr.group(2) else total - 1
    else:
        start, end = max(0, total - int(mr.group(2))), total - 1
    if start >= total:
        return None
    return 206, start, min(end, total - 1)


class VisionArchives:
    """data.binance.vision handlers of :class:`LocalBinance` (a mixin: uses ``tables``, ``faults``, ``stats``)."""

    _VISION_RE = re.compile(
        r"^/data/(futures/um|futures/cm|spot)/(daily|monthly)/aggTrades/([A-Z0-9_]+)/"
        r"([A-Z0-9_]+)-aggTrades-(\d{4}-\d{2}(?:-\d{2})?)\.zip(\.CHECKSUM)?$")

    def vision_zip(self, market: str, symbol: str, period: str) -> bytes | None:
        """The aggTrades archive of ``period`` (``YYYY-MM-DD`` daily or ``YYYY-MM`` monthly), or None.

        Built from the real recorded trades of that UTC day/month: USD-M and COIN-M
        have the 7-column header layout with ``true``/``false``; spot has 8 columns, no
        header, ``True``/``False`` and microsecond times from 2025-01-01 (reference d6).
        None when the symbol is not served or has no trade in the period.
        """
        name = f"{symbol}-aggTrades-{period}"
        key = f"{market}/{name}"
        if key in self._vision_cache:
            return self._vision_cache[key]
        tab = self.tables.get((market, symbol))
        if tab is None or not len(tab):
            return None
        d0, t0, t1 = period_bounds(period)
        sel = np.nonzero((tab.T >= t0) & (tab.T < t1))[0]
        if not len(sel):
            return None
        gkey = (tuple(tab.sources), len(tab), int(tab.a[0]), int(tab.a[-1]), market, symbol, period)
        if gkey not in _VISION_ZIPS:
            _VISION_ZIPS[gkey] = _zip_one(name + ".csv", archive_csv(tab, sel, d0), d0)
        self._vision_cache[key] = _VISION_ZIPS[gkey]
        return _VISION_ZIPS[gkey]

    def _vision_lookup(self, path: str) -> tuple[re.Match | None, bytes | None]:
        m = self._VISION_RE.match(path)
        if m and m.group(3) == m.group(4):
            period = m.group(5)
            if (m.group(2) == "daily") == (len(period) == 10):
                return m, self.vision_zip(VISION_MARKET[m.group(1)], m.group(3), period)
        return m, None

    async def _vision(self, request: web.Request) -> web.StreamResponse:
        fl = self.faults
        if fl.vision_fail_next:
            if fl.vision_fail_next > 0:
                fl.vision_fail_next -= 1
            self._log(request, fl.vision_fail_status)
            return web.Response(status=fl.vision_fail_status, text="Service Unavailable",
                                headers={"Retry-After": str(fl.rest_retry_after)})
        m, data = self._vision_lookup(request.path)
        if data is None:
            self._log(request, 404)
            key = request.path.lstrip("/")
            return web.Response(status=404, content_type="application/xml", text=(
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
                f"<Message>The specified key does not exist.</Message><Key>{key}</Key></Error>"))
        zname = f"{m.group(4)}-aggTrades-{m.group(5)}.zip"
        if m.group(6):  # CHECKSUM
            self._log(request, 200)
            return web.Response(text=f"{hashlib.sha256(data).hexdigest()}  {zname}\n", content_type="text/plain")
        if zname in fl.vision_corrupt_files:
            b = bytearray(data)
            b[len(b) // 2] ^= 0xFF
            data = bytes(b)
        return await self._vision_body(request, data)

    async def _vision_body(self, request: web.Request, data: bytes) -> web.StreamResponse:
        total = len(data)
        rng = byte_range(request.headers.get("Range"), total)
        if rng is None:
            self._log(request, 416)
            return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
        status, start, end = rng
        body = data[start : end + 1]
        hdr = {"Content-Length": str(len(body)), "Accept-Ranges": "bytes", "Content-Type": "application/zip",
               "ETag": '"' + hashlib.md5(data).hexdigest() + '"'}
        if status == 206:
            hdr["Content-Range"] = f"bytes {start}-{end}/{total}"
        self.stats["vision_downloads"] += 1
        self._log(request, status)
        resp = web.StreamResponse(status=status, headers=hdr)
        await resp.prepare(request)
        fl = self.faults
        cut = fl.vision_cut_after_bytes
        if cut and fl.vision_cut_next and cut < len(body):
            if fl.vision_cut_next > 0:
                fl.vision_cut_next -= 1
            self.stats["vision_cuts"] += 1
            await resp.write(body[:cut])
            await asyncio.sleep(0.05)
            if request.transport is not None:
                request.transport.abort()
            return resp
        await resp.write(body)
        await resp.write_eof()
        return resp
