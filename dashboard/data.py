"""Small, cheap transforms of a snapshot for the page, shared by all sessions of a process.

Everything here is derived from an immutable :class:`engine.view.Snapshot` and a
few settings, so the result is the same for every session asking the same
question: :func:`shared` memoises it per process (LRU, single flight), keyed by
the snapshot's symbol and version. Sessions therefore never repeat this work.
"""

from __future__ import annotations

import collections
import threading
import weakref

import numpy as np
import pandas as pd

from compute.batch import TradeBatch

_CACHE: collections.OrderedDict = collections.OrderedDict()
_LOCK = threading.Lock()
_KEY_LOCKS: dict = {}
#: Entries kept: every session asks about the current data version, so a short memory suffices
#: (old entries would only keep old snapshots' frames alive).
_MAX = 64


def shared(key: tuple, fn):
    """``fn()`` computed once per process for ``key`` (hashable); later callers get the same object."""
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with lock:
        with _LOCK:
            if key in _CACHE:
                return _CACHE[key]
        value = fn()
        with _LOCK:
            _CACHE[key] = value
            _KEY_LOCKS.pop(key, None)
            while len(_CACHE) > _MAX:
                _CACHE.popitem(last=False)
        return value


_DERIVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def derived(obj, key: tuple, fn):
    """``fn()`` memoised per process for the shared result object ``obj`` and ``key``.

    Display columns derived from one shared result (a profile, a footprint) are
    built once however many sessions show it; they go when the result goes.
    """
    try:
        with _LOCK:
            per = _DERIVED.get(obj)
            if per is not None and key in per:
                return per[key]
    except TypeError:  # not weak-referenceable: compute without memo
        return fn()
    value = fn()
    with _LOCK:
        per = _DERIVED.setdefault(obj, {})
        if len(per) > 16:
            per.clear()
        per[key] = value
    return value


TAPE_COLUMNS = ("time", "price", "qty", "side", "colour")


def tape_rows(trades: TradeBatch, min_size: float = 0.0, n: int = 40, scan_limit: int = 200_000) -> dict:
    """The ``n`` most recent trades with ``qty >= min_size``, newest first.

    Looks back through at most ``scan_limit`` trades (growing windows from the
    end), so the cost does not grow with the snapshot. Returns columns
    ``time`` (UTC ms, int64), ``price``, ``qty`` (float64), ``side``
    (``"buy"``/``"sell"``, taker side) as numpy arrays of equal length.
    """
    total = len(trades)
    window = max(4 * n, 2000)
    idx = np.empty(0, dtype=np.int64)
    while True:
        lo = max(total - window, 0)
        q = trades.qty[lo:]
        hit = np.flatnonzero(q >= min_size) + lo if min_size > 0 else np.arange(lo, total)
        idx = hit[-n:]
        if len(idx) >= n or lo == 0 or window >= scan_limit:
            break
        window = min(window * 8, scan_limit)
    idx = idx[::-1]
    sell = trades.is_buyer_maker[idx]
    return {
        "time": trades.time[idx], "price": trades.price[idx], "qty": trades.qty[idx],
        "side": np.where(sell, "sell", "buy"),
    }


LIQUIDATION_VIEW_COLUMNS = ("time", "side", "kind", "price", "qty", "notional")


def liquidations_view(liq: pd.DataFrame | None, symbol: str, start: int | None = None, end: int | None = None,
                      min_notional: float = 0.0) -> pd.DataFrame:
    """Liquidations of ``symbol`` in ``[start, end)`` with notional >= ``min_notional``, oldest first.

    ``liq`` has the columns of ``feeds.decode.LIQUIDATION_COLUMNS`` (``time`` UTC ms,
    ``side`` of the liquidation order, ``price``/``avg_price`` quote currency,
    ``orig_qty``/``filled_qty`` base asset) or is None. Definitions (reference b11):
    the filled size is ``filled_qty`` at ``avg_price`` (falling back to ``orig_qty`` at
    ``price`` when nothing is reported filled); notional = price x qty (quote currency);
    a ``SELL`` order liquidates a **long**, a ``BUY`` order a **short**.

    Returns columns ``time`` (int64), ``side`` (``"SELL"``/``"BUY"``), ``kind``
    (``"long liquidated"``/``"short liquidated"``), ``price``, ``qty``, ``notional`` (float64).
    """
    if liq is None or not len(liq):
        return pd.DataFrame({c: [] for c in LIQUIDATION_VIEW_COLUMNS})
    df = liq
    if "symbol" in df:
        df = df[df["symbol"].astype(str).str.upper() == symbol.upper()]
    t = df["time"].to_numpy(dtype=np.int64)
    mask = np.ones(len(df), dtype=bool)
    if start is not None:
        mask &= t >= start
    if end is not None:
        mask &= t < end
    df = df[mask]
    ap = df["avg_price"].to_numpy(dtype=np.float64) if "avg_price" in df else np.zeros(len(df))
    z = df["filled_qty"].to_numpy(dtype=np.float64) if "filled_qty" in df else np.zeros(len(df))
    p = df["price"].to_numpy(dtype=np.float64)
    q = df["orig_qty"].to_numpy(dtype=np.float64) if "orig_qty" in df else z
    filled = (ap > 0) & (z > 0)
    price = np.where(filled, ap, p)
    qty = np.where(filled, z, q)
    side = df["side"].astype(str).str.upper().to_numpy()
    out = pd.DataFrame({
        "time": df["time"].to_numpy(dtype=np.int64), "side": side,
        "kind": np.where(side == "SELL", "long liquidated", "short liquidated"),
        "price": price, "qty": qty, "notional": price * qty,
    })
    out = out[out["notional"] >= float(min_notional)]
    return out.sort_values("time", kind="stable").reset_index(drop=True)
