"""The volume profile (VPVR) of a time range of trades.

Definitions (issue 2 item 6, followed exactly; sources in ``shared/reference/orderflow-and-binance.md``):

* row index = ``floor(round(price / tick) / ticks_per_row)``; a row covers
  ``[low, low + row_size)`` and ``row_size`` is a whole number of ticks (b2);
* the grid is dense from the lowest to the highest traded row: empty rows are real rows (b4);
* buy = taker buy (``is_buyer_maker`` false), sell = taker sell (b1);
* POC = the row with the largest volume; ties go to the row nearest the middle of the
  grid, then to the lower row; ``poc`` is that row's middle price (b3);
* value area (default 70 % of total volume, allowed 50 %..95 %): start at the POC; while
  the accumulated volume is below the target, compare the next row above with the next
  row below, add the larger (above wins ties; when one side is exhausted take the other);
  ``vah`` = high edge of the top row, ``val`` = low edge of the bottom row (b4).
  ``value_area_method="dual"`` compares the sums of the next two rows instead (Dalton).

Quantities are summed exactly as integers (see :mod:`compute.result`).
"""

from __future__ import annotations

import math

import numpy as np

from . import grid
from .batch import TradeBatch
from .result import (
    DEFAULT_PERCENTILES,
    QTY_DECIMALS,
    ProfileResult,
    as_batch,
    bin_rows,
    build_result,
    check_prices,
    check_value_area,
    empty_range_error,
    percentile_indices,
    poc_index,
    qty_scale,
    qty_to_int,
    time_bounds,
    value_area_bounds,
)

#: Totals at or above this go to the reference's own overflow check (its limit is 2**62).
_TOTAL_GUARD = 2.0**62 - 2.0**40

__all__ = [
    "ProfileResult", "volume_profile", "poc_index", "value_area_bounds", "percentile_indices", "select_range",
]


def select_range(batch: TradeBatch, start: int | None, end: int | None) -> tuple[TradeBatch, int, int]:
    """Trades with ``start <= time < end`` (UTC ms; order kept, no sorting assumed).

    Returns ``(batch, start, end)`` with the defaults resolved (first trade, last trade + 1 ms).
    """
    s, e = time_bounds(batch.time, start, end)
    if start is None and end is None:
        return batch, s, e
    mask = (batch.time >= s) & (batch.time < e)
    return (batch if mask.all() else batch.take(mask)), s, e


def volume_profile(
    trades,
    tick: float,
    row_size: float,
    value_area: float = 0.7,
    start: int | None = None,
    end: int | None = None,
    value_area_method: str = "single",
    percentiles=DEFAULT_PERCENTILES,
    qty_decimals: int = QTY_DECIMALS,
) -> ProfileResult:
    """Volume profile of the trades in ``[start, end)``.

    Time-sorted input (the usual case) is sliced with ``searchsorted`` and summed in one fused
    numba pass (:func:`compute.kernels.bin_fused`; no full-size temporaries, linear in the
    range's trades); unsorted input is selected with a mask first. The result is identical to
    :func:`reference_sums` (the numpy definition), which also raises the errors below.

    Parameters
    ----------
    trades : TradeBatch or DataFrame
        N trades (time int64 UTC ms, price float64 quote currency, qty float64 base asset,
        is_buyer_maker bool); any order.
    tick, row_size : float
        Tick size and row size in quote currency; ``row_size`` a whole number of ticks.
    value_area : float
        Value-area fraction of total volume, 0.5..0.95 (default 0.7).
    start, end : int or None
        Range in UTC ms, ``start`` inclusive, ``end`` exclusive (defaults: all trades).
    value_area_method : {"single", "dual"}
        Single-row expansion (CBOT, default) or dual-row (Dalton).
    percentiles : sequence of float
        Percentile lines to compute (each in [0, 1]; see :mod:`compute.result`).
    qty_decimals : int
        Decimals of the exact integer quantity (default 8).

    Returns
    -------
    ProfileResult
        ``kind="volume"``; arrays of shape (R,) from the lowest to the highest traded row.

    Raises
    ------
    ValueError
        Row size not a whole number of ticks, value area outside [0.5, 0.95], unknown
        method, bad prices or quantities, or no trades in the range (message starts
        with ``"no trades in range"``).
    """
    tpr = grid.ticks_per_row(row_size, tick)
    check_value_area(value_area, value_area_method)
    batch = as_batch(trades)
    scale = qty_scale(qty_decimals)
    sums = _fused_sums(batch, tick, tpr, scale, start, end)
    if sums is None:  # a check failed (or int64 limits near): the reference path raises the documented error
        s, e, (r0, vol, buy, cnt) = reference_sums(batch, tick, tpr, scale, start, end)
    else:
        s, e, r0, vol, buy, cnt = sums
    return build_result(
        "volume", tick, row_size, r0, s, e, qty_decimals, vol, buy, cnt, value_area=value_area,
        value_area_method=value_area_method, percentiles=percentiles,
    )


def reference_sums(batch: TradeBatch, tick: float, tpr: int, scale: int, start: int | None, end: int | None):
    """The numpy reference of the per-row sums: ``(s, e, (first_row, volume_int, buy_int, trades))``.

    Boolean-mask range selection, :func:`compute.result.qty_to_int`, :func:`compute.grid.row_index`,
    :func:`compute.result.bin_rows` (arrays (R,), int64). Kept as the definition the fused kernel is
    tested against and as its error path.

    Raises
    ------
    ValueError
        Bad prices or quantities, or no trades in the range (``"no trades in range ..."``).
    """
    sel, s, e = select_range(batch, start, end)
    if not len(sel):
        raise empty_range_error(s, e)
    check_prices(sel.price)
    qint = qty_to_int(sel.qty, scale)
    return s, e, bin_rows(grid.row_index(sel.price, tick, tpr), qint, sel.is_buyer_maker)


def _fused_sums(batch: TradeBatch, tick: float, tpr: int, scale: int, start: int | None, end: int | None):
    """Per-row int sums in one fused pass (:func:`compute.kernels.bin_fused`) over a slice of time-sorted trades.

    Returns ``(s, e, first_row, volume_int, buy_int, trades)`` (arrays (R,), int64), identical
    to :func:`reference_sums`, or None when a trade fails a check (then the reference raises).
    Unsorted input is selected with the reference's mask. Raises ValueError for an empty range.
    """
    from . import kernels as k

    t, n = batch.time, len(batch)
    if not n:
        raise empty_range_error(*time_bounds(t, start, end))
    if k.is_sorted(t):
        s, e = (int(t[0]) if start is None else int(start)), (int(t[-1]) + 1 if end is None else int(end))
        lo, hi = (int(x) for x in np.searchsorted(t, (s, e), side="left"))
        price, qty, ibm = batch.price[lo:hi], batch.qty[lo:hi], batch.is_buyer_maker[lo:hi]
    else:  # unsorted: the reference's mask
        batch, s, e = select_range(batch, start, end)
        price, qty, ibm = batch.price, batch.qty, batch.is_buyer_maker
    if not len(price):
        raise empty_range_error(s, e)
    pmin, pmax = float(price.min()), float(price.max())
    if not (math.isfinite(pmin) and math.isfinite(pmax)):  # NaN and inf reach the min or the max
        return None
    bad, total = k.qty_check(qty, scale)
    if bad or total >= _TOTAL_GUARD:
        return None
    r0, r1 = (int(x) for x in grid.row_index(np.array([pmin, pmax]), tick, tpr))
    size = r1 - r0 + 1
    lanes = 4 if size <= 1 << 18 else 1
    vol, buy, cnt = k.bin_fused(price, qty, ibm.view(np.uint8), float(tick), tpr, scale, r0, size, lanes)
    if lanes > 1:
        vol, buy, cnt = (a.reshape(size, lanes).sum(axis=1) for a in (vol, buy, cnt))
    return s, e, r0, vol, buy, cnt
