"""The two containers of :mod:`compute.buckets`: a closed bucket's raw columns and per-tick sums, a block's sums.

* :class:`Bucket` — one closed, epoch-aligned bucket: raw trades as compact columns (time
  offset int32 ms, tick offset int32, signed exact quantity int64: + taker buy, - taker sell)
  and its per-tick sums as sparse sorted arrays (tick int64, volume int64, buy int64, count int32).
* :class:`Block` — the per-tick sums of a complete block of buckets (or of lower-level
  blocks), dense over its tick span or sparse.
* :func:`accumulate` — add buckets' / blocks' per-tick sums into dense arrays.

Quantities are exact integers in units of ``10**-qty_decimals`` base asset (:mod:`compute.result`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["Bucket", "Block", "accumulate"]


class Bucket:
    """One closed bucket: raw columns and per-tick sums."""

    __slots__ = ("start", "toff", "tbase", "trel", "sq", "ticks", "vol", "buy", "cnt", "folds")

    def __init__(self, start: int, time: np.ndarray, tick: np.ndarray, sq: np.ndarray):
        if len(time) > 1 and not (time[1:] >= time[:-1]).all():
            o = np.argsort(time, kind="stable")
            time, tick, sq = time[o], tick[o], sq[o]
        self.start = start
        self.folds = None  # row size -> sums in rows (compute.prefix.part_rows)
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


class Block:
    """Per-tick sums of a complete block of buckets (dense over [lo, hi] or sparse)."""

    __slots__ = ("lo", "hi", "dense", "ticks", "vol", "buy", "cnt", "folds")

    def __init__(self, parts: list, top: bool = False):
        """``parts``: closed buckets and/or blocks (of the level below) covering the block."""
        lo = min(p.lo if isinstance(p, Block) else int(p.ticks[0]) for p in parts)
        hi = max(p.hi if isinstance(p, Block) else int(p.ticks[-1]) for p in parts)
        span = hi - lo + 1
        vol = np.zeros(span, np.int64)
        buy = np.zeros(span, np.int64)
        cnt = np.zeros(span, np.int64)
        accumulate(vol, buy, cnt, lo, parts)
        self.lo, self.hi = lo, hi
        self.folds = None  # row size -> sums in rows (compute.prefix.part_rows)
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


def accumulate(vol, buy, cnt, base: int, parts: list) -> None:
    """Add the per-tick sums of buckets/blocks into dense arrays indexed by ``tick - base``."""
    sparse = []
    for p in parts:
        if isinstance(p, Block) and p.dense:
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
