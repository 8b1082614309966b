"""OHLCV candles with taker buy and sell volume, in one pass or incrementally.

A candle covers ``[time, time + interval_ms)`` with ``time`` a multiple of
``interval_ms`` since the epoch (UTC ms). ``open``/``close`` are the prices of
the first/last trade in time order (ties in time keep input order), ``high``/``low``
the extremes, ``volume`` the base-asset sum, ``buy_volume`` the taker-buy part
(``is_buyer_maker`` false), ``sell_volume`` the taker-sell part, ``trades`` the count.
Only intervals with trades get a candle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .result import as_batch

#: The candle schema: one record of a candle (the packed layout in Redis, the DataFrame columns and dtypes).
CANDLE_DTYPE = np.dtype(
    [
        ("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
        ("volume", "<f8"), ("buy_volume", "<f8"), ("sell_volume", "<f8"), ("trades", "<i8"),
    ]
)
#: Columns of every candle DataFrame, in order.
CANDLE_COLUMNS = tuple(CANDLE_DTYPE.names)

#: Candle intervals by name (ms), the ones the REST API and the page offer.
INTERVALS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000,
             "4h": 14_400_000, "1d": 86_400_000}


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: np.empty(0, CANDLE_DTYPE[c]) for c in CANDLE_COLUMNS})


def resample(df: pd.DataFrame, interval_ms: int) -> pd.DataFrame:
    """Aggregate candles into ``interval_ms`` candles aligned to the epoch (UTC).

    ``df`` has :data:`CANDLE_COLUMNS` sorted by ``time`` (candle open, UTC ms) at an interval
    that divides ``interval_ms``. Open = first open, close = last close, high/low = max/min,
    volumes (base asset) and trade counts summed. Returns ``df`` itself when ``interval_ms``
    is at most one minute or ``df`` is empty.
    """
    if interval_ms <= 60_000 or not len(df):
        return df
    t = df["time"].to_numpy()
    key = t // interval_ms
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(t)] - 1
    out = {
        "time": key[starts] * interval_ms,
        "open": df["open"].to_numpy()[starts],
        "high": np.maximum.reduceat(df["high"].to_numpy(), starts),
        "low": np.minimum.reduceat(df["low"].to_numpy(), starts),
        "close": df["close"].to_numpy()[ends],
    }
    for c in ("volume", "buy_volume", "sell_volume", "trades"):
        out[c] = np.add.reduceat(df[c].to_numpy(), starts)
    return pd.DataFrame(out)


def _check_interval(interval_ms) -> int:
    iv = int(interval_ms)
    if iv <= 0 or iv != interval_ms:
        raise ValueError(f"interval_ms must be a positive whole number of ms, got {interval_ms!r}")
    return iv


def _candle_arrays(trades, iv: int) -> dict | None:
    """Per-interval arrays (dict column -> ndarray) or None when there are no trades."""
    b = as_batch(trades)
    if not len(b):
        return None
    t = b.time
    order = None if (len(t) < 2 or (t[1:] >= t[:-1]).all()) else np.argsort(t, kind="stable")
    price, qty, ibm = b.price, b.qty, b.is_buyer_maker
    if order is not None:
        t, price, qty, ibm = t[order], price[order], qty[order], ibm[order]
    key = np.floor_divide(t, iv)
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    bounds = np.append(starts, len(t))  # np.r_ costs ~15 µs a call: this runs once per ingest write
    ends = bounds[1:] - 1
    buy = np.where(ibm, 0.0, qty)
    return {
        "time": key[starts] * iv,
        "open": price[starts],
        "high": np.maximum.reduceat(price, starts),
        "low": np.minimum.reduceat(price, starts),
        "close": price[ends],
        "volume": np.add.reduceat(qty, starts),
        "buy_volume": np.add.reduceat(buy, starts),
        "sell_volume": np.add.reduceat(qty - buy, starts),
        "trades": np.diff(bounds).astype(np.int64),
    }


def candles(trades, interval_ms: int = 60_000) -> pd.DataFrame:
    """Candles of ``interval_ms`` (UTC ms) from trades in any order.

    Parameters
    ----------
    trades : TradeBatch or DataFrame
        N trades (time int64 UTC ms, price float64, qty float64, is_buyer_maker bool).

    Returns
    -------
    DataFrame
        One row per interval with trades, sorted by ``time``; columns :data:`CANDLE_COLUMNS`
        (``time`` and ``trades`` int64, the rest float64).

    Raises
    ------
    ValueError
        If ``interval_ms`` is not a positive integer.
    """
    arr = _candle_arrays(trades, _check_interval(interval_ms))
    return _empty() if arr is None else pd.DataFrame(arr)


class CandleAccumulator:
    """Candles built batch by batch (batches arrive in time order).

    :meth:`update` returns the candles a batch touched: the previously open candle if
    the batch has trades in its interval, merged with them (open kept, high/low extended,
    close moved, sums added), followed by the new candles. :attr:`last` is the open
    (most recent) candle as a one-row DataFrame or None.

    A batch whose trades fall before the open candle's interval cannot be merged into
    candles already handed out: :meth:`update` raises ValueError and keeps its state.
    """

    def __init__(self, interval_ms: int = 60_000):
        self.interval_ms = _check_interval(interval_ms)
        self._last: dict | None = None

    @property
    def last(self) -> pd.DataFrame | None:
        if self._last is None:
            return None
        return pd.DataFrame({c: np.array([v]) for c, v in self._last.items()})

    def seed(self, candle) -> None:
        """Continue an open candle built elsewhere (a mapping or one-row DataFrame with :data:`CANDLE_COLUMNS`).

        Used when another process takes over ingest: the candle in progress keeps its
        open, high, low and sums instead of restarting from the first new trade.
        """
        if isinstance(candle, pd.DataFrame):
            candle = candle.iloc[-1].to_dict()
        self._last = {c: (candle[c].item() if hasattr(candle[c], "item") else candle[c]) for c in CANDLE_COLUMNS}

    def update(self, batch) -> pd.DataFrame:
        """Add a batch; return the touched candles (columns :data:`CANDLE_COLUMNS`, sorted by time).

        Raises
        ------
        ValueError
            If the batch holds trades older than the open candle's interval.
        """
        rec = self.update_records(batch)
        return pd.DataFrame({c: rec[c] for c in CANDLE_COLUMNS})

    def update_records(self, batch) -> np.ndarray:
        """:meth:`update` without pandas: the touched candles as records, shape (K,), dtype :data:`CANDLE_DTYPE`
        (times UTC ms, prices quote currency, volumes base asset), sorted by time; K = 0 for an empty batch.

        Raises
        ------
        ValueError
            If the batch holds trades older than the open candle's interval (the state is kept).
        """
        c = _candle_arrays(batch, self.interval_ms)
        if c is None:
            return np.empty(0, CANDLE_DTYPE)
        last = self._last
        if last is not None:
            t0 = int(c["time"][0])
            if t0 < last["time"]:
                raise ValueError(
                    f"trades at {t0} are older than the open candle {last['time']} (UTC ms): "
                    "batches must arrive in time order"
                )
            if t0 == last["time"]:
                c["open"][0] = last["open"]
                c["high"][0] = max(last["high"], c["high"][0])
                c["low"][0] = min(last["low"], c["low"][0])
                for k in ("volume", "buy_volume", "sell_volume", "trades"):
                    c[k][0] += last[k]
        rec = np.empty(len(c["time"]), CANDLE_DTYPE)
        for k in CANDLE_COLUMNS:
            rec[k] = c[k]
        self._last = dict(zip(CANDLE_COLUMNS, rec[-1].item(), strict=True))
        return rec
