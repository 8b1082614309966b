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
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import logging
import os
import signal
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import param
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

__all__ = [
    "TRADES_SCHEMA", "LIQUIDATIONS_SCHEMA", "TRADE_COLUMNS", "LIQUIDATION_COLUMNS", "RecordingSink", "Recorder",
    "trades_table", "write_parquet_atomic", "read_trades", "read_liquidations", "read_raw_frames",
    "record_main", "compact_dir",
]

TRADE_COLUMNS = ("symbol", "agg_trade_id", "price", "qty", "first_trade_id", "last_trade_id", "time",
                 "is_buyer_maker")
LIQUIDATION_COLUMNS = ("symbol", "side", "order_type", "price", "avg_price", "orig_qty", "filled_qty", "status",
                       "time")

_MS = {b"unit": b"UTC milliseconds since the epoch"}
#: Normalized trades (recorder and backfill write the same layout).
TRADES_SCHEMA = pa.schema([
    pa.field("symbol", pa.string()),
    pa.field("agg_trade_id", pa.int64()),
    pa.field("price", pa.float64()),
    pa.field("qty", pa.float64()),
    pa.field("first_trade_id", pa.int64()),
    pa.field("last_trade_id", pa.int64()),
    pa.field("time", pa.int64(), metadata=_MS),
    pa.field("is_buyer_maker", pa.bool_()),
])
#: Normalized liquidations (forceOrder snapshots).
LIQUIDATIONS_SCHEMA = pa.schema([
    pa.field("symbol", pa.string()),
    pa.field("side", pa.string()),
    pa.field("order_type", pa.string()),
    pa.field("price", pa.float64()),
    pa.field("avg_price", pa.float64()),
    pa.field("orig_qty", pa.float64()),
    pa.field("filled_qty", pa.float64()),
    pa.field("status", pa.string()),
    pa.field("time", pa.int64(), metadata=_MS),
])

_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000


def _day(ms: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(ms))).strftime("%Y-%m-%d")


def _hour(ms: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(ms))).strftime("%Y-%m-%dT%H")


def trades_table(symbol: str, agg_trade_id, price, qty, first_trade_id, last_trade_id, time_ms,
                 is_buyer_maker) -> pa.Table:
    """Build a :data:`TRADES_SCHEMA` table from columns of shape (N,) (ids/time int64, price/qty float64, bool)."""
    n = len(agg_trade_id)
    return pa.table({
        "symbol": pa.array([symbol.upper()] * n, pa.string()) if n else pa.array([], pa.string()),
        "agg_trade_id": np.asarray(agg_trade_id, np.int64),
        "price": np.asarray(price, np.float64),
        "qty": np.asarray(qty, np.float64),
        "first_trade_id": np.asarray(first_trade_id, np.int64),
        "last_trade_id": np.asarray(last_trade_id, np.int64),
        "time": np.asarray(time_ms, np.int64),
        "is_buyer_maker": np.asarray(is_buyer_maker, bool),
    }, schema=TRADES_SCHEMA)


def write_parquet_atomic(table: pa.Table, path: Path, fsync: bool = False) -> Path:
    """Write ``table`` to ``path`` so that ``path`` is either complete or absent.

    The data goes to a hidden ``.<name>.tmp`` next to it, then :func:`os.replace`.
    Readers globbing ``*.parquet`` never see the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    if fsync:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, path)
    return path


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------- reading back
def _files(out: Path, kind: str, market: str, symbols) -> list[Path]:
    base = Path(out) / kind / market
    if not base.exists():
        return []
    syms = None if symbols is None else {s.upper() for s in ([symbols] if isinstance(symbols, str) else symbols)}
    files = []
    for sd in sorted(base.iterdir()):
        if sd.is_dir() and (syms is None or sd.name in syms):
            files.extend(sorted(p for p in sd.rglob("*.parquet") if not p.name.startswith(".")))
    return files


def read_trades(out, market: str = "usdm", symbols=None) -> pd.DataFrame:
    """All recorded/backfilled trades under ``out`` as one DataFrame (:data:`TRADE_COLUMNS`).

    Sorted by symbol then ``agg_trade_id``; an id present in several files (a part and
    its compaction after a crash, a recorded hour and a backfilled day) appears once.
    """
    files = _files(out, "trades", market, symbols)
    if not files:
        return TRADES_SCHEMA.empty_table().to_pandas()
    t = pa.concat_tables([pq.read_table(f, schema=TRADES_SCHEMA) for f in files])
    df = t.to_pandas()
    df = df.drop_duplicates(["symbol", "agg_trade_id"]).sort_values(["symbol", "agg_trade_id"], kind="stable")
    return df.reset_index(drop=True)


def read_liquidations(out, market: str = "usdm", symbols=None) -> pd.DataFrame:
    """All recorded liquidations under ``out`` (:data:`LIQUIDATION_COLUMNS`), repeated rows dropped, by time."""
    files = _files(out, "liquidations", market, symbols)
    if not files:
        return LIQUIDATIONS_SCHEMA.empty_table().to_pandas()
    df = pa.concat_tables([pq.read_table(f, schema=LIQUIDATIONS_SCHEMA) for f in files]).to_pandas()
    return df.drop_duplicates().sort_values(["time", "symbol"], kind="stable").reset_index(drop=True)


def read_raw_frames(path) -> list[tuple[int, str]]:
    """Read a raw frame file: ``[(receive ms, frame text), ...]``.

    Reads every complete gzip member; a member cut by a crash at the end of the file
    is ignored (its frames were never reported as flushed).
    """
    data = Path(path).read_bytes()
    out: list[tuple[int, str]] = []
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(wbits=31)
        try:
            chunk = d.decompress(data[pos:])
        except zlib.error:
            break
        if not d.eof:
            break  # truncated last member
        for line in chunk.decode("utf-8", "replace").splitlines():
            ts, _, frame = line.partition(" ")
            if ts.isdigit():
                out.append((int(ts), frame))
        pos = len(data) - len(d.unused_data)
    return out


# ----------------------------------------------------------------------------- compaction
def compact_dir(day_dir: Path, before_ms: int | None = None, fsync: bool = True) -> Path | None:
    """Merge the ``part-*.parquet`` files of one symbol-day folder flushed before ``before_ms`` (all if None).

    Writes ``rec-<first flush ms>-<last flush ms>.parquet`` atomically, then deletes the
    parts (a crash in between leaves rows twice, which the readers drop); a single part
    is just renamed. Trades are
    de-duplicated by ``agg_trade_id`` and sorted; liquidations drop repeated rows.
    Returns the new file, or None when there was nothing to merge.
    """
    parts = []
    for p in sorted(Path(day_dir).glob("part-*.parquet")):
        try:
            ms = int(p.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if before_ms is None or ms < before_ms:
            parts.append((ms, p))
    if not parts:
        return None
    out = Path(day_dir) / f"rec-{parts[0][0]:013d}-{parts[-1][0]:013d}.parquet"
    if len(parts) == 1:  # nothing to merge: give it its final name
        os.replace(parts[0][1], out)
        return out
    tables = [pq.read_table(p) for _, p in parts]
    t = pa.concat_tables(tables, promote_options="default")
    df = t.to_pandas()
    if "agg_trade_id" in df:
        df = df.drop_duplicates("agg_trade_id").sort_values("agg_trade_id", kind="stable")
        schema = TRADES_SCHEMA
    else:
        df = df.drop_duplicates().sort_values("time", kind="stable")
        schema = LIQUIDATIONS_SCHEMA
    write_parquet_atomic(pa.Table.from_pandas(df, schema=schema, preserve_index=False), out, fsync=fsync)
    if fsync:
        _fsync_dir(Path(day_dir))
    for _, p in parts:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return out


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
        self._gaps.append(gap)

    @property
    def pending_rows(self) -> int:
        return (len(self._raw) + sum(t.num_rows for ts in self._trades.values() for t in ts)
                + sum(len(d) for d in self._liq))

    # -- output -------------------------------------------------------------------
    def _part_name(self, now_ms: int) -> str:
        self._seq += 1
        return f"part-{now_ms:013d}-{os.getpid()}-{self._seq:06d}.parquet"

    def flush(self, status: dict | None = None) -> int:
        """Write everything buffered; returns the number of rows/frames written."""
        now_ms = int(time.time() * 1000)
        n = 0
        # raw frames: one gzip member per (hour file, flush)
        if self._raw:
            by_hour: dict[str, list[str]] = {}
            for ms, text in self._raw:
                by_hour.setdefault(_hour(ms), []).append(f"{ms} {text}\n")
            for hour, lines in by_hour.items():
                d = self.out / "raw" / self.market / hour[:10]
                d.mkdir(parents=True, exist_ok=True)
                member = gzip.compress("".join(lines).encode(), compresslevel=6, mtime=0)
                with open(d / f"{self.market}-{hour}.jsonl.gz", "ab") as f:
                    f.write(member)
                    f.flush()
                    if self.fsync:
                        os.fsync(f.fileno())
            n += len(self._raw)
            self.written["raw_frames"] += len(self._raw)
            self._raw = []
        # trades per symbol and trade day
        for sym, tables in self._trades.items():
            t = pa.concat_tables(tables)
            times = t.column("time").to_numpy()
            days = times // _DAY_MS
            for dday in np.unique(days):
                sel = t.filter(pa.array(days == dday)) if len(np.unique(days)) > 1 else t
                day = _day(int(dday) * _DAY_MS)
                write_parquet_atomic(sel, self.out / "trades" / self.market / sym / day / self._part_name(now_ms),
                                     fsync=self.fsync)
                self.written["parts"] += 1
            ids = t.column("agg_trade_id").to_numpy()
            self.last_ids[sym] = max(int(ids.max()), self.last_ids.get(sym, -1))
            self.symbols_seen.add(sym)
            self.written["trades"] += t.num_rows
            n += t.num_rows
        self._trades = {}
        # liquidations per symbol and day
        if self._liq:
            df = pd.concat(self._liq, ignore_index=True)
            df["_day"] = df["time"].astype(np.int64) // _DAY_MS
            for (sym, dday), g in df.groupby(["symbol", "_day"], sort=True):
                tbl = pa.Table.from_pandas(g.drop(columns="_day"), schema=LIQUIDATIONS_SCHEMA, preserve_index=False)
                write_parquet_atomic(tbl, self.out / "liquidations" / self.market / str(sym).upper()
                                     / _day(int(dday) * _DAY_MS) / self._part_name(now_ms), fsync=self.fsync)
                self.written["parts"] += 1
            self.written["liquidations"] += len(df)
            n += len(df)
            self._liq = []
        if self._gaps:
            gd = self.out / "gaps"
            gd.mkdir(parents=True, exist_ok=True)
            with open(gd / f"{self.market}.jsonl", "ab") as f:
                f.write(b"".join(orjson.dumps(g, default=str) + b"\n" for g in self._gaps))
                f.flush()
            self.written["gaps"] += len(self._gaps)
            self._gaps = []
        self.written["flushes"] += 1
        if status is not None:
            self._write_status(status, now_ms)
        # compact the parts of finished hours once per hour
        hour = now_ms // _HOUR_MS
        if self._last_compact_hour is None:
            self._last_compact_hour = hour
        elif hour != self._last_compact_hour:
            self._last_compact_hour = hour
            self.compact(before_ms=hour * _HOUR_MS)
        return n

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
        """Record until :meth:`stop`, a signal or ``duration``; return a summary."""
        from .binance_ws import BinanceStreamClient  # the project's one WebSocket client

        syms = [s.upper() for s in self.symbols]
        add_raw = self.sink.add_raw

        def on_frame(frame, _add=add_raw):  # every frame as received, before decoding
            _add(time.time_ns() // 1_000_000, frame)

        client = BinanceStreamClient(market=self.market, symbols=syms, liquidations=self.liquidations,
                                     ws_base=self.ws_base, rest_base=self.rest_base, on_frame=on_frame,
                                     **self.client_params)
        self.client = client
        loop = asyncio.get_running_loop()
        installed = []
        if self.handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._stop.set)
                    installed.append(sig)
        events = client.events()
        t0 = time.monotonic()
        log.info("recording %s %s into %s", self.market, ",".join(syms), self.out)

        async def consume():
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

        consumer = asyncio.create_task(consume(), name="recorder-consume")
        try:
            await client.start()
            while not self._stop.is_set():
                timeout = self.flush_interval
                if self.duration is not None:
                    timeout = min(timeout, max(0.0, self.duration - (time.monotonic() - t0)))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout)
                self.sink.flush(self._status())
                if self.duration is not None and time.monotonic() - t0 >= self.duration:
                    break
        finally:
            status = self._status()
            await client.stop()  # flushes its buffers into the events queue, then ends it
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(consumer, 10)
            events.close()
            self.sink.close(status)
            for sig in installed:
                loop.remove_signal_handler(sig)
        summary = {"out": str(self.out), "market": self.market, "symbols": syms, **self.sink.written,
                   "last_ids": dict(self.sink.last_ids), "seconds": round(time.monotonic() - t0, 3)}
        log.info("recorder stopped: %s", summary)
        return summary


async def record_main(market: str, symbols: list[str], out, duration: float | None = None, ws_base: str | None = None,
                      rest_base: str | None = None, **params) -> dict:
    """Run a :class:`Recorder` with signal handling (the CLI's entry point)."""
    rec = Recorder(market=market, symbols=symbols, out=str(out), duration=duration, ws_base=ws_base,
                   rest_base=rest_base, handle_signals=True, **params)
    return await rec.run()
