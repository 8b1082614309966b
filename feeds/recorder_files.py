"""The recorder's files: Parquet schemas, atomic part writes, compaction and reading back.

Split out of :mod:`feeds.recorder` (which re-exports every public name here; the
layout under the output folder is described there).  Trades follow
:data:`TRADES_SCHEMA`, liquidations :data:`LIQUIDATIONS_SCHEMA`; times UTC ms
int64, prices quote currency, quantities base asset (contracts on COIN-M).  The
backfill writes the same layout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "LIQUIDATIONS_SCHEMA", "LIQUIDATION_COLUMNS", "TRADES_SCHEMA", "TRADE_COLUMNS", "compact_dir", "day_name",
    "fsync_dir", "hour_name", "read_liquidations", "read_raw_frames", "read_trades", "trades_table",
    "write_parquet_atomic",
]

#: Columns of :func:`read_trades` (the order of :data:`TRADES_SCHEMA`).
TRADE_COLUMNS = ("symbol", "agg_trade_id", "price", "qty", "first_trade_id", "last_trade_id", "time",
                 "is_buyer_maker")
#: Columns of :func:`read_liquidations` (the order of :data:`LIQUIDATIONS_SCHEMA`).
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


def day_name(ms: int) -> str:
    """UTC date of ``ms`` (UTC ms) as ``YYYY-MM-DD`` (a folder name)."""
    return (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(ms))).strftime("%Y-%m-%d")


def hour_name(ms: int) -> str:
    """UTC hour of ``ms`` (UTC ms) as ``YYYY-MM-DDTHH`` (a raw file name part)."""
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


def fsync_dir(d: Path) -> None:
    """fsync the folder ``d`` (so renames in it survive a power loss); errors are ignored."""
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
        fsync_dir(Path(day_dir))
    for _, p in parts:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return out

