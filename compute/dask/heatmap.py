"""The heat-map over a Dask DataFrame: datashader partition by partition (see :mod:`compute.dask`)."""

from __future__ import annotations

import datashader as ds
import numpy as np
import pandas as pd
import xarray as xr

from ..heatmap import canvas, check_grid, check_ranges, label
from ..result import (
    QTY_DECIMALS,
    qty_scale,
)
from .partitions import _columns, _progress, _scheduler, as_dask, bounds


# -- heat-map ---------------------------------------------------------------------------------
def _heat_part(df, agg, scale, symbol, exact):
    time, price, qty, ibm, _, _ = _columns(df, symbol)
    cols = {"time": time, "price": price}
    if agg != "count":
        w = np.rint(qty * scale) if exact else qty
        cols["w"] = np.where(ibm, -w, w) if agg == "delta" else w
    return pd.DataFrame(cols)


def heatmap(
    ddf, start: int | None = None, end: int | None = None, price_low: float | None = None,
    price_high: float | None = None, width: int = 1200, height: int = 600, agg: str = "volume", *,
    qty_decimals: int = QTY_DECIMALS, exact: bool = True, symbol: str | None = None, client=None,
    progress: bool = False,
) -> xr.DataArray:
    """The trade heat-map (:func:`compute.heatmap.heatmap`) of a Dask DataFrame, aggregated by datashader in partitions.

    Same grid, binning, coordinates, dims ``("price", "time")`` and attrs as the in-memory
    function. With ``exact=True`` (default) quantities are summed as integer-valued
    floats ``round(qty * 10**qty_decimals)`` and divided once, so every cell is the
    correctly rounded exact sum whatever the partitioning (the in-memory function sums
    the float quantities, which may differ in the last bits; counts are identical).
    Missing ranges (None) are taken from one extra pass over the data (:func:`bounds`).

    Returns
    -------
    xarray.DataArray, shape (height, width)
        float64 base asset for ``volume``/``delta`` (NaN = no trade), uint32 for ``count``.

    Raises
    ------
    ValueError
        As :func:`compute.heatmap.heatmap`.
    """
    width, height = check_grid(agg, width, height)
    ddf = as_dask(ddf)
    if None in (start, end, price_low, price_high):
        b = bounds(ddf, symbol, client=client, progress=progress)
        start = b["start"] if start is None else start
        end = b["end"] - 1 if end is None else end
        price_low = b["price_low"] if price_low is None else price_low
        price_high = b["price_high"] if price_high is None else price_high
    check_ranges(start, end, price_low, price_high)
    scale = float(qty_scale(qty_decimals))
    meta = pd.DataFrame({"time": np.empty(0, np.int64), "price": np.empty(0, np.float64)})
    if agg != "count":
        meta["w"] = np.empty(0, np.float64)
    frame = ddf.map_partitions(_heat_part, agg, scale, symbol, exact, meta=meta)
    cvs = canvas(start, end, price_low, price_high, width, height)
    with _scheduler(client), _progress(progress and client is None, f"heat-map {agg}"):
        out = cvs.points(frame, "time", "price", agg=ds.count() if agg == "count" else ds.sum("w"))
    if agg != "count" and exact:
        out = out / scale
    return label(out, agg, start, end, price_low, price_high, width, height, exact=bool(exact),
                 partitions=int(ddf.npartitions))
