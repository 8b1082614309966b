"""Attach to a running flowlens server's Redis and pull live data into DataFrames.

:class:`LiveData` reads the layout written by the ingest service
(:mod:`store.redis_store`: the ``trades`` stream of packed batches, the
``candles`` hash, the ``meta`` status hash) and computes profiles with
:mod:`compute` on the pulled trades, so a notebook gets the numbers the page
shows for the same range and settings. It never writes.

It works from plain scripts and from Jupyter alike: the Redis client lives on a
private event loop in a background thread, the blocking methods (``candles``,
``trades``, ``profile``, ...) wait for it, and the ``a``-prefixed coroutines
(``acandles``, ``atrades``, ``aprofile``, ...) can be awaited from any other loop.

Example::

    live = LiveData("redis://127.0.0.1:6379/0")
    live.symbols()                                  # ['BTCUSDT']
    live.candles("BTCUSDT").tail()                  # 1-minute candles
    vp = live.profile("BTCUSDT", "volume", since=-3_600_000)   # last hour
    live.close()
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pandas as pd

from compute import grid
from compute.frames import empty_frame, frame_from_batches, to_ms
from compute.kinds import KINDS, kind
from store.redis_store import RedisStore, connect, mask_url

__all__ = ["LiveData", "ROW_KINDS"]

#: Kinds answered by :meth:`LiveData.profile`: those of the registry on a row grid (all but the heat-map).
ROW_KINDS = tuple(name for name, k in KINDS.items() if k.rows)


class LiveData:
    """Read-only access to a flowlens Redis from a notebook.

    Parameters
    ----------
    url : str
        Redis URL of the server (``redis://``, ``rediss://``); ``serve.py`` prints it
        (``flowlens: embedded Valkey at redis://...``) when it runs its own.
    timeout_s : float
        Longest wait of a blocking call (s).
    market : str
        Binance market of the symbols to read (``usdm``, ``coinm``, ``spot``; the
        server's ``--market``): the same symbol of two markets has separate keys.

    Raises
    ------
    redis.exceptions.ConnectionError
        From the first call when Redis cannot be reached.
    """

    def __init__(self, url: str, timeout_s: float = 30.0, market: str = "usdm"):
        self.url = url
        self.market = market
        self.timeout_s = float(timeout_s)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flowlens-livedata", daemon=True)
        self._thread.start()
        self._store: RedisStore | None = None

    # -- plumbing -------------------------------------------------------------------------
    def _submit(self, coro):
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("LiveData is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _wait(self, coro):
        return self._submit(coro).result(self.timeout_s)

    async def _on_loop(self, coro):
        """Await ``coro`` (built for the private loop) from any other event loop."""
        return await asyncio.wrap_future(self._submit(coro))

    async def _s(self) -> RedisStore:
        if self._store is None:
            self._store = RedisStore(connect(self.url), market=self.market)
        return self._store

    def __repr__(self) -> str:
        return f"LiveData({mask_url(self.url)!r}, market={self.market!r})"

    def close(self) -> None:
        """Close the Redis connection and stop the background loop (idempotent)."""
        if self._loop.is_closed():
            return

        async def _close():
            if self._store is not None:
                await self._store.r.aclose()

        try:
            self._wait(_close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def __enter__(self) -> LiveData:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- raw reads (run on the private loop) ----------------------------------------------
    async def _symbols(self) -> list[str]:
        return await (await self._s()).symbols()

    async def _meta(self, symbol: str) -> dict:
        return await (await self._s()).meta(symbol)

    async def _candles(self, symbol: str, interval_ms: int, since) -> pd.DataFrame:
        s = await self._s()
        since_ms = _since(since, None)
        if since_ms is not None and since_ms < 0:
            df = await s.candles(symbol, interval_ms)
            last = int(df["time"].iloc[-1]) + interval_ms if len(df) else 0
            since_ms = last + since_ms
            return df[df["time"] >= since_ms].reset_index(drop=True)
        return await s.candles(symbol, interval_ms, since_ms)

    async def _trades(self, symbol: str, since, until) -> pd.DataFrame:
        s = await self._s()
        sym = symbol.upper()
        since_ms, until_ms = _since(since, None), to_ms(until, end=True)
        rel = since_ms is not None and since_ms < 0
        batch, _ = await s.read_range(sym, None if (since_ms is None or rel) else since_ms, None)
        if not len(batch):
            return empty_frame([sym])
        if rel:
            since_ms = int(batch.time.max()) + 1 + since_ms
        t = batch.time
        keep = np.ones(len(t), dtype=bool)
        if since_ms is not None:
            keep &= t >= since_ms
        if until_ms is not None:
            keep &= t < until_ms
        if not keep.all():
            batch = batch.take(keep)
        return frame_from_batches([batch], [sym])

    # -- public API: coroutines -------------------------------------------------------------
    async def asymbols(self) -> list[str]:
        """Symbols the server's ingest service has written."""
        return await self._on_loop(self._symbols())

    async def ameta(self, symbol: str) -> dict:
        """The ingest status hash (source, speed, tick, last trade time/id, trades/s, ...) as ``str -> str``."""
        return await self._on_loop(self._meta(symbol))

    async def acandles(self, symbol: str, interval_ms: int = 60_000, since=None) -> pd.DataFrame:
        """The kept candles (see :meth:`candles`)."""
        return await self._on_loop(self._candles(symbol, interval_ms, since))

    async def atrades(self, symbol: str, since=None, until=None) -> pd.DataFrame:
        """The kept trades (see :meth:`trades`)."""
        return await self._on_loop(self._trades(symbol, since, until))

    async def aprofile(self, symbol: str, kind: str = "volume", since=None, until=None, *, tick: float | None = None,
                       row_size: float | None = None, target_rows: int = 120, **kw):
        """A profile of the live trades (see :meth:`profile`)."""
        return await self._on_loop(self._computed(symbol, kind, since, until, tick, row_size, target_rows, kw))

    async def afootprint(self, symbol: str, since=None, until=None, *, tick: float | None = None,
                         row_size: float | None = None, target_rows: int = 120, **kw):
        """Footprint candles of the live trades (see :meth:`footprint`)."""
        return await self._on_loop(self._computed(symbol, "footprint", since, until, tick, row_size, target_rows, kw))

    # -- public API: blocking -------------------------------------------------------------------
    def symbols(self) -> list[str]:
        """Symbols the server's ingest service has written (sorted)."""
        return self._wait(self._symbols())

    def meta(self, symbol: str) -> dict:
        """The ingest status hash of ``symbol`` (``tick``, ``source``, ``last_time``, ... as strings)."""
        return self._wait(self._meta(symbol))

    def candles(self, symbol: str, interval_ms: int = 60_000, since=None) -> pd.DataFrame:
        """The candles the server keeps for ``symbol``, sorted by time.

        Columns of :data:`store.redis_store.CANDLE_DTYPE`: ``time`` (open, UTC ms, int64),
        ``open, high, low, close`` (quote currency), ``volume, buy_volume, sell_volume``
        (base asset), ``trades`` (int64). ``since``: UTC ms / datetime / ISO string, or a
        negative number of ms relative to the end of the newest candle.
        """
        return self._wait(self._candles(symbol, interval_ms, since))

    def trades(self, symbol: str, since=None, until=None) -> pd.DataFrame:
        """The trades the server keeps for ``symbol`` with ``since <= time < until``.

        Same columns and dtypes as :func:`feeds.history.load_history` (``time`` int64 UTC ms,
        ``price``, ``qty`` float64, ``is_buyer_maker`` bool, ``trade_id`` int64, ``symbol``
        category), in the stream's (exchange time) order. ``since`` may be negative: ms
        before the newest trade (``-3_600_000`` = the last hour).
        """
        return self._wait(self._trades(symbol, since, until))

    def profile(self, symbol: str, kind: str = "volume", since=None, until=None, *, tick: float | None = None,
                row_size: float | None = None, target_rows: int = 120, **kw):
        """A profile of the live trades of ``symbol`` in ``[since, until)``, computed with :mod:`compute`.

        ``kind``: a kind of :mod:`compute.kinds` on a row grid (:data:`ROW_KINDS`: ``volume``,
        ``recency``, ``tpo``, ``split``, ``developing``, ``footprint``). ``tick`` defaults to the
        server's (``meta["tick"]``); ``row_size`` to :func:`compute.grid.auto_row_size` of
        the trades' price range with ``target_rows`` rows. Other keywords go to the
        compute function (``value_area``, ``half_life_s``, ``block_ms``, ``percentiles``...).

        Raises
        ------
        ValueError
            Unknown ``kind``, or no trades in the range (``"no trades in range ..."``).
        """
        return self._wait(self._computed(symbol, kind, since, until, tick, row_size, target_rows, kw))

    def footprint(self, symbol: str, since=None, until=None, *, tick: float | None = None,
                  row_size: float | None = None, target_rows: int = 120, **kw):
        """Footprint candles (:func:`compute.footprint.footprint`) of the live trades; keywords as :meth:`profile`."""
        return self._wait(self._computed(symbol, "footprint", since, until, tick, row_size, target_rows, kw))

    async def _computed(self, symbol, kind_name, since, until, tick, row_size, target_rows, kw):
        spec = kind(kind_name)
        if not spec.rows:
            raise ValueError(f"kind must be one of {', '.join(ROW_KINDS)}, got {kind_name!r}")
        df = await self._trades(symbol, since, until)
        if not len(df):
            raise ValueError(f"no trades in range: nothing ingested for {symbol.upper()} in [{since}, {until})")
        if tick is None:
            tick = _tick(await self._meta(symbol), df)
        kw.setdefault("start", None)
        kw.setdefault("end", None)
        return spec.compute(df, tick, kw.pop("start"), kw.pop("end"), row_size=_row_size(df, tick, row_size,
                                                                                            target_rows), **kw)


def _since(value, default):
    """``since`` as UTC ms (negative numbers kept: relative to the newest data)."""
    if value is None:
        return default
    return to_ms(value)


def _tick(meta: dict, df: pd.DataFrame) -> float:
    t = float(meta.get("tick", 0) or 0)
    return t if t > 0 else grid.infer_tick(df["price"].to_numpy())


def _row_size(df: pd.DataFrame, tick: float, row_size: float | None, target_rows: int) -> float:
    if row_size is not None:
        return float(row_size)
    if not len(df):
        return tick
    return grid.auto_row_size(float(df["price"].min()), float(df["price"].max()), tick, target_rows)
