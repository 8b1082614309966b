"""Dask input and scheduling, and what one partition gives: its columns, range, per-row partials, bounds."""

from __future__ import annotations

import contextlib
import math
import sys

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask import delayed

from .. import grid
from ..result import (
    bin_rows,
    check_prices,
    qty_to_int,
)

#: Rows per partition when a pandas DataFrame is given.
PANDAS_CHUNK_ROWS = 2_000_000


# -- input, scheduling ---------------------------------------------------------------------
def as_dask(df, npartitions: int | None = None) -> dd.DataFrame:
    """A Dask DataFrame from a Dask or pandas DataFrame (pandas: ``npartitions`` or one per 2 M rows)."""
    if isinstance(df, dd.DataFrame):
        return df
    if isinstance(df, pd.DataFrame):
        n = npartitions or max(1, math.ceil(len(df) / PANDAS_CHUNK_ROWS))
        return dd.from_pandas(df, npartitions=n, sort=False)
    raise TypeError(f"expected a dask or pandas DataFrame, got {type(df).__name__}")


def _client(client):
    """The client to run on: ``client``, else the process's current ``dask.distributed`` client (one made by
    ``Client(...)`` becomes dask's default, as everywhere in Dask), else None (the local threaded scheduler)."""
    if client is not None or "distributed" not in sys.modules:  # no Client can exist without the import
        return client
    from distributed import default_client

    try:
        return default_client()
    except ValueError:  # no client in this process
        return None


def _scheduler(client):
    client = _client(client)
    return dask.config.set(scheduler=client if client is not None else "threads")


def _progress(progress: bool, desc: str):
    if not progress:
        return contextlib.nullcontext()
    from tqdm.dask import TqdmCallback
    from tqdm.std import tqdm

    return TqdmCallback(tqdm_class=tqdm, desc=desc, leave=False)


def _run(tasks: list, client=None, progress: bool = False, desc: str = "flowlens") -> list:
    """Compute a list of delayed objects: on ``client`` (or the current distributed client), else on threads."""
    client = _client(client)
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
    """The partial of one partition: :func:`compute.result.bin_rows`, or None when it has no trade."""
    return bin_rows(rows, qint, sell) if len(rows) else None


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


def _check_time_order(spans) -> None:
    last = None
    for a, b in spans:
        if a is None:
            continue
        if last is not None and a < last:
            raise ValueError("partitions are not in time order (a partition starts before the previous one ends); "
                             "load one symbol per call or sort by time first")
        last = b
