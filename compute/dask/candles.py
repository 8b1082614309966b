"""Candle-aligned work over a Dask DataFrame: the footprint and OHLCV candles (see :mod:`compute.dask`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from dask import delayed

from .. import grid
from ..candles import CANDLE_COLUMNS as OHLCV_COLUMNS
from ..candles import candles as _candles
from ..footprint import FootprintResult, cvd_segments, levels_from_cells
from ..footprint import footprint as _footprint
from ..levels import check_candle
from ..result import (
    QTY_DECIMALS,
)
from .partitions import _check_symbols, _check_time_order, _columns, _in_range, _parts, _run


# -- candle-aligned work: footprint and candles ------------------------------------------------------
def _frame(time, price, qty, ibm, ids) -> pd.DataFrame:
    """Trades as a DataFrame for the in-memory functions (``trade_id`` zeros when there are no ids)."""
    return pd.DataFrame({"time": time, "price": price, "qty": qty, "is_buyer_maker": ibm,
                         "trade_id": np.zeros(len(time), np.int64) if ids is None else ids})


def _candle_stats(time: np.ndarray, ids, candle_no_of: np.ndarray) -> dict:
    """Per candle (time-sorted trades): first/last time and id, id steps != 1, <= 0 and ids skipped inside."""
    starts = np.flatnonzero(np.r_[True, candle_no_of[1:] != candle_no_of[:-1]])
    ends = np.r_[starts[1:], len(time)] - 1
    out = {"candle": candle_no_of[starts], "t_first": time[starts], "t_last": time[ends]}
    if ids is not None:
        d = np.diff(ids)
        same = candle_no_of[1:] == candle_no_of[:-1]
        where = np.searchsorted(starts, np.arange(1, len(time)), side="right") - 1
        nc = len(starts)
        brk = same & (d != 1)
        out["id_first"], out["id_last"] = ids[starts], ids[ends]
        out["breaks"] = np.bincount(where[brk], minlength=nc).astype(np.int64)
        out["nonincr"] = np.bincount(where[same & (d <= 0)], minlength=nc).astype(np.int64)
        out["missing"] = np.bincount(where[brk], weights=np.maximum(d[brk] - 1, 0), minlength=nc).astype(np.int64)
    return out


def _part_candles(df, s, e, interval_ms, symbol, fn, fn_kw):
    """Split one partition at its first and last candle; compute ``fn`` on the candles wholly inside it."""
    time, price, qty, ibm, ids, seen = _columns(df, symbol)
    out = {"seen": seen, "tmin": int(time[0]) if len(time) else None, "tmax": int(time[-1]) if len(time) else None,
           "head": None, "tail": None, "inner": None, "stats": None, "has_ids": ids is not None}
    sl = _in_range(time, s, e)
    time, price, qty, ibm = time[sl], price[sl], qty[sl], ibm[sl]
    ids = None if ids is None else ids[sl]
    if not len(time):
        return out
    cno = time // interval_ms
    a = int(np.searchsorted(cno, cno[0], side="right"))
    b = int(np.searchsorted(cno, cno[-1], side="left"))

    def cut(sl_):
        return (time[sl_], price[sl_], qty[sl_], ibm[sl_], None if ids is None else ids[sl_])

    out["head"] = cut(slice(0, a))
    if b >= a:
        out["tail"] = cut(slice(b, len(time)))
        if b > a:
            inner = cut(slice(a, b))
            out["inner"] = fn(_frame(*inner), **fn_kw)
            out["stats"] = _candle_stats(inner[0], inner[4], cno[a:b])
    return out


def _merge_edges(res: list):
    """Raw trades of all edge candles, merged in time order (pieces of one candle joined)."""
    pieces = []
    for r in res:
        for k in ("head", "tail"):
            if r[k] is not None:
                pieces.append(r[k])
    if not pieces:
        return None
    return tuple(np.concatenate([p[i] for p in pieces]) if pieces[0][i] is not None else None for i in range(5))


def _with_edges(ddf, s, e, interval_ms, symbol, fn, fn_kw, client, progress, desc):
    res = _run([delayed(_part_candles)(p, s, e, interval_ms, symbol, fn, fn_kw) for p in _parts(ddf)],
               client, progress, desc)
    _check_symbols(res)
    _check_time_order([(r["tmin"], r["tmax"]) for r in res])
    edges = _merge_edges(res)
    return res, edges


def candles(
    ddf, interval_ms: int = 60_000, start: int | None = None, end: int | None = None, *, symbol: str | None = None,
    client=None, progress: bool = False,
) -> pd.DataFrame:
    """OHLCV candles (:func:`compute.candles.candles`) of the trades in ``[start, end)`` over a Dask DataFrame.

    Equal, bit for bit, to :func:`compute.candles.candles` on the trades of the range
    (candles that straddle partitions are computed from their merged trades). Columns
    :data:`compute.candles.CANDLE_COLUMNS`.
    """
    iv = check_candle(interval_ms)
    res, edges = _with_edges(ddf, start, end, iv, symbol, _candles, {"interval_ms": iv}, client, progress, "candles")
    frames = [r["inner"] for r in res if r["inner"] is not None]
    if edges is not None:
        frames.append(_candles(_frame(*edges), iv))
    if not frames:
        z = np.empty(0)
        return _candles(_frame(z.astype(np.int64), z, z, z.astype(bool), None), iv)
    out = pd.concat(frames, ignore_index=True)
    out = out.iloc[np.argsort(out["time"].to_numpy(), kind="stable")].reset_index(drop=True)
    return out[list(OHLCV_COLUMNS)]


def _ints(x: np.ndarray, scale: float) -> np.ndarray:
    """Recover exact integer sums from ``sum / scale`` floats (exact below 2**51 units)."""
    return np.rint(np.asarray(x, dtype=np.float64) * scale).astype(np.int64)


def footprint(
    ddf, tick: float, row_size: float, interval_ms: int = 60_000, imbalance_ratio: float = 3.0,
    ignore_zeros: bool = True, min_volume: float = 0.0, stacked_min: int = 3, start: int | None = None,
    end: int | None = None, gap_ms: int | None = None, check_ids: bool | None = None,
    qty_decimals: int = QTY_DECIMALS, *, symbol: str | None = None, client=None, progress: bool = False,
) -> FootprintResult:
    """Footprint candles (:func:`compute.footprint.footprint`) over a Dask DataFrame, one pass.

    Parameters and result as the in-memory function (equal to it on ``ddf.compute()``:
    same cells, candles, stacked zones, levels and summary), plus ``symbol``, ``client``
    and ``progress``. Requires partitions in time order.

    Raises
    ------
    ValueError
        As :func:`compute.footprint.footprint`; partitions out of time order; several symbols.
    """
    kw = dict(tick=tick, row_size=row_size, interval_ms=interval_ms, imbalance_ratio=imbalance_ratio,
              ignore_zeros=ignore_zeros, min_volume=min_volume, stacked_min=stacked_min, gap_ms=gap_ms,
              check_ids=False, qty_decimals=qty_decimals)
    # validate the arguments exactly as the in-memory function does (one tiny call)
    _footprint(_frame(np.array([0]), np.array([tick]), np.array([0.0]), np.array([False]), None), **kw)
    if start is not None and end is not None and start >= end:
        raise ValueError(f"empty time range: start {start} >= end {end}")
    iv = int(interval_ms)
    scale = float(10 ** int(qty_decimals))
    res, edges = _with_edges(ddf, start, end, iv, symbol, _footprint, kw, client, progress, "footprint")
    calls = [r["inner"] for r in res if r["inner"] is not None]
    stats = [r["stats"] for r in res if r["stats"] is not None]
    has_ids = all(r["has_ids"] for r in res)
    if edges is not None:
        calls.append(_footprint(_frame(*edges), **kw))
        stats.append(_candle_stats(edges[0], edges[4] if has_ids else None, edges[0] // iv))
    if not calls:
        raise ValueError(f"no trades in range [{start}, {end}) (UTC ms)")

    cells, cndl, stacked = (_concat_by_time(calls, name) for name in ("cells", "candles", "stacked"))
    st = _stats_by_candle(stats)
    if not np.array_equal(st["candle"] * iv, cndl["time"].to_numpy()):
        raise AssertionError("candle bookkeeping out of step")  # cannot happen: one candle per stats row
    nc = len(cndl)
    n = int(cndl["trades"].sum())
    gap, missing, ids_checked = _gaps(st, gap_ms, check_ids, has_ids and n > 1)
    delta_ci = _ints(cndl["delta"].to_numpy(), scale)
    cvd_i, segment = cvd_segments(delta_ci, gap)
    cndl["cvd"] = cvd_i / scale
    cndl["cvd_segment"] = segment.astype(np.int64)
    cndl["gap_before"] = gap
    cndl["missing_ids"] = missing

    tpr = grid.ticks_per_row(row_size, tick)
    cell_row = np.rint(cells["price_low"].to_numpy() / (tpr * tick)).astype(np.int64)
    levels, poc = levels_from_cells(cell_row, _ints(cells["ask"].to_numpy(), scale),
                                    _ints(cells["bid"].to_numpy(), scale), cells["trades"].to_numpy(), tpr, tick, scale)
    buy_ci, sell_ci = _ints(cndl["buy"].to_numpy(), scale), _ints(cndl["sell"].to_numpy(), scale)
    summary = {
        "candle_count": int(nc), "total_volume": int((buy_ci + sell_ci).sum()) / scale,
        "buy_volume": int(buy_ci.sum()) / scale, "sell_volume": int(sell_ci.sum()) / scale,
        "delta": int(delta_ci.sum()) / scale, "trades": n,
        "poc": poc, "gaps": int(gap.sum()), "stacked_zones": int(len(stacked)),
    }
    c0 = calls[0]
    return FootprintResult(
        cells=cells, candles=cndl, stacked=stacked, levels=levels, tick=c0.tick, row_size=c0.row_size,
        interval_ms=c0.interval_ms, imbalance_ratio=c0.imbalance_ratio, ignore_zeros=c0.ignore_zeros,
        min_volume=c0.min_volume, stacked_min=c0.stacked_min, ids_checked=ids_checked,
        qty_decimals=c0.qty_decimals, summary=summary,
    )


def _concat_by_time(calls: list, name: str) -> pd.DataFrame:
    """One frame (``cells``, ``candles`` or ``stacked``) of every partial footprint, stably sorted by time."""
    frames = [getattr(c, name) for c in calls if len(getattr(c, name))] or [getattr(calls[0], name)]
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].copy()
    return df.iloc[np.argsort(df["time"].to_numpy(), kind="stable")].reset_index(drop=True)


def _stats_by_candle(stats: list) -> dict:
    """The partitions' per-candle statistics (:func:`_candle_stats`) joined and sorted by candle number."""
    st = {k: np.concatenate([x[k] for x in stats]) for k in stats[0]}
    o = np.argsort(st["candle"], kind="stable")
    return {k: v[o] for k, v in st.items()}


def _gaps(st: dict, gap_ms, check_ids, ids_usable: bool):
    """(gap before each candle, missing ids before it, ids checked): the rules of :mod:`compute.footprint`
    (as :func:`compute.cells.gaps`) over all candles, from the per-candle first/last times and ids."""
    nc = len(st["candle"])
    gap = np.zeros(nc, dtype=bool)
    if gap_ms is None:
        gap[1:] = np.diff(st["candle"]) > 1
    else:
        gap[1:] = (st["t_first"][1:] - st["t_last"][:-1]) > gap_ms
    missing = np.zeros(nc, dtype=np.int64)
    ids_checked = False
    if ids_usable:
        step = st["id_first"][1:] - st["id_last"][:-1]
        increasing = bool((st["nonincr"] == 0).all() and (step > 0).all())
        ids_checked = bool(check_ids) if check_ids is not None else increasing
        if ids_checked:
            brk = np.r_[False, step != 1]
            gap |= brk | (st["breaks"] > 0)
            missing += st["missing"]
            missing[1:] += np.where(step != 1, np.maximum(step - 1, 0), 0)
    gap[0] = False
    return gap, missing, ids_checked
