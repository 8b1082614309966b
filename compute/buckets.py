"""The storage under the incremental profile store: trades in epoch-aligned buckets and pre-summed blocks.

Layout (issue 3 item 1)
-----------------------
* **Buckets** of ``bucket_ms`` (default 1 minute, epoch-aligned). A closed bucket keeps
  its raw trades as compact columns (time offset int32, tick offset int32, signed exact
  quantity int64: + taker buy, - taker sell) *and* its per-tick aggregates as sparse
  sorted arrays (tick int64, volume int64, buy int64, trade count int32).
* **Blocks**, hierarchical: ``levels`` gives their lengths in buckets (default
  ``(10, 60)``: 10 minutes and 1 hour). A block holds the per-tick sums of a complete
  block, dense over its tick span (or sparse when less than half of the span traded);
  a level's block is summed from the level below.
* The **open** bucket (the newest) keeps the batches as they came; it is sorted and
  summed when a later bucket starts.

A range ``[start, end)`` is covered by the largest whole blocks, then smaller ones, then
whole buckets, and only for the two partial edge buckets (and the open one) the raw trades
of exactly the part inside the range (:meth:`BucketStore._pieces`); all sums are exact
integers (:mod:`compute.result`).

Batches should arrive in time order. A trade older than the open bucket is still
handled exactly: its bucket (and block) is rebuilt. A trade older than the
trimmed horizon (see :meth:`BucketStore.trim`) is rejected with ValueError and
the batch is not ingested.
"""

from __future__ import annotations

import bisect
import functools
import threading

import numpy as np
import param

from . import grid
from .batch import TradeBatch
from .blocks import Block as _Block
from .blocks import Bucket as _Bucket
from .blocks import accumulate
from .prefix import PrefixSums
from .result import RawTrades, as_batch, check_prices, qty_scale, qty_to_int

__all__ = ["BucketStore", "accumulate", "locked"]

_INT64_SAFE = 2**62


def locked(method):
    """Run a public method under the store's lock (ingest and queries may come from different threads)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class BucketStore(param.Parameterized):
    """Per-bucket and per-block, per-tick aggregates of one symbol's trades (see the module docstring):
    ingest (:meth:`update`, :meth:`trim`) and the exact pieces of a range. :class:`compute.incremental.ProfileStore`
    adds the profile queries.

    Times are UTC ms, prices quote currency, quantities base asset. Thread-safe: every
    public method holds one re-entrant lock.
    """

    tick = param.Number(default=0.01, bounds=(0, None), inclusive_bounds=(False, True), constant=True,
                        doc="Tick size of the symbol (quote currency); rows are whole numbers of ticks.")
    bucket_ms = param.Integer(default=60_000, bounds=(1, 2**31 - 1), constant=True,
                              doc="Bucket length in ms (epoch-aligned); edges finer than this read raw trades.")
    levels = param.Tuple(default=(10, 60), constant=True,
                         doc="Lengths (in buckets) of the pre-summed block levels, each a multiple of the "
                             "one before (10 and 60 one-minute buckets = 10 minutes and 1 hour).")
    qty_decimals = param.Integer(default=8, bounds=(0, 12), constant=True,
                                 doc="Decimals of the exact integer quantity (Binance's finest step is 1e-8).")
    symbol = param.String(default="", constant=True, doc="Exchange symbol (informational).")

    def __init__(self, tick: float, **params):
        super().__init__(tick=float(tick), **params)
        grid.ticks_per_row(self.tick, self.tick)  # validates the tick
        self._tick = float(self.tick)
        self._lock = threading.RLock()
        self._bm = int(self.bucket_ms)
        lv = tuple(int(x) for x in self.levels)
        if any(x < 2 for x in lv) or any(b % a for a, b in zip(lv, lv[1:], strict=False)):
            raise ValueError(f"levels must be increasing bucket counts >= 2, each a multiple of the one before: {lv}")
        self._lv = lv
        self._scale = qty_scale(self.qty_decimals)
        self._buckets: dict[int, _Bucket] = {}
        self._ids: list[int] = []  # sorted ids of closed buckets
        self._blocks: list[dict[int, _Block]] = [{} for _ in lv]
        self._block_ids: list[list[int]] = [[] for _ in lv]
        self._unbuilt: list[set[int]] = [set() for _ in lv]
        self._open: int | None = None
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._open_cache: tuple | None = None
        self._horizon: int | None = None  # first kept ms (bucket-aligned) after trim
        # prefix sums of the top-level blocks, one chain per UTC day (24 one-hour blocks by default)
        self._prefix = PrefixSums(max(1, 86_400_000 // (lv[-1] * self._bm)) if lv else 1)
        self._n = 0
        self._qtotal = 0
        self._tmin: int | None = None
        self._tmax: int | None = None

    # -- accessors -----------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of trades held."""
        return self._n

    @property
    def start_time(self) -> int | None:
        """Time of the oldest trade held (UTC ms), or None when empty."""
        return self._tmin

    @property
    def end_time(self) -> int | None:
        """Last trade time + 1 ms (exclusive end, UTC ms), or None when empty."""
        return None if self._tmax is None else self._tmax + 1

    @property
    def horizon(self) -> int | None:
        """Trades before this time (UTC ms) were trimmed and are refused."""
        return self._horizon

    @property
    def nbytes(self) -> int:
        """Bytes held in numpy arrays (raw columns, bucket and block sums, the open bucket)."""
        n = sum(b.nbytes for b in self._buckets.values())
        n += sum(b.nbytes for level in self._blocks for b in level.values()) + self._prefix.nbytes
        return n + sum(a.nbytes for p in self._parts for a in p)

    # -- ingest ---------------------------------------------------------------------------
    @locked
    def update(self, batch) -> int:
        """Add a batch (TradeBatch or DataFrame); returns the number of trades added.

        Work is proportional to the batch (plus, per bucket closed, that bucket's trades).
        The batch is validated whole before anything is stored.

        Raises
        ------
        ValueError
            Non-finite prices, bad quantities, a trade older than :attr:`horizon`, or
            totals that would overflow the exact int64 sums.
        """
        b = as_batch(batch)
        n = len(b)
        if not n:
            return 0
        check_prices(b.price)
        q = qty_to_int(b.qty, self._scale)
        t = b.time
        ticks = grid.tick_index(b.price, self._tick)
        sq = np.where(b.is_buyer_maker, -q, q)
        if n > 1 and not (t[1:] >= t[:-1]).all():
            o = np.argsort(t, kind="stable")
            t, ticks, sq = t[o], ticks[o], sq[o]
        if self._horizon is not None and t[0] < self._horizon:
            raise ValueError(f"trade at {int(t[0])} is before the store's trimmed horizon {self._horizon} (UTC ms)")
        qsum = int(q.sum())
        if self._qtotal + qsum >= _INT64_SAFE:
            raise ValueError("the store's total quantity would overflow int64; use a smaller qty_decimals or trim")
        self._n += n
        self._qtotal += qsum
        self._tmin = int(t[0]) if self._tmin is None else min(self._tmin, int(t[0]))
        self._tmax = int(t[-1]) if self._tmax is None else max(self._tmax, int(t[-1]))
        bk = t // self._bm
        k = 0
        if self._open is not None and bk[0] < self._open:
            k = int(np.searchsorted(bk, self._open, side="left"))
            self._insert_late(bk[:k], t[:k], ticks[:k], sq[:k])
        if k < n:
            self._append(bk[k:], t[k:], ticks[k:], sq[k:])
        return n

    def _append(self, bk, t, ticks, sq) -> None:
        if bk[0] == bk[-1]:  # the usual live case: one bucket
            starts, ends = [0], [len(bk)]
        else:
            cuts = (np.flatnonzero(bk[1:] != bk[:-1]) + 1).tolist()
            starts, ends = [0, *cuts], [*cuts, len(bk)]
        last = len(starts) - 1
        closed = False
        for i, (a, z) in enumerate(zip(starts, ends, strict=True)):
            b = int(bk[a])
            if b != self._open:
                closed = True
                self._close_open()
                self._open = b
            if i < last:  # a whole bucket inside this batch: close it straight away
                self._parts.append((t[a:z], ticks[a:z], sq[a:z]))
                self._close_open()
                self._open = None
            else:
                self._parts.append((t[a:z].copy(), ticks[a:z].copy(), sq[a:z].copy()))
                self._open = b
        self._open_cache = None
        if closed:
            self._build_blocks()

    def _close_open(self) -> None:
        if self._open is None or not self._parts:
            self._parts = []
            return
        b = self._open
        if len(self._parts) == 1:
            t, ticks, sq = self._parts[0]
        else:
            t, ticks, sq = (np.concatenate([p[i] for p in self._parts]) for i in range(3))
        self._put_bucket(b, _Bucket(b * self._bm, t, ticks, sq))
        self._parts = []
        self._open_cache = None

    def _put_bucket(self, b: int, bucket: _Bucket) -> None:
        if b not in self._buckets:
            bisect.insort(self._ids, b)
        self._buckets[b] = bucket
        for i, n in enumerate(self._lv):
            self._unbuilt[i].add(b // n)

    def _build_blocks(self) -> None:
        """Build every block that is complete (all its buckets before the open one) and changed, lowest level first."""
        for i, n in enumerate(self._lv):
            if not self._unbuilt[i]:
                continue
            limit = None if self._open is None else self._open // n
            blocks, ids = self._blocks[i], self._block_ids[i]
            for k in sorted(self._unbuilt[i]):
                if limit is not None and k >= limit:
                    continue
                self._unbuilt[i].discard(k)
                if i == len(self._lv) - 1:
                    self._prefix.invalidate(k)
                if i == 0:
                    sub = self._ids[bisect.bisect_left(self._ids, k * n) : bisect.bisect_left(self._ids, (k + 1) * n)]
                    members = [self._buckets[j] for j in sub]
                else:
                    m = n // self._lv[i - 1]
                    lids = self._block_ids[i - 1]
                    sub = lids[bisect.bisect_left(lids, k * m) : bisect.bisect_left(lids, (k + 1) * m)]
                    members = [self._blocks[i - 1][j] for j in sub]
                if k in blocks:
                    del blocks[k]
                    ids.remove(k)
                if members:
                    blocks[k] = _Block(members, top=i == len(self._lv) - 1)
                    bisect.insort(ids, k)

    def _insert_late(self, bk, t, ticks, sq) -> None:
        """Merge trades older than the open bucket into their closed buckets (rebuilding them)."""
        cuts = (np.flatnonzero(bk[1:] != bk[:-1]) + 1).tolist()
        for a, z in zip([0, *cuts], [*cuts, len(bk)], strict=True):
            b = int(bk[a])
            old = self._buckets.get(b)
            if old is None:
                nt, nk, ns = t[a:z], ticks[a:z], sq[a:z]
            else:
                ot, ok, os_ = old.raw()
                nt, nk, ns = np.r_[ot, t[a:z]], np.r_[ok, ticks[a:z]], np.r_[os_, sq[a:z]]
            self._put_bucket(b, _Bucket(b * self._bm, nt, nk, ns))
        self._build_blocks()

    @locked
    def trim(self, before_ms: int) -> int:
        """Drop every bucket that ends at or before ``before_ms`` (UTC ms); returns trades dropped.

        Afterwards :attr:`horizon` is the start of the first kept bucket and older trades are refused.
        """
        cut = int(before_ms) // self._bm  # first kept bucket
        self._horizon = cut * self._bm if self._horizon is None else max(self._horizon, cut * self._bm)
        i = bisect.bisect_left(self._ids, cut)
        dropped = 0
        for b in self._ids[:i]:
            bucket = self._buckets.pop(b)
            dropped += len(bucket.sq)
            self._qtotal -= int(np.abs(bucket.sq).sum())
        del self._ids[:i]
        if self._open is not None and self._open < cut:
            for p in self._parts:
                dropped += len(p[0])
                self._qtotal -= int(np.abs(p[2]).sum())
            self._parts, self._open, self._open_cache = [], None, None
        for i, n in enumerate(self._lv):
            for k in [k for k in self._block_ids[i] if k * n < cut]:
                del self._blocks[i][k]
                self._block_ids[i].remove(k)
                if (k + 1) * n > cut:
                    self._unbuilt[i].add(k)
            self._unbuilt[i] = {k for k in self._unbuilt[i] if (k + 1) * n > cut}
        if self._lv:
            self._prefix.drop_before(-(-cut // self._lv[-1]))
        self._build_blocks()
        self._n -= dropped
        if self._n == 0:
            self._tmin = self._tmax = None
        elif dropped:
            first = self._buckets[self._ids[0]] if self._ids else None
            self._tmin = first.start + int(first.toff[0]) if first is not None else int(self._open_raw()[0][0])
        return dropped

    # -- range gathering ------------------------------------------------------------------
    def _open_raw(self):
        if self._open_cache is None:
            if not self._parts:
                self._open_cache = (np.empty(0, np.int64),) * 3
            else:
                t, ticks, sq = (np.concatenate([p[i] for p in self._parts]) for i in range(3))
                if len(t) > 1 and not (t[1:] >= t[:-1]).all():
                    o = np.argsort(t, kind="stable")
                    t, ticks, sq = t[o], ticks[o], sq[o]
                self._open_cache = (t, ticks, sq)
        return self._open_cache

    def _bucket_raw(self, b: int):
        if b == self._open:
            return self._open_raw()
        bucket = self._buckets.get(b)
        return None if bucket is None else bucket.raw()

    def _raw_slice(self, b: int, s: int, e: int):
        r = self._bucket_raw(b)
        if r is None or not len(r[0]):
            return None
        t = r[0]
        lo, hi = np.searchsorted(t, [s, e], side="left")
        if hi <= lo:
            return None
        return t[lo:hi], r[1][lo:hi], r[2][lo:hi]

    def _resolve(self, start, end) -> tuple[int, int]:
        if self._n == 0:
            raise ValueError("the profile store holds no trades")
        s = self._tmin if start is None else int(start)
        e = self.end_time if end is None else int(end)
        return s, e

    def _pieces(self, s: int, e: int, levels: int | None = None):
        """Split [s, e) into (raw slices, whole closed buckets, whole blocks) covering it exactly.

        ``levels``: how many block levels may be used (None: all). Returns ``(raw, buckets,
        blocks)``: raw is a list of (time, tick, sq) arrays, buckets a list of (bucket id,
        _Bucket), blocks a list of (level, block id, _Block).
        """
        raw, buckets, blocks = [], [], []
        if self._horizon is not None:
            s = max(s, self._horizon)
        if e <= s:
            return raw, buckets, blocks
        bm = self._bm
        b0, b1 = s // bm, (e - 1) // bm
        w0 = b0 if s == b0 * bm else b0 + 1
        w1 = b1 + 1 if e == (b1 + 1) * bm else b1
        left_raw = b0 if w0 > b0 else None
        right_raw = b1 if (w1 <= b1 and b1 != left_raw) else None
        if left_raw is not None:
            r = self._raw_slice(b0, s, min(e, (b0 + 1) * bm))
            if r is not None:
                raw.append(r)
        if w0 < w1:
            nlv = len(self._lv) if levels is None else levels
            self._cover(w0, w1, nlv - 1, buckets, blocks)
            if self._open is not None and w0 <= self._open < w1:
                r = self._open_raw()
                if len(r[0]):
                    raw.append(r)
        if right_raw is not None:
            r = self._raw_slice(b1, max(s, b1 * bm), e)
            if r is not None:
                raw.append(r)
        return raw, buckets, blocks

    def _cover(self, w0: int, w1: int, i: int, buckets: list, blocks: list) -> None:
        """Cover whole buckets [w0, w1) with level-i blocks where complete, recursing into the gaps."""
        if i < 0:
            for b in self._ids[bisect.bisect_left(self._ids, w0) : bisect.bisect_left(self._ids, w1)]:
                if b != self._open:
                    buckets.append((b, self._buckets[b]))
            return
        n = self._lv[i]
        ids = self._block_ids[i]
        used = ids[bisect.bisect_left(ids, -(-w0 // n)) : bisect.bisect_left(ids, w1 // n)]
        cur = w0
        for k in used:
            if cur < k * n:
                self._cover(cur, k * n, i - 1, buckets, blocks)
            blocks.append((i, k, self._blocks[i][k]))
            cur = (k + 1) * n
        if cur < w1:
            self._cover(cur, w1, i - 1, buckets, blocks)

    @locked
    def raw_trades(self, start: int | None = None, end: int | None = None) -> RawTrades:
        """The held trades with ``start <= time < end`` on the tick grid, time-sorted (reads every one)."""
        s, e = self._resolve(start, end)
        raw, buckets, _ = self._pieces(s, e, levels=0)
        parts = [(b, bucket) for b, bucket in buckets] + [(int(r[0][0]) // self._bm, r) for r in raw]
        parts.sort(key=lambda p: p[0])
        n = sum(len(p.sq) if isinstance(p, _Bucket) else len(p[0]) for _, p in parts)
        time, tick, sq = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
        a = 0
        for _, p in parts:  # filled in place: no per-bucket temporaries, no concatenation
            if isinstance(p, _Bucket):
                z = a + len(p.sq)
                time[a:z] = p.toff
                time[a:z] += p.start
                tick[a:z] = p.trel
                tick[a:z] += p.tbase
                sq[a:z] = p.sq
            else:
                z = a + len(p[0])
                time[a:z], tick[a:z], sq[a:z] = p
            a = z
        sell = sq < 0
        np.abs(sq, out=sq)
        return RawTrades(time, tick, sq, sell)

    @locked
    def trades(self, start: int | None = None, end: int | None = None) -> TradeBatch:
        """The held trades in ``[start, end)`` as a TradeBatch (prices on the tick grid, trade ids -1)."""
        r = self.raw_trades(start, end)
        dec = grid.decimals_for(self.tick)
        return TradeBatch(r.time, np.round(r.tick * self.tick, dec), r.qint / float(self._scale), r.sell,
                          np.full(len(r), -1, np.int64), self.symbol)

    # -- sums -----------------------------------------------------------------------------
