"""Historical backfill from data.binance.vision daily aggTrades archives into the recorder's Parquet layout.

``python -m feeds backfill --market usdm --symbol BTCUSDT --start 2024-08-01 --end 2024-08-07 --out DIR
[--vision-base URL]``

For each UTC day (reference d6; binance-public-data README):

1. ``<base>/data/<futures/um | futures/cm | spot>/daily/aggTrades/<SYM>/<SYM>-aggTrades-<YYYY-MM-DD>.zip``
   and its ``.zip.CHECKSUM`` (``"<sha256 hex>  <file name>"``) are fetched with aiohttp;
2. the zip is streamed to ``<name>.zip.part``; an interrupted download resumes from
   the bytes already there (HTTP ``Range``); the finished file is checked against the
   CHECKSUM (SHA-256) and only then renamed to ``.zip``;
3. the CSV inside is parsed (USD-M/COIN-M: 7 columns, header since 2022-08-11;
   spot: 8 columns, no header, microsecond times from 2025-01-01, converted to ms;
   header sniffed, time unit detected per value), sorted by ``agg_trade_id`` with
   repeated ids dropped, and written atomically to
   ``<out>/trades/<market>/<SYM>/<YYYY-MM-DD>/vision-<SYM>-<YYYY-MM-DD>.parquet`` in
   :data:`feeds.recorder.TRADES_SCHEMA` (the recorder's layout).

A day whose Parquet file exists is done and skipped (resume). A checksum mismatch
is a clear :class:`ChecksumError` for that day: the download is deleted and the
other days continue. A day the server does not have (404: not published yet, or
before the symbol listed) is reported as ``missing``. Downloads run a few at a
time with a tqdm progress bar; transient failures (connection loss, 429/5xx,
honouring ``Retry-After``) are retried with backoff (tenacity).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import logging
import os
import random
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tqdm import tqdm

from .recorder_files import TRADES_SCHEMA, write_parquet_atomic

log = logging.getLogger(__name__)

__all__ = ["VISION_BASE", "ChecksumError", "DayResult", "vision_url_path", "parse_checksum", "read_agg_trades_csv",
           "backfill", "backfill_days", "trades_path"]

VISION_BASE = "https://data.binance.vision"
_VISION_DIR = {"usdm": "futures/um", "coinm": "futures/cm", "spot": "spot"}
_AGG_COLS = ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time",
             "is_buyer_maker", "was_the_trade_the_best_price_match")


class ChecksumError(ValueError):
    """A downloaded archive does not match its ``.CHECKSUM`` (the file was discarded)."""


class _Transient(Exception):
    def __init__(self, msg: str, retry_after: float | None = None):
        super().__init__(msg)
        self.retry_after = retry_after


@dataclass
class DayResult:
    """Outcome of one day: ``status`` is ``done``, ``skipped`` (already done), ``missing`` (404) or ``failed``."""

    day: dt.date
    status: str
    rows: int = 0
    bytes: int = 0
    path: str = ""
    error: str = ""
    resumed_from: int = 0


def vision_url_path(market: str, symbol: str, day: dt.date) -> str:
    """``data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-08-01.zip`` (no leading slash)."""
    if market not in _VISION_DIR:
        raise ValueError(f"market must be one of {sorted(_VISION_DIR)}, not {market!r}")
    sym = symbol.upper()
    return f"data/{_VISION_DIR[market]}/daily/aggTrades/{sym}/{sym}-aggTrades-{day.isoformat()}.zip"


def trades_path(out, market: str, symbol: str, day: dt.date) -> Path:
    """Where the Parquet file of one backfilled day goes."""
    sym = symbol.upper()
    return Path(out) / "trades" / market / sym / day.isoformat() / f"vision-{sym}-{day.isoformat()}.parquet"


def parse_checksum(text: str, name: str | None = None) -> str:
    """The SHA-256 hex digest from a ``.CHECKSUM`` body (``"<hex>  <name>"``).

    Raises
    ------
    ChecksumError
        If the body holds no 64-hex-digit digest, or names another file.
    """
    m = re.match(r"^\s*([0-9a-fA-F]{64})\b\s*\*?\s*(\S*)", text)
    if not m:
        raise ChecksumError(f"unreadable CHECKSUM body: {text[:80]!r}")
    if name and m.group(2) and m.group(2) != name:
        raise ChecksumError(f"CHECKSUM is for {m.group(2)!r}, not {name!r}")
    return m.group(1).lower()


def read_agg_trades_csv(data: bytes, symbol: str) -> pa.Table:
    """Parse one aggTrades dump (CSV bytes, or a zip holding one CSV) into :data:`TRADES_SCHEMA`.

    Header sniffed (first field not a number); 7 or 8 columns (reference d6); times
    >= 1e15 are microseconds and become ms (floored). Rows sorted by
    ``agg_trade_id``, repeated ids dropped.

    Raises
    ------
    ValueError
        Empty or unparsable content.
    """
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".csv")] or zf.namelist()
            if not names:
                raise ValueError("empty zip archive")
            data = zf.read(names[0])
    first = data.split(b"\n", 1)[0].strip()
    if not first:
        raise ValueError("empty aggTrades file")
    toks = first.split(b",")
    has_header = not toks[0].strip().lstrip(b"-").isdigit()
    ncol = len(toks)
    if ncol not in (7, 8):
        raise ValueError(f"expected 7 or 8 aggTrades columns, found {ncol}: {first[:120]!r}")
    names = list(_AGG_COLS[:ncol])
    types = {"agg_trade_id": pa.int64(), "price": pa.float64(), "quantity": pa.float64(),
             "first_trade_id": pa.int64(), "last_trade_id": pa.int64(), "transact_time": pa.int64(),
             "is_buyer_maker": pa.bool_()}
    tbl = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 if has_header else 0),
        convert_options=pacsv.ConvertOptions(column_types=types, include_columns=names[:7]),
    )
    t = tbl.column("transact_time").to_numpy()
    t = np.where(t >= 10**15, t // 1000, t)
    ids = tbl.column("agg_trade_id").to_numpy()
    order = np.argsort(ids, kind="stable")
    keep = order[np.r_[True, np.diff(ids[order]) != 0]] if len(order) else order
    n = len(keep)
    return pa.table({
        "symbol": pa.array([symbol.upper()] * n, pa.string()),
        "agg_trade_id": ids[keep],
        "price": tbl.column("price").to_numpy()[keep],
        "qty": tbl.column("quantity").to_numpy()[keep],
        "first_trade_id": tbl.column("first_trade_id").to_numpy()[keep],
        "last_trade_id": tbl.column("last_trade_id").to_numpy()[keep],
        "time": t[keep],
        "is_buyer_maker": tbl.column("is_buyer_maker").to_numpy(zero_copy_only=False)[keep],
    }, schema=TRADES_SCHEMA)


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    v = resp.headers.get("Retry-After")
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


async def _get_text(session: aiohttp.ClientSession, url: str) -> str | None:
    async with session.get(url) as r:
        if r.status == 404:
            return None
        if r.status == 429 or r.status >= 500:
            raise _Transient(f"HTTP {r.status} for {url}", _retry_after(r))
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status} for {url}")
        return await r.text()


class _Progress:
    """tqdm bar over days with the downloaded megabytes as postfix."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = tqdm(total=total, desc=desc, unit="day", disable=not enabled, leave=True)
        self.nbytes = 0

    def add_bytes(self, n: int) -> None:
        self.nbytes += n
        self.bar.set_postfix_str(f"{self.nbytes / 1e6:.1f} MB", refresh=False)

    def day_done(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


async def _download(session: aiohttp.ClientSession, url: str, part: Path, bar: _Progress | None) -> tuple[int, int]:
    """Stream ``url`` into ``part``, resuming from its size. Returns (bytes now in part, resumed-from offset)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    async with session.get(url, headers=headers) as r:
        if r.status == 416 and have:  # nothing after what we have: the part is complete (or bigger)
            return have, have
        if r.status == 404:
            raise FileNotFoundError(url)
        if r.status == 429 or r.status >= 500:
            raise _Transient(f"HTTP {r.status} for {url}", _retry_after(r))
        if r.status not in (200, 206):
            raise RuntimeError(f"HTTP {r.status} for {url}")
        resumed = have if r.status == 206 else 0
        mode = "ab" if r.status == 206 else "wb"
        with open(part, mode) as f:
            try:
                async for chunk in r.content.iter_chunked(1 << 16):
                    f.write(chunk)
                    if bar is not None:
                        bar.add_bytes(len(chunk))
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ConnectionError) as e:
                f.flush()
                raise _Transient(f"download of {url} cut after {f.tell()} bytes: {e}") from e
        size = part.stat().st_size
        expected = r.content_length
        if expected is not None and size - (have if r.status == 206 else 0) < expected:
            raise _Transient(f"download of {url} short: {size} bytes")
        return size, resumed


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: Failures a day's download retries: timeouts, connection loss, HTTP 429/5xx, cut or short downloads.
_RETRIED = (TimeoutError, _Transient, aiohttp.ClientError, ConnectionError)


def _retry_wait(rs: RetryCallState) -> float:
    """Seconds before retry n: the server's ``Retry-After``, else ``min(30, 0.5 * 2**(n-1)) * uniform(0.5, 1)``."""
    ra = getattr(rs.outcome.exception(), "retry_after", None)
    return ra if ra is not None else min(30.0, 0.5 * 2 ** (rs.attempt_number - 1)) * random.uniform(0.5, 1.0)


async def _fetch_day(session, url: str, zpath: Path, part: Path, dest: Path, symbol: str, day: dt.date,
                     keep_zips: bool, bar: _Progress | None, resumed: int) -> DayResult:
    """One attempt at one day: CHECKSUM, (resumed) download, verify, parse, write Parquet.

    Raises
    ------
    ChecksumError
        The download does not match its CHECKSUM (the ``.part`` file is deleted).
    FileNotFoundError
        The zip is gone (404) although its CHECKSUM was there.
    _Transient, aiohttp.ClientError, ConnectionError, TimeoutError
        A failure worth retrying (429/5xx, cut download, connection loss).
    """
    body = await _get_text(session, url + ".CHECKSUM")
    if body is None:
        return DayResult(day, "missing", error=f"not on the server (404): {url}")
    want = parse_checksum(body, zpath.name)
    if not (zpath.exists() and _sha256(zpath) == want):
        await _download(session, url, part, bar)
        got = _sha256(part)
        if got != want:
            part.unlink(missing_ok=True)
            raise ChecksumError(f"{zpath.name}: SHA-256 {got} does not match CHECKSUM {want}; download discarded")
        os.replace(part, zpath)
    nbytes = zpath.stat().st_size
    table = await asyncio.to_thread(read_agg_trades_csv, zpath.read_bytes(), symbol)
    await asyncio.to_thread(write_parquet_atomic, table, dest, True)
    if not keep_zips:
        zpath.unlink(missing_ok=True)
    return DayResult(day, "done", rows=table.num_rows, bytes=nbytes, path=str(dest), resumed_from=resumed)


async def _one_day(session, base: str, market: str, symbol: str, day: dt.date, out: Path, keep_zips: bool,
                   retries: int, bar: _Progress | None) -> DayResult:
    """Backfill one day, retrying transient failures (tenacity) up to ``retries`` times; never raises for I/O."""
    dest = trades_path(out, market, symbol, day)
    if dest.exists():
        return DayResult(day, "skipped", path=str(dest))
    rel = vision_url_path(market, symbol, day)
    url = f"{base.rstrip('/')}/{rel}"
    zpath = out / "vision" / rel
    zpath.parent.mkdir(parents=True, exist_ok=True)
    part = zpath.with_name(zpath.name + ".part")
    resumed = part.stat().st_size if part.exists() else 0

    def log_retry(rs: RetryCallState) -> None:
        log.warning("backfill %s %s: %s; retry %d/%d in %.1f s", symbol, day, rs.outcome.exception(),
                    rs.attempt_number, retries, rs.upcoming_sleep)

    retrying = AsyncRetrying(retry=retry_if_exception_type(_RETRIED), stop=stop_after_attempt(retries + 1),
                             wait=_retry_wait, before_sleep=log_retry, reraise=True)
    try:
        return await retrying(_fetch_day, session, url, zpath, part, dest, symbol, day, keep_zips, bar, resumed)
    except ChecksumError as e:
        log.error("backfill %s %s: %s", symbol, day, e)
        return DayResult(day, "failed", error=str(e))
    except FileNotFoundError:
        return DayResult(day, "missing", error=f"not on the server (404): {url}")
    except _RETRIED as e:
        log.error("backfill %s %s: giving up after %d attempts: %s (partial download kept for resume)",
                  symbol, day, retrying.statistics["attempt_number"], e)
        return DayResult(day, "failed", error=f"{type(e).__name__}: {e}")
    except (RuntimeError, ValueError, OSError, pa.ArrowException, zipfile.BadZipFile) as e:
        log.error("backfill %s %s failed: %s", symbol, day, e)
        return DayResult(day, "failed", error=f"{type(e).__name__}: {e}")


def backfill_days(start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """Inclusive list of UTC days from ``start`` to ``end``.

    Raises
    ------
    ValueError
        If ``end`` is before ``start``.
    """
    s = dt.date.fromisoformat(start) if isinstance(start, str) else start
    e = dt.date.fromisoformat(end) if isinstance(end, str) else end
    if e < s:
        raise ValueError(f"end {e} is before start {s}")
    return [s + dt.timedelta(days=i) for i in range((e - s).days + 1)]


async def backfill(market: str, symbol: str, start, end, out, vision_base: str | None = None, *,
                   concurrency: int = 4, keep_zips: bool = False, retries: int = 3, progress: bool = True,
                   session: aiohttp.ClientSession | None = None) -> list[DayResult]:
    """Download, verify and convert the daily aggTrades archives of ``symbol`` from ``start`` to ``end`` (inclusive).

    Parameters
    ----------
    market : {"usdm", "coinm", "spot"}
    symbol : str
        Exchange symbol, any case (``BTCUSDT``, ``BTCUSD_PERP``).
    start, end : date or "YYYY-MM-DD"
    out : path
        Output folder (same layout as the recorder).
    vision_base : str, optional
        Origin of data.binance.vision (default :data:`VISION_BASE`).
    concurrency : int
        Days downloaded at the same time.
    keep_zips : bool
        Keep the verified ``.zip`` files under ``<out>/vision/`` (default: delete after conversion).
    retries : int
        Attempts per day after a transient failure (connection cut, 429, 5xx).
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    list of DayResult, in day order. Nothing raises for a single bad day.
    """
    if market not in _VISION_DIR:
        raise ValueError(f"market must be one of {sorted(_VISION_DIR)}, not {market!r}")
    days = backfill_days(start, end)
    out = Path(out)
    base = vision_base or VISION_BASE
    own = session is None
    if own:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=60))
    sem = asyncio.Semaphore(max(1, concurrency))
    bar = _Progress(len(days), f"{market} {symbol.upper()}", progress)

    async def run(day):
        async with sem:
            res = await _one_day(session, base, market, symbol, day, out, keep_zips, retries, bar)
        bar.day_done()
        return res

    try:
        results = await asyncio.gather(*(run(d) for d in days))
    finally:
        bar.close()
        if own:
            await session.close()
    return list(results)


def summarize(results: list[DayResult]) -> str:
    """One line per non-trivial day plus a total line."""
    lines = []
    for r in results:
        if r.status in ("failed", "missing"):
            lines.append(f"{r.day} {r.status.upper()}: {r.error}")
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "missing", "failed")}
    rows = sum(r.rows for r in results)
    lines.append(f"backfill: {counts['done']} done ({rows} trades), {counts['skipped']} already done, "
                 f"{counts['missing']} missing, {counts['failed']} failed")
    return "\n".join(lines)


def exit_code(results: list[DayResult]) -> int:
    """0 if no day failed and at least one day is available; else 1."""
    if any(r.status == "failed" for r in results):
        return 1
    if results and all(r.status == "missing" for r in results):
        return 1
    return 0

