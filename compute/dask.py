"""Scale-out: every profile kind, the footprint, candles and the heat-map over a Dask DataFrame.

The functions here take a Dask DataFrame (one partition per file from
:func:`feeds.history.load_history`, or any frame with the columns ``time`` (int64
UTC ms), ``price``, ``qty``, ``is_buyer_maker`` and optionally ``trade_id`` and
``symbol``) — a pandas DataFrame is accepted too and cut into partitions — and
return **the same objects as the in-memory functions** of :mod:`compute`, equal
bit for bit to computing them on ``ddf.compute()``:

* **profiles** (``volume``, ``split``, ``tpo``, developing POC/VAH/VAL): each partition
  is reduced to per-row integer sums (volume and taker-buy volume in units of
  ``10**-qty_decimals``, :func:`compute.result.qty_to_int`; trade counts; TPO
  (block, row) presence pairs); the sums are added across partitions (integer
  addition is exact and order-free) and POC/VAH/VAL, value area and percentiles are
  taken from them by :func:`compute.result.build_result`, exactly as the in-memory code does.
* **recency** weights are floats (``qty * 2**(-age / half_life)``): the per-row sums
  are accumulated partition after partition in time order (a chain of tasks, each
  partition prepared in parallel), which reproduces the in-memory summation order
  and so its exact floats.
* **footprint** and **candles** depend only on each candle's own trades, except CVD
  and gaps: every partition computes the candles wholly inside it with
  :func:`compute.footprint.footprint` / :func:`compute.candles.candles`; the trades
  of its first and last candle (which may continue in the neighbouring partition)
  are returned raw, merged per candle and computed once more; gap flags, missing
  trade ids, CVD and its segments are then recomputed over all candles with the
  rules of :mod:`compute.footprint`, from exact integers.
* **heat-map**: datashader aggregates the Dask DataFrame partition by partition
  (``Canvas.points`` on Dask). Volume and delta are summed as integer-valued floats
  (``qty * 10**qty_decimals``, exact below 2**53) and divided once at the end, so
  the result does not depend on how the rows are partitioned (``exact=True``).

Order-dependent results (recency, footprint, candles) require partitions in time
order — no partition may hold a trade earlier than the previous partition's last
trade — which :func:`~feeds.history.load_history` gives per symbol; otherwise
ValueError is raised. Frames holding several symbols need ``symbol=``.

Scheduling: with ``client`` (a ``dask.distributed.Client``) the tasks run on its
cluster; without, on the local threaded scheduler. ``progress=True`` shows a tqdm
bar over the tasks.
"""

from __future__ import annotations

import contextlib
import math

import dask
import dask.dataframe as dd
import datashader as ds
import numpy as np
import pandas as pd
import xarray as xr
from dask import delayed

from . import grid
from .candles import CANDLE_COLUMNS as OHLCV_COLUMNS
from .candles import candles as _candles
from .footprint import FootprintResult, poc_rows
from .footprint import footprint as _footprint
from .heatmap import canvas, check_grid, check_ranges, label
from .levels import DevelopingResult, check_candle, developing_from_entries
from .result import (
    DEFAULT_PERCENTILES,
    QTY_DECIMALS,
    ProfileResult,
    build_result,
    check_percentiles,
    check_prices,
    check_value_area,
    empty_range_error,
    qty_scale,
    qty_to_int,
)
from .split import combine_split, split_time
from .timeweighted import auto_tpo_block, check_block, check_half_life, tpo_counts, tpo_result

__all__ = [
    "as_dask", "bounds", "candles", "developing_levels", "footprint", "heatmap", "profile", "recency_profile",
    "split_profile", "tpo_profile", "volume_profile",
]

#: Profile kinds answered by :func:`profile`.
KINDS = ("volume", "recency", "tpo", "split")
#: Rows per partition when a pandas DataFrame is given.
PANDAS_CHUNK_ROWS = 2_000_000
_INT64_SAFE = 2**62


# -- input, scheduling ---------------------------------------------------------------------
def as_dask(df, npartitions: int | None = None) -> dd.DataFrame:
    """A Dask DataFrame from a Dask or pandas DataFrame (pandas: ``npartitions`` or one per 2 M rows)."""
    if isinstance(df, dd.DataFrame):
        return df
    if isinstance(df, pd.DataFrame):
        n = npartitions or max(1, math.ceil(len(df) / PANDAS_CHUNK_ROWS))
        return dd.from_pandas(df, npartitions=n, sort=False)
    raise TypeError(f"expected a dask or pandas DataFrame, got {type(df).__name__}")


def _scheduler(client):
    return dask.config.set(scheduler=client if client is not None else "threads")


def _progress(progress: bool, desc: str):
    if not progress:
        return contextlib.nullcontext()
    from tqdm.dask import TqdmCallback
    from tqdm.std import tqdm

    return TqdmCallback(tqdm_class=tqdm, desc=desc, leave=False)


def _run(tasks: list, client=None, progress: bool = False, desc: str = "flowlens") -> list:
    """Compute a list of delayed objects: on ``client`` when given, else the local threaded scheduler."""
    if client is not None:
        futures = client.compute(tasks)
        if progress:
            from distributed import as_completed
            from tqdm.std import tqdm

            for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, leave=False):
                pass
        return client.gather(futures)
    with _progress(progress, desc):
        return list(dask.compute(*tasks, scheduler="threads"))


def _parts(ddf) -> list:
    return as_dask(ddf).to_delayed(optimize_graph=True)


# -- one partition ---------------------------------------------------------------------------
def _columns(df: pd.DataFrame, symbol: str | None):
    """``(time, price, qty, is_buyer_maker, trade_id or None, symbols seen)`` of one partition, time-sorted (stable)."""
    if "time" not in df.columns and df.index.name == "time":
        df = df.reset_index()
    seen: tuple = ()
    if "symbol" in df.columns:
        col = df["symbol"]
        if isinstance(col.dtype, pd.CategoricalDtype):  # compare codes, not strings
            cats = [str(c).upper() for c in col.cat.categories]
            codes = col.cat.codes.to_numpy()
            if symbol is not None:
                code = cats.index(symbol.upper()) if symbol.upper() in cats else -2
                df = df[codes == code]
            else:
                seen = tuple(cats[i] for i in np.unique(codes[codes >= 0]))
        elif symbol is not None:
            df = df[(col.astype(str).str.upper() == symbol.upper()).to_numpy()]
        else:
            seen = tuple(str(s).upper() for s in pd.unique(col.dropna()))
    t = df["time"]
    if np.issubdtype(t.dtype, np.datetime64) or isinstance(t.dtype, pd.DatetimeTZDtype):
        t = pd.to_datetime(t, utc=True).astype("datetime64[ms, UTC]").astype("int64")
    time = np.asarray(t, dtype=np.int64)
    price = np.asarray(df["price"], dtype=np.float64)
    qty = np.asarray(df["qty"] if "qty" in df.columns else df["quantity"], dtype=np.float64)
    ibm = np.asarray(df["is_buyer_maker"], dtype=bool)
    idc = next((c for c in ("trade_id", "agg_trade_id", "id") if c in df.columns), None)
    ids = None if idc is None else np.asarray(df[idc], dtype=np.int64)
    if len(time) > 1 and not bool(np.all(time[1:] >= time[:-1])):
        o = np.argsort(time, kind="stable")
        time, price, qty, ibm = time[o], price[o], qty[o], ibm[o]
        ids = None if ids is None else ids[o]
    return time, price, qty, ibm, ids, seen


def _in_range(time: np.ndarray, s, e) -> slice:
    lo = 0 if s is None else int(np.searchsorted(time, s, side="left"))
    hi = len(time) if e is None else int(np.searchsorted(time, e, side="left"))
    return slice(lo, max(lo, hi))


def _dense(rows: np.ndarray, qint: np.ndarray, sell: np.ndarray):
    """``(r0, volume_int, buy_int, trades)`` on the partition's dense row span, or None when empty."""
    if not len(rows):
        return None
    r0 = int(rows.min())
    idx = rows - r0
    n = int(idx.max()) + 1
    vol = np.zeros(n, np.int64)
    np.add.at(vol, idx, qint)
    buy = np.zeros(n, np.int64)
    np.add.at(buy, idx[~sell], qint[~sell])
    return r0, vol, buy, np.bincount(idx, minlength=n).astype(np.int64)


def _part_prelude(df, tick, tpr, scale, s, e, symbol):
    """One partition's trades in ``[s, e)`` on the row grid: (stats, time, ibm, exact qty, row index)."""
    time, price, qty, ibm, _, seen = _columns(df, symbol)
    out = {"seen": seen, "tmin": int(time[0]) if len(time) else None, "tmax": int(time[-1]) if len(time) else None}
    sl = _in_range(time, s, e)
    time, price, qty, ibm = time[sl], price[sl], qty[sl], ibm[sl]
    check_prices(price)
    return out, time, ibm, qty_to_int(qty, scale), grid.row_index(price, tick, tpr)


def _part_rows(df, tick, tpr, scale, s, e, split_at, symbol, tpo_block):
    """Per-row integer sums of one partition in ``[s, e)`` (optionally per half), plus stats."""
    out, time, ibm, qint, rows = _part_prelude(df, tick, tpr, scale, s, e, symbol)
    out["n"] = len(time)
    if split_at is None:
        out["all"] = _dense(rows, qint, ibm)
    else:
        k = int(np.searchsorted(time, split_at, side="left"))
        out["first"] = _dense(rows[:k], qint[:k], ibm[:k])
        out["second"] = _dense(rows[k:], qint[k:], ibm[k:])
    if tpo_block is not None and len(time):
        key = np.unique(np.stack([time // tpo_block, rows]), axis=1)
        out["tpo"] = key
    return out


def _add_dense(parts: list):
    """Sum ``(r0, vol, buy, cnt)`` tuples on their union span; None when all are None."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    r0 = min(p[0] for p in parts)
    r1 = max(p[0] + len(p[1]) for p in parts)
    vol, buy, cnt = (np.zeros(r1 - r0, np.int64) for _ in range(3))
    for a, v, b, c in parts:
        vol[a - r0 : a - r0 + len(v)] += v
        buy[a - r0 : a - r0 + len(v)] += b
        cnt[a - r0 : a - r0 + len(v)] += c
    if int(vol.sum()) >= _INT64_SAFE:
        raise ValueError("total quantity does not fit int64 at this qty_decimals; pass a smaller qty_decimals")
    return r0, vol, buy, cnt


def _check_symbols(results: list) -> None:
    seen = set()
    for r in results:
        seen.update(r.get("seen", ()))
    if len(seen) > 1:
        raise ValueError(f"the frame holds several symbols {sorted(seen)}; pass symbol=")


def _time_bounds(results: list, start, end) -> tuple[int, int]:
    """As :func:`compute.result.time_bounds` over all partitions' trades."""
    tmins = [r["tmin"] for r in results if r["tmin"] is not None]
    tmaxs = [r["tmax"] for r in results if r["tmax"] is not None]
    s = int(start) if start is not None else (min(tmins) if tmins else 0)
    e = int(end) if end is not None else (max(tmaxs) + 1 if tmaxs else 0)
    return s, e


def _stats(df, symbol):
    time, price, _, _, _, seen = _columns(df, symbol)
    if not len(time):
        return {"seen": seen, "tmin": None, "tmax": None, "pmin": None, "pmax": None}
    return {"seen": seen, "tmin": int(time[0]), "tmax": int(time[-1]), "pmin": float(price.min()),
            "pmax": float(price.max())}


def bounds(ddf, symbol: str | None = None, *, client=None, progress: bool = False) -> dict:
    """One pass over the data: ``{"start", "end", "price_low", "price_high", "trades_seen"}``.

    ``start`` = first trade time, ``end`` = last trade time + 1 (UTC ms, exclusive);
    prices in quote currency. Raises ValueError when there is no trade.
    """
    res = _run([delayed(_stats)(p, symbol) for p in _parts(ddf)], client, progress, "bounds")
    _check_symbols(res)
    res = [r for r in res if r["tmin"] is not None]
    if not res:
        raise ValueError("no trades")
    return {"start": min(r["tmin"] for r in res), "end": max(r["tmax"] for r in res) + 1,
            "price_low": min(r["pmin"] for r in res), "price_high": max(r["pmax"] for r in res)}


def _need_bounds(ddf, start, end, symbol, client, progress) -> tuple[int, int]:
    if start is not None and end is not None:
        return int(start), int(end)
    b = bounds(ddf, symbol, client=client, progress=progress)
    return (int(start) if start is not None else b["start"]), (int(end) if end is not None else b["end"])


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
    _check_symbols(res)
    s, e = _time_bounds(res, start, end)
    tot = _add_dense([r["all"] for r in res])
    if tot is None:
        raise empty_range_error(s, e)
    r0, vol, buy, cnt = tot
    return build_result("volume", tick, row_size, r0, s, e, qty_decimals, vol, buy, cnt, value_area=value_area,
                        value_area_method=value_area_method, percentiles=percentiles)


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
    first, second = _add_dense([r["first"] for r in res]), _add_dense([r["second"] for r in res])
    whole = _add_dense([first, second])
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
    tot = _add_dense([r["all"] for r in res])
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
    tot = _add_dense(acc["dense"])
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
    """Dispatch to :func:`volume_profile`, :func:`recency_profile`, :func:`tpo_profile` or :func:`split_profile`.

    Raises ValueError for another ``kind``.
    """
    fn = {"volume": volume_profile, "recency": recency_profile, "tpo": tpo_profile, "split": split_profile}.get(kind)
    if fn is None:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return fn(ddf, tick, row_size, **kw)


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
    _check_symbols(res)
    s, e = _time_bounds(res, start, end)
    tot = _add_dense([r["all"] for r in res])
    if tot is None:
        raise empty_range_error(s, e)
    r0, vol, buy, cnt = tot
    prof = build_result("volume", tick, row_size, r0, s, e, qty_decimals, vol, buy, cnt, value_area=value_area,
                        value_area_method=value_area_method, percentiles=percentiles)
    ent = [r["entries"] for r in res if "entries" in r]
    cat = [np.concatenate([x[i] for x in ent]) for i in range(4)]
    dev = developing_from_entries(*cat, c, e, tick, row_size, value_area=value_area,
                                  value_area_method=value_area_method, qty_decimals=qty_decimals)
    return DevelopingResult(prof, dev, c)


# -- candle-aligned work: footprint and candles ------------------------------------------------------
def _check_time_order(spans) -> None:
    last = None
    for a, b in spans:
        if a is None:
            continue
        if last is not None and a < last:
            raise ValueError("partitions are not in time order (a partition starts before the previous one ends); "
                             "load one symbol per call or sort by time first")
        last = b


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

    def cat(name):
        frames = [getattr(c, name) for c in calls if len(getattr(c, name))] or [getattr(calls[0], name)]
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].copy()
        return df.iloc[np.argsort(df["time"].to_numpy(), kind="stable")].reset_index(drop=True)

    cells, cndl, stacked = cat("cells"), cat("candles"), cat("stacked")
    st = {k: np.concatenate([x[k] for x in stats]) for k in stats[0]}
    o = np.argsort(st["candle"], kind="stable")
    st = {k: v[o] for k, v in st.items()}
    if not np.array_equal(st["candle"] * iv, cndl["time"].to_numpy()):
        raise AssertionError("candle bookkeeping out of step")  # cannot happen: one candle per stats row
    nc = len(cndl)
    n = int(cndl["trades"].sum())

    # gaps, missing ids and CVD: the rules of compute.footprint over all candles
    gap = np.zeros(nc, dtype=bool)
    if gap_ms is None:
        gap[1:] = np.diff(st["candle"]) > 1
    else:
        gap[1:] = (st["t_first"][1:] - st["t_last"][:-1]) > gap_ms
    missing = np.zeros(nc, dtype=np.int64)
    ids_checked = False
    if has_ids and n > 1:
        step = st["id_first"][1:] - st["id_last"][:-1]
        increasing = bool((st["nonincr"] == 0).all() and (step > 0).all())
        ids_checked = bool(check_ids) if check_ids is not None else increasing
        if ids_checked:
            brk = np.r_[False, step != 1]
            gap |= brk | (st["breaks"] > 0)
            missing += st["missing"]
            missing[1:] += np.where(step != 1, np.maximum(step - 1, 0), 0)
    gap[0] = False
    segment = np.cumsum(gap)
    delta_ci = _ints(cndl["delta"].to_numpy(), scale)
    cs = np.cumsum(delta_ci)
    seg_base = (cs - delta_ci)[np.flatnonzero(np.concatenate(([True], gap[1:])))]
    cvd_i = cs - seg_base[segment]
    cndl["cvd"] = cvd_i / scale
    cndl["cvd_segment"] = segment.astype(np.int64)
    cndl["gap_before"] = gap
    cndl["missing_ids"] = missing

    # levels: the cells summed over candles on one dense grid
    tpr = grid.ticks_per_row(row_size, tick)
    tdec = grid.decimals_for(tick)
    cell_row = np.rint(cells["price_low"].to_numpy() / (tpr * tick)).astype(np.int64)
    ask_i, bid_i = _ints(cells["ask"].to_numpy(), scale), _ints(cells["bid"].to_numpy(), scale)
    g_lo, g_hi = int(cell_row.min()), int(cell_row.max())
    nrow = g_hi - g_lo + 1
    gi = cell_row - g_lo
    lv_buy, lv_sell, lv_tr = (np.zeros(nrow, np.int64) for _ in range(3))
    np.add.at(lv_buy, gi, ask_i)
    np.add.at(lv_sell, gi, bid_i)
    np.add.at(lv_tr, gi, cells["trades"].to_numpy())
    lv_vol = lv_buy + lv_sell
    rows = np.arange(g_lo, g_hi + 1, dtype=np.int64)
    levels = pd.DataFrame({
        "price_low": np.round(rows * tpr * tick, tdec), "price_high": np.round((rows + 1) * tpr * tick, tdec),
        "volume": lv_vol / scale, "buy": lv_buy / scale, "sell": lv_sell / scale,
        "delta": (lv_buy - lv_sell) / scale, "trades": lv_tr,
    })
    buy_ci, sell_ci = _ints(cndl["buy"].to_numpy(), scale), _ints(cndl["sell"].to_numpy(), scale)
    poc_all = int(poc_rows(lv_vol, np.zeros(1, np.int64), np.array([nrow]))[0])
    summary = {
        "candle_count": int(nc), "total_volume": int((buy_ci + sell_ci).sum()) / scale,
        "buy_volume": int(buy_ci.sum()) / scale, "sell_volume": int(sell_ci.sum()) / scale,
        "delta": int(delta_ci.sum()) / scale, "trades": n,
        "poc": round((2 * (g_lo + poc_all) + 1) * tpr * tick / 2, tdec + 1),
        "gaps": int(gap.sum()), "stacked_zones": int(len(stacked)),
    }
    c0 = calls[0]
    return FootprintResult(
        cells=cells, candles=cndl, stacked=stacked, levels=levels, tick=c0.tick, row_size=c0.row_size,
        interval_ms=c0.interval_ms, imbalance_ratio=c0.imbalance_ratio, ignore_zeros=c0.ignore_zeros,
        min_volume=c0.min_volume, stacked_min=c0.stacked_min, ids_checked=ids_checked,
        qty_decimals=c0.qty_decimals, summary=summary,
    )


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
