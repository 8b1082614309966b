"""No gaps, no duplicates: per-symbol id sequencing and REST aggTrades gap backfill.

Aggregate trade ids are consecutive per symbol (reference d3; Binance
"Compressed/Aggregate Trades List").  :class:`IdSequencer` takes aggTrades from
any number of sources (one or two WebSocket connections, REST pages) in any
order, drops every id already emitted or seen twice, and releases trades only
as a contiguous run in id order.  A hole (ids missing between the last emitted
id and the lowest held one) is reported by :meth:`IdSequencer.hole`; the
client asks :class:`GapFiller` to fetch it from REST
(``/fapi/v1/aggTrades?symbol=..&fromId=..&limit=1000``, ``/dapi/v1/...``,
``/api/v3/...``) within the request-weight limits, honouring ``Retry-After`` on
429/418/5xx.  When REST cannot fill a hole in time (HTTP 451 from restricted
regions, repeated failures) the hole is recorded as a :class:`Gap` and
skipped (:meth:`IdSequencer.skip_hole`), so the stream never waits longer than
the fill deadline.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from dataclasses import asdict, dataclass

import aiohttp
import numpy as np
import param

from .decode import AggTrades, decode_rest_agg_trades
from .markets import get_market, rest_url

log = logging.getLogger(__name__)

__all__ = ["Gap", "IdSequencer", "FillResult", "RestError", "WeightLimiter", "GapFiller"]


@dataclass(frozen=True)
class Gap:
    """A range of aggregate trade ids that was missing from the stream.

    Attributes
    ----------
    symbol : str
    from_id, to_id : int
        First and last missing aggregate trade id (inclusive).
    detected_ms : int
        Wall-clock UTC ms when the hole was found.
    after_time, before_time : int or None
        Trade time (UTC ms) of the last trade before and the first trade after the hole.
    filled : bool
        True if REST delivered every missing trade.
    trades_filled : int
        Trades fetched from REST for this hole.
    reason : str
        ``filled``, or why it was not (``http 451``, ``timeout``, ...).
    """

    symbol: str
    from_id: int
    to_id: int
    detected_ms: int
    after_time: int | None
    before_time: int | None
    filled: bool
    trades_filled: int
    reason: str

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return asdict(self)


class IdSequencer:
    """Release one symbol's aggTrades exactly once, in id order, as contiguous runs.

    Parameters
    ----------
    symbol : str
    start_id : int, optional
        First id expected (e.g. resume after a restart: last stored id + 1).
        Without it, the sequencer starts at the lowest id of its first
        :meth:`start` call.

    Attributes
    ----------
    last_id : int or None
        Last aggregate id released (None before the start).
    duplicates : int
        Trades dropped because their id was already released or held.
    """

    def __init__(self, symbol: str, start_id: int | None = None):
        self.symbol = symbol.upper()
        self.last_id: int | None = None if start_id is None else int(start_id) - 1
        self.last_time: int | None = None
        self._held = AggTrades.empty(self.symbol)
        self.duplicates = 0

    @property
    def started(self) -> bool:
        """True once the sequencer knows the last id released (set by :meth:`start` or by ``start_id``)."""
        return self.last_id is not None

    @property
    def held(self) -> int:
        """Trades held back behind a hole (or before the start)."""
        return len(self._held)

    def add(self, trades: AggTrades) -> None:
        """Hold ``trades`` (any order, duplicates allowed) until :meth:`release`."""
        if not len(trades):
            return
        merged = AggTrades.concat([self._held, trades], self.symbol)
        ids = merged.agg_id
        if self.last_id is not None:
            keep = ids > self.last_id
            n_old = int((~keep).sum())
            if n_old:
                self.duplicates += n_old
                merged = merged.take(keep)
                ids = merged.agg_id
        if len(ids) > 1:
            if not bool(np.all(ids[1:] > ids[:-1])):
                order = np.argsort(ids, kind="stable")
                merged = merged.take(order)
                ids = merged.agg_id
                uniq = np.r_[True, ids[1:] != ids[:-1]]
                n_dup = int((~uniq).sum())
                if n_dup:
                    self.duplicates += n_dup
                    merged = merged.take(uniq)
        self._held = merged

    def start(self) -> None:
        """Start at the lowest held id if no start id was given (no-op otherwise)."""
        if self.last_id is None and len(self._held):
            self.last_id = int(self._held.agg_id[0]) - 1

    def release(self) -> AggTrades:
        """Return the held trades that continue ``last_id`` without a hole (possibly none), in id order."""
        h = self._held
        if self.last_id is None or not len(h):
            return AggTrades.empty(self.symbol)
        expected = self.last_id + 1 + np.arange(len(h), dtype=np.int64)
        bad = np.flatnonzero(h.agg_id != expected)
        k = int(bad[0]) if len(bad) else len(h)
        if k == 0:
            return AggTrades.empty(self.symbol)
        out = h.take(slice(0, k))
        self._held = h.take(slice(k, None))
        self.last_id = int(out.agg_id[-1])
        self.last_time = int(out.time[-1])
        return out

    def push(self, trades: AggTrades) -> AggTrades:
        """:meth:`add`, :meth:`start` and :meth:`release` in one call."""
        self.add(trades)
        self.start()
        return self.release()

    def hole(self) -> tuple[int, int] | None:
        """(from_id, to_id) inclusive of the ids missing before the first held trade, or None."""
        if self.last_id is None or not len(self._held):
            return None
        first = int(self._held.agg_id[0])
        return (self.last_id + 1, first - 1) if first > self.last_id + 1 else None

    def skip_hole(self) -> tuple[int, int] | None:
        """Give up on the current hole: continue from the first held trade. Returns the skipped range."""
        h = self.hole()
        if h is not None:
            self.last_id = h[1]
        return h


@dataclass
class FillResult:
    """Outcome of :meth:`GapFiller.fill`: trades (id order, unique), whether complete, why not, requests made."""

    trades: AggTrades
    complete: bool
    reason: str
    requests: int


class RestError(Exception):
    """A REST call failed. ``status`` (HTTP, 0 for network errors), ``retry_after`` (s or None), ``fatal``."""

    def __init__(self, msg: str, status: int = 0, retry_after: float | None = None):
        super().__init__(msg)
        self.status = status
        self.retry_after = retry_after

    @property
    def fatal(self) -> bool:
        """True when retrying cannot help soon: 451 (restricted location), 403, 400-series except 408/429."""
        return self.status in (400, 401, 403, 404, 451) or (400 <= self.status < 500 and self.status not in (408, 418, 429))


class WeightLimiter:
    """Client-side request-weight budget per rolling minute (Binance: 2400 futures, 6000 spot).

    ``acquire(weight)`` waits until the call fits into ``safety * limit`` over the
    last ``window`` seconds; ``observe(used)`` adopts the server's
    ``X-MBX-USED-WEIGHT-1M`` figure when it is higher than ours.
    """

    def __init__(self, limit_1m: int, safety: float = 0.8, window: float = 60.0):
        self.budget = max(1, int(limit_1m * safety))
        self.window = window
        self._calls: collections.deque = collections.deque()
        self._server_used = 0
        self._server_at = 0.0

    def used(self) -> int:
        """Weight used over the last ``window`` seconds: ours or the server's last figure, the higher."""
        now = time.monotonic()
        while self._calls and now - self._calls[0][0] > self.window:
            self._calls.popleft()
        ours = sum(w for _, w in self._calls)
        theirs = self._server_used if now - self._server_at < self.window else 0
        return max(ours, theirs)

    def delay_for(self, weight: int) -> float:
        """Seconds to wait before a call of ``weight`` fits (0 if it fits now)."""
        if self.used() + weight <= self.budget:
            return 0.0
        if self._calls:
            return max(0.01, self.window - (time.monotonic() - self._calls[0][0]))
        return max(0.01, self.window - (time.monotonic() - self._server_at))

    async def acquire(self, weight: int, max_wait: float | None = None) -> bool:
        """Wait until ``weight`` fits, then book it. False if that would take longer than ``max_wait``."""
        while True:
            d = self.delay_for(weight)
            if d <= 0:
                self._calls.append((time.monotonic(), weight))
                return True
            if max_wait is not None and d > max_wait:
                return False
            await asyncio.sleep(d)
            if max_wait is not None:
                max_wait -= d

    def observe(self, used: int | None) -> None:
        """Adopt the server's ``X-MBX-USED-WEIGHT-1M`` figure (None: the header was missing)."""
        if used is not None:
            self._server_used, self._server_at = int(used), time.monotonic()


def _retry_after(resp_headers) -> float | None:
    v = resp_headers.get("Retry-After")
    if v is None:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        return None


class GapFiller(param.Parameterized):
    """Fetch missing aggTrades from Binance's REST endpoint (``fromId`` pages of up to 1000).

    Use ``await filler.fill(symbol, from_id, to_id, deadline_s)`` inside a running
    event loop; it never raises for HTTP or network failures (they end up in
    :class:`FillResult`).  Call :meth:`close` when done (closes its own session).
    """

    market = param.Selector(default="usdm", objects=["usdm", "coinm", "spot"], doc="Binance market.")
    rest_base = param.String(default=None, allow_None=True,
                             doc="REST origin override, e.g. http://127.0.0.1:PORT (default: Binance's).")
    limit = param.Integer(default=1000, bounds=(1, 1000), doc="Trades per REST page (Binance maximum 1000).")
    request_timeout = param.Number(default=3.0, bounds=(0.05, 60), doc="Timeout of one REST request (s).")
    retry_initial = param.Number(default=0.2, bounds=(0.001, 10), doc="First retry delay after a network/5xx error (s).")
    weight_safety = param.Number(default=0.8, bounds=(0.1, 1.0), doc="Share of the per-minute weight limit we use.")

    def __init__(self, session: aiohttp.ClientSession | None = None, **params):
        super().__init__(**params)
        m = get_market(self.market)
        self.url = rest_url(m, self.rest_base)
        self.weight = m.agg_trades_weight
        self.limiter = WeightLimiter(m.weight_limit_1m, self.weight_safety)
        self._session = session
        self._own_session = session is None
        self.stats = collections.Counter()

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        """Close the HTTP session if this object created it."""
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def fetch(self, symbol: str, from_id: int, limit: int | None = None) -> tuple[AggTrades, int]:
        """One REST page: aggTrades of ``symbol`` with id >= ``from_id``; returns (trades, rows in the answer).

        Raises
        ------
        RestError
            Non-200 answer (with ``status`` and ``retry_after``), network error or timeout, bad body.
        """
        s = await self._get_session()
        params = {"symbol": symbol.upper(), "fromId": str(int(from_id)), "limit": str(limit or self.limit)}
        self.stats["requests"] += 1
        try:
            async with s.get(self.url, params=params,
                             timeout=aiohttp.ClientTimeout(total=self.request_timeout)) as r:
                body = await r.read()
                used = r.headers.get("X-MBX-USED-WEIGHT-1M")
                self.limiter.observe(int(used) if used and used.isdigit() else None)
                if r.status != 200:
                    self.stats[f"http_{r.status}"] += 1
                    raise RestError(f"HTTP {r.status} from {self.url}: {body[:200]!r}", r.status,
                                    _retry_after(r.headers))
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self.stats["network_errors"] += 1
            raise RestError(f"{type(e).__name__} on {self.url}: {e}", 0) from e
        try:
            trades = decode_rest_agg_trades(body, symbol)
        except ValueError as e:
            self.stats["bad_bodies"] += 1
            raise RestError(str(e), 200) from e
        return trades, len(trades)

    async def fill(self, symbol: str, from_id: int, to_id: int | None = None, deadline_s: float = 5.0) -> FillResult:
        """Fetch ids ``from_id .. to_id`` (inclusive; ``to_id=None``: up to the newest trade) within ``deadline_s``.

        Never raises for HTTP or network failures: a fatal status (451, 403, ...),
        the deadline, the weight budget or ids REST does not have end the fill
        early, with ``reason`` saying which.

        Returns
        -------
        FillResult
            ``trades`` sorted by id, unique, within the range; ``complete`` true
            when every id of a bounded range arrived, or (unbounded) when REST
            answered a short page (caught up).
        """
        run = _FillRun(self, symbol, int(from_id), to_id, time.monotonic() + deadline_s)
        while await run.step():
            pass
        got = AggTrades.concat(run.parts, symbol.upper())
        if len(got) > 1 and not bool(np.all(np.diff(got.agg_id) > 0)):
            order = np.argsort(got.agg_id, kind="stable")
            got = got.take(order)
            got = got.take(np.r_[True, np.diff(got.agg_id) != 0])
        complete, reason = run.complete, run.reason
        if complete and to_id is not None and len(got) != to_id - from_id + 1:
            complete, reason = False, "ids missing on REST"
        self.stats["trades_fetched"] += len(got)
        return FillResult(got, complete, reason, run.requests)


class _FillRun:
    """One :meth:`GapFiller.fill`: the id cursor, the pages so far, the requests made and the outcome.

    :meth:`step` makes at most one REST request (after the weight budget allows it)
    and returns False once the fill is over, with ``complete`` and ``reason`` set.
    ``end`` is the deadline in ``time.monotonic()`` seconds.
    """

    def __init__(self, filler: GapFiller, symbol: str, cur: int, to_id: int | None, end: float):
        self.filler, self.symbol, self.cur, self.to_id, self.end = filler, symbol, cur, to_id, end
        self.parts: list[AggTrades] = []
        self.requests = 0
        self.attempt = 0  # failures in a row (retry backoff)
        self.complete = False
        self.reason = "timeout"

    def _done(self, reason: str, complete: bool = False) -> bool:
        self.reason, self.complete = reason, complete
        return False

    async def step(self) -> bool:
        """One page; True to go on, False when done."""
        f, to_id = self.filler, self.to_id
        if to_id is not None and self.cur > to_id:
            return self._done("filled", complete=True)
        left = self.end - time.monotonic()
        if left <= 0:
            return self._done("timeout")
        if not await f.limiter.acquire(f.weight, max_wait=left):
            return self._done("weight limit")
        want = f.limit if to_id is None else max(1, min(f.limit, to_id - self.cur + 1))
        try:
            self.requests += 1
            page, n = await asyncio.wait_for(f.fetch(self.symbol, self.cur, want),
                                             max(0.01, self.end - time.monotonic()))
        except TimeoutError:
            return self._done("timeout")
        except RestError as e:
            return await self._retry(e)
        self.attempt = 0
        return await self._take(page, n, want)

    async def _retry(self, e: RestError) -> bool:
        """After a failed request: give up (fatal status, or the wait passes the deadline) or sleep and go on."""
        f = self.filler
        if e.fatal:
            log.warning("gap fill %s %d..%s: %s (giving up)", self.symbol, self.cur, self.to_id, e)
            return self._done(f"http {e.status}")
        self.attempt += 1
        wait = e.retry_after if e.retry_after is not None else f.retry_initial * 2 ** (self.attempt - 1)
        wait *= 1.0 if e.retry_after is not None else random.uniform(0.5, 1.0)
        self.reason = f"http {e.status}" if e.status else "network error"
        if wait >= self.end - time.monotonic():
            log.warning("gap fill %s %d..%s: %s; retry in %.1f s exceeds the deadline", self.symbol, self.cur,
                        self.to_id, e, wait)
            return False
        await asyncio.sleep(wait)
        return True

    async def _take(self, page: AggTrades, n: int, want: int) -> bool:
        """Keep the page's ids in range and advance the cursor; decide whether to go on."""
        ids = page.agg_id
        sel = ids >= self.cur
        if self.to_id is not None:
            sel &= ids <= self.to_id
        page = page.take(sel)
        if len(page):
            self.parts.append(page)
            self.cur = int(page.agg_id.max()) + 1
        if self.to_id is None and n < want:
            return self._done("caught up", complete=True)
        if not len(page):
            if n == 0:  # REST has nothing at from_id yet: try again shortly
                await asyncio.sleep(min(0.1, max(0.0, self.end - time.monotonic())))
                return True
            return self._done("ids missing on REST")
        return True
