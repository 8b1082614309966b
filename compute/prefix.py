"""Prefix sums at the top-level block boundaries of :mod:`compute.buckets`, and the fast combine of the edges.

A long range (24 h) used to add every hour block's per-tick sums (23 of them) plus the
edge blocks and buckets. With prefix sums it is two subtractions plus the edge minutes:

* ``S[j]`` = per-tick sums (volume, buy, count; exact int64) of every top-level block with
  id ``<= j`` of the same **chain** (``chain`` consecutive block ids: 24 one-hour blocks by
  default, one UTC day), dense over the union of their tick spans.
* the blocks ``j0 .. j1`` of one chain (all the held ones between them) sum to
  ``S[j1] - S[j0] + B[j0]``: one dense add, one dense subtract, one block.

Chains bound the memory (a prefix spans one day's prices, not the whole history) and the
work after a change: ``S`` entries are computed lazily, when a query first needs them, from
the entry before (one dense add per new hour); a rebuilt or removed block invalidates the
entries from it to the end of its chain only.

:func:`add_parts` adds blocks and buckets (dense slices, sparse ones in one numba scatter)
and :func:`add_raw` raw (tick, signed qty) trades into dense per-tick arrays
(:mod:`compute.kernels`). Pure: no I/O.
"""

from __future__ import annotations

import bisect
import functools

import numpy as np

__all__ = ["MAX_FOLDS", "PrefixSums", "add_parts", "add_raw", "part_rows"]

_KERNELS = None


def _k():
    """:mod:`compute.kernels`, imported on first use (numba costs about a second to import)."""
    global _KERNELS
    if _KERNELS is None:
        from . import kernels

        _KERNELS = kernels
    return _KERNELS


#: Row sizes (ticks per row) whose folded sums each bucket, block and prefix entry keeps.
MAX_FOLDS = 2


def part_rows(part, tpr: int):
    """A bucket's or block's per-tick sums summed into rows of ``tpr`` ticks, cached on it for ``tpr`` > 1.

    Returns ``(True, first_row, vol, buy, cnt)`` (dense) or ``(False, rows, vol, buy, cnt)``
    (sparse, ascending rows); int arrays. With ``tpr == 1`` the part's own arrays (no copy). The
    cache keeps the :data:`MAX_FOLDS` most recent row sizes (a dashboard asks the same one again).
    """
    dense = getattr(part, "dense", False)
    if tpr == 1:
        return (True, part.lo, part.vol, part.buy, part.cnt) if dense else (False, part.ticks, part.vol, part.buy,
                                                                            part.cnt)
    folds = part.folds
    if folds is None:
        folds = part.folds = {}
    got = folds.get(tpr)
    if got is None:
        k = _k()
        got = (True, *k.fold_dense(part.lo, part.vol, part.buy, part.cnt, tpr)) if dense else (
            False, *k.fold_sparse(part.ticks, part.vol, part.buy, part.cnt, tpr))
        if len(folds) >= MAX_FOLDS:
            del folds[next(iter(folds))]
        folds[tpr] = got
    return got


def _add_window(vol, buy, cnt, base: int, lo: int, v, b, c, sign: int = 1) -> None:
    """Add (``sign`` 1) or subtract (-1) dense sums starting at slot ``lo`` into the arrays starting at ``base``.

    Only the overlap with ``[base, base + len(vol))`` is touched (in place, one numba call).
    """
    _k().add_dense(vol, buy, cnt, base, lo, v, b, c, sign)


def add_parts(vol, buy, cnt, base: int, parts: list, tpr: int = 1) -> None:
    """Add the sums of buckets and blocks (:mod:`compute.blocks`) into dense per-row arrays.

    ``vol``, ``buy``, ``cnt``: int64 arrays of shape (R,) indexed by ``row - base``, rows of
    ``tpr`` ticks (``row = floor(tick / tpr)``); every part must fall inside. Folded rows come
    from :func:`part_rows` (cached); dense ones are added as slices, sparse ones in one numba
    scatter (:func:`compute.kernels.scatter_sums`). Exact integer sums.
    """
    sparse = []
    for p in parts:
        dense, lo, v, b, c = part_rows(p, tpr)
        if dense:
            _add_window(vol, buy, cnt, base, lo, v, b, c)
        else:
            sparse.append((lo, v, b, c))
    if not sparse:
        return
    if len(sparse) == 1:
        idx, v, b, c = sparse[0]
        idx = idx - base
    else:
        idx = np.concatenate([p[0] for p in sparse])
        idx -= base
        v, b, c = (np.concatenate([p[i] for p in sparse]) for i in (1, 2, 3))
    _k().scatter_sums(vol, buy, cnt, idx, v, b, c)


@functools.lru_cache(maxsize=64)
def _divider(tpr: int) -> tuple[int, int]:
    return _k().divider(tpr)


def add_raw(vol, buy, cnt, base: int, raw: list, tpr: int = 1) -> None:
    """Add raw trades ``(time, tick, signed qty)`` (int64 arrays (K,)) into dense per-row arrays (see :func:`add_parts`).

    One numba pass per slice; the row is ``floor(tick / tpr)`` by an exact multiply-shift
    (:func:`compute.kernels.divider`) when the window's ticks fit 31 bits, else numpy.
    """
    k = _k()
    t0 = base * tpr
    if tpr == 1:
        for _t, ticks, sq in raw:
            k.scatter_raw(vol, buy, cnt, ticks, sq, base)
    elif len(vol) * tpr < 2**31:
        m, s = _divider(tpr)
        for _t, ticks, sq in raw:
            k.scatter_raw_rows(vol, buy, cnt, ticks, sq, t0, m, s)
    else:
        for _t, ticks, sq in raw:
            idx = np.floor_divide(ticks, tpr) - base
            np.add.at(vol, idx, np.abs(sq))
            pos = sq > 0
            np.add.at(buy, idx[pos], sq[pos])
            np.add.at(cnt, idx, 1)


class PrefixSums:
    """Lazily computed inclusive prefix sums of the top-level blocks, restarted every ``chain`` block ids.

    The owner (:class:`compute.buckets.BucketStore`) calls :meth:`invalidate` when a top-level
    block is built, rebuilt or removed, and :meth:`drop_before` when it trims; queries call
    :meth:`add_run`. Not thread-safe by itself: the owner's lock covers every call.
    """

    def __init__(self, chain: int = 24):
        if chain < 1:
            raise ValueError(f"chain must be >= 1 block, got {chain}")
        self.chain = int(chain)
        self._s: dict[int, tuple[int, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._folds: dict[tuple[int, int], tuple] = {}  # (block id, tpr) -> S[j] summed into rows
        self._tprs: list[int] = []  # row sizes with folds, oldest first (at most MAX_FOLDS)

    @property
    def nbytes(self) -> int:
        """Bytes held in the prefix arrays."""
        return sum(v.nbytes + b.nbytes + c.nbytes for _, v, b, c in (*self._s.values(), *self._folds.values()))

    def invalidate(self, k: int) -> None:
        """Forget the entries from block ``k`` to the end of its chain (block ``k`` changed)."""
        end = (k // self.chain + 1) * self.chain
        for j in [j for j in self._s if k <= j < end]:
            del self._s[j]
        for key in [key for key in self._folds if k <= key[0] < end]:
            del self._folds[key]

    def drop_before(self, k: int) -> None:
        """Forget the entries of blocks before ``k`` (trimmed); later entries stay valid (differences)."""
        for j in [j for j in self._s if j < k]:
            del self._s[j]
        for key in [key for key in self._folds if key[0] < k]:
            del self._folds[key]

    def _get(self, j: int, blocks: dict, ids: list):
        got = self._s.get(j)
        if got is not None:
            return got
        blk = blocks[j]
        i = bisect.bisect_left(ids, j)
        prev = ids[i - 1] if i > 0 and ids[i - 1] // self.chain == j // self.chain else None
        p = None if prev is None else self._get(prev, blocks, ids)
        lo = blk.lo if p is None else min(p[0], blk.lo)
        hi = blk.hi if p is None else max(p[0] + len(p[1]) - 1, blk.hi)
        vol, buy, cnt = (np.zeros(hi - lo + 1, np.int64) for _ in range(3))
        if p is not None:
            _add_window(vol, buy, cnt, lo, *p)
        add_parts(vol, buy, cnt, lo, [blk])  # tpr 1: ticks
        self._s[j] = (lo, vol, buy, cnt)
        return self._s[j]

    def _rows(self, j: int, tpr: int, blocks: dict, ids: list):
        """``S[j]`` summed into rows of ``tpr`` ticks: ``(first_row, vol, buy, cnt)`` (cached for MAX_FOLDS sizes)."""
        if tpr == 1:
            return self._get(j, blocks, ids)
        got = self._folds.get((j, tpr))
        if got is None:
            if tpr not in self._tprs:
                if len(self._tprs) >= MAX_FOLDS:
                    old = self._tprs.pop(0)
                    for key in [key for key in self._folds if key[1] == old]:
                        del self._folds[key]
                self._tprs.append(tpr)
            got = self._folds[(j, tpr)] = _k().fold_dense(*self._get(j, blocks, ids), tpr)
        return got

    def add_run(self, vol, buy, cnt, base: int, run: list, blocks: dict, ids: list, tpr: int = 1) -> None:
        """Add the sums of the top-level blocks ``run`` into dense per-row arrays (see :func:`add_parts`).

        ``run``: sorted block ids holding *every* held block between the first and the last
        (what a range covers); ``blocks``: id -> :class:`compute.blocks.Block`; ``ids``: all
        held top-level ids, sorted. Per chain: ``S[last] - S[first] + B[first]`` (in rows of
        ``tpr`` ticks) when that is less work than adding the blocks one by one.
        """
        i = 0
        while i < len(run):
            c = run[i] // self.chain
            z = i
            while z + 1 < len(run) and run[z + 1] // self.chain == c:
                z += 1
            first, last = run[i], run[z]
            if z - i < 2:
                add_parts(vol, buy, cnt, base, [blocks[j] for j in run[i : z + 1]], tpr)
            else:
                _add_window(vol, buy, cnt, base, *self._rows(last, tpr, blocks, ids))
                _add_window(vol, buy, cnt, base, *self._rows(first, tpr, blocks, ids), sign=-1)
                add_parts(vol, buy, cnt, base, [blocks[first]], tpr)
            i = z + 1
