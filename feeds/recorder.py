"""Recorder: Binance aggTrade + forceOrder streams to raw frame files and normalized Parquet, losing nothing.

``python -m feeds record --market usdm --symbols BTCUSDT,ETHUSDT --out DIR [--duration S]
[--ws-base URL] [--rest-base URL]``

Binance publishes no liquidation history any more (reference d6, b11), so this
recording is the only history a user will have. Everything it writes stays
readable after Ctrl-C, SIGTERM, SIGKILL or a crash:

* every ``flush_interval`` seconds (or ``flush_rows`` buffered rows) each pending
  piece is written as **its own complete file or gzip member**: a Parquet part is
  written to a hidden temporary name and renamed into place (a part exists whole or
  not at all); raw frames are appended as one gzip member per flush (a crash can
  only cut the member being written, and :func:`read_raw_frames` reads every
  complete member before it);
* SIGINT/SIGTERM stop the client, flush what it still holds, compact the parts and
  fsync; the process exits 0.

Output layout under ``DIR`` (times UTC)::

    raw/<market>/<YYYY-MM-DD>/<market>-<YYYY-MM-DD>T<HH>.jsonl.gz   one line per frame: "<receive ms> <frame text>",
                                                                  rotated hourly by receive time
    trades/<market>/<SYMBOL>/<YYYY-MM-DD>/part-<flush ms>-<pid>-<seq>.parquet   (date of the trade time)
    trades/<market>/<SYMBOL>/<YYYY-MM-DD>/rec-<first flush ms>-<last flush ms>.parquet  (compacted parts)
    liquidations/<market>/<SYMBOL>/<YYYY-MM-DD>/...                 same naming
    gaps/<market>.jsonl                                             one JSON object per gap (filled or not)
    status/<market>.json                                            counters, rewritten at each flush

Trades Parquet columns (:data:`TRADES_SCHEMA`): ``symbol`` string, ``agg_trade_id``
int64 (``a``), ``price`` float64 (quote currency), ``qty`` float64 (base asset;
contracts on COIN-M), ``first_trade_id``/``last_trade_id`` int64 (``f``/``l``), ``time``
int64 (trade time ``T``, UTC ms), ``is_buyer_maker`` bool (``m``; true = taker sell).
Liquidations (:data:`LIQUIDATIONS_SCHEMA`): ``symbol, side`` (``o.S``; SELL = a long was
liquidated), ``order_type`` (``o.o``), ``price`` (``o.p``, order price), ``avg_price``
(``o.ap``), ``orig_qty`` (``o.q``), ``filled_qty`` (``o.z``), ``status`` (``o.X``),
``time`` (``o.T``, UTC ms) (reference b11, d4).

The WebSocket side is :class:`feeds.binance_ws.BinanceStreamClient` (reconnects,
24 h rotation with overlap, watchdog, REST gap fill, exactly-once id order); the
Parquet trades are what it releases, so trades fetched from REST to fill a gap are
in the Parquet files but not in the raw frame files (which hold exactly the frames
received, including duplicates, garbage and acknowledgements).

The file layer (schemas, atomic writes, compaction, reading back) is in
:mod:`feeds.recorder_files`; every public name is importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import param
import pyarrow as pa

from .recorder_files import (
    LIQUIDATION_COLUMNS,
    LIQUIDATIONS_SCHEMA,
    TRADE_COLUMNS,
    TRADES_SCHEMA,
    compact_dir,
    day_name,
    hour_name,
    read_liquidations,
    read_raw_frames,
    read_trades,
    trades_table,
    write_parquet_atomic,
)

log = logging.getLogger(__name__)

__all__ = [
    "TRADES_SCHEMA", "LIQUIDATIONS_SCHEMA", "TRADE_COLUMNS", "LIQUIDATION_COLUMNS", "RecordingSink", "Recorder",
    "trades_table", "write_parquet_atomic", "read_trades", "read_liquidations", "read_raw_frames",
    "record_main", "compact_dir",
]

_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000


# ----------------------------------------------------------------------------- the sink
class RecordingSink:
    """Buffers frames, trades, liquidations and gaps and writes them crash-safely (see module docstring).

    Not thread-safe; call from one thread (the recorder's event loop).

    Parameters
    ----------
    out : path
        Output folder.
    market : str
        ``usdm``, ``coinm`` or ``spot`` (a folder level).
    fsync : bool
        fsync each part file and raw member (slower; protects against power loss,
        not needed for process crashes).
    """

    def __init__(self, out, market: str, fsync: bool = False):
        self.out = Path(out)
        self.market = market
        self.fsync = fsync
        self._raw: list[tuple[int, str]] = []
        self._trades: dict[str, list] = {}
        self._liq: list[pd.DataFrame] = []
        self._gaps: list[dict] = []
        self._seq = 0
        self._last_compact_hour: int | None = None
        self.symbols_seen: set[str] = set()
        self.written = {"raw_frames": 0, "trades": 0, "liquidations": 0, "gaps": 0, "flushes": 0, "parts": 0}
        self.last_ids: dict[str, int] = {}
        self.out.mkdir(parents=True, exist_ok=True)

    # -- intake -------------------------------------------------------------------
    def add_raw(self, recv_ms: int, frame) -> None:
        """One WebSocket frame as received (text; binary frames are written as ``b64:`` + base64)."""
        if isinstance(frame, (bytes, bytearray, memoryview)):
            import base64

            text = "b64:" + base64.b64encode(bytes(frame)).decode()
        else:
            text = frame
            if "\n" in text or "\r" in text:  # keep one frame per line (JSON never needs raw newlines)
                text = text.replace("\r", " ").replace("\n", " ")
        self._raw.append((recv_ms, text))

    def add_trades(self, symbol: str, trades) -> None:
        """Trades of one symbol: a :class:`feeds.decode.AggTrades`, a DataFrame with :data:`TRADE_COLUMNS`, or a table."""
        if isinstance(trades, pa.Table):
            t = trades
        elif isinstance(trades, pd.DataFrame):
            t = trades_table(symbol, trades["agg_trade_id"], trades["price"], trades["qty"], trades["first_trade_id"],
                             trades["last_trade_id"], trades["time"], trades["is_buyer_maker"])
        else:  # AggTrades-like
            t = trades_table(symbol, trades.agg_id, trades.price, trades.qty, trades.first_id, trades.last_id,
                             trades.time, trades.is_buyer_maker)
        if t.num_rows:
            self._trades.setdefault(symbol.upper(), []).append(t)

    def add_liquidations(self, df: pd.DataFrame) -> None:
        """Liquidations with at least :data:`LIQUIDATION_COLUMNS` (extra columns are dropped)."""
        if len(df):
            self._liq.append(df[list(LIQUIDATION_COLUMNS)].copy())

    def add_gap(self, gap: dict) -> None:
        """One gap record (:meth:`feeds.gapfill.Gap.to_dict`), appended to ``gaps/<market>.jsonl`` at the next flush."""
        self._gaps.append(gap)

    @property
    def pending_rows(self) -> int:
        """Raw frames, trades and liquidations buffered since the last flush."""
        return (len(self._raw) + sum(t.num_rows for ts in self._trades.values() for t in ts)
                + sum(len(d) for d in self._liq))

    # -- output -------------------------------------------------------------------
    def _part_name(self, now_ms: int) -> str:
        self._seq += 1
        return f"part-{now_ms:013d}-{os.getpid()}-{self._seq:06d}.parquet"

    def flush(self, status: dict | None = None) -> int:
        """Write everything buffered; returns the number of rows/frames written.

        Raw frames, trades, liquidations and gaps are written in that order, then
        ``status`` (if given) and, once per UTC hour, the compaction of the parts
        of finished hours.  Raises OSError when the disk refuses a write.
        """
        now_ms = int(time.time() * 1000)
        n = self._flush_raw() + self._flush_trades(now_ms) + self._flush_liquidations(now_ms)
        self._flush_gaps()
        self.written["flushes"] += 1
        if status is not None:
            self._write_status(status, now_ms)
        self._compact_finished_hours(now_ms)
        return n

    def _flush_raw(self) -> int:
        """Raw frames: one gzip member per (hour file, flush); returns the frames written."""
        if not self._raw:
            return 0
        by_hour: dict[str, list[str]] = {}
        for ms, text in self._raw:
            by_hour.setdefault(hour_name(ms), []).append(f"{ms} {text}\n")
        for hour, lines in by_hour.items():
            d = self.out / "raw" / self.market / hour[:10]
            d.mkdir(parents=True, exist_ok=True)
            member = gzip.compress("".join(lines).encode(), compresslevel=6, mtime=0)
            with open(d / f"{self.market}-{hour}.jsonl.gz", "ab") as f:
                f.write(member)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
        n = len(self._raw)
        self.written["raw_frames"] += n
        self._raw = []
        return n

    def _flush_trades(self, now_ms: int) -> int:
        """Trades: one part per symbol and trade day; returns the trades written."""
        n = 0
        for sym, tables in self._trades.items():
            t = pa.concat_tables(tables)
            times = t.column("time").to_numpy()
            days = times // _DAY_MS
            for dday in np.unique(days):
                sel = t.filter(pa.array(days == dday)) if len(np.unique(days)) > 1 else t
                day = day_name(int(dday) * _DAY_MS)
                write_parquet_atomic(sel, self.out / "trades" / self.market / sym / day / self._part_name(now_ms),
                                     fsync=self.fsync)
                self.written["parts"] += 1
            ids = t.column("agg_trade_id").to_numpy()
            self.last_ids[sym] = max(int(ids.max()), self.last_ids.get(sym, -1))
            self.symbols_seen.add(sym)
            self.written["trades"] += t.num_rows
            n += t.num_rows
        self._trades = {}
        return n

    def _flush_liquidations(self, now_ms: int) -> int:
        """Liquidations: one part per symbol and day (of the trade time); returns the rows written."""
        if not self._liq:
            return 0
        df = pd.concat(self._liq, ignore_index=True)
        df["_day"] = df["time"].astype(np.int64) // _DAY_MS
        for (sym, dday), g in df.groupby(["symbol", "_day"], sort=True):
            tbl = pa.Table.from_pandas(g.drop(columns="_day"), schema=LIQUIDATIONS_SCHEMA, preserve_index=False)
            write_parquet_atomic(tbl, self.out / "liquidations" / self.market / str(sym).upper()
                                 / day_name(int(dday) * _DAY_MS) / self._part_name(now_ms), fsync=self.fsync)
            self.written["parts"] += 1
        self.written["liquidations"] += len(df)
        self._liq = []
        return len(df)

    def _flush_gaps(self) -> None:
        """Gap records appended to ``gaps/<market>.jsonl``, one JSON object a line."""
        if not self._gaps:
            return
        gd = self.out / "gaps"
        gd.mkdir(parents=True, exist_ok=True)
        with open(gd / f"{self.market}.jsonl", "ab") as f:
            f.write(b"".join(orjson.dumps(g, default=str) + b"\n" for g in self._gaps))
            f.flush()
        self.written["gaps"] += len(self._gaps)
        self._gaps = []

    def _compact_finished_hours(self, now_ms: int) -> None:
        """Compact the parts of finished hours, once per UTC hour (not at the first flush)."""
        hour = now_ms // _HOUR_MS
        if self._last_compact_hour is None:
            self._last_compact_hour = hour
        elif hour != self._last_compact_hour:
            self._last_compact_hour = hour
            self.compact(before_ms=hour * _HOUR_MS)

    def _write_status(self, status: dict, now_ms: int) -> None:
        d = self.out / "status"
        d.mkdir(parents=True, exist_ok=True)
        doc = {"market": self.market, "updated_ms": now_ms, "written": self.written, "last_ids": self.last_ids,
               **status}
        tmp = d / f".{self.market}.json.tmp"
        tmp.write_bytes(orjson.dumps(doc, default=str, option=orjson.OPT_INDENT_2))
        os.replace(tmp, d / f"{self.market}.json")

    def compact(self, before_ms: int | None = None, symbols: Iterable[str] | None = None) -> int:
        """Compact part files of this market (all symbols seen, or ``symbols``); returns files written."""
        syms = {s.upper() for s in symbols} if symbols is not None else None
        n = 0
        for kind in ("trades", "liquidations"):
            base = self.out / kind / self.market
            if not base.exists():
                continue
            for sd in base.iterdir():
                if not sd.is_dir() or (syms is not None and sd.name not in syms):
                    continue
                for dd in sd.iterdir():
                    if dd.is_dir() and compact_dir(dd, before_ms) is not None:
                        n += 1
        return n

    def close(self, status: dict | None = None, compact: bool = True) -> None:
        """Final flush, compaction of this run's symbols, fsync of the raw files."""
        self.flush(status)
        if compact:
            self.compact(symbols=self.symbols_seen or None)
        rd = self.out / "raw" / self.market
        if rd.exists():
            for p in rd.rglob("*.jsonl.gz"):
                with contextlib.suppress(OSError), open(p, "rb") as f:
                    os.fsync(f.fileno())


# ----------------------------------------------------------------------------- the recorder
class Recorder(param.Parameterized):
    """Record ``symbols`` of ``market`` into ``out`` until stopped (see module docstring).

    Use ``await Recorder(...).run()``; it returns a summary dict. ``stop()`` (or
    SIGINT/SIGTERM when ``handle_signals``) ends it cleanly.
    """

    market = param.Selector(default="usdm", objects=["usdm", "coinm", "spot"], doc="Binance market.")
    symbols = param.List(default=["BTCUSDT"], item_type=str, doc="Symbols to record (any case).")
    out = param.String(default="recordings", doc="Output folder.")
    duration = param.Number(default=None, allow_None=True, bounds=(0, None), doc="Stop after this many seconds.")
    ws_base = param.String(default=None, allow_None=True, doc="WebSocket origin override (testnet, proxy, local).")
    rest_base = param.String(default=None, allow_None=True, doc="REST origin override.")
    liquidations = param.Boolean(default=True, doc="Also record <symbol>@forceOrder (futures).")
    flush_interval = param.Number(default=2.0, bounds=(0.01, 3600), doc="Seconds between flushes to disk.")
    flush_rows = param.Integer(default=50_000, bounds=(1, None), doc="Flush early when this many rows are buffered.")
    fsync = param.Boolean(default=False, doc="fsync every flush (power-loss safety; process crashes need not).")
    client_params = param.Dict(default={}, doc="Extra BinanceStreamClient parameters (heartbeat, ...).")
    handle_signals = param.Boolean(default=False, doc="Install SIGINT/SIGTERM handlers that stop cleanly.")

    def __init__(self, **params):
        super().__init__(**params)
        self._stop = asyncio.Event()
        self.sink = RecordingSink(self.out, self.market, fsync=self.fsync)
        self.client = None

    def stop(self) -> None:
        """Ask :meth:`run` to finish (flush, compact, close)."""
        self._stop.set()

    def _status(self) -> dict:
        st = {}
        if self.client is not None:
            with contextlib.suppress(Exception):
                st["streams"] = {k: v.to_dict() for k, v in self.client.status().items()}
                st["frames"] = dict(self.client.frame_counts())
        return st

    async def run(self) -> dict:
        """Record until :meth:`stop`, a signal or ``duration``; return a summary.

        The summary dict holds ``out``, ``market``, ``symbols``, the sink's
        ``written`` counters, ``last_ids`` (SYMBOL -> last aggregate id written) and
        ``seconds`` (run time).  Network trouble never raises out of it (the client
        reconnects); a disk error while writing does.
        """
        syms = [s.upper() for s in self.symbols]
        client = self.client = self._make_client(syms)
        loop = asyncio.get_running_loop()
        installed = self._install_signal_handlers(loop)
        events = client.events()
        t0 = time.monotonic()
        log.info("recording %s %s into %s", self.market, ",".join(syms), self.out)
        consumer = asyncio.create_task(self._consume(events), name="recorder-consume")
        try:
            await client.start()
            await self._flush_until_stopped(t0)
        finally:
            await self._shutdown(client, consumer, events)
            for sig in installed:
                loop.remove_signal_handler(sig)
        summary = {"out": str(self.out), "market": self.market, "symbols": syms, **self.sink.written,
                   "last_ids": dict(self.sink.last_ids), "seconds": round(time.monotonic() - t0, 3)}
        log.info("recorder stopped: %s", summary)
        return summary

    def _make_client(self, syms: list[str]):
        """The :class:`~feeds.binance_ws.BinanceStreamClient`, handing every raw frame to the sink first."""
        from .binance_ws import BinanceStreamClient  # the project's one WebSocket client

        add_raw = self.sink.add_raw

        def on_frame(frame, _add=add_raw):  # every frame as received, before decoding
            _add(time.time_ns() // 1_000_000, frame)

        return BinanceStreamClient(market=self.market, symbols=syms, liquidations=self.liquidations,
                                   ws_base=self.ws_base, rest_base=self.rest_base, on_frame=on_frame,
                                   **self.client_params)

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> list:
        """SIGINT/SIGTERM -> :meth:`stop` when ``handle_signals``; returns the signals installed."""
        installed = []
        if self.handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._stop.set)
                    installed.append(sig)
        return installed

    async def _consume(self, events) -> None:
        """Hand every client event to the sink; flush early past ``flush_rows`` buffered rows."""
        async for ev in events:
            if ev.kind == "trades":
                self.sink.add_trades(ev.symbol, ev.trades)
            elif ev.kind == "liquidations":
                self.sink.add_liquidations(ev.liquidations)
            elif ev.kind == "gap":
                g = ev.gap.to_dict() if hasattr(ev.gap, "to_dict") else dict(vars(ev.gap))
                self.sink.add_gap(g)
            if self.sink.pending_rows >= self.flush_rows:
                self.sink.flush(self._status())

    async def _flush_until_stopped(self, t0: float) -> None:
        """Flush every ``flush_interval`` seconds until :meth:`stop` or ``duration`` after ``t0`` (monotonic s)."""
        while not self._stop.is_set():
            timeout = self.flush_interval
            if self.duration is not None:
                timeout = min(timeout, max(0.0, self.duration - (time.monotonic() - t0)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout)
            self.sink.flush(self._status())
            if self.duration is not None and time.monotonic() - t0 >= self.duration:
                break

    async def _shutdown(self, client, consumer: asyncio.Task, events) -> None:
        """Stop the client, let the consumer drain its last events, then close the sink (final flush, compaction)."""
        status = self._status()
        await client.stop()  # flushes its buffers into the events queue, then ends it
        await asyncio.wait([consumer], timeout=10)  # raises only our own cancellation
        consumer.cancel()  # still draining after 10 s: it stops here
        await asyncio.gather(consumer, return_exceptions=True)
        events.close()
        self.sink.close(status)


async def record_main(market: str, symbols: list[str], out, duration: float | None = None, ws_base: str | None = None,
                      rest_base: str | None = None, **params) -> dict:
    """Run a :class:`Recorder` with signal handling (the CLI's entry point)."""
    rec = Recorder(market=market, symbols=symbols, out=str(out), duration=duration, ws_base=ws_base,
                   rest_base=rest_base, handle_signals=True, **params)
    return await rec.run()
