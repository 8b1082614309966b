"""Trade heat-map: volume, delta or trade count on a time x price grid, aggregated by datashader.

Issue 3 ("heat-map"): the trades of a time range are binned on a grid of
``width`` time bins by ``height`` price bins in one pass with datashader's
``Canvas.points`` and a reduction (``ds.sum`` / ``ds.count``), so that millions
of trades aggregate in a few tens of milliseconds (numba-compiled, one loop).

Axes, units and bin edges (datashader's binning convention, ``Canvas`` with
linear axes; datashader ``glyphs/points.py`` and ``core.LinearAxis``):

* x = trade time ``T`` in UTC milliseconds (int64), y = trade price in quote currency.
* The x range ``[start, end]`` is cut into ``width`` equal bins of
  ``dx = (end - start) / width`` ms, the y range ``[price_low, price_high]`` into
  ``height`` bins of ``dy = (price_high - price_low) / height``.
* Bin ``i`` covers ``[start + i*dx, start + (i+1)*dx)``; **both range ends are
  inclusive**: a trade exactly at ``end`` (or ``price_high``) falls in the last
  bin, trades outside the closed ranges are dropped.  The bin of a value is
  computed in float64 as ``int(x * s + t)`` with ``s = width / (end - start)``,
  ``t = -start * s``, so a value within float rounding of an inner edge may land
  in the neighbouring bin (never outside the grid).
* The result's coordinates are the bin **centres**: ``time[i] = start + (i + 0.5) * dx``,
  ``price[j] = price_low + (j + 0.5) * dy``.

Aggregations: ``"volume"`` = sum of ``qty`` (base asset), ``"delta"`` = sum of
signed quantity (taker buy ``+qty``, taker sell ``-qty``, reference b1/b5),
``"count"`` = number of trades.  For the sums a bin with no trade holds NaN
(datashader's convention for ``sum``; a delta of 0 with trades is 0.0, not NaN),
for ``"count"`` it holds 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # datashader (and the dask it imports) costs ~1.5 s: loaded on first use, not at import
    import datashader as ds
    import xarray as xr

from compute.batch import TradeBatch

__all__ = ["AGGS", "heatmap"]

#: Supported aggregations.
AGGS = ("volume", "delta", "count")


def _frame(trades, agg: str) -> pd.DataFrame:
    """Columns ``time`` (int64 ms), ``price`` and, for sums, ``qty`` (signed for delta), without copies where possible."""
    if isinstance(trades, TradeBatch):
        time, price, qty, ibm = trades.time, trades.price, trades.qty, trades.is_buyer_maker
    elif isinstance(trades, pd.DataFrame):
        b = TradeBatch.from_frame(
            trades if any(c in trades for c in ("trade_id", "agg_trade_id", "id"))
            else trades.assign(trade_id=np.zeros(len(trades), dtype=np.int64))
        )
        time, price, qty, ibm = b.time, b.price, b.qty, b.is_buyer_maker
    else:
        raise TypeError(f"trades must be a TradeBatch or a pandas DataFrame, got {type(trades).__name__}")
    cols = {"time": time, "price": price}
    if agg == "volume":
        cols["qty"] = qty
    elif agg == "delta":
        signed = qty.copy()  # one new column: np.where(ibm, -qty, qty) made two
        np.negative(signed, out=signed, where=ibm)
        cols["qty"] = signed
    return pd.DataFrame(cols, copy=False)


def check_grid(agg: str, width: int, height: int) -> tuple[int, int]:
    """Validate the aggregation and grid size; returns ``(width, height)`` as ints. Raises ValueError."""
    if agg not in AGGS:
        raise ValueError(f"agg must be one of {AGGS}, got {agg!r}")
    width, height = int(width), int(height)
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be >= 1, got {width} x {height}")
    return width, height


def check_ranges(start, end, price_low, price_high) -> None:
    """Raise ValueError for an empty or reversed time or price range."""
    if not start < end:
        raise ValueError(f"empty time range: start {start} >= end {end}")
    if not price_low < price_high:
        raise ValueError(f"empty price range: {price_low} >= {price_high}")


def canvas(start, end, price_low, price_high, width: int, height: int) -> ds.Canvas:
    """The datashader canvas of the grid: time on x, price on y (both ranges inclusive)."""
    import datashader as ds

    return ds.Canvas(plot_width=width, plot_height=height, x_range=(start, end),
                     y_range=(float(price_low), float(price_high)))


def label(out: xr.DataArray, agg: str, start, end, price_low, price_high, width: int, height: int,
          **extra) -> xr.DataArray:
    """Name the aggregate and attach ``agg``, ``units``, ranges and bin edges (see :func:`heatmap`)."""
    out.name = agg
    out.attrs = {
        "agg": agg,
        "units": {"volume": "base asset", "delta": "base asset (taker buy - taker sell)", "count": "trades"}[agg],
        "x": "trade time, UTC ms (bin centres)",
        "y": "price, quote currency (bin centres)",
        "x_range": (start, end),
        "y_range": (float(price_low), float(price_high)),
        "x_edges": np.linspace(start, end, width + 1),
        "y_edges": np.linspace(float(price_low), float(price_high), height + 1),
        **extra,
    }
    return out


def heatmap(
    trades,
    start: int,
    end: int,
    price_low: float,
    price_high: float,
    width: int,
    height: int,
    agg: str = "volume",
) -> xr.DataArray:
    """Aggregate trades on a ``height x width`` price x time grid (conventions in the module docstring).

    Parameters
    ----------
    trades : TradeBatch or DataFrame
        N trades (``time`` int64 UTC ms or datetime64, ``price``, ``qty``,
        ``is_buyer_maker``); any order.
    start, end : int
        Time range in UTC ms, both ends inclusive, ``start < end``.
    price_low, price_high : float
        Price range in quote currency, both ends inclusive, ``price_low < price_high``.
    width, height : int
        Number of time bins and price bins, >= 1.
    agg : {"volume", "delta", "count"}
        What each bin holds (base asset for the sums).

    Returns
    -------
    xarray.DataArray, shape (height, width), dims ``("price", "time")``
        float64 for ``volume``/``delta`` (NaN = no trade), uint32 for ``count``.
        Coordinates are bin centres (``time`` in ms as float64, ``price`` in quote
        currency).  ``attrs`` hold ``agg``, ``units``, ``x_range``, ``y_range``,
        ``x_edges`` and ``y_edges`` (float64 arrays of width+1 / height+1 edges).

    Raises
    ------
    ValueError
        On an unknown ``agg``, an empty or reversed range, or a size < 1.
    TypeError
        If ``trades`` is neither a TradeBatch nor a DataFrame.
    """
    width, height = check_grid(agg, width, height)
    check_ranges(start, end, price_low, price_high)
    df = _frame(trades, agg)
    import datashader as ds

    reduction = ds.count() if agg == "count" else ds.sum("qty")
    out = canvas(start, end, price_low, price_high, width, height).points(df, "time", "price", agg=reduction)
    return label(out, agg, start, end, price_low, price_high, width, height)
