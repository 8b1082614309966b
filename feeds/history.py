"""Load trade history for research: one call, one schema, pandas or Dask.

:func:`load_history` reads the trades of a market, some symbols and a date range
from any of the layouts flowlens produces or consumes, and returns them with the
**same columns and dtypes whatever the source** (:data:`HISTORY_DTYPES`):

==================  ==========================  ===========================================
column              dtype                       meaning (units as :mod:`compute.batch`)
==================  ==========================  ===========================================
``time``            int64                       trade time ``T``, UTC milliseconds
``price``           float64                     quote currency
``qty``             float64                     base asset (contracts on COIN-M)
``is_buyer_maker``  bool                        true = taker **sell** (Binance ``m``)
``trade_id``        int64                       aggregate trade id ``a`` (trade id ``t``
                                                for plain-trade sources)
``symbol``          category                    upper-case symbol; the categories are the
                                                symbols of the call, sorted
==================  ==========================  ===========================================

Layouts (``layout="auto"`` decides per file)
--------------------------------------------
``parquet``
    The backfill's and the recorder's normalized trade files (issue 4 items 5-6;
    :mod:`feeds.recorder`: ``trades/<market>/<SYMBOL>/<YYYY-MM-DD>/*.parquet``):
    columns ``symbol, agg_trade_id, price, qty, first_trade_id, last_trade_id, time,
    is_buyer_maker`` (``time`` int64 ms or a timestamp type). Any ``*.parquet``
    below the folder whose schema has a trade-id, price, quantity and time column
    is a trade file; others (the recorder's liquidations) are ignored. Rows are
    selected with Parquet predicate push-down on ``symbol`` and ``time``.
``vision``
    data.binance.vision archives in a local folder, flat or in the vision tree
    (``data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-08-01.zip``):
    ``.zip``, ``.csv.gz`` or ``.csv``; aggTrades (USD-M/COIN-M 7 columns with a
    header since 2022-08-11, spot 8 columns without header, spot times in µs from
    2025-01-01), trades dumps (``id,price,qty,quote_qty,time,is_buyer_maker``) and
    tardis exports. Parsing is :mod:`feeds.readers` (format sniffed per file, the
    time unit detected per value).
``recorder``
    The recorder's output folder: its Parquet trade files as above, and its raw
    frame files (``raw/<market>/<date>/*.jsonl.gz``, ``<receive ms> <frame>`` lines) read by
    :func:`feeds.readers.read_ws_recording` when a symbol has no Parquet there.

Row order and duplicates
------------------------
Files are read in the order of the time they cover (Parquet statistics, else the
date in the file name); within a file rows are sorted by (symbol, trade id) with
repeated ids dropped (first kept). A trade id held by several files (a recorder part
and its compaction after a crash, a recorded hour and the backfilled day) is kept in
the first file only: where Parquet statistics show a file's id range of a symbol
overlapping an earlier file's, the ids the earlier file holds are read (id column
only, filtered) and dropped from the later one. This is exact, needs no global pass,
and the pandas and the Dask result hold the same rows in the same order. Other
sources are not cross-checked in Dask; the pandas result drops such repeats too
(``attrs["duplicates_dropped"]``), e.g. a trades dump and its tardis export side by side.

Pandas or Dask
--------------
``dask=None`` (default) returns a pandas DataFrame unless the estimated memory of
the result (rows estimated from Parquet metadata or archive sizes, about 126 bytes
per row while parsing) exceeds ``memory_fraction`` of the available memory; then,
or with ``dask=True``, a Dask DataFrame with one partition per file (small files grouped up to
``partition_rows``), built lazily
(:func:`dask.dataframe.from_map`) so nothing is read until computed.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from compute.batch import TradeBatch

from . import readers

__all__ = [
    "HISTORY_COLUMNS", "HISTORY_DTYPES", "LAYOUTS", "MARKETS", "HistoryFile", "discover", "empty_frame",
    "frame_from_batches", "load_history", "normalize_frame", "read_file", "read_files", "to_ms",
]

#: Output columns, in order.
HISTORY_COLUMNS = ("time", "price", "qty", "is_buyer_maker", "trade_id", "symbol")
#: dtypes of every column but ``symbol`` (a ``category`` of the call's symbols).
HISTORY_DTYPES = {"time": np.dtype("int64"), "price": np.dtype("float64"), "qty": np.dtype("float64"),
                  "is_buyer_maker": np.dtype("bool"), "trade_id": np.dtype("int64")}
LAYOUTS = ("auto", "parquet", "vision", "recorder")
MARKETS = ("usdm", "coinm", "spot")

#: Target rows of one Dask partition (files are grouped up to it).
PARTITION_ROWS = 2_000_000
#: Estimated bytes per row while a file is parsed and normalized (columns 34 B + parse buffers).
BYTES_PER_ROW = 126
#: Rough size of one CSV line of a trades/aggTrades dump, and of one recorded WebSocket frame.
_CSV_LINE_BYTES, _WS_LINE_BYTES = 52, 260
_DAY_MS = 86_400_000

_ARCHIVE_SUFFIXES = (".zip", ".csv", ".csv.gz")
_WS_SUFFIXES = (".jsonl", ".jsonl.gz", ".txt", ".txt.gz", ".json.gz")
_DATE_RE = re.compile(r"(?<!\d)(\d{4})-(\d{2})(?:-(\d{2}))?(?!\d)")
_SYMBOL_DIR_RE = re.compile(r"^[A-Z][A-Z0-9]{2,}(?:_PERP|_\d{6})?$")
_ID_COLS, _QTY_COLS, _TIME_COLS = ("agg_trade_id", "trade_id", "id"), ("qty", "quantity"), ("time", "transact_time")


# -- the schema --------------------------------------------------------------------------
def _categories(symbols: Iterable[str]) -> pd.CategoricalDtype:
    return pd.CategoricalDtype(sorted({str(s).upper() for s in symbols}))


def empty_frame(symbols: Iterable[str] = ()) -> pd.DataFrame:
    """A zero-row frame with :data:`HISTORY_COLUMNS` and their dtypes (``symbol`` categories = ``symbols``)."""
    cols = {c: np.empty(0, d) for c, d in HISTORY_DTYPES.items()}
    cols["symbol"] = pd.Categorical([], dtype=_categories(symbols))
    return pd.DataFrame(cols)


def frame_from_batches(batches: Sequence[TradeBatch], symbols: Iterable[str] | None = None) -> pd.DataFrame:
    """Concatenate :class:`~compute.batch.TradeBatch` objects into a history frame (no sorting).

    ``symbols`` gives the ``symbol`` categories (default: the batches' symbols).
    Returns a DataFrame with :data:`HISTORY_COLUMNS`, dtypes :data:`HISTORY_DTYPES`.
    """
    batches = [b for b in batches if b is not None]
    cat = _categories(symbols if symbols is not None else [b.symbol for b in batches])
    if not batches:
        return empty_frame(cat.categories)
    n = sum(len(b) for b in batches)
    sym_codes = np.concatenate([np.full(len(b), cat.categories.get_loc(b.symbol) if b.symbol in cat.categories
                                        else -1, np.int8 if len(cat.categories) < 127 else np.int32)
                                for b in batches]) if n else np.empty(0, np.int8)
    return pd.DataFrame({
        "time": np.concatenate([b.time for b in batches]),
        "price": np.concatenate([b.price for b in batches]),
        "qty": np.concatenate([b.qty for b in batches]),
        "is_buyer_maker": np.concatenate([b.is_buyer_maker for b in batches]),
        "trade_id": np.concatenate([b.trade_id for b in batches]),
        "symbol": pd.Categorical.from_codes(sym_codes, dtype=cat),
    })


def normalize_frame(df: pd.DataFrame, symbols: Iterable[str] | None = None, symbol: str | None = None) -> pd.DataFrame:
    """Return ``df`` in the history schema (same rows, same order, a new frame).

    Accepts the aliases of :meth:`compute.batch.TradeBatch.from_frame` (``agg_trade_id``/``id``,
    ``quantity``, ``transact_time``, datetime ``time``). A missing ``symbol`` column is
    filled with ``symbol``. Raises KeyError for a missing column, ValueError when
    no symbol is known.
    """
    out = {}
    t = df[next((c for c in _TIME_COLS if c in df), "time")]
    if np.issubdtype(t.dtype, np.datetime64) or isinstance(t.dtype, pd.DatetimeTZDtype):
        t = pd.to_datetime(t, utc=True).astype("datetime64[ms, UTC]").astype("int64")
    out["time"] = np.asarray(t, dtype=np.int64)
    out["price"] = np.asarray(df["price"], dtype=np.float64)
    out["qty"] = np.asarray(df[next((c for c in _QTY_COLS if c in df), "qty")], dtype=np.float64)
    out["is_buyer_maker"] = np.asarray(df["is_buyer_maker"], dtype=bool)
    out["trade_id"] = np.asarray(df[next((c for c in _ID_COLS if c in df), "trade_id")], dtype=np.int64)
    if "symbol" in df:
        sym = df["symbol"].astype(str).str.upper().to_numpy()
    elif symbol:
        sym = np.full(len(df), symbol.upper(), dtype=object)
    else:
        raise ValueError("no symbol column and no symbol= given")
    cat = _categories(symbols if symbols is not None else pd.unique(sym))
    out["symbol"] = pd.Categorical(sym, dtype=cat)
    return pd.DataFrame(out)


# -- time arguments ------------------------------------------------------------------------
def to_ms(value, *, end: bool = False) -> int | None:
    """A range bound as UTC ms.

    ``None`` stays None; int/float are UTC ms; ``datetime``/``Timestamp``/ISO strings
    are converted (naive = UTC). A bare **date** (``datetime.date`` or ``"YYYY-MM-DD"``)
    as ``end`` means the end of that day (inclusive date, as the backfill's
    ``--end``), i.e. the next midnight; as a start it is that midnight.

    Raises ValueError for an unparsable value.
    """
    if value is None:
        return None
    if isinstance(value, int | np.integer | float | np.floating) and not isinstance(value, bool):
        return int(value)
    is_date = (isinstance(value, dt.date) and not isinstance(value, dt.datetime)) or (
        isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()) is not None)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"cannot read {value!r} as a time") from e
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    ms = int(ts.value // 1_000_000)
    return ms + _DAY_MS if (is_date and end) else ms


# -- discovery -------------------------------------------------------------------------------
@dataclass
class HistoryFile:
    """One input file found by :func:`discover`.

    ``kind`` is ``parquet``, ``archive`` (CSV/zip dumps) or ``ws`` (raw frames);
    ``symbol`` is the file's single symbol when known from its name or folder;
    ``t0``/``t1`` the UTC ms span it covers (``t1`` exclusive; None = unknown);
    ``rows`` an estimate; ``id_ranges`` per symbol ``(min, max)`` trade id from
    Parquet statistics; ``earlier`` the Parquet files before it in the reading order
    whose id range of a symbol overlaps its own, as ``(path, symbol, lo, hi)``: the ids
    they hold are dropped from this file (see the module docstring).
    """

    path: Path
    kind: str
    symbol: str = ""
    market: str | None = None
    t0: int | None = None
    t1: int | None = None
    rows: int = 0
    id_ranges: dict = field(default_factory=dict)
    earlier: list = field(default_factory=list)


def _market_of(path: Path) -> str | None:
    """Market named by the path: vision tree folders (``futures/um``, ``futures/cm``, ``spot``), a
    ``usdm``/``coinm``/``spot`` folder, or such a token in the file name (``ws-raw-spot-...``,
    ``binance-futures_...``); None when nothing says."""
    parts = [p.lower() for p in path.parent.parts]
    for i, p in enumerate(parts):
        if p in MARKETS:
            return p
        if p == "futures" and i + 1 < len(parts) and parts[i + 1] in ("um", "cm"):
            return {"um": "usdm", "cm": "coinm"}[parts[i + 1]]
    name = path.name.lower()
    toks = set(re.split(r"[-_.\s]+", name))
    if toks & {"usdm", "um"} or "binance-futures" in name:
        return "usdm"
    if toks & {"coinm", "cm"} or "binance-delivery" in name:
        return "coinm"
    if "spot" in toks:
        return "spot"
    return None


def _symbol_of(path: Path) -> str:
    sym = readers.symbol_from_name(path)
    if sym:
        return sym
    for part in reversed(path.parent.parts[-3:]):
        if _SYMBOL_DIR_RE.match(part) and part.upper() not in ("DATA", "SPOT"):
            return part
    return ""


def _span_from_name(path: Path) -> tuple[int | None, int | None]:
    m = _DATE_RE.search(path.name)
    if not m:
        return None, None
    y, mo, d = int(m.group(1)), int(m.group(2)), m.group(3)
    try:
        if d is not None:
            t0 = to_ms(dt.date(y, mo, int(d)))
            return t0, t0 + _DAY_MS
        nxt = dt.date(y + (mo == 12), mo % 12 + 1, 1)
        return to_ms(dt.date(y, mo, 1)), to_ms(nxt)
    except ValueError:
        return None, None


def _uncompressed_size(path: Path) -> int:
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                return sum(i.file_size for i in zf.infolist())
        if name.endswith(".gz"):
            with open(path, "rb") as f:
                f.seek(-4, 2)
                isize = struct.unpack("<I", f.read(4))[0]
            return max(isize, path.stat().st_size * 3)  # ISIZE is mod 2**32
    except (OSError, zipfile.BadZipFile, struct.error):
        pass
    return path.stat().st_size


def _parquet_columns(schema: pa.Schema) -> dict | None:
    names = set(schema.names)
    cols = {
        "id": next((c for c in _ID_COLS if c in names), None),
        "qty": next((c for c in _QTY_COLS if c in names), None),
        "time": next((c for c in _TIME_COLS if c in names), None),
    }
    if None in cols.values() or "price" not in names or "is_buyer_maker" not in names:
        return None
    cols["symbol"] = "symbol" if "symbol" in names else None
    return cols


def _time_value_ms(v) -> int | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return to_ms(v)
    return int(v)


def _parquet_file(path: Path) -> HistoryFile | None:
    try:
        meta = pq.read_metadata(path)
    except (OSError, pa.ArrowInvalid):
        return None  # a file still being written, or not Parquet: nothing to read yet
    schema = meta.schema.to_arrow_schema()
    cols = _parquet_columns(schema)
    if cols is None:
        return None
    hf = HistoryFile(path, "parquet", symbol="" if cols["symbol"] else _symbol_of(path), rows=meta.num_rows)
    names = schema.names
    t_idx, id_idx = names.index(cols["time"]), names.index(cols["id"])
    s_idx = names.index(cols["symbol"]) if cols["symbol"] else None
    t0 = t1 = None
    lo = hi = None
    syms: set = set()
    stats_ok = meta.num_row_groups > 0
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        if rg.num_rows == 0:
            continue
        ts, ids = rg.column(t_idx).statistics, rg.column(id_idx).statistics
        if ts is None or not ts.has_min_max or ids is None or not ids.has_min_max:
            stats_ok = False
            break
        if s_idx is not None:
            ss = rg.column(s_idx).statistics
            syms.update((ss.min, ss.max) if ss is not None and ss.has_min_max else (None, None))
        a, b = _time_value_ms(ts.min), _time_value_ms(ts.max)
        t0 = a if t0 is None else min(t0, a)
        t1 = b + 1 if t1 is None else max(t1, b + 1)
        lo = int(ids.min) if lo is None else min(lo, int(ids.min))
        hi = int(ids.max) if hi is None else max(hi, int(ids.max))
    if stats_ok and t0 is not None:
        hf.t0, hf.t1 = t0, t1
        one = hf.symbol if cols["symbol"] is None else (str(next(iter(syms))) if len(syms) == 1 else "")
        if one and None not in syms:
            hf.id_ranges = {one.upper(): (lo, hi)}
            hf.symbol = hf.symbol or one.upper()
    if hf.t0 is None:
        hf.t0, hf.t1 = _span_from_name(path)
    hf.market = _market_of(path)
    return hf


def _walk(source) -> list[Path]:
    paths = [source] if isinstance(source, str | Path) else list(source)
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


def _is(path: Path, suffixes) -> bool:
    n = path.name.lower()
    return any(n.endswith(s) for s in suffixes)


def discover(source, market: str = "usdm", symbols=None, start=None, end=None, layout: str = "auto") -> list[HistoryFile]:
    """Find the input files of :func:`load_history` (same arguments), ordered as they will be read.

    Raises
    ------
    ValueError
        Unknown ``layout`` or ``market``.
    FileNotFoundError
        A path that does not exist.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if market not in MARKETS:
        raise ValueError(f"market must be one of {MARKETS}, got {market!r}")
    want = None if symbols is None else {s.upper() for s in ([symbols] if isinstance(symbols, str) else symbols)}
    s_ms, e_ms = to_ms(start), to_ms(end, end=True)
    found: list[HistoryFile] = []
    for path in _walk(source):
        name = path.name.lower()
        hf = None
        if name.startswith("."):
            continue  # a writer's temporary file
        if name.endswith(".parquet") and layout in ("auto", "parquet", "recorder"):
            hf = _parquet_file(path)
        elif _is(path, _ARCHIVE_SUFFIXES) and layout in ("auto", "vision"):
            hf = HistoryFile(path, "archive", symbol=_symbol_of(path), market=_market_of(path),
                             rows=_uncompressed_size(path) // _CSV_LINE_BYTES)
            hf.t0, hf.t1 = _span_from_name(path)
        elif _is(path, _WS_SUFFIXES) and layout in ("auto", "recorder"):
            hf = HistoryFile(path, "ws", symbol=_symbol_of(path), market=_market_of(path),
                             rows=_uncompressed_size(path) // _WS_LINE_BYTES)
        if hf is None:
            continue
        if hf.market is not None and hf.market != market:
            continue
        if want is not None and hf.symbol and hf.symbol.upper() not in want:
            continue
        if (s_ms is not None and hf.t1 is not None and hf.t1 <= s_ms) or (
                e_ms is not None and hf.t0 is not None and hf.t0 >= e_ms):
            continue
        found.append(hf)
    # raw frames only for symbols that no Parquet trade file covers (the recorder writes both)
    if any(f.kind == "parquet" and not f.symbol for f in found):
        found = [f for f in found if f.kind != "ws"]
    else:
        covered = {f.symbol for f in found if f.kind == "parquet"}
        found = [f for f in found if f.kind != "ws" or not covered or (f.symbol and f.symbol not in covered)]
    found.sort(key=lambda f: (f.t0 if f.t0 is not None else -1, f.symbol, str(f.path)))
    _overlap_rule(found)
    return found


def _overlap_rule(files: list[HistoryFile]) -> None:
    """Fill ``earlier`` for Parquet files whose id range of a symbol overlaps a file read before them."""
    done: list[HistoryFile] = []
    for f in files:
        for sym, (lo, hi) in f.id_ranges.items():
            for g in done:
                r = g.id_ranges.get(sym)
                if r is not None and r[0] <= hi and lo <= r[1]:
                    f.earlier.append((str(g.path), sym, max(lo, r[0]), min(hi, r[1])))
        if f.id_ranges:
            done.append(f)


def _ids_in(path: str, sym: str, lo: int, hi: int) -> np.ndarray:
    """Trade ids of ``sym`` in ``[lo, hi]`` held by a Parquet trade file (id column only, pushed-down filter)."""
    cols = _parquet_columns(pq.read_schema(path))
    filt = [(cols["id"], ">=", lo), (cols["id"], "<=", hi)]
    if cols["symbol"]:
        filt.append((cols["symbol"], "==", sym))
    return pq.read_table(path, columns=[cols["id"]], filters=filt)[cols["id"]].to_numpy()


# -- reading one file ----------------------------------------------------------------------
def _dedup_sorted(df: pd.DataFrame) -> pd.DataFrame:
    """Sort by (symbol, trade id) when needed and drop repeated (symbol, id), first kept."""
    if len(df) < 2:
        return df
    ids = df["trade_id"].to_numpy()
    codes = df["symbol"].cat.codes.to_numpy()
    if not ((codes[1:] > codes[:-1]) | ((codes[1:] == codes[:-1]) & (ids[1:] > ids[:-1]))).all():
        df = df.iloc[np.lexsort((ids, codes))] if len(np.unique(codes)) > 1 else df.iloc[np.argsort(ids, kind="stable")]
        ids, codes = df["trade_id"].to_numpy(), df["symbol"].cat.codes.to_numpy()
        keep = np.r_[True, (ids[1:] != ids[:-1]) | (codes[1:] != codes[:-1])]
        if not keep.all():
            df = df[keep]
    return df.reset_index(drop=True)


def _read_parquet(f: HistoryFile, cat: pd.CategoricalDtype, s_ms, e_ms, threads: bool = True) -> pd.DataFrame:
    pf = pq.ParquetFile(f.path)
    cols = _parquet_columns(pf.schema_arrow)
    ttype = pf.schema_arrow.field(cols["time"]).type
    filt = []
    if cols["symbol"]:
        filt.append((cols["symbol"], "in", list(cat.categories)))
    for op, v in ((">=", s_ms), ("<", e_ms)):
        if v is not None:
            filt.append((cols["time"], op, pa.scalar(v, pa.timestamp("ms", tz="UTC")).cast(ttype).as_py()
                         if pa.types.is_timestamp(ttype) else v))
    read = [c for c in (cols["symbol"], cols["id"], "price", cols["qty"], cols["time"], "is_buyer_maker") if c]
    tbl = pq.read_table(f.path, columns=read, filters=filt or None, use_threads=threads)
    tcol = tbl[cols["time"]]
    if pa.types.is_timestamp(ttype):
        tcol = pc.cast(pc.cast(tcol, pa.timestamp("ms", tz="UTC")), pa.int64())
    for c in (cols["id"], "price", cols["qty"], "is_buyer_maker"):
        if tbl[c].null_count:
            raise ValueError(f"{f.path}: column {c} has {tbl[c].null_count} empty values")
    return pd.DataFrame({
        "time": tcol.to_numpy().astype(np.int64, copy=False),
        "price": tbl["price"].to_numpy().astype(np.float64, copy=False),
        "qty": tbl[cols["qty"]].to_numpy().astype(np.float64, copy=False),
        "is_buyer_maker": tbl["is_buyer_maker"].to_numpy(zero_copy_only=False).astype(bool, copy=False),
        "trade_id": tbl[cols["id"]].to_numpy().astype(np.int64, copy=False),
        "symbol": _symbol_codes(tbl[cols["symbol"]] if cols["symbol"] else None, tbl.num_rows, f.symbol, cat),
    })


def _symbol_codes(col, n: int, label: str, cat: pd.CategoricalDtype) -> pd.Categorical:
    """The ``symbol`` column as a Categorical of ``cat`` (vectorised in Arrow; unknown symbols become NaN)."""
    cats = pa.array(list(cat.categories), pa.string())
    if col is None:
        code = cat.categories.get_loc(label.upper()) if label and label.upper() in cat.categories else -1
        return pd.Categorical.from_codes(np.full(n, code, np.int32), dtype=cat)
    col = pc.utf8_upper(pc.cast(col, pa.string()))
    codes = pc.fill_null(pc.index_in(col, value_set=cats), -1).to_numpy(zero_copy_only=False).astype(np.int32)
    return pd.Categorical.from_codes(codes, dtype=cat)


def _read_other(f: HistoryFile, cat: pd.CategoricalDtype, single: str | None) -> pd.DataFrame:
    label = f.symbol or single
    res = readers.read_file(f.path, label if f.kind == "archive" else (single if f.kind == "ws" else None))
    batches = [b for s, b in res.batches.items() if s in cat.categories or (not s and label)]
    batches = [b if b.symbol else TradeBatch(b.time, b.price, b.qty, b.is_buyer_maker, b.trade_id, label)
               for b in batches]
    return frame_from_batches(sorted(batches, key=lambda b: b.symbol), cat.categories)


def read_file(f: HistoryFile, categories: Sequence[str], start=None, end=None, threads: bool = True) -> pd.DataFrame:
    """Read one discovered file into the history schema, restricted to ``categories`` symbols and ``[start, end)``.

    Rows sorted by (symbol, trade id); repeated ids, and ids held by ``f.earlier`` files, dropped.
    ``threads``: let Arrow decode Parquet with its thread pool.
    """
    cat = _categories(categories)
    s_ms, e_ms = to_ms(start), to_ms(end, end=True)
    if f.kind == "parquet":
        df = _read_parquet(f, cat, s_ms, e_ms, threads)
    else:
        df = _read_other(f, cat, cat.categories[0] if len(cat.categories) == 1 else None)
    keep = np.array(df["symbol"].notna(), dtype=bool)
    if s_ms is not None:
        keep &= df["time"].to_numpy() >= s_ms
    if e_ms is not None:
        keep &= df["time"].to_numpy() < e_ms
    for path, sym, lo, hi in f.earlier:
        keep &= ~((df["symbol"] == sym).to_numpy() & np.isin(df["trade_id"].to_numpy(), _ids_in(path, sym, lo, hi)))
    if not keep.all():
        df = df[keep]
    return _dedup_sorted(df)


def read_files(files: Sequence[HistoryFile], categories: Sequence[str], start=None, end=None,
               threads: bool = False) -> pd.DataFrame:
    """:func:`read_file` of several files, concatenated in order (the partition function of the Dask result).

    ``threads=False``: Arrow decodes on the calling thread (Dask already runs partitions in parallel).
    """
    parts = [read_file(f, categories, start, end, threads) for f in files]
    parts = [p for p in parts if len(p)] or parts[:1]
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    out["symbol"] = out["symbol"].astype(_categories(categories))
    return out


def _groups(files: list[HistoryFile], rows: int) -> list[list[HistoryFile]]:
    """Consecutive files grouped up to ``rows`` estimated rows (at least one file per group)."""
    groups: list[list[HistoryFile]] = []
    n = 0
    for f in files:
        if groups and n + f.rows <= rows:
            groups[-1].append(f)
            n += f.rows
        else:
            groups.append([f])
            n = f.rows
    return groups


# -- the one call ----------------------------------------------------------------------------
def _available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - psutil missing or unsupported platform: assume 4 GiB
        return 4 << 30


def _symbols_in(files: list[HistoryFile], want) -> list[str]:
    if want is not None:
        return sorted(want)
    syms = {f.symbol.upper() for f in files if f.symbol}
    for f in files:
        if f.kind == "parquet" and not f.symbol:
            col = _parquet_columns(pq.read_schema(f.path))["symbol"]
            syms.update(s.upper() for s in pc.unique(pq.read_table(f.path, columns=[col])[col]).to_pylist() if s)
        elif not f.symbol:
            syms.update(s for s in readers.read_file(f.path).batches if s)
    return sorted(syms)


def load_history(
    source,
    market: str = "usdm",
    symbols: str | Sequence[str] | None = None,
    start=None,
    end=None,
    *,
    layout: str = "auto",
    dask: bool | None = None,
    progress: bool = True,
    memory_fraction: float = 0.5,
    partition_rows: int = PARTITION_ROWS,
):
    """Load the trades of ``market``, ``symbols`` and ``[start, end)`` from ``source``.

    Parameters
    ----------
    source : str, Path or list of them
        A folder (searched recursively) or files: backfill/recorder Parquet, data.binance.vision
        archives, trades dumps, raw frame recordings (see the module docstring).
    market : {"usdm", "coinm", "spot"}
        Files whose path names another market (vision tree ``futures/um``, ``futures/cm``,
        ``spot``; or a ``usdm``/``coinm``/``spot`` folder) are skipped.
    symbols : str or list of str, optional
        Symbols to keep (default: every symbol found).
    start, end : int (UTC ms), datetime, Timestamp or ISO string, optional
        ``start`` inclusive, ``end`` exclusive; a bare date as ``end`` includes that day.
    layout : {"auto", "parquet", "vision", "recorder"}
        Restrict which files are read (``auto``: all supported).
    dask : bool or None
        True: a Dask DataFrame; False: pandas; None: Dask only when the estimate exceeds
        ``memory_fraction`` of the available memory.
    progress : bool
        Show a tqdm bar over the files (pandas path).
    memory_fraction : float
        Share of the available memory the pandas result may take before ``dask=None`` picks Dask.
    partition_rows : int
        Dask: consecutive small files are grouped into one partition of about this many rows
        (estimated); a larger file is a partition of its own.

    Returns
    -------
    pandas.DataFrame or dask.dataframe.DataFrame
        Columns :data:`HISTORY_COLUMNS` with :data:`HISTORY_DTYPES` (``symbol`` categorical).
        ``attrs`` (pandas) hold ``market``, ``files`` and ``symbols``.

    Raises
    ------
    FileNotFoundError
        ``source`` does not exist, or no file matches (message lists what was searched).
    ValueError
        Bad ``layout``/``market``/time bound, ``start >= end``, or an unparsable file.
    """
    want = None if symbols is None else sorted({s.upper() for s in ([symbols] if isinstance(symbols, str) else symbols)})
    s_ms, e_ms = to_ms(start), to_ms(end, end=True)
    if s_ms is not None and e_ms is not None and s_ms >= e_ms:
        raise ValueError(f"empty time range: start {s_ms} >= end {e_ms} (UTC ms)")
    files = discover(source, market, want, start, end, layout)
    if not files:
        raise FileNotFoundError(
            f"no {layout} trade files for market={market} symbols={want or 'any'} in {source} "
            f"between {start} and {end}")
    cats = _symbols_in(files, want)
    est = sum(f.rows for f in files) * BYTES_PER_ROW
    use_dask = dask if dask is not None else est > memory_fraction * _available_memory()
    if use_dask:
        import dask.dataframe as dd

        return dd.from_map(read_files, _groups(files, partition_rows), categories=cats, start=s_ms, end=e_ms, meta=empty_frame(cats),
                           enforce_metadata=False, label="flowlens-history")
    parts = []
    bar = tqdm(files, desc=f"{market} {','.join(cats) or 'trades'}", unit="file", disable=not progress,
               leave=False)
    rows = 0
    for f in bar:
        df = read_file(f, cats, s_ms, e_ms)
        rows += len(df)
        bar.set_postfix_str(f"{rows:,} trades")
        if len(df):
            parts.append(df)
    bar.close()
    out = pd.concat(parts, ignore_index=True) if parts else empty_frame(cats)
    out["symbol"] = out["symbol"].astype(_categories(cats))
    dropped = 0
    if _ranges_overlap(parts):
        dup = out.duplicated(["symbol", "trade_id"], keep="first").to_numpy()
        dropped = int(dup.sum())
        if dropped:
            out = out[~dup].reset_index(drop=True)
    out.attrs.update({"market": market, "symbols": cats, "files": [str(f.path) for f in files],
                      "duplicates_dropped": dropped})
    return out


def _ranges_overlap(parts: list[pd.DataFrame]) -> bool:
    """Whether two parts hold overlapping trade-id ranges of one symbol."""
    spans: dict = {}
    for df in parts:
        g = df.groupby("symbol", observed=True)["trade_id"].agg(["min", "max"])
        for sym, (lo, hi) in g.iterrows():
            spans.setdefault(sym, []).append((int(lo), int(hi)))
    for ranges in spans.values():
        ranges.sort()
        if any(b[0] <= a[1] for a, b in zip(ranges, ranges[1:], strict=False)):
            return True
    return False
