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

File discovery (:func:`discover`, :class:`HistoryFile`) is in :mod:`feeds.history_files`;
every public name is importable from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from compute.batch import TradeBatch
from compute.frames import (
    HISTORY_COLUMNS,
    HISTORY_DTYPES,
    empty_frame,
    frame_from_batches,
    symbol_categories,
    to_ms,
)

from . import readers
from .history_files import (
    ID_COLS,
    LAYOUTS,
    MARKETS,
    QTY_COLS,
    TIME_COLS,
    HistoryFile,
    discover,
    local_path,
    parquet_columns,
)

__all__ = [
    "HISTORY_COLUMNS", "HISTORY_DTYPES", "LAYOUTS", "MARKETS", "HistoryFile", "discover", "empty_frame",
    "frame_from_batches", "load_history", "normalize_frame", "read_file", "read_files", "to_ms",
]

#: Target rows of one Dask partition (files are grouped up to it).
PARTITION_ROWS = 2_000_000
#: Estimated bytes per row while a file is parsed and normalized (columns 34 B + parse buffers).
BYTES_PER_ROW = 126


# -- the schema (defined in compute.frames) ------------------------------------------------
def normalize_frame(df: pd.DataFrame, symbols: Iterable[str] | None = None, symbol: str | None = None) -> pd.DataFrame:
    """Return ``df`` in the history schema (same rows, same order, a new frame).

    Accepts the aliases of :meth:`compute.batch.TradeBatch.from_frame` (``agg_trade_id``/``id``,
    ``quantity``, ``transact_time``, datetime ``time``). A missing ``symbol`` column is
    filled with ``symbol``. Raises KeyError for a missing column, ValueError when
    no symbol is known.
    """
    out = {}
    t = df[next((c for c in TIME_COLS if c in df), "time")]
    if np.issubdtype(t.dtype, np.datetime64) or isinstance(t.dtype, pd.DatetimeTZDtype):
        t = pd.to_datetime(t, utc=True).astype("datetime64[ms, UTC]").astype("int64")
    out["time"] = np.asarray(t, dtype=np.int64)
    out["price"] = np.asarray(df["price"], dtype=np.float64)
    out["qty"] = np.asarray(df[next((c for c in QTY_COLS if c in df), "qty")], dtype=np.float64)
    out["is_buyer_maker"] = np.asarray(df["is_buyer_maker"], dtype=bool)
    out["trade_id"] = np.asarray(df[next((c for c in ID_COLS if c in df), "trade_id")], dtype=np.int64)
    if "symbol" in df:
        sym = df["symbol"].astype(str).str.upper().to_numpy()
    elif symbol:
        sym = np.full(len(df), symbol.upper(), dtype=object)
    else:
        raise ValueError("no symbol column and no symbol= given")
    cat = symbol_categories(symbols if symbols is not None else pd.unique(sym))
    out["symbol"] = pd.Categorical(sym, dtype=cat)
    return pd.DataFrame(out)

def _ids_in(path: str, sym: str, lo: int, hi: int) -> np.ndarray:
    """Trade ids of ``sym`` in ``[lo, hi]`` held by a Parquet trade file (id column only, pushed-down filter)."""
    path = local_path(path)
    cols = parquet_columns(pq.read_schema(path))
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
    cols = parquet_columns(pf.schema_arrow)
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
    cat = symbol_categories(categories)
    s_ms, e_ms = to_ms(start), to_ms(end, end=True)
    f = dataclasses.replace(f, path=local_path(f.path))  # an fsspec URL is fetched here, where it is read
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
    out["symbol"] = out["symbol"].astype(symbol_categories(categories))
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
            path = local_path(f.path)
            col = parquet_columns(pq.read_schema(path))["symbol"]
            syms.update(s.upper() for s in pc.unique(pq.read_table(path, columns=[col])[col]).to_pylist() if s)
        elif not f.symbol:
            syms.update(s for s in readers.read_file(local_path(f.path)).batches if s)
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
        archives, trades dumps, raw frame recordings (see the module docstring). Each may be an
        fsspec URL: ``file://``, ``memory://``, ``s3://`` (with s3fs installed)...; a remote file is
        fetched where it is read (:func:`feeds.history_files.local_path`), on each Dask worker for the
        Dask result, so workers on other machines need no shared disk.
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
        return _dask_frame(files, cats, s_ms, e_ms, partition_rows)
    parts = _read_all(files, cats, s_ms, e_ms, f"{market} {','.join(cats) or 'trades'}", progress)
    out, dropped = _concat_unique(parts, cats)
    out.attrs.update({"market": market, "symbols": cats, "files": [str(f.path) for f in files],
                      "duplicates_dropped": dropped})
    return out


def _dask_frame(files: list[HistoryFile], cats: list[str], s_ms, e_ms, partition_rows: int):
    """A lazy Dask DataFrame: one partition per group of files (:func:`read_files`), history schema."""
    from compute.extras import need

    dd = need("dask.dataframe", "load_history(..., dask=True)")

    return dd.from_map(read_files, _groups(files, partition_rows), categories=cats, start=s_ms, end=e_ms,
                       meta=empty_frame(cats), enforce_metadata=False, label="flowlens-history")


def _read_all(files: list[HistoryFile], cats: list[str], s_ms, e_ms, desc: str,
              progress: bool) -> list[pd.DataFrame]:
    """:func:`read_file` of every file in order (the non-empty frames), with a tqdm bar when ``progress``."""
    parts = []
    bar = tqdm(files, desc=desc, unit="file", disable=not progress, leave=False)
    rows = 0
    for f in bar:
        df = read_file(f, cats, s_ms, e_ms)
        rows += len(df)
        bar.set_postfix_str(f"{rows:,} trades")
        if len(df):
            parts.append(df)
    bar.close()
    return parts


def _concat_unique(parts: list[pd.DataFrame], cats: list[str]) -> tuple[pd.DataFrame, int]:
    """The parts concatenated (``symbol`` categories ``cats``), repeated (symbol, trade id) dropped; and how many."""
    out = pd.concat(parts, ignore_index=True) if parts else empty_frame(cats)
    out["symbol"] = out["symbol"].astype(symbol_categories(cats))
    dropped = 0
    if _ranges_overlap(parts):
        dup = out.duplicated(["symbol", "trade_id"], keep="first").to_numpy()
        dropped = int(dup.sum())
        if dropped:
            out = out[~dup].reset_index(drop=True)
    return out, dropped


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


def load_liquidations(source, market: str = "usdm", symbols: str | Sequence[str] | None = None, start=None,
                      end=None) -> pd.DataFrame:
    """Liquidations (Binance forceOrder snapshots) recorded under ``source``, in time order.

    ``source``: a folder written by ``python -m feeds record`` (its ``liquidations/<market>/<SYMBOL>/<day>/``
    Parquet parts), or a file of forceOrder frames (JSON lines, ``.gz`` ok), or a list of them. ``symbols``,
    ``start`` (inclusive) and ``end`` (exclusive) as :func:`load_history`.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`feeds.decode.LIQUIDATION_COLUMNS` (``time`` int64 UTC ms, prices quote currency,
        quantities base asset), repeated rows dropped.

    Raises
    ------
    FileNotFoundError
        A path that does not exist.
    """
    from pathlib import Path

    from .liquidations import read_liquidations as read_frames
    from .recorder_files import LIQUIDATIONS_SCHEMA
    from .recorder_files import read_liquidations as read_parts

    want = None if symbols is None else sorted({x.upper() for x in ([symbols] if isinstance(symbols, str) else symbols)})
    parts = []
    for src in [source] if isinstance(source, str | Path) else list(source):
        p = Path(src)
        if p.is_dir():
            parts.append(read_parts(p, market, want))
        elif p.is_file():
            parts.append(read_frames(p))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    parts = [x for x in parts if len(x)]
    if not parts:
        return LIQUIDATIONS_SCHEMA.empty_table().to_pandas()
    df = pd.concat(parts, ignore_index=True)
    keep = np.ones(len(df), dtype=bool)
    if want is not None:
        keep &= df["symbol"].str.upper().isin(want).to_numpy()
    s_ms, e_ms = to_ms(start), to_ms(end, end=True)
    if s_ms is not None:
        keep &= df["time"].to_numpy() >= s_ms
    if e_ms is not None:
        keep &= df["time"].to_numpy() < e_ms
    return df[keep].drop_duplicates().sort_values("time", kind="stable").reset_index(drop=True)

