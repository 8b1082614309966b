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
    batch, s, e = select_range(as_batch(trades), start, end)
    if not len(batch):
        raise empty_range_error(s, e)
    check_prices(batch.price)
    qint = qty_to_int(batch.qty, qty_scale(qty_decimals))
    rows = grid.row_index(batch.price, tick, tpr)
    r0, vol, buy, cnt = bin_rows(rows, qint, batch.is_buyer_maker)
    return build_result(
        "volume", tick, row_size, r0, s, e, qty_decimals, vol, buy, cnt, value_area=value_area,
        value_area_method=value_area_method, percentiles=percentiles,
    )
