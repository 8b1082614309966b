"""The profile kinds and the developing levels over a Dask DataFrame (see :mod:`compute.dask`)."""

from __future__ import annotations

import numpy as np
from dask import delayed

from .. import grid
from ..levels import DevelopingResult, check_candle, developing_from_entries
from ..result import (
    DEFAULT_PERCENTILES,
    QTY_DECIMALS,
    ProfileResult,
    build_result,
    check_percentiles,
    check_prices,
    check_value_area,
    combine_rows,
    empty_range_error,
    qty_scale,
    qty_to_int,
)
from ..split import combine_split, split_time
from ..timeweighted import auto_tpo_block, check_block, check_half_life, tpo_counts, tpo_result
from .partitions import (
    _check_symbols,
    _check_time_order,
    _columns,
    _dense,
    _in_range,
    _need_bounds,
    _part_prelude,
    _part_rows,
    _parts,
    _run,
    _time_bounds,
)


# -- profiles ------------------------------------------------------------------------------------
def volume_profile(
    ddf, tick: float, row_size: float, value_area: float = 0.7, start: int | None = None, end: int | None = None,
    value_area_method: str = "single", percentiles=DEFAULT_PERCENTILES, qty_decimals: int = QTY_DECIMALS, *,
    symbol: str | None = None, client=None, progress: bool = False,
) -> ProfileResult:
    """The volume profile (VPVR) of ``[start, end)``, partition by partition.

    Parameters and result as :func:`compute.profile.volume_profile` (equal to it on
    ``ddf.compute()``, bit for bit), plus ``symbol`` (rows of that symbol only), ``client``
    (a ``dask.distributed.Client``; default the local threaded scheduler) and ``progress``.
    One pass over the data.

    Raises
    ------
    ValueError
        As :func:`compute.profile.volume_profile`; several symbols without ``symbol=``.
    """
    tpr = grid.ticks_per_row(row_size, tick)
    check_value_area(value_area, value_area_method)
    check_percentiles(percentiles or ())
    scale = qty_scale(qty_decimals)
    sel = (start, end) if (start is not None or end is not None) else (None, None)
    res = _run([delayed(_part_rows)(p, tick, tpr, scale, *sel, None, symbol, None) for p in _parts(ddf)],
               client, progress, "volume profile")
    return _finalize_volume(res, start, end, tick, row_size, qty_decimals, value_area=value_area,
                            value_area_method=value_area_method, percentiles=percentiles)


def _finalize_volume(res: list, start, end, tick, row_size, qty_decimals, **kw) -> ProfileResult:
    """Combine the partitions' row sums (``r["all"]``) and finalize the volume profile of the range."""
    _check_symbols(res)
    s, e = _time_bounds(res, start, end)
    tot = combine_rows([r["all"] for r in res])
    if tot is None:
        raise empty_range_error(s, e)
    return build_result("volume", tick, row_size, tot[0], s, e, qty_decimals, *tot[1:], **kw)


def split_profile(
    ddf, tick: float, row_size: float, value_area: float = 0.7, start: int | None = None, end: int | None = None,
    value_area_method: str = "single", percentiles=DEFAULT_PERCENTILES, qty_decimals: int = QTY_DECIMALS, *,
    symbol: str | None = None, client=None, progress: bool = False,
) -> ProfileResult:
    """The split profile (first half against second, :mod:`compute.split`) over a Dask DataFrame.

    Equal to :func:`compute.split.split_profile` on ``ddf.compute()``. Reads the data
    once when ``start`` and ``end`` are given, twice otherwise (the midpoint needs them).
    """
    tpr = grid.ticks_per_row(row_size, tick)
    check_value_area(value_area, value_area_method)
    scale = qty_scale(qty_decimals)
    s, e = _need_bounds(ddf, start, end, symbol, client, progress)
    mid = split_time(s, e)
    res = _run([delayed(_part_rows)(p, tick, tpr, scale, s, e, mid, symbol, None) for p in _parts(ddf)],
               client, progress, "split profile")
    _check_symbols(res)
    kw = dict(value_area=value_area, value_area_method=value_area_method, percentiles=percentiles)
    first, second = combine_rows([r["first"] for r in res]), combine_rows([r["second"] for r in res])
    whole = combine_rows([first, second])
    if whole is None:
        raise empty_range_error(s, e)
    halves = [None if h is None else build_result("volume", tick, row_size, h[0], a, b, qty_decimals, *h[1:], **kw)
              for h, (a, b) in ((first, (s, mid)), (second, (mid, e)))]
    res_whole = build_result("volume", tick, row_size, whole[0], s, e, qty_decimals, *whole[1:], **kw)
    return combine_split(res_whole, halves[0], halves[1], mid)


def tpo_profile(
    ddf, tick: float, row_size: float, block_ms: int | None = None, value_area: float = 0.7,
    start: int | None = None, end: int | None = None, value_area_method: str = "single",
    percentiles=DEFAULT_PERCENTILES, qty_decimals: int = QTY_DECIMALS, *, symbol: str | None = None, client=None,
    progress: bool = False,
) -> ProfileResult:
    """The TPO-count profile (:func:`compute.timeweighted.tpo_profile`) over a Dask DataFrame.

    Each partition returns its (block, row) presence pairs; their union gives the counts.
    Reads the data twice when the block is automatic and the range not given.
    """
    tpr = grid.ticks_per_row(row_size, tick)
    check_value_area(value_area, value_area_method)
    scale = qty_scale(qty_decimals)
    if block_ms is None:
        s, e = _need_bounds(ddf, start, end, symbol, client, progress)
        b = auto_tpo_block(s, e)
        sel = (s, e)
    else:
        b = check_block(block_ms)
        sel = (start, end) if (start is not None or end is not None) else (None, None)
    res = _run([delayed(_part_rows)(p, tick, tpr, scale, *sel, None, symbol, b) for p in _parts(ddf)],
               client, progress, "TPO profile")
    _check_symbols(res)
    s, e = _time_bounds(res, start, end) if block_ms is not None else sel
    tot = combine_rows([r["all"] for r in res])
    if tot is None:
        raise empty_range_error(s, e)
    r0, vol, buy, cnt = tot
    pairs = np.concatenate([r["tpo"] for r in res if "tpo" in r], axis=1)
    counts = tpo_counts(r0, len(vol), pairs[0], pairs[1])
    return tpo_result(tick, row_size, r0, s, e, qty_decimals, vol, buy, cnt, counts, b, value_area=value_area,
                      value_area_method=value_area_method, percentiles=percentiles)


def _recency_prep(df, tick, tpr, scale, s, e, half_life_ms, symbol):
    """Per-trade inputs of the recency sums for one partition (time-sorted, in [s, e))."""
    time, price, qty, ibm, _, seen = _columns(df, symbol)
    tmin, tmax = (int(time[0]), int(time[-1])) if len(time) else (None, None)
    sl = _in_range(time, s, e)
    time, price, qty, ibm = time[sl], price[sl], qty[sl], ibm[sl]
    check_prices(price)
    qint = qty_to_int(qty, scale)
    rows = grid.row_index(price, tick, tpr)
    q = qint.astype(np.float64)
    return {"seen": seen, "tmin": tmin, "tmax": tmax, "rows": rows, "qint": qint, "sell": ibm,
            "wq": q * np.exp2(-(e - time) / half_life_ms), "qt": q * (time - s)}


def _recency_fold(acc, part):
    """Add one partition to the running per-row sums, in the order the in-memory code adds them."""
    acc = dict(acc) if acc is not None else {"r0": None, "wq": np.zeros(0), "qt": np.zeros(0), "dense": [],
                                             "seen": set(), "spans": []}
    acc["seen"] = acc["seen"] | set(part["seen"])
    acc["spans"] = [*acc["spans"], (part["tmin"], part["tmax"])]
    rows = part["rows"]
    if len(rows):
        lo, hi = int(rows.min()), int(rows.max())
        r0 = lo if acc["r0"] is None else min(acc["r0"], lo)
        r1 = hi + 1 if acc["r0"] is None else max(acc["r0"] + len(acc["wq"]), hi + 1)
        wq, qt = np.zeros(r1 - r0), np.zeros(r1 - r0)
        if acc["r0"] is not None:
            off = acc["r0"] - r0
            wq[off : off + len(acc["wq"])] = acc["wq"]
            qt[off : off + len(acc["qt"])] = acc["qt"]
        idx = rows - r0
        np.add.at(wq, idx, part["wq"])
        np.add.at(qt, idx, part["qt"])
        acc.update(r0=r0, wq=wq, qt=qt, dense=[*acc["dense"], _dense(rows, part["qint"], part["sell"])])
    return acc


def recency_profile(
    ddf, tick: float, row_size: float, half_life_s: float | None = None, value_area: float = 0.7,
    start: int | None = None, end: int | None = None, value_area_method: str = "single",
    percentiles=DEFAULT_PERCENTILES, qty_decimals: int = QTY_DECIMALS, *, symbol: str | None = None, client=None,
    progress: bool = False,
) -> ProfileResult:
    """The recency-weighted profile (:func:`compute.timeweighted.recency_profile`) over a Dask DataFrame.

    The weighted sums are floats; they are accumulated partition after partition in
    time order (see the module docstring) so the result equals the in-memory one bit
    for bit. Reads the data twice when ``start``/``end`` are not given.

    Raises
    ------
    ValueError
        As the in-memory function; partitions not in time order; several symbols.
    """
    tpr = grid.ticks_per_row(row_size, tick)
    check_value_area(value_area, value_area_method)
    scale = qty_scale(qty_decimals)
    s, e = _need_bounds(ddf, start, end, symbol, client, progress)
    h = check_half_life(half_life_s, s, e)
    acc = None
    for p in _parts(ddf):
        acc = delayed(_recency_fold)(acc, delayed(_recency_prep)(p, tick, tpr, scale, s, e, h, symbol))
    (acc,) = _run([acc], client, progress, "recency profile")
    if len(acc["seen"]) > 1:
        raise ValueError(f"the frame holds several symbols {sorted(acc['seen'])}; pass symbol=")
    _check_time_order(acc["spans"])
    tot = combine_rows(acc["dense"])
    if tot is None:
        raise empty_range_error(s, e)
    r0, vol, buy, cnt = tot
    wq, qt = acc["wq"], acc["qt"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_time = np.where(vol > 0, s + qt / vol, np.nan)
    fscale = float(scale)
    return build_result(
        "recency", tick, row_size, r0, s, e, qty_decimals, vol, buy, cnt, value_area=value_area,
        value_area_method=value_area_method, measure=wq / fscale, percentiles=percentiles,
        columns={"weighted_volume": wq / fscale, "mean_time": mean_time},
        extra={"half_life_s": h / 1000.0, "weighted_total": float(wq.sum() / fscale)},
    )


def profile(ddf, kind: str, tick: float, row_size: float, **kw) -> ProfileResult:
    """The profile ``kind`` (one of :data:`compute.kinds.PROFILE_KINDS`) over a Dask DataFrame.

    The function is the kind's Dask engine in the registry (:attr:`compute.kinds.Kind.dask`).
    Raises ValueError for another ``kind``.
    """
    from ..kinds import PROFILE_KINDS
    from ..kinds import kind as kind_of

    if kind not in PROFILE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PROFILE_KINDS)}, got {kind!r}")
    return kind_of(kind).dask_function()(ddf, tick, row_size, **kw)


# -- developing levels -----------------------------------------------------------------------------
def _part_entries(df, tick, tpr, scale, s, e, candle_ms, symbol):
    out, time, ibm, qint, rows = _part_prelude(df, tick, tpr, scale, s, e, symbol)
    out["all"] = _dense(rows, qint, ibm)
    if len(time):
        c = time // candle_ms
        key, inv = np.unique(np.stack([c, rows]), axis=1, return_inverse=True)
        inv = inv.reshape(-1)
        v = np.zeros(key.shape[1], np.int64)
        np.add.at(v, inv, qint)
        out["entries"] = (key[0], key[1], v, np.bincount(inv, minlength=key.shape[1]).astype(np.int64))
    return out


def developing_levels(
    ddf, tick: float, row_size: float, candle_ms: int = 60_000, value_area: float = 0.7,
    start: int | None = None, end: int | None = None, value_area_method: str = "single",
    percentiles=DEFAULT_PERCENTILES, qty_decimals: int = QTY_DECIMALS, *, symbol: str | None = None, client=None,
    progress: bool = False,
) -> DevelopingResult:
    """Developing POC/VAH/VAL (:func:`compute.levels.developing_levels`) over a Dask DataFrame, one pass.

    Each partition returns its per-(candle, row) integer sums; they are merged and
    fed to :func:`compute.levels.developing_from_entries`.
    """
    c = check_candle(candle_ms)
    tpr = grid.ticks_per_row(row_size, tick)
    check_value_area(value_area, value_area_method)
    scale = qty_scale(qty_decimals)
    sel = (start, end) if (start is not None or end is not None) else (None, None)
    res = _run([delayed(_part_entries)(p, tick, tpr, scale, *sel, c, symbol) for p in _parts(ddf)],
               client, progress, "developing levels")
    prof = _finalize_volume(res, start, end, tick, row_size, qty_decimals, value_area=value_area,
                            value_area_method=value_area_method, percentiles=percentiles)
    e = prof.end
    ent = [r["entries"] for r in res if "entries" in r]
    cat = [np.concatenate([x[i] for x in ent]) for i in range(4)]
    dev = developing_from_entries(*cat, c, e, tick, row_size, value_area=value_area,
                                  value_area_method=value_area_method, qty_decimals=qty_decimals)
    return DevelopingResult(prof, dev, c)
