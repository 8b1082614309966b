"""The incremental profile store: any time range's profile without touching its interior trades.

:class:`ProfileStore` keeps one symbol's trades in the buckets and blocks of
:mod:`compute.buckets` (per-tick exact sums at 1 minute, 10 minutes and 1 hour, by default)
and answers each profile kind from them: a query ``[start, end)`` takes the largest whole
blocks, then smaller ones, then whole buckets (for 24 h: at most 23 hours, 10 ten-minute
blocks, 18 minutes), and only for the two partial edge buckets (and the open one) the raw
trades of exactly the part inside the range. All sums are exact integers (see
:mod:`compute.result`), so the answer is identical, bit for bit, to recomputing from the raw
trades of the range; any row size that is a whole number of ticks is re-binned from the
per-tick sums.

Kinds (each method is the kind's incremental engine in :mod:`compute.kinds`): ``volume``
and ``split`` come from the aggregates; ``tpo`` from per-bucket presence when the TPO block
is a whole number of buckets (else from the raw trades); ``recency`` always reads the raw
trades of the range (its weights depend on the range end, so no pre-sum applies) — exact,
and linear in the range's trades; ``developing`` from bucket sums when the candle is a whole
number of buckets.
"""

from __future__ import annotations

import numpy as np

from . import grid
from .batch import TradeBatch
from .buckets import BucketStore, locked
from .candles import candles as _candles
from .levels import DevelopingResult, check_candle, developing_from_entries
from .prefix import add_parts, add_raw
from .result import (
    DEFAULT_PERCENTILES,
    ProfileResult,
    build_result,
    check_value_area,
    empty_range_error,
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


class ProfileStore(BucketStore):
    """Incremental per-bucket, per-tick aggregates of one symbol's trades, answering every profile kind.

    ``ProfileStore(tick, bucket_ms=60_000, levels=(10, 60), qty_decimals=8)``. Times are UTC ms,
    prices quote currency, quantities base asset. Thread-safe: every public method holds one
    re-entrant lock. Ingest with :meth:`update` (a TradeBatch or DataFrame), bound memory with
    :meth:`trim`; the queries below are identical to the in-memory functions of :mod:`compute`.
    """

    def _tick_sums(self, s: int, e: int, tpr: int):
        """Dense per-row int sums ``(first_row, vol, buy, cnt)`` for [s, e), or None if no trades.

        Summed straight into rows: the run of whole top-level blocks from the prefix sums
        (:class:`compute.prefix.PrefixSums`: two subtractions per chain), the edge blocks and
        buckets from their sums (both folded into rows once per row size and cached), the
        partial edge buckets from their raw trades (:func:`compute.prefix.add_parts`, :func:`compute.prefix.add_raw`).
        """
        raw, buckets, blocks = self._pieces(s, e)
        top = len(self._lv) - 1
        run = [k for i, k, _ in blocks if i == top]
        parts = [b for _, b in buckets] + [blk for i, _, blk in blocks if i != top]
        los = [int(t.min()) for _, t, _ in raw] + [int(b.ticks[0]) for _, b in buckets]
        his = [int(t.max()) for _, t, _ in raw] + [int(b.ticks[-1]) for _, b in buckets]
        for _, _, k in blocks:
            los.append(k.lo)
            his.append(k.hi)
        if not los:
            return None
        r_lo, r_hi = min(los) // tpr, max(his) // tpr
        vol, buy, cnt = (np.zeros(r_hi - r_lo + 1, np.int64) for _ in range(3))  # rows, not ticks
        if run:
            self._prefix.add_run(vol, buy, cnt, r_lo, run, self._blocks[top], self._block_ids[top], tpr)
        add_parts(vol, buy, cnt, r_lo, parts, tpr)
        add_raw(vol, buy, cnt, r_lo, raw, tpr)
        return r_lo, vol, buy, cnt

    # -- queries: one method per kind, the engine of :mod:`compute.kinds` -------------------
    @locked
    def profile(
        self, start: int | None = None, end: int | None = None, row_size: float | None = None,
        value_area: float = 0.7, value_area_method: str = "single", kind: str = "volume", *,
        half_life_s: float | None = None, block_ms: int | None = None, percentiles=DEFAULT_PERCENTILES,
    ) -> ProfileResult:
        """Profile ``kind`` of the held trades in ``[start, end)`` (UTC ms; defaults: everything held).

        The kind's incremental engine in the registry (:mod:`compute.kinds`) answers: one of
        :meth:`volume_profile`, :meth:`recency_profile` (``half_life_s``), :meth:`tpo_profile`
        (``block_ms``) or :meth:`split_profile`; a keyword the kind does not take is ignored.

        Raises
        ------
        ValueError
            A kind with no incremental profile engine; otherwise as the kind's method.
        """
        from .kinds import KINDS, PROFILE_KINDS

        spec = KINDS.get(kind)
        if spec is None or not spec.profile or spec.incremental is None:
            raise ValueError(f"kind must be one of {', '.join(PROFILE_KINDS)}, got {kind!r}")
        own = {n: v for n, v in (("half_life_s", half_life_s), ("block_ms", block_ms)) if n in spec.params.names()}
        return spec.incremental(self, start, end, row_size=row_size, value_area=value_area,
                                value_area_method=value_area_method, percentiles=percentiles, **own)

    def _query(self, start, end, row_size, value_area, value_area_method, percentiles):
        """(s, e, ticks per row, row size, result keywords) of a profile query; raises ValueError."""
        row_size = self.tick if row_size is None else row_size
        tpr = grid.ticks_per_row(row_size, self.tick)
        check_value_area(value_area, value_area_method)
        s, e = self._resolve(start, end)
        return s, e, tpr, row_size, dict(value_area=value_area, value_area_method=value_area_method,
                                         percentiles=percentiles)

    @locked
    def volume_profile(self, start=None, end=None, row_size=None, value_area=0.7, value_area_method="single",
                       percentiles=DEFAULT_PERCENTILES) -> ProfileResult:
        """:func:`compute.profile.volume_profile` of the held trades in ``[start, end)``, from the sums.

        Identical to it on the raw trades of exactly that range; ``row_size`` defaults to the tick.
        Raises ValueError as that function does (bad row size or value area, no trades in range).
        """
        s, e, tpr, row_size, kw = self._query(start, end, row_size, value_area, value_area_method, percentiles)
        return self._volume(s, e, tpr, row_size, **kw)

    @locked
    def split_profile(self, start=None, end=None, row_size=None, value_area=0.7, value_area_method="single",
                      percentiles=DEFAULT_PERCENTILES) -> ProfileResult:
        """:func:`compute.split.split_profile` of ``[start, end)``, from the sums of each half (identical)."""
        s, e, tpr, row_size, kw = self._query(start, end, row_size, value_area, value_area_method, percentiles)
        whole = self._volume(s, e, tpr, row_size, **kw)
        mid = split_time(s, e)
        return combine_split(whole, self._half(s, mid, tpr, row_size, kw), self._half(mid, e, tpr, row_size, kw), mid)

    @locked
    def recency_profile(self, start=None, end=None, row_size=None, half_life_s=None, value_area=0.7,
                        value_area_method="single", percentiles=DEFAULT_PERCENTILES) -> ProfileResult:
        """:func:`compute.timeweighted.recency_profile` of ``[start, end)`` (identical).

        Its weights depend on the range's end, so it reads the raw trades of the range (the
        unweighted sums still come from the buckets).
        """
        s, e, tpr, row_size, kw = self._query(start, end, row_size, value_area, value_area_method, percentiles)
        h = check_half_life(half_life_s, s, e)
        sums = self._tick_sums(s, e, tpr)
        if sums is None:
            raise empty_range_error(s, e)
        return recency_from_raw(self.raw_trades(s, e), self.tick, row_size, s, e, h,
                                qty_decimals=self.qty_decimals, sums=sums, **kw)

    @locked
    def tpo_profile(self, start=None, end=None, row_size=None, block_ms=None, value_area=0.7,
                    value_area_method="single", percentiles=DEFAULT_PERCENTILES) -> ProfileResult:
        """:func:`compute.timeweighted.tpo_profile` of ``[start, end)`` (identical); bucket presence when the
        block is a whole number of buckets, else the raw trades."""
        s, e, tpr, row_size, kw = self._query(start, end, row_size, value_area, value_area_method, percentiles)
        block = auto_tpo_block(s, e) if block_ms is None else check_block(block_ms)
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

    @locked
    def developing(
        self, start: int | None = None, end: int | None = None, row_size: float | None = None,
        candle_ms: int = 60_000, value_area: float = 0.7, value_area_method: str = "single",
        percentiles=DEFAULT_PERCENTILES,
    ) -> DevelopingResult:
        """Developing POC/VAH/VAL per candle, identical to :func:`compute.levels.developing_levels`.

        Uses bucket sums when ``candle_ms`` is a whole number of buckets (else the raw trades).
        """
        c = check_candle(candle_ms)
        row_size = self.tick if row_size is None else row_size
        tpr = grid.ticks_per_row(row_size, self.tick)
        check_value_area(value_area, value_area_method)
        s, e = self._resolve(start, end)
        prof = self._volume(s, e, tpr, row_size, value_area=value_area, value_area_method=value_area_method,
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
                                      value_area_method=value_area_method, qty_decimals=self.qty_decimals)
        return DevelopingResult(prof, dev, c)

    @locked
    def candles(self, start: int | None = None, end: int | None = None, interval_ms: int | None = None):
        """OHLCV candles of the held trades in ``[start, end)`` (see :func:`compute.candles.candles`).

        Prices are the trades' tick-grid prices; ``interval_ms`` defaults to ``bucket_ms``.
        """
        if self._n == 0:
            return _candles(TradeBatch.empty(), interval_ms or self._bm)
        return _candles(self.trades(start, end), interval_ms or self._bm)
