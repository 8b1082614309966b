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
"""

from __future__ import annotations

import gzip
import math
import os
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from compute.batch import TradeBatch

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
_BOOL_TOKENS = {b"true", b"false", b"True", b"False", b"TRUE", b"FALSE"}
_SNIFF_BYTES = 4096


@dataclass
class ReadStats:
    """What a reader saw in one file.

    Attributes
    ----------
    path : str
        The file read.
    format : str
        One of ``trades-dump``, ``tardis``, ``aggtrades``, ``ws-hftbacktest``,
        ``ws-cryptofeed``, ``ws-jsonl``.
    rows : int
        Data rows (CSV) or lines (recordings) read.
    trades : int
        Trades kept (all symbols, after the symbol filter and de-duplication).
    events : Counter
        Recordings: frames per event type; ``aggTrade`` and ``trade`` count the
        trade frames (all symbols), every other channel is counted and skipped.
    skipped : Counter
        Lines/rows not turned into trades, by reason: ``snapshot`` (REST depth
        snapshot), ``header`` (recording header line), ``blank``, ``malformed``,
        ``duplicate`` (repeated trade id), ``other_symbol`` (symbol filter).
    symbols : dict[str, int]
        Trades kept per symbol.
    time_unit : str
        Time unit found in the file: ``ms``, ``us``, ``ns`` or ``mixed``.
    """

    path: str = ""
    format: str = ""
    rows: int = 0
    trades: int = 0
    events: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    symbols: dict = field(default_factory=dict)
    time_unit: str = "ms"


@dataclass
class ReadResult:
    """All trades of one file: ``batches`` maps symbol -> :class:`TradeBatch`, plus :class:`ReadStats`."""

    batches: dict
    stats: ReadStats

    def batch(self, symbol: str | None = None) -> TradeBatch:
        """Return the batch of ``symbol`` (or of the only symbol present).

        Raises
        ------
        ValueError
            If ``symbol`` is None and the file holds several symbols, or the
            symbol is not in the file.
        """
        if symbol is not None:
            sym = symbol.upper()
            if sym not in self.batches:
                raise ValueError(
                    f"{self.stats.path}: no trades for symbol {sym!r}; symbols present: {sorted(self.batches)}"
                )
            return self.batches[sym]
        if len(self.batches) == 1:
            return next(iter(self.batches.values()))
        if not self.batches:
            return TradeBatch.empty("")
        raise ValueError(f"{self.stats.path}: holds several symbols {sorted(self.batches)}; pass symbol=")


# ----------------------------------------------------------------------------- helpers
def to_ms(t: np.ndarray) -> tuple[np.ndarray, str]:
    """Convert epoch timestamps of unknown unit to UTC milliseconds, per value by magnitude.

    ``t >= 1e18`` is taken as ns, ``t >= 1e15`` as µs (data.binance.vision spot
    dumps from 2025-01-01, reference d6), else ms.  Sub-ms parts are floored.

    Parameters
    ----------
    t : ndarray, shape (N,), integer

    Returns
    -------
    (ndarray shape (N,) int64 ms, unit) where unit is ``ms``, ``us``, ``ns`` or ``mixed``.
    """
    t = np.asarray(t, dtype=np.int64)
    ns = t >= 10**18
    us = (t >= 10**15) & ~ns
    n_ns, n_us = int(ns.sum()), int(us.sum())
    if n_ns == 0 and n_us == 0:
        return t, "ms"
    out = t.copy()
    out[us] //= 1000
    out[ns] //= 1_000_000
    kinds = [k for k, n in (("ms", len(t) - n_ns - n_us), ("us", n_us), ("ns", n_ns)) if n]
    return out, kinds[0] if len(kinds) == 1 else "mixed"


_NAME_RE = re.compile(r"(?<![A-Za-z0-9])([A-Z][A-Z0-9]{2,}(?:_PERP|_\d{6})?)-(?:aggTrades|trades|bookTicker)-")
_NAME_RE2 = re.compile(r"(?:^|[_-])([A-Z][A-Z0-9]{3,}(?:_PERP|_\d{6})?)(?=[._-])")


def symbol_from_name(path) -> str:
    """Infer the symbol from a file name such as ``BTCUSDT-aggTrades-2024-08-01.zip`` (``""`` if none).

    Only upper-case tokens count (Binance and tardis file names), so lower-case
    names such as ``ws-raw-usdm-btcusdt-...`` leave it to the content.
    """
    name = os.path.basename(str(path))
    m = _NAME_RE.search(name) or _NAME_RE2.search(name)
    return m.group(1) if m else ""


def _open_member(path: Path):
    """Return (binary file object of the decompressed content, member name)."""
    p = str(path)
    if p.endswith(".zip"):
        zf = zipfile.ZipFile(p)
        names = [n for n in zf.namelist() if not n.endswith("/")]
        csvs = [n for n in names if n.lower().endswith(".csv")] or names
        if not csvs:
            raise ValueError(f"{p}: empty zip archive")
        return zf.open(csvs[0]), csvs[0]
    if p.endswith(".gz"):
        return gzip.open(p, "rb"), p
    return open(p, "rb"), p


def _head(path: Path, n: int = _SNIFF_BYTES) -> bytes:
    f, _ = _open_member(path)
    with f:
        return f.read(n)


def _csv_input(path: Path):
    """Input for pyarrow's CSV reader (native gzip decoding for .gz)."""
    p = str(path)
    if p.endswith(".zip"):
        f, _ = _open_member(path)
        with f:
            return pa.BufferReader(f.read())
    return pa.input_stream(p)  # compression detected from the extension


def _first_lines(head: bytes, n: int = 2) -> list[bytes]:
    lines = [ln.strip(b"\r") for ln in head.split(b"\n")]
    return [ln for ln in lines if ln.strip()][:n]


def _is_number(tok: bytes) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def sniff_format(path) -> str:
    """Return the format name of a trade file (see the module docstring).

    Raises
    ------
    ValueError
        If the file is empty or in no known layout.
    FileNotFoundError
        If it does not exist.
    """
    path = Path(path)
    head = _head(path)
    lines = _first_lines(head)
    if not lines:
        raise ValueError(f"{path}: empty file")
    first = lines[0].lstrip(b"\xef\xbb\xbf")
    if first.startswith(b"{"):
        return "ws-jsonl"
    if first.startswith((b"ws://", b"wss://")) or b" <-> " in first:
        return "ws-cryptofeed"
    m = re.match(rb"^(\d+(?:\.\d+)?)(:?) \{", first)
    if m:
        return "ws-cryptofeed" if m.group(2) else "ws-hftbacktest"
    toks = first.split(b",")
    low = first.lower()
    if low.startswith(b"exchange,symbol,timestamp"):
        return "tardis"
    if low.startswith(b"id,price,qty"):
        return "trades-dump"
    if low.startswith(b"agg_trade_id"):
        return "aggtrades"
    if toks and all(_is_number(t) or t in _BOOL_TOKENS for t in toks):
        if len(toks) == 6:
            return "trades-dump"
        if len(toks) == 7 and toks[5] in _BOOL_TOKENS:
            return "trades-dump"  # spot trades dump: ..., time, is_buyer_maker, is_best_match
        if len(toks) in (7, 8):
            return "aggtrades"
    raise ValueError(f"{path}: unknown trade file layout; first line {first[:120]!r}")


def _finish(sym: str, tid, time, price, qty, ibm, stats: ReadStats) -> TradeBatch:
    """Sort by id, drop duplicate ids, build the batch and update ``stats``."""
    tid = np.asarray(tid, dtype=np.int64)
    if len(tid) > 1 and not bool(np.all(tid[1:] > tid[:-1])):
        order = np.argsort(tid, kind="stable")
        tid, time, price, qty, ibm = tid[order], time[order], price[order], qty[order], ibm[order]
        keep = np.empty(len(tid), dtype=bool)
        keep[0] = True
        np.not_equal(tid[1:], tid[:-1], out=keep[1:])
        ndup = int(len(tid) - keep.sum())
        if ndup:
            stats.skipped["duplicate"] += ndup
            tid, time, price, qty, ibm = tid[keep], time[keep], price[keep], qty[keep], ibm[keep]
    b = TradeBatch(time, price, qty, ibm, tid, sym)
    stats.symbols[b.symbol] = stats.symbols.get(b.symbol, 0) + len(b)
    stats.trades += len(b)
    return b


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
    first = _first_lines(_head(path), 1)
    has_header = bool(first) and not _is_number(first[0].split(b",")[0])
    ncols = len(first[0].split(b",")) if first else 6
    names = TRADES_DUMP_COLUMNS[:ncols]
    types = {"id": pa.int64(), "price": pa.float64(), "qty": pa.float64(), "time": pa.int64(),
             "is_buyer_maker": pa.bool_()}
    tbl = _read_csv(path, names, has_header, types, ["id", "price", "qty", "time", "is_buyer_maker"])
    stats = ReadStats(path=str(path), format="trades-dump", rows=tbl.num_rows)
    time, stats.time_unit = to_ms(_np(tbl["time"], np.int64))
    sym = (symbol or symbol_from_name(path)).upper()
    b = _finish(sym, _np(tbl["id"], np.int64), time, _np(tbl["price"], np.float64), _np(tbl["qty"], np.float64),
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
        b = _finish(s, tid[m], time[m], price[m], qty[m], ibm[m], stats)
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
    first = _first_lines(_head(path), 1)
    if not first:
        raise ValueError(f"{path}: empty file")
    toks = first[0].split(b",")
    has_header = not _is_number(toks[0])
    names = AGG_TRADES_COLUMNS[: len(toks)]
    types = {"agg_trade_id": pa.int64(), "price": pa.float64(), "quantity": pa.float64(),
             "transact_time": pa.int64(), "is_buyer_maker": pa.bool_()}
    tbl = _read_csv(path, names, has_header, types,
                    ["agg_trade_id", "price", "quantity", "transact_time", "is_buyer_maker"])
    stats = ReadStats(path=str(path), format="aggtrades", rows=tbl.num_rows)
    time, stats.time_unit = to_ms(_np(tbl["transact_time"], np.int64))
    sym = (symbol or symbol_from_name(path)).upper()
    b = _finish(sym, _np(tbl["agg_trade_id"], np.int64), time, _np(tbl["price"], np.float64),
                _np(tbl["quantity"], np.float64), _np(tbl["is_buyer_maker"], bool), stats)
    return ReadResult({b.symbol: b}, stats)


# ----------------------------------------------------------------------------- WebSocket recordings
class _Envelope(msgspec.Struct):
    """A recorded line: combined-stream envelope, bare payload, or REST snapshot."""

    stream: str = ""
    data: msgspec.Raw = msgspec.Raw(b"")
    e: str = ""
    lastUpdateId: int | None = None  # noqa: N815 (Binance field name)


class _AggTradeMsg(msgspec.Struct):
    s: str = ""
    a: int = -1
    p: float = math.nan
    q: float = math.nan
    T: int = -1  # noqa: N815
    m: bool | None = None


class _TradeMsg(msgspec.Struct):
    s: str = ""
    t: int = -1
    p: float = math.nan
    q: float = math.nan
    T: int = -1  # noqa: N815
    m: bool | None = None


_ENV_LIST = msgspec.json.Decoder(list[_Envelope])
_ENV_ONE = msgspec.json.Decoder(_Envelope)
_AGG_LIST = msgspec.json.Decoder(list[_AggTradeMsg], strict=False)
_TRADE_LIST = msgspec.json.Decoder(list[_TradeMsg], strict=False)
_AGG_ONE = msgspec.json.Decoder(_AggTradeMsg, strict=False)
_TRADE_ONE = msgspec.json.Decoder(_TradeMsg, strict=False)


def _channel(stream: str) -> str:
    """``btcusdt@depth@0ms`` -> ``depth@0ms``; ``!forceOrder@arr`` -> ``forceOrder@arr``."""
    _, _, ch = stream.partition("@")
    return ch or stream


def _decode_all(parts: list[bytes], many: msgspec.json.Decoder, one: msgspec.json.Decoder, stats: ReadStats):
    """Decode a list of JSON texts in one call; fall back to one by one (counting malformed) on error.

    The one-call result is used only if it has exactly one item per text (a line
    holding ``a},{b`` could otherwise shift the alignment); otherwise, and on any
    error, each text is decoded on its own.
    """
    if not parts:
        return []
    try:
        out = many.decode(b"[" + b",".join(parts) + b"]")
        if len(out) == len(parts):
            return out
    except (msgspec.MsgspecError, ValueError):
        pass
    out = []
    for p in parts:
        try:
            out.append(one.decode(p))
        except (msgspec.MsgspecError, ValueError):
            stats.skipped["malformed"] += 1
            out.append(None)
    return out


def read_ws_recording(path, symbol: str | None = None) -> ReadResult:
    """Read a raw WebSocket recording (hftbacktest, cryptofeed or JSON lines).

    Takes ``aggTrade`` frames (id ``a``) and ``trade`` frames (id ``t``; as an
    aggTrade ``a = f = l = t``); uses the trade time ``T`` (not ``E``, reference
    b1).  Other frames are counted per channel in ``stats.events``; REST
    snapshots, header and blank lines and malformed frames are counted in
    ``stats.skipped``.  ``symbol`` keeps one symbol (others are counted as
    ``other_symbol``); otherwise one batch per symbol.

    Returns
    -------
    ReadResult: ``batches`` symbol -> TradeBatch sorted by id, and stats.
    """
    path = Path(path)
    fmt = sniff_format(path)
    if not fmt.startswith("ws-"):
        raise ValueError(f"{path}: not a WebSocket recording (sniffed {fmt})")
    f, _ = _open_member(path)
    with f:
        raw = f.read()
    stats = ReadStats(path=str(path), format=fmt)
    parts = []
    for line in raw.splitlines():
        i = line.find(b"{")
        if i < 0:
            stats.skipped["blank" if not line.strip() else "header"] += 1
            continue
        stats.rows += 1
        parts.append(line[i:].rstrip(b"\r"))
    envs = _decode_all(parts, _ENV_LIST, _ENV_ONE, stats)
    agg_parts, trade_parts = [], []
    for text, env in zip(parts, envs, strict=True):
        if env is None:
            continue
        if len(env.data):
            kind, payload = (_channel(env.stream) if env.stream else ""), bytes(env.data)
        elif env.lastUpdateId is not None:
            stats.skipped["snapshot"] += 1
            continue
        elif env.e:
            kind, payload = env.e, text  # bare payload (ws mode)
        else:
            stats.events["unknown"] += 1
            continue
        if kind == "aggTrade":
            agg_parts.append(payload)
        elif kind == "trade":
            trade_parts.append(payload)
        else:
            stats.events[kind or "unknown"] += 1
    cols: dict[str, list] = {}
    for kind, decoded in (
        ("aggTrade", _decode_all(agg_parts, _AGG_LIST, _AGG_ONE, stats)),
        ("trade", _decode_all(trade_parts, _TRADE_LIST, _TRADE_ONE, stats)),
    ):
        for msg in decoded:
            if msg is None:
                continue
            tid = msg.a if kind == "aggTrade" else msg.t
            if tid < 0 or msg.T < 0 or msg.m is None or not (msg.p > 0) or not (msg.q >= 0) or not msg.s:
                stats.skipped["malformed"] += 1
                continue
            stats.events[kind] += 1
            sym = msg.s.upper()
            if symbol is not None and sym != symbol.upper():
                stats.skipped["other_symbol"] += 1
                continue
            c = cols.setdefault(sym, [[], [], [], [], []])
            c[0].append(tid)
            c[1].append(msg.T)
            c[2].append(msg.p)
            c[3].append(msg.q)
            c[4].append(msg.m)
    units = set()
    out = {}
    for sym, (tid, t, p, q, m) in cols.items():
        time, unit = to_ms(np.array(t, dtype=np.int64))
        units.add(unit)
        out[sym] = _finish(sym, np.array(tid, dtype=np.int64), time, np.array(p, dtype=np.float64),
                           np.array(q, dtype=np.float64), np.array(m, dtype=bool), stats)
    stats.time_unit = units.pop() if len(units) == 1 else ("mixed" if units else "ms")
    return ReadResult(out, stats)


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



class _TradeFrame(msgspec.Struct):
    e: str
    E: int  # noqa: N815
    s: str
    t: int
    p: msgspec.Raw
    q: msgspec.Raw
    T: int  # noqa: N815
    m: bool


class _TradeEnvelope(msgspec.Struct):
    stream: str
    data: _TradeFrame


_TRADE_ENV = msgspec.json.Decoder(_TradeEnvelope)


def agg_trade_frames(path, symbol: str | None = None) -> list[bytes]:
    """The real trade frames of a raw WebSocket recording as combined-stream aggTrade frames, in recorded order.

    ``aggTrade`` frames are returned verbatim (the JSON text as recorded);
    ``trade`` frames are re-encoded as aggTrade frames with ``a = f = l = t``
    (``E``, ``T``, ``s``, ``m`` kept, the ``p``/``q`` strings copied verbatim),
    under the stream name ``<symbol>@aggTrade``.  Other frames are left out.
    ``symbol`` keeps one symbol.  Used to serve and benchmark realistic frames.

    Returns
    -------
    list of bytes, one frame each.
    """
    path = Path(path)
    f, _ = _open_member(path)
    with f:
        raw = f.read()
    want = symbol.upper() if symbol else None
    out = []
    for line in raw.splitlines():
        i = line.find(b"{")
        if i < 0:
            continue
        text = line[i:]
        head = text[:80]
        if b"@aggTrade" in head:
            if want is None or _ENV_ONE.decode(text).stream.split("@")[0].upper() == want:
                out.append(bytes(text))
        elif b"@trade" in head:
            env = _TRADE_ENV.decode(text)
            d = env.data
            if want is not None and d.s.upper() != want:
                continue
            out.append(
                b'{"stream":"%s@aggTrade","data":{"e":"aggTrade","E":%d,"a":%d,"s":"%s","p":%s,"q":%s,'
                b'"f":%d,"l":%d,"T":%d,"m":%s}}'
                % (d.s.lower().encode(), d.E, d.t, d.s.encode(), bytes(d.p), bytes(d.q), d.t, d.t, d.T,
                   b"true" if d.m else b"false")
            )
    return out
