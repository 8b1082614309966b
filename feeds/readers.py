"""Readers that turn recorded Binance trade files into columnar :class:`~compute.batch.TradeBatch` objects.

Every reader returns whole columns (numpy arrays), one batch per symbol, sorted
by trade id (aggregate trade id ``a`` for aggTrades, trade id ``t`` for plain
trades) with duplicate ids dropped (the first occurrence wins, the count is
kept in :class:`ReadStats`).  Units follow :mod:`compute.batch`: time in UTC
milliseconds (int64), price in quote currency and quantity in base asset
(contracts on COIN-M) as float64, ``is_buyer_maker`` true = taker **sell**
(Binance field ``m``; reference b1).

Supported inputs (the format is sniffed from the first decompressed bytes;
``.gz`` and ``.zip`` are opened transparently):

``trades-dump``
    Binance trades dump ``id,price,qty,quote_qty,time,is_buyer_maker`` with or
    without header (spot dumps add a 7th column ``is_best_match``).
``tardis``
    tardis.dev CSV ``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``;
    ``timestamp`` in µs (floored to ms), ``side`` is the **taker** side.
``aggtrades``
    data.binance.vision aggTrades dumps (reference d6): USD-M/COIN-M 7 columns
    ``agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker``
    (header since 2022-08-11, maybe absent in older files), spot 8 columns (adds
    ``was_the_trade_the_best_price_match``), no header.  The time unit is
    detected per value by magnitude: ``>= 1e18`` ns, ``>= 1e15`` µs (spot from
    2025-01-01), else ms.
``ws-hftbacktest`` / ``ws-cryptofeed`` / ``ws-jsonl``
    raw WebSocket recordings: ``<receive ts> <frame>`` (hftbacktest),
    ``<url> <-> <epoch>`` then ``<epoch>: <frame>`` (cryptofeed), or one frame per
    line.  Frames in the combined-stream envelope ``{"stream":..,"data":..}`` (or a
    bare payload).  ``aggTrade`` and ``trade`` events become trades (for ``trade``:
    ``t`` is the id, i.e. ``a = f = l = t``); every other event is counted per
    stream channel (``depth@0ms``, ``bookTicker``, ...) and skipped, REST depth
    snapshots (``lastUpdateId``) are counted as ``snapshot`` and skipped, a
    malformed line is counted as ``malformed`` and skipped.

CSV is parsed with pyarrow (no per-row Python); JSON with msgspec, one decode
call for the whole file where possible.

This module holds the CSV readers and the entry points; the shared parts
(:class:`ReadStats`, :class:`ReadResult`, sniffing, :func:`to_ms`) are in
:mod:`feeds.readers_base`, the WebSocket recordings in :mod:`feeds.readers_ws`;
every public name is importable from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from compute.batch import TradeBatch

from .readers_base import (
    ReadResult,
    ReadStats,
    finish_batch,
    first_lines,
    head_bytes,
    is_number,
    open_member,
    sniff_format,
    symbol_from_name,
    to_ms,
)
from .readers_ws import agg_trade_frames, read_ws_recording

__all__ = [
    "ReadStats",
    "ReadResult",
    "sniff_format",
    "symbol_from_name",
    "read_file",
    "read_trades",
    "read_trades_by_symbol",
    "read_trades_dump",
    "read_tardis",
    "read_agg_trades",
    "read_ws_recording",
    "to_ms",
    "agg_trade_frames",
]

TRADES_DUMP_COLUMNS = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match")
TARDIS_COLUMNS = ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount")
AGG_TRADES_COLUMNS = (
    "agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id",
    "transact_time", "is_buyer_maker", "was_the_trade_the_best_price_match",
)


def _csv_input(path: Path):
    """Input for pyarrow's CSV reader (native gzip decoding for .gz)."""
    p = str(path)
    if p.endswith(".zip"):
        f, _ = open_member(path)
        with f:
            return pa.BufferReader(f.read())
    return pa.input_stream(p)  # compression detected from the extension


def _np(col: pa.ChunkedArray, dtype, name: str = "") -> np.ndarray:
    if col.null_count:
        raise ValueError(f"column {name or col.type} has {col.null_count} empty values")
    return np.asarray(col.to_numpy()).astype(dtype, copy=False)


def _read_csv(path: Path, names: tuple, has_header: bool, types: dict, include: list) -> pa.Table:
    ro = pacsv.ReadOptions(column_names=None if has_header else list(names), block_size=1 << 22)
    co = pacsv.ConvertOptions(column_types=types, include_columns=include)
    try:
        return pacsv.read_csv(_csv_input(path), read_options=ro, convert_options=co)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"{path}: cannot parse as CSV: {e}") from e


# ----------------------------------------------------------------------------- CSV readers
def read_trades_dump(path, symbol: str | None = None) -> ReadResult:
    """Read a Binance trades dump (``id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]``).

    The header row is optional (sniffed); times in ms or µs (per value, see
    :func:`to_ms`).  The file holds one symbol: ``symbol`` (if given) or the one
    in the file name labels the batch.

    Returns
    -------
    ReadResult with one batch sorted by trade id.

    Raises
    ------
    ValueError
        Unparsable file or empty cells.
    """
    path = Path(path)
    first = first_lines(head_bytes(path), 1)
    has_header = bool(first) and not is_number(first[0].split(b",")[0])
    ncols = len(first[0].split(b",")) if first else 6
    names = TRADES_DUMP_COLUMNS[:ncols]
    types = {"id": pa.int64(), "price": pa.float64(), "qty": pa.float64(), "time": pa.int64(),
             "is_buyer_maker": pa.bool_()}
    tbl = _read_csv(path, names, has_header, types, ["id", "price", "qty", "time", "is_buyer_maker"])
    stats = ReadStats(path=str(path), format="trades-dump", rows=tbl.num_rows)
    time, stats.time_unit = to_ms(_np(tbl["time"], np.int64))
    sym = (symbol or symbol_from_name(path)).upper()
    b = finish_batch(sym, _np(tbl["id"], np.int64), time, _np(tbl["price"], np.float64), _np(tbl["qty"], np.float64),
                _np(tbl["is_buyer_maker"], bool), stats)
    return ReadResult({b.symbol: b}, stats)


def read_tardis(path, symbol: str | None = None) -> ReadResult:
    """Read a tardis.dev trades CSV (``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``).

    ``timestamp`` (exchange time, µs) is floored to ms; ``is_buyer_maker`` =
    (``side == "sell"``) because tardis gives the taker side.  ``symbol`` filters
    to one symbol; otherwise one batch per symbol in the file.

    Raises
    ------
    ValueError
        Unparsable file, empty cells, or an unknown ``side`` value.
    """
    path = Path(path)
    types = {"symbol": pa.string(), "timestamp": pa.int64(), "id": pa.int64(), "side": pa.string(),
             "price": pa.float64(), "amount": pa.float64()}
    tbl = _read_csv(path, TARDIS_COLUMNS, True, types, ["symbol", "timestamp", "id", "side", "price", "amount"])
    stats = ReadStats(path=str(path), format="tardis", rows=tbl.num_rows)
    side = tbl["side"]
    sell = pc.equal(side, "sell")
    bad = pc.sum(pc.and_(pc.invert(sell), pc.invert(pc.equal(side, "buy")))).as_py() or 0
    if bad:
        raise ValueError(f"{path}: {bad} rows with a side other than buy/sell")
    time, stats.time_unit = to_ms(_np(tbl["timestamp"], np.int64))
    syms = _np(tbl["symbol"], object)
    tid, price, qty = _np(tbl["id"], np.int64), _np(tbl["price"], np.float64), _np(tbl["amount"], np.float64)
    ibm = _np(sell, bool)
    uniq = pc.unique(tbl["symbol"]).to_pylist()
    want = [s for s in uniq if symbol is None or s.upper() == symbol.upper()]
    out = {}
    for s in want:
        m = syms == s if len(uniq) > 1 else slice(None)
        b = finish_batch(s, tid[m], time[m], price[m], qty[m], ibm[m], stats)
        out[b.symbol] = b
    stats.skipped["other_symbol"] = tbl.num_rows - sum(len(b) for b in out.values()) - stats.skipped["duplicate"]
    if not stats.skipped["other_symbol"]:
        del stats.skipped["other_symbol"]
    return ReadResult(out, stats)


def read_agg_trades(path, symbol: str | None = None) -> ReadResult:
    """Read a data.binance.vision aggTrades dump (.csv, .csv.gz or .zip; reference d6).

    7 columns (USD-M / COIN-M, header since 2022-08-11, sniffed) or 8 (spot, no
    header).  ``transact_time`` unit detected per value by magnitude
    (:func:`to_ms`).  Sorted by ``agg_trade_id`` (monthly files interleave).
    The batch is labelled with ``symbol`` or the one in the file name.

    Raises
    ------
    ValueError
        Unparsable file or empty cells.
    """
    path = Path(path)
    first = first_lines(head_bytes(path), 1)
    if not first:
        raise ValueError(f"{path}: empty file")
    toks = first[0].split(b",")
    has_header = not is_number(toks[0])
    names = AGG_TRADES_COLUMNS[: len(toks)]
    types = {"agg_trade_id": pa.int64(), "price": pa.float64(), "quantity": pa.float64(),
             "transact_time": pa.int64(), "is_buyer_maker": pa.bool_()}
    tbl = _read_csv(path, names, has_header, types,
                    ["agg_trade_id", "price", "quantity", "transact_time", "is_buyer_maker"])
    stats = ReadStats(path=str(path), format="aggtrades", rows=tbl.num_rows)
    time, stats.time_unit = to_ms(_np(tbl["transact_time"], np.int64))
    sym = (symbol or symbol_from_name(path)).upper()
    b = finish_batch(sym, _np(tbl["agg_trade_id"], np.int64), time, _np(tbl["price"], np.float64),
                _np(tbl["quantity"], np.float64), _np(tbl["is_buyer_maker"], bool), stats)
    return ReadResult({b.symbol: b}, stats)

# ----------------------------------------------------------------------------- entry points
_READERS = {
    "trades-dump": read_trades_dump,
    "tardis": read_tardis,
    "aggtrades": read_agg_trades,
    "ws-hftbacktest": read_ws_recording,
    "ws-cryptofeed": read_ws_recording,
    "ws-jsonl": read_ws_recording,
}


def read_file(path, symbol: str | None = None) -> ReadResult:
    """Sniff the format of ``path`` and read it into per-symbol batches plus :class:`ReadStats`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Unknown layout or unparsable content.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    return _READERS[sniff_format(path)](path, symbol)


def read_trades(path, symbol: str | None = None) -> TradeBatch:
    """Read one symbol's trades from any supported file into ONE :class:`TradeBatch` sorted by trade id.

    ``symbol`` selects a symbol in multi-symbol files (required there) and
    labels single-symbol dumps whose file name does not say it.

    Raises
    ------
    FileNotFoundError, ValueError
        See :func:`read_file`; also when the file holds several symbols and
        ``symbol`` is None, or has no trades for ``symbol``.
    """
    res = read_file(path, symbol)
    return res.batch(symbol)


def read_trades_by_symbol(path) -> dict[str, TradeBatch]:
    """Read every symbol of a file: dict symbol -> :class:`TradeBatch` (sorted by trade id)."""
    return read_file(path).batches

