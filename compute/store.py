"""The incremental profile store: any time range's profile without touching its interior trades.

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

A query ``[start, end)`` takes the largest whole blocks, then smaller ones, then whole
buckets (for 24 h: at most 23 hours, 10 ten-minute blocks, 18 minutes), and only for the two
partial edge buckets (and the open one) the raw trades of exactly the part inside the
range. All sums are exact integers (see :mod:`compute.result`), so the answer is
identical, bit for bit, to recomputing from the raw trades of the range; any row size
that is a whole number of ticks is re-binned from the per-tick sums.

Kinds: ``volume`` and ``split`` come from the aggregates; ``tpo`` from per-bucket
presence when the TPO block is a whole number of buckets (else from the raw trades);
``recency`` always reads the raw trades of the range (its weights depend on the
range end, so no pre-sum applies) — exact, and linear in the range's trades.

Batches should arrive in time order. A trade older than the open bucket is still
handled exactly: its bucket (and block) is rebuilt. A trade older than the
trimmed horizon (see :meth:`ProfileStore.trim`) is rejected with ValueError and
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
from .candles import candles as _candles
from .levels import DevelopingResult, check_candle, developing_from_entries
from .result import (
    DEFAULT_PERCENTILES,
    ProfileResult,
    RawTrades,
    as_batch,
    build_result,
    check_prices,
    check_value_area,
    empty_range_error,
    qty_scale,
    qty_to_int,
)
from .split import combine_split, split_time
from .timeweighted import (
    auto_tpo_block,
    check_block,
    check_half_life,
    recency_from_raw,
    tpo_counts,
    tpo_result,
)

KINDS = ("volume", "recency", "tpo", "split")

_INT64_SAFE = 2**62


class _Bucket:
    """One closed bucket: raw columns and per-tick sums."""

    __slots__ = ("start", "toff", "tbase", "trel", "sq", "ticks", "vol", "buy", "cnt")

    def __init__(self, start: int, time: np.ndarray, tick: np.ndarray, sq: np.ndarray):
        if len(time) > 1 and not (time[1:] >= time[:-1]).all():
            o = np.argsort(time, kind="stable")
            time, tick, sq = time[o], tick[o], sq[o]
        self.start = start
        tbase = int(tick.min())
        span = int(tick.max()) - tbase + 1
        rel = tick - tbase
        self.tbase = tbase
        self.trel = rel.astype(np.int32) if span < 2**31 else rel.astype(np.int64)
        self.toff = (time - start).astype(np.int32)
        self.sq = np.array(sq, dtype=np.int64)  # a copy: never keep a whole batch alive
        q = np.abs(self.sq)
        pos = self.sq > 0
        n = len(rel)
        if span <= 4 * n + 4096:
            cnt = np.bincount(rel, minlength=span)
            vol = np.zeros(span, np.int64)
            buy = np.zeros(span, np.int64)
            np.add.at(vol, rel, q)
            np.add.at(buy, rel[pos], self.sq[pos])
            nz = np.flatnonzero(cnt)
            self.ticks, self.vol, self.buy, self.cnt = nz + tbase, vol[nz], buy[nz], cnt[nz].astype(np.int32)
        else:
            u, inv = np.unique(rel, return_inverse=True)
            vol = np.zeros(len(u), np.int64)
            buy = np.zeros(len(u), np.int64)
            np.add.at(vol, inv, q)
            np.add.at(buy, inv[pos], self.sq[pos])
            self.ticks, self.vol, self.buy = u + tbase, vol, buy
            self.cnt = np.bincount(inv, minlength=len(u)).astype(np.int32)

    def raw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(time int64, tick int64, signed qty int64), time-sorted."""
        return self.toff.astype(np.int64) + self.start, self.trel.astype(np.int64) + self.tbase, self.sq

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, k).nbytes for k in ("toff", "trel", "sq", "ticks", "vol", "buy", "cnt"))


class _Block:
    """Per-tick sums of a complete block of buckets (dense over [lo, hi] or sparse)."""

    __slots__ = ("lo", "hi", "dense", "ticks", "vol", "buy", "cnt")

    def __init__(self, parts: list, top: bool = False):
        """``parts``: closed buckets and/or blocks (of the level below) covering the block."""
        lo = min(p.lo if isinstance(p, _Block) else int(p.ticks[0]) for p in parts)
        hi = max(p.hi if isinstance(p, _Block) else int(p.ticks[-1]) for p in parts)
        span = hi - lo + 1
        vol = np.zeros(span, np.int64)
        buy = np.zeros(span, np.int64)
        cnt = np.zeros(span, np.int64)
        _accumulate(vol, buy, cnt, lo, parts)
        self.lo, self.hi = lo, hi
        nz = np.flatnonzero(cnt)
        if cnt[nz].max() >= 2**31:
            raise ValueError("more than 2**31 trades at one tick in one block")
        # dense is faster to combine; take it while it costs at most ~3x (top level) / ~1.4x the sparse bytes
        self.dense = span <= (4 if top else 2) * len(nz)
        if self.dense:
            self.ticks, self.vol, self.buy, self.cnt = None, vol, buy, cnt.astype(np.int32)
        else:
            self.ticks, self.vol, self.buy, self.cnt = nz + lo, vol[nz], buy[nz], cnt[nz].astype(np.int32)

    def traded_ticks(self) -> np.ndarray:
        return self.ticks if not self.dense else np.flatnonzero(self.cnt) + self.lo

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.ticks, self.vol, self.buy, self.cnt) if a is not None)


def _accumulate(vol, buy, cnt, base: int, parts: list) -> None:
    """Add the per-tick sums of buckets/blocks into dense arrays indexed by ``tick - base``."""
    sparse = []
    for p in parts:
        if isinstance(p, _Block) and p.dense:
            a = p.lo - base
            z = a + len(p.vol)
            vol[a:z] += p.vol
            buy[a:z] += p.buy
            cnt[a:z] += p.cnt
        else:
            sparse.append(p)
    if sparse:
        idx = np.concatenate([p.ticks for p in sparse]) - base
        np.add.at(vol, idx, np.concatenate([p.vol for p in sparse]))
        np.add.at(buy, idx, np.concatenate([p.buy for p in sparse]))
        np.add.at(cnt, idx, np.concatenate([p.cnt for p in sparse]))


def _locked(method):
    """Run a public method under the store's lock (ingest and queries may come from different threads)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class ProfileStore(param.Parameterized):
    """Incremental per-bucket, per-tick aggregates of one symbol's trades; see the module docstring.

    ``ProfileStore(tick, bucket_ms=60_000, levels=(10, 60), qty_decimals=8)``.
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
        n += sum(b.nbytes for level in self._blocks for b in level.values())
        return n + sum(a.nbytes for p in self._parts for a in p)

    # -- ingest ---------------------------------------------------------------------------
    @_locked
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

    @_locked
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

    @_locked
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

    @_locked
    def trades(self, start: int | None = None, end: int | None = None) -> TradeBatch:
        """The held trades in ``[start, end)`` as a TradeBatch (prices on the tick grid, trade ids -1)."""
        r = self.raw_trades(start, end)
        dec = grid.decimals_for(self.tick)
        return TradeBatch(r.time, np.round(r.tick * self.tick, dec), r.qint / float(self._scale), r.sell,
                          np.full(len(r), -1, np.int64), self.symbol)

    # -- sums -----------------------------------------------------------------------------
    def _tick_sums(self, s: int, e: int, tpr: int):
        """Dense per-row int sums ``(first_row, vol, buy, cnt)`` for [s, e), or None if no trades."""
        raw, buckets, blocks = self._pieces(s, e)
        los, his = [], []
        for _t, ticks, _ in raw:
            los.append(int(ticks.min()))
            his.append(int(ticks.max()))
        for _, b in buckets:
            los.append(int(b.ticks[0]))
            his.append(int(b.ticks[-1]))
        for _, _, k in blocks:
            los.append(k.lo)
            his.append(k.hi)
        if not los:
            return None
        r_lo, r_hi = min(los) // tpr, max(his) // tpr
        base = r_lo * tpr
        size = (r_hi - r_lo + 1) * tpr
        vol = np.zeros(size, np.int64)
        buy = np.zeros(size, np.int64)
        cnt = np.zeros(size, np.int64)
        _accumulate(vol, buy, cnt, base, [b for _, b in buckets] + [k for _, _, k in blocks])
        if raw:
            idx = np.concatenate([r[1] for r in raw]) - base
            sq = np.concatenate([r[2] for r in raw])
            np.add.at(vol, idx, np.abs(sq))
            pos = sq > 0
            np.add.at(buy, idx[pos], sq[pos])
            cnt += np.bincount(idx, minlength=size)
        if tpr > 1:
            vol = vol.reshape(-1, tpr).sum(axis=1)
            buy = buy.reshape(-1, tpr).sum(axis=1)
            cnt = cnt.reshape(-1, tpr).sum(axis=1)
        return r_lo, vol, buy, cnt

    # -- queries --------------------------------------------------------------------------
    @_locked
    def profile(
        self, start: int | None = None, end: int | None = None, row_size: float | None = None,
        value_area: float = 0.7, method: str = "single", kind: str = "volume", *,
        half_life_s: float | None = None, tpo_block_ms: int | None = None, percentiles=DEFAULT_PERCENTILES,
    ) -> ProfileResult:
        """Profile of the held trades in ``[start, end)`` (UTC ms; defaults: everything held).

        Identical to the matching function on the raw trades of exactly that range:
        ``kind="volume"`` :func:`compute.profile.volume_profile`, ``"recency"``
        :func:`compute.timeweighted.recency_profile` (``half_life_s``), ``"tpo"``
        :func:`compute.timeweighted.tpo_profile` (``tpo_block_ms``), ``"split"``
        :func:`compute.split.split_profile`. ``row_size`` defaults to the tick; ``method``
        is the value-area method (``"single"`` or ``"dual"``).

        Raises
        ------
        ValueError
            Unknown kind, bad row size / value area / half-life / block, or no trades in range.
        """
        row_size = self.tick if row_size is None else row_size
        tpr = grid.ticks_per_row(row_size, self.tick)
        check_value_area(value_area, method)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        s, e = self._resolve(start, end)
        kw = dict(value_area=value_area, value_area_method=method, percentiles=percentiles)
        if kind == "volume":
            return self._volume(s, e, tpr, row_size, **kw)
        if kind == "split":
            whole = self._volume(s, e, tpr, row_size, **kw)
            mid = split_time(s, e)
            return combine_split(whole, self._half(s, mid, tpr, row_size, kw), self._half(mid, e, tpr, row_size, kw), mid)
        if kind == "recency":
            h = check_half_life(half_life_s, s, e)
            sums = self._tick_sums(s, e, tpr)
            if sums is None:
                raise empty_range_error(s, e)
            return recency_from_raw(self.raw_trades(s, e), self.tick, row_size, s, e, h,
                                    qty_decimals=self.qty_decimals, sums=sums, **kw)
        block = auto_tpo_block(s, e) if tpo_block_ms is None else check_block(tpo_block_ms)
        return self._tpo(s, e, tpr, row_size, block, **kw)

    def _volume(self, s, e, tpr, row_size, **kw) -> ProfileResult:
        sums = self._tick_sums(s, e, tpr)
        if sums is None:
            raise empty_range_error(s, e)
        r0, vol, buy, cnt = sums
        return build_result("volume", self.tick, row_size, r0, s, e, self.qty_decimals, vol, buy, cnt, **kw)

    def _half(self, s, e, tpr, row_size, kw):
        sums = self._tick_sums(s, e, tpr) if e > s else None
        if sums is None:
            return None
        r0, vol, buy, cnt = sums
        return build_result("volume", self.tick, row_size, r0, s, e, self.qty_decimals, vol, buy, cnt, **kw)

    def _tpo(self, s, e, tpr, row_size, block, **kw) -> ProfileResult:
        sums = self._tick_sums(s, e, tpr)
        if sums is None:
            raise empty_range_error(s, e)
        r0, vol, buy, cnt = sums
        bm = self._bm
        if block % bm:
            raw = self.raw_trades(s, e)
            blk, rows = raw.time // block, np.floor_divide(raw.tick, tpr)
        else:
            usable = sum(1 for n in self._lv if block % (n * bm) == 0)  # a prefix: levels are nested
            raw, buckets, blocks = self._pieces(s, e, levels=usable)
            bl, rl = [], []
            for b, bucket in buckets:
                bl.append(np.full(len(bucket.ticks), (b * bm) // block, np.int64))
                rl.append(np.floor_divide(bucket.ticks, tpr))
            for i, k, blk_ in blocks:
                tt = blk_.traded_ticks()
                bl.append(np.full(len(tt), (k * self._lv[i] * bm) // block, np.int64))
                rl.append(np.floor_divide(tt, tpr))
            for t, ticks, _ in raw:
                bl.append(t // block)
                rl.append(np.floor_divide(ticks, tpr))
            blk, rows = np.concatenate(bl), np.concatenate(rl)
        counts = tpo_counts(r0, len(vol), blk, rows)
        return tpo_result(self.tick, row_size, r0, s, e, self.qty_decimals, vol, buy, cnt, counts, block, **kw)

    @_locked
    def developing(
        self, start: int | None = None, end: int | None = None, row_size: float | None = None,
        candle_ms: int = 60_000, value_area: float = 0.7, method: str = "single", percentiles=DEFAULT_PERCENTILES,
    ) -> DevelopingResult:
        """Developing POC/VAH/VAL per candle, identical to :func:`compute.levels.developing_levels`.

        Uses bucket sums when ``candle_ms`` is a whole number of buckets (else the raw trades).
        """
        c = check_candle(candle_ms)
        row_size = self.tick if row_size is None else row_size
        tpr = grid.ticks_per_row(row_size, self.tick)
        check_value_area(value_area, method)
        s, e = self._resolve(start, end)
        prof = self._volume(s, e, tpr, row_size, value_area=value_area, value_area_method=method,
                            percentiles=percentiles)
        if c % self._bm:
            raw = self.raw_trades(s, e)
            ci, rows, vol, cnt = raw.time // c, np.floor_divide(raw.tick, tpr), raw.qint, np.ones(len(raw), np.int64)
        else:
            raw, buckets, _ = self._pieces(s, e, levels=0)
            cl, rl, vl, nl = [], [], [], []
            for b, bucket in buckets:
                cl.append(np.full(len(bucket.ticks), (b * self._bm) // c, np.int64))
                rl.append(np.floor_divide(bucket.ticks, tpr))
                vl.append(bucket.vol)
                nl.append(bucket.cnt.astype(np.int64))
            for t, ticks, sq in raw:
                cl.append(t // c)
                rl.append(np.floor_divide(ticks, tpr))
                vl.append(np.abs(sq))
                nl.append(np.ones(len(t), np.int64))
            ci, rows, vol, cnt = (np.concatenate(x) for x in (cl, rl, vl, nl))
        dev = developing_from_entries(ci, rows, vol, cnt, c, e, self.tick, row_size, value_area=value_area,
                                      value_area_method=method, qty_decimals=self.qty_decimals)
        return DevelopingResult(prof, dev, c)

    @_locked
    def candles(self, start: int | None = None, end: int | None = None, interval_ms: int | None = None):
        """OHLCV candles of the held trades in ``[start, end)`` (see :func:`compute.candles.candles`).

        Prices are the trades' tick-grid prices; ``interval_ms`` defaults to ``bucket_ms``.
        """
        if self._n == 0:
            return _candles(TradeBatch.empty(), interval_ms or self._bm)
        return _candles(self.trades(start, end), interval_ms or self._bm)
