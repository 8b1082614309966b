"""Columnar packing of one trade batch per Redis stream entry, exact to the bit and about 8-10 B a trade.

A blob (stream field ``c``) is a fixed header followed by one column after the other::

    header  :data:`HEADER` (44 B): format version, the byte width of each column, the decimal exponent of
            price and quantity, N, and the base (minimum) of time, price, quantity and trade id
    time    N unsigned offsets from the base time (UTC ms), 1/2/4/8 bytes each
    price   N unsigned offsets from the base price in units of 10**-price_exp (quote currency)
    qty     N unsigned offsets from the base quantity in units of 10**-qty_exp (base asset)
    id      N unsigned offsets from the first trade id; absent when the ids are first id + 0..N-1
    side    ``numpy.packbits`` of ``is_buyer_maker`` (little bit order), ceil(N / 8) bytes

Each column takes the narrowest width its range needs (frame of reference). A price (or quantity)
column is stored as integers only when every value divided back equals the original float64
exactly (``k / 10**exp == x``, ``|k| < 2**53``: the division of two exact doubles is correctly rounded,
so it gives back the double nearest the decimal, the one the feed's text parsed to). Otherwise,
e.g. for a NaN or a value with more than :data:`MAX_EXP` decimals, it is stored as raw float64
(exponent :data:`RAW`). Decoding is therefore exact for every input.

Entries written before this format (field ``d``: packed :data:`compute.batch.RECORD_DTYPE`) are still
read (:func:`decode_fields`); a blob of an unknown version is refused with ValueError.
"""

from __future__ import annotations

import struct

import numpy as np

from compute.batch import TradeBatch

#: Version byte of this layout.
VERSION = 2
#: The header: version, widths (time, price, qty, id; 0 = no id column), exponents (price, qty), pad, N, bases.
HEADER = struct.Struct("<BBBBBbbBIqqqq")
#: Largest decimal exponent tried for prices and quantities (Binance uses at most 8 decimals).
MAX_EXP = 10
#: Exponent meaning "raw float64 column".
RAW = -1
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_POW = [10.0**k for k in range(MAX_EXP + 1)]
_EXACT = float(2**53)


def _width(span: int) -> int:
    """Bytes of the narrowest unsigned integer holding 0..span."""
    return 1 if span < 0x100 else 2 if span < 0x10000 else 4 if span < 0x100000000 else 8


def _offsets(x: np.ndarray) -> tuple[int, int, bytes]:
    """int64 ``x`` as (base, width, bytes of the unsigned offsets from base)."""
    lo, hi = int(x.min()), int(x.max())
    w = _width(hi - lo)
    return lo, w, (x - lo).astype(_UINT[w]).tobytes()


def _frame(x: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> tuple[int, list[int], list[bytes]]:
    """Frame of reference per segment (``starts``/``counts``) of int64 ``x``: (one width for all, each
    segment's base, each segment's offset bytes)."""
    lo = np.minimum.reduceat(x, starts)
    w = _width(int((np.maximum.reduceat(x, starts) - lo).max()))
    raw = (x - np.repeat(lo, counts)).astype(_UINT[w]).tobytes()
    bounds = (np.concatenate([starts, [len(x)]]) * w).tolist()
    return w, lo.tolist(), [raw[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _decimals(x: np.ndarray, hint: int) -> tuple[int, np.ndarray | None]:
    """The exponent ``e`` (``hint`` tried first) and ``k = x * 10**e`` as int64 with ``k / 10**e == x`` for
    every value; ``(RAW, None)`` when no ``e <= MAX_EXP`` gives that."""
    for e in (hint, *range(MAX_EXP + 1)) if 0 <= hint <= MAX_EXP else range(MAX_EXP + 1):
        k = np.rint(x * _POW[e])
        if np.array_equal(k / _POW[e], x) and (not len(k) or float(np.abs(k).max()) < _EXACT):
            return e, k.astype(np.int64)
    return RAW, None


class TradeEncoder:
    """Packs batches into blobs; remembers the last exponents so the next batch usually needs one try.

    One encoder per stream (symbol): not shared between threads.
    """

    def __init__(self):
        self._pexp, self._qexp = 2, 3

    def encode(self, b: TradeBatch) -> bytes:
        """The blob of ``b`` (N >= 1 trades: time int64 UTC ms, price float64 quote currency, qty float64
        base asset, is_buyer_maker bool, trade_id int64).

        Raises
        ------
        ValueError
            If ``b`` holds no trades.
        """
        n = len(b)
        if not n:
            raise ValueError("cannot pack an empty batch")
        t0, tw, tb = _offsets(b.time)
        cols = [tb]
        self._pexp, kp = _decimals(b.price, self._pexp)
        self._qexp, kq = _decimals(b.qty, self._qexp)
        bases, widths = [], []
        for e, k, raw in ((self._pexp, kp, b.price), (self._qexp, kq, b.qty)):
            lo, w, data = (0, 8, raw.tobytes()) if e == RAW else _offsets(k)
            bases.append(lo)
            widths.append(w)
            cols.append(data)
        ids = b.trade_id
        id0 = int(ids[0])
        if int(ids[-1]) - id0 == n - 1 and (n < 3 or bool((np.diff(ids) == 1).all())):
            iw = 0
        else:
            lo, iw, data = _offsets(ids)
            cols.append(data)
            id0 = lo
        cols.append(np.packbits(b.is_buyer_maker, bitorder="little").tobytes())
        head = HEADER.pack(VERSION, tw, widths[0], widths[1], iw, self._pexp, self._qexp, 0, n, t0,
                           bases[0], bases[1], id0)
        return head + b"".join(cols)

    def encode_many(self, batches: list[TradeBatch]) -> list[bytes]:
        """The blobs of several non-empty batches (one stream entry each), in a few vectorized passes.

        Each blob decodes (:func:`decode`) to its batch exactly, as with :meth:`encode`; a column's
        width is the widest any of these batches needs. Falls back to one :meth:`encode` per batch when
        the ids are not strictly increasing across them or no one decimal exponent fits them all.

        Raises
        ------
        ValueError
            If a batch holds no trades.
        """
        if len(batches) < 2:
            return [self.encode(b) for b in batches]
        counts = np.fromiter((len(b) for b in batches), np.int64, len(batches))
        if not counts.all():
            raise ValueError("cannot pack an empty batch")
        ids = np.concatenate([b.trade_id for b in batches])
        pe, kp = _decimals(np.concatenate([b.price for b in batches]), self._pexp)
        qe, kq = _decimals(np.concatenate([b.qty for b in batches]), self._qexp)
        if pe == RAW or qe == RAW or not bool((np.diff(ids) > 0).all()):
            return [self.encode(b) for b in batches]
        self._pexp, self._qexp = pe, qe
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        t_cols = _frame(np.concatenate([b.time for b in batches]), starts, counts)
        p_cols, q_cols = _frame(kp, starts, counts), _frame(kq, starts, counts)
        ends = starts + counts - 1
        gappy = (ids[ends] - ids[starts]) != counts - 1  # strictly increasing: contiguous iff the span is n - 1
        i_cols = _frame(ids, starts, counts) if gappy.any() else None
        out = []
        for e, b in enumerate(batches):
            n = int(counts[e])
            iw, id0, idb = (i_cols[0], i_cols[1][e], i_cols[2][e]) if i_cols is not None and gappy[e] \
                else (0, int(ids[starts[e]]), b"")
            head = HEADER.pack(VERSION, t_cols[0], p_cols[0], q_cols[0], iw, pe, qe, 0, n, t_cols[1][e],
                               p_cols[1][e], q_cols[1][e], id0)
            out.append(b"".join((head, t_cols[2][e], p_cols[2][e], q_cols[2][e], idb,
                                 np.packbits(b.is_buyer_maker, bitorder="little").tobytes())))
        return out


def encode(b: TradeBatch) -> bytes:
    """The blob of ``b`` with a fresh :class:`TradeEncoder` (see :meth:`TradeEncoder.encode`)."""
    return TradeEncoder().encode(b)


def _column(blob: bytes, pos: int, n: int, w: int, base: int) -> tuple[np.ndarray, int]:
    """int64 column of ``n`` offsets of width ``w`` at ``pos`` plus ``base``; and the position after it."""
    a = np.frombuffer(blob, _UINT[w], n, pos).astype(np.int64)
    a += base
    return a, pos + n * w


def _decimal_column(blob: bytes, pos: int, n: int, w: int, e: int, base: int) -> tuple[np.ndarray, int]:
    if e == RAW:
        return np.frombuffer(blob, np.float64, n, pos).copy(), pos + 8 * n
    k, pos = _column(blob, pos, n, w, base)
    return k.astype(np.float64) / _POW[e], pos


def decode(blob: bytes, symbol: str = "") -> TradeBatch:
    """The batch packed in ``blob`` by :meth:`TradeEncoder.encode`, exactly as it was.

    Raises
    ------
    ValueError
        If the blob is of another version or shorter than its header says.
    """
    if len(blob) < HEADER.size or blob[0] != VERSION:
        raise ValueError(f"not a flowlens trade blob of version {VERSION} "
                         f"(first byte {blob[0] if blob else None}, {len(blob)} bytes)")
    _, tw, pw, qw, iw, pe, qe, _, n, t0, p0, q0, id0 = HEADER.unpack_from(blob)
    need = HEADER.size + n * (tw + pw + qw + iw) + (n + 7) // 8
    if len(blob) != need:
        raise ValueError(f"trade blob of {len(blob)} bytes, its header says {need}")
    time, pos = _column(blob, HEADER.size, n, tw, t0)
    price, pos = _decimal_column(blob, pos, n, pw, pe, p0)
    qty, pos = _decimal_column(blob, pos, n, qw, qe, q0)
    if iw:
        ids, pos = _column(blob, pos, n, iw, id0)
    else:
        ids = np.arange(id0, id0 + n, dtype=np.int64)
    side = np.unpackbits(np.frombuffer(blob, np.uint8, (n + 7) // 8, pos), count=n, bitorder="little").view(bool)
    return TradeBatch(time, price, qty, side, ids, symbol)


#: From this many blobs of fewer than :data:`SMALL` trades on average, :func:`decode_many` decodes column by
#: column over all blobs: per-blob numpy calls cost ~14 µs a blob (1.2 s for a day left in 1-s entries),
#: the column path ~2 µs a blob but more per trade.
MANY, SMALL = 64, 256


def decode_many(blobs: list[bytes], symbol: str = "") -> TradeBatch:
    """The batches of ``blobs`` concatenated in order: what a cold load of a day needs.

    Few blobs are decoded one by one straight into preallocated output arrays; from :data:`MANY` on,
    each column of all blobs is joined once and decoded in a few vectorized passes.

    Raises
    ------
    ValueError
        As :func:`decode`, for any of the blobs.
    """
    heads = []
    for blob in blobs:
        if len(blob) < HEADER.size or blob[0] != VERSION:
            return TradeBatch.concat([decode(b, symbol) for b in blobs], symbol)  # decode() says what is wrong
        h = HEADER.unpack_from(blob)
        if len(blob) != HEADER.size + h[8] * (h[1] + h[2] + h[3] + h[4]) + (h[8] + 7) // 8:
            decode(blob)  # raises the length error
        heads.append(h)
    if len(blobs) >= MANY and sum(h[8] for h in heads) < SMALL * len(blobs):
        return _decode_columns(blobs, np.array(heads, dtype=np.int64).reshape(-1, 13), symbol)
    total = sum(h[8] for h in heads)
    time, price, qty = np.empty(total, np.int64), np.empty(total, np.float64), np.empty(total, np.float64)
    side, ids = np.empty(total, bool), np.empty(total, np.int64)
    a = 0
    for blob, (_, tw, pw, qw, iw, pe, qe, _, n, t0, p0, q0, id0) in zip(blobs, heads, strict=True):
        b, pos = a + n, HEADER.size
        np.add(np.frombuffer(blob, _UINT[tw], n, pos), np.int64(t0), out=time[a:b])
        pos += n * tw
        for out, w, e, base in ((price, pw, pe, p0), (qty, qw, qe, q0)):
            if e == RAW:
                out[a:b] = np.frombuffer(blob, np.float64, n, pos)
            else:  # exact: integers below 2**53 add and convert exactly, the division rounds as encode checked
                np.add(np.frombuffer(blob, _UINT[w], n, pos), np.float64(base), out=out[a:b])
                np.divide(out[a:b], _POW[e], out=out[a:b])
            pos += n * w
        if iw:
            np.add(np.frombuffer(blob, _UINT[iw], n, pos), np.int64(id0), out=ids[a:b])
            pos += n * iw
        else:
            ids[a:b] = np.arange(id0, id0 + n, dtype=np.int64)
        side[a:b] = np.unpackbits(np.frombuffer(blob, np.uint8, (n + 7) // 8, pos), count=n,
                                  bitorder="little").view(bool)
        a = b
    return TradeBatch(time, price, qty, side, ids, symbol)


def _ragged(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + c)`` for each start ``s`` and count ``c`` (int64)."""
    offs = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return offs + np.arange(int(counts.sum()), dtype=np.int64)


def _decode_columns(blobs: list[bytes], h: np.ndarray, symbol: str) -> TradeBatch:
    """:func:`decode_many` for many blobs: ``h`` holds their headers, shape (E, 13) int64 (:data:`HEADER`)."""
    n = h[:, 8]
    out_start = np.cumsum(n) - n
    widths = h[:, 1:5]  # time, price, qty, id
    pos = HEADER.size + np.cumsum(np.column_stack([np.zeros(len(n), np.int64), widths * n[:, None]]), axis=1)
    cols = []
    for c, (base, exp, dtype) in enumerate(((h[:, 9], None, np.int64), (h[:, 10], h[:, 5], np.float64),
                                            (h[:, 11], h[:, 6], np.float64), (h[:, 12], None, np.int64))):
        out = np.empty(int(n.sum()), dtype)
        for key in np.unique(widths[:, c] * 100 + (0 if exp is None else exp)):  # (width, exponent) groups
            sel = np.flatnonzero(widths[:, c] * 100 + (0 if exp is None else exp) == key)
            w, e = int(widths[sel[0], c]), None if exp is None else int(exp[sel[0]])
            whole = len(sel) == len(n)  # one group: decode in place into out, no scatter
            idx = np.arange(len(out), dtype=np.int64) if whole and w == 0 else \
                slice(None) if whole else _ragged(out_start[sel], n[sel])
            if w == 0:  # contiguous ids: first id + position within the blob
                out[idx] = np.repeat(base[sel] - out_start[sel], n[sel]) + idx
                continue
            raw = b"".join([blobs[i][p:p + k] for i, p, k in zip(sel.tolist(), pos[sel, c].tolist(),
                                                                  (n[sel] * w).tolist(), strict=True)])
            vals = np.frombuffer(raw, np.float64 if e == RAW else _UINT[w])
            if e == RAW:
                out[idx] = vals
                continue
            tmp = out if whole else np.empty(len(vals), dtype)
            np.add(vals, np.repeat(base[sel].astype(dtype), n[sel]), out=tmp)  # exact below 2**53
            if e is not None:
                np.divide(tmp, _POW[e], out=tmp)
            if not whole:
                out[idx] = tmp
        cols.append(out)
    nbytes = (n + 7) // 8
    bits = np.unpackbits(np.frombuffer(b"".join([blobs[i][p:p + k] for i, p, k in zip(
        range(len(n)), pos[:, 4].tolist(), nbytes.tolist(), strict=True)]), np.uint8), bitorder="little")
    side = bits[_ragged(np.cumsum(nbytes * 8) - nbytes * 8, n)].view(bool)
    return TradeBatch(cols[0], cols[1], cols[2], side, cols[3], symbol)


def decode_fields(fields: dict, symbol: str = "") -> TradeBatch:
    """The batch of one stream entry's fields: ``c`` (this format) or ``d`` (the old packed records).

    Raises
    ------
    ValueError
        If the entry has neither field, or its blob is malformed (see :func:`decode`).
    """
    blob = fields.get(b"c")
    if blob is not None:
        return decode(blob, symbol)
    old = fields.get(b"d")
    if old is not None:
        return TradeBatch.from_bytes(old, symbol)
    raise ValueError(f"stream entry without trades (fields {sorted(fields)})")
