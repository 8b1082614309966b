"""The research frame schema and time parsing, shared by the history loader and the live-data client.

A history frame has :data:`HISTORY_COLUMNS` with :data:`HISTORY_DTYPES` (``symbol`` a
``category``): times UTC ms (int64), prices quote currency, quantities base asset,
``is_buyer_maker`` true = taker sell, ``trade_id`` the aggregate trade id. Pure: no file
or socket.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .batch import TradeBatch

__all__ = ["HISTORY_COLUMNS", "HISTORY_DTYPES", "empty_frame", "frame_from_batches", "to_ms", "to_ms_array"]

#: One day in ms.
DAY_MS = 86_400_000

#: Output columns, in order.
HISTORY_COLUMNS = ("time", "price", "qty", "is_buyer_maker", "trade_id", "symbol")
#: dtypes of every column but ``symbol`` (a ``category`` of the call's symbols).
HISTORY_DTYPES = {"time": np.dtype("int64"), "price": np.dtype("float64"), "qty": np.dtype("float64"),
                  "is_buyer_maker": np.dtype("bool"), "trade_id": np.dtype("int64")}


def symbol_categories(symbols: Iterable[str]) -> pd.CategoricalDtype:
    """The ``symbol`` column's dtype: the upper-cased symbols, sorted."""
    return pd.CategoricalDtype(sorted({str(s).upper() for s in symbols}))


def empty_frame(symbols: Iterable[str] = ()) -> pd.DataFrame:
    """A zero-row frame with :data:`HISTORY_COLUMNS` and their dtypes (``symbol`` categories = ``symbols``)."""
    cols = {c: np.empty(0, d) for c, d in HISTORY_DTYPES.items()}
    cols["symbol"] = pd.Categorical([], dtype=symbol_categories(symbols))
    return pd.DataFrame(cols)


def frame_from_batches(batches: Sequence[TradeBatch], symbols: Iterable[str] | None = None) -> pd.DataFrame:
    """Concatenate :class:`~compute.batch.TradeBatch` objects into a history frame (no sorting).

    ``symbols`` gives the ``symbol`` categories (default: the batches' symbols).
    Returns a DataFrame with :data:`HISTORY_COLUMNS`, dtypes :data:`HISTORY_DTYPES`.
    """
    batches = [b for b in batches if b is not None]
    cat = symbol_categories(symbols if symbols is not None else [b.symbol for b in batches])
    if not batches:
        return empty_frame(cat.categories)
    n = sum(len(b) for b in batches)
    sym_codes = np.concatenate([np.full(len(b), cat.categories.get_loc(b.symbol) if b.symbol in cat.categories
                                        else -1, np.int8 if len(cat.categories) < 127 else np.int32)
                                for b in batches]) if n else np.empty(0, np.int8)
    return pd.DataFrame({
        "time": np.concatenate([b.time for b in batches]),
        "price": np.concatenate([b.price for b in batches]),
        "qty": np.concatenate([b.qty for b in batches]),
        "is_buyer_maker": np.concatenate([b.is_buyer_maker for b in batches]),
        "trade_id": np.concatenate([b.trade_id for b in batches]),
        "symbol": pd.Categorical.from_codes(sym_codes, dtype=cat),
    })


def to_ms(value, *, end: bool = False) -> int | None:
    """A range bound as UTC ms.

    ``None`` stays None; int/float are UTC ms; ``datetime``/``Timestamp``/ISO strings
    are converted (naive = UTC). A bare **date** (``datetime.date`` or ``"YYYY-MM-DD"``)
    as ``end`` means the end of that day (inclusive date, as the backfill's
    ``--end``), i.e. the next midnight; as a start it is that midnight.

    Raises ValueError for an unparsable value.
    """
    if value is None:
        return None
    if isinstance(value, int | np.integer | float | np.floating) and not isinstance(value, bool):
        return int(value)
    is_date = (isinstance(value, dt.date) and not isinstance(value, dt.datetime)) or (
        isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()) is not None)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"cannot read {value!r} as a time") from e
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    ms = int(ts.value // 1_000_000)
    return ms + DAY_MS if (is_date and end) else ms


def to_ms_array(t) -> tuple[np.ndarray, str]:
    """Convert epoch timestamps of unknown unit to UTC milliseconds, per value by magnitude.

    ``t >= 1e18`` is taken as ns, ``t >= 1e15`` as µs (data.binance.vision spot
    dumps from 2025-01-01, tardis), else ms.  Sub-ms parts are floored.  The array
    counterpart of the scalar :func:`to_ms`; the file readers and the emulator use it.

    Parameters
    ----------
    t : array-like, shape (N,), integer

    Returns
    -------
    (ndarray shape (N,) int64 ms, unit) where unit is ``ms``, ``us``, ``ns`` or ``mixed``
    (``ms`` for an empty array).  The input is returned as is (as int64) when all
    values are ms, else a copy.
    """
    t = np.asarray(t, dtype=np.int64)
    ns = t >= 10**18
    us = (t >= 10**15) & ~ns
    n_ns, n_us = int(ns.sum()), int(us.sum())
    if n_ns == 0 and n_us == 0:
        return t, "ms"
    out = t.copy()
    out[us] //= 1000
    out[ns] //= 1_000_000
    kinds = [k for k, n in (("ms", len(t) - n_ns - n_us), ("us", n_us), ("ns", n_ns)) if n]
    return out, kinds[0] if len(kinds) == 1 else "mixed"
