"""Discovery of the input files of :func:`feeds.history.load_history`: which files, what they cover, in which order.

Split out of :mod:`feeds.history` (which re-exports :class:`HistoryFile`,
:func:`discover`, :data:`LAYOUTS` and :data:`MARKETS`).  A file's span (UTC ms),
symbol, market, estimated rows and per-symbol trade-id range come from Parquet
metadata where there is some, else from its path; see the :mod:`feeds.history`
docstring for the layouts and the overlap rule.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from compute.frames import DAY_MS, to_ms

from . import readers

__all__ = ["ID_COLS", "LAYOUTS", "MARKETS", "QTY_COLS", "TIME_COLS", "HistoryFile", "discover", "local_path",
           "parquet_columns"]

#: ``layout=`` values of :func:`discover` and :func:`feeds.history.load_history`.
LAYOUTS = ("auto", "parquet", "vision", "recorder")
MARKETS = ("usdm", "coinm", "spot")
#: Rough size of one CSV line of a trades/aggTrades dump, and of one recorded WebSocket frame.
_CSV_LINE_BYTES, _WS_LINE_BYTES = 52, 260

_ARCHIVE_SUFFIXES = (".zip", ".csv", ".csv.gz")
_WS_SUFFIXES = (".jsonl", ".jsonl.gz", ".txt", ".txt.gz", ".json.gz")
_DATE_RE = re.compile(r"(?<!\d)(\d{4})-(\d{2})(?:-(\d{2}))?(?!\d)")
_SYMBOL_DIR_RE = re.compile(r"^[A-Z][A-Z0-9]{2,}(?:_PERP|_\d{6})?$")
#: Accepted names of the trade-id, quantity and time columns (the first present wins).
ID_COLS, QTY_COLS, TIME_COLS = ("agg_trade_id", "trade_id", "id"), ("qty", "quantity"), ("time", "transact_time")


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

    path: Path | str  # a local path, or an fsspec URL (``s3://...``, ``memory://...``) read through :func:`local_path`
    kind: str
    symbol: str = ""
    market: str | None = None
    t0: int | None = None
    t1: int | None = None
    rows: int = 0
    id_ranges: dict = field(default_factory=dict)
    earlier: list = field(default_factory=list)


# -- local paths and fsspec URLs ------------------------------------------------------------
def _is_url(p) -> bool:
    return isinstance(p, str) and "://" in p


def _named(p) -> PurePosixPath | Path:
    """What the name heuristics read (folders, file name) of a local path or URL."""
    return PurePosixPath(urlsplit(p).netloc + urlsplit(p).path) if _is_url(p) else Path(p)


def local_path(p) -> Path:
    """A local path to read ``p`` from: ``p`` itself, or for an fsspec URL a copy fetched once per process.

    The copy is fsspec's ``simplecache`` in a per-folder temporary directory, keeping the file's name (the
    readers tell formats by name); on a Dask worker it is fetched by the worker itself, so workers on other
    machines read remote history (``s3://`` with s3fs installed) without a shared disk.

    Raises
    ------
    FileNotFoundError
        The URL names no file.
    """
    if not _is_url(p):
        return Path(p)
    parent = p.rsplit("/", 1)[0]
    store = Path(tempfile.gettempdir()) / "flowlens-fsspec" / hashlib.sha1(parent.encode()).hexdigest()[:16]
    return Path(fsspec.open_local(f"simplecache::{p}", simplecache={"cache_storage": str(store), "same_names": True}))


def _size(p) -> int:
    if _is_url(p):
        fs, path = fsspec.core.url_to_fs(p)
        return int(fs.size(path))
    return Path(p).stat().st_size


def _market_of(path) -> str | None:
    """Market named by the path: vision tree folders (``futures/um``, ``futures/cm``, ``spot``), a
    ``usdm``/``coinm``/``spot`` folder, or such a token in the file name (``ws-raw-spot-...``,
    ``binance-futures_...``); None when nothing says."""
    path = _named(path)
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


def _symbol_of(path) -> str:
    path = _named(path)
    sym = readers.symbol_from_name(path)
    if sym:
        return sym
    for part in reversed(path.parent.parts[-3:]):
        if _SYMBOL_DIR_RE.match(part) and part.upper() not in ("DATA", "SPOT"):
            return part
    return ""


def _span_from_name(path) -> tuple[int | None, int | None]:
    m = _DATE_RE.search(_named(path).name)
    if not m:
        return None, None
    y, mo, d = int(m.group(1)), int(m.group(2)), m.group(3)
    try:
        if d is not None:
            t0 = to_ms(dt.date(y, mo, int(d)))
            return t0, t0 + DAY_MS
        nxt = dt.date(y + (mo == 12), mo % 12 + 1, 1)
        return to_ms(dt.date(y, mo, 1)), to_ms(nxt)
    except ValueError:
        return None, None


def _uncompressed_size(path) -> int:
    name = _named(path).name.lower()
    if _is_url(path):  # without fetching it: the compressed size times a typical CSV/JSON ratio
        return _size(path) * (6 if name.endswith((".zip", ".gz")) else 1)
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


def parquet_columns(schema: pa.Schema) -> dict | None:
    """The trade columns of a Parquet schema: ``{"id", "qty", "time", "symbol"}`` -> column name.

    ``symbol`` is None when the file has no symbol column; the result is None when
    the schema lacks a trade-id, price, quantity, time or ``is_buyer_maker`` column
    (not a trade file).
    """
    names = set(schema.names)
    cols = {
        "id": next((c for c in ID_COLS if c in names), None),
        "qty": next((c for c in QTY_COLS if c in names), None),
        "time": next((c for c in TIME_COLS if c in names), None),
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


def _read_metadata(path) -> pq.FileMetaData:
    if _is_url(path):  # the footer only, not the whole file
        with fsspec.open(path, "rb") as fh:
            return pq.read_metadata(fh)
    return pq.read_metadata(path)


def _parquet_file(path) -> HistoryFile | None:
    try:
        meta = _read_metadata(path)
    except (OSError, pa.ArrowInvalid):
        return None  # a file still being written, or not Parquet: nothing to read yet
    schema = meta.schema.to_arrow_schema()
    cols = parquet_columns(schema)
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


def _walk(source) -> list:
    """The files under ``source``: local paths (Path), or URLs (str) for an fsspec URL other than ``file://``."""
    paths = [source] if isinstance(source, str | Path) else list(source)
    out = []
    for src in paths:
        if _is_url(src):
            fs, root = fsspec.core.url_to_fs(src)
            if not isinstance(fs, LocalFileSystem):
                if fs.isdir(root):
                    out.extend(sorted(fs.unstrip_protocol(q) for q in fs.find(root)))
                elif fs.isfile(root):
                    out.append(fs.unstrip_protocol(root))
                else:
                    raise FileNotFoundError(f"{src}: no such file or folder")
                continue
            src = root  # file:// -> the local path
        p = Path(src)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


def _is(path, suffixes) -> bool:
    n = _named(path).name.lower()
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
        name = _named(path).name.lower()
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
