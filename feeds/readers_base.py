"""What every trade-file reader shares: :class:`ReadStats`, :class:`ReadResult`, opening, sniffing, finishing.

Split out of :mod:`feeds.readers` (which re-exports the public names).  A reader
opens a file (``.gz`` and ``.zip`` transparently, :func:`open_member`), the format
is sniffed from its first decompressed bytes (:func:`sniff_format`), and its
columns become one :class:`~compute.batch.TradeBatch` per symbol through
:func:`finish_batch` (sorted by id, duplicate ids dropped and counted).  Units:
time UTC ms int64, price quote currency and qty base asset float64.
"""

from __future__ import annotations

import gzip
import os
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compute.batch import TradeBatch
from compute.frames import to_ms_array as to_ms

__all__ = ["ReadResult", "ReadStats", "finish_batch", "first_lines", "head_bytes", "is_number", "open_member",
           "sniff_format", "symbol_from_name", "to_ms"]

_BOOL_TOKENS = {b"true", b"false", b"True", b"False", b"TRUE", b"FALSE"}
SNIFF_BYTES = 4096


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


def open_member(path: Path):
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


def head_bytes(path: Path, n: int = SNIFF_BYTES) -> bytes:
    """The first ``n`` decompressed bytes of ``path`` (for sniffing).

    Raises FileNotFoundError if it does not exist, ValueError for an empty zip.
    """
    f, _ = open_member(path)
    with f:
        return f.read(n)


def first_lines(head: bytes, n: int = 2) -> list[bytes]:
    """The first ``n`` non-blank lines of ``head`` (carriage returns stripped)."""
    lines = [ln.strip(b"\r") for ln in head.split(b"\n")]
    return [ln for ln in lines if ln.strip()][:n]


def is_number(tok: bytes) -> bool:
    """True when ``tok`` parses as a float (tells a CSV header from data)."""
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
    head = head_bytes(path)
    lines = first_lines(head)
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
    if toks and all(is_number(t) or t in _BOOL_TOKENS for t in toks):
        if len(toks) == 6:
            return "trades-dump"
        if len(toks) == 7 and toks[5] in _BOOL_TOKENS:
            return "trades-dump"  # spot trades dump: ..., time, is_buyer_maker, is_best_match
        if len(toks) in (7, 8):
            return "aggtrades"
    raise ValueError(f"{path}: unknown trade file layout; first line {first[:120]!r}")


def finish_batch(sym: str, tid, time, price, qty, ibm, stats: ReadStats) -> TradeBatch:
    """One symbol's columns as a :class:`TradeBatch` sorted by id, duplicate ids dropped; updates ``stats``.

    ``tid`` int64 trade ids, ``time`` int64 UTC ms, ``price`` float64 quote currency,
    ``qty`` float64 base asset, ``ibm`` bool (True = taker sell), all shape (N,).
    The first occurrence of a repeated id wins; the others are counted in
    ``stats.skipped["duplicate"]``; ``stats.symbols`` and ``stats.trades`` grow by the rows kept.
    """
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
