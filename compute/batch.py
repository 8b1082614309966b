"""Columnar trade batches: the one shape trades take between feed, compute and store.

A :class:`TradeBatch` holds N trades of one symbol as parallel numpy arrays.
Everything downstream of a feed (the compute functions, the Redis store, the
dashboard) works on whole batches, never on per-trade Python objects.

Units follow Binance: prices in quote currency, quantities in base asset (in
contracts for COIN-M), times in UTC milliseconds since the epoch.
``is_buyer_maker`` true means the buyer was the resting order, i.e. the taker
**sold** (Binance aggTrade field ``m``).

A :class:`LiquidationBatch` carries one symbol's liquidations (``forceOrder``) on the same
path as its trades (:mod:`feeds.source`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Packed record layout used to ship a batch as bytes (Redis, files).
RECORD_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("price", "<f8"),
        ("qty", "<f8"),
        ("trade_id", "<i8"),
        ("is_buyer_maker", "?"),
    ]
)

#: Column names of :meth:`TradeBatch.to_frame` (and accepted by :meth:`from_frame`).
COLUMNS = ("time", "price", "qty", "is_buyer_maker", "trade_id")


@dataclass(frozen=True, eq=False)
class TradeBatch:
    """N trades of one symbol as columnar numpy arrays.

    Attributes
    ----------
    time : ndarray, shape (N,), int64
        Trade time ``T`` in UTC milliseconds.
    price : ndarray, shape (N,), float64
        Price in quote currency.
    qty : ndarray, shape (N,), float64
        Quantity in base asset (contracts on COIN-M).
    is_buyer_maker : ndarray, shape (N,), bool
        True for a taker sell, False for a taker buy.
    trade_id : ndarray, shape (N,), int64
        Aggregate trade id ``a`` (or the trade id for plain trades).
    symbol : str
        Upper-case exchange symbol, e.g. ``"BTCUSDT"``.

    Raises
    ------
    ValueError
        If the arrays do not all have the same length.
    """

    time: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    is_buyer_maker: np.ndarray
    trade_id: np.ndarray
    symbol: str = ""

    def __post_init__(self):
        cols = {
            "time": np.ascontiguousarray(self.time, dtype=np.int64),
            "price": np.ascontiguousarray(self.price, dtype=np.float64),
            "qty": np.ascontiguousarray(self.qty, dtype=np.float64),
            "is_buyer_maker": np.ascontiguousarray(self.is_buyer_maker, dtype=bool),
            "trade_id": np.ascontiguousarray(self.trade_id, dtype=np.int64),
        }
        n = {len(v) for v in cols.values()}
        if len(n) > 1:
            raise ValueError(f"TradeBatch columns differ in length: { {k: len(v) for k, v in cols.items()} }")
        for k, v in cols.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "symbol", str(self.symbol).upper())

    # -- construction -----------------------------------------------------------------
    @classmethod
    def empty(cls, symbol: str = "") -> TradeBatch:
        """Return a batch with zero trades."""
        z = np.empty(0)
        return cls(z, z, z, z, z, symbol)

    @classmethod
    def concat(cls, batches, symbol: str | None = None) -> TradeBatch:
        """Concatenate batches in the order given (no sorting, no de-duplication)."""
        batches = [b for b in batches if b is not None]
        if not batches:
            return cls.empty(symbol or "")
        sym = symbol if symbol is not None else batches[0].symbol
        return cls(
            np.concatenate([b.time for b in batches]),
            np.concatenate([b.price for b in batches]),
            np.concatenate([b.qty for b in batches]),
            np.concatenate([b.is_buyer_maker for b in batches]),
            np.concatenate([b.trade_id for b in batches]),
            sym,
        )

    @classmethod
    def from_frame(cls, df: pd.DataFrame, symbol: str | None = None) -> TradeBatch:
        """Build a batch from a DataFrame with the columns of :data:`COLUMNS`.

        ``time`` may be int64 milliseconds or ``datetime64``; ``trade_id`` may
        also be named ``agg_trade_id`` or ``id``; ``qty`` may be ``quantity``.
        ``symbol`` defaults to the frame's ``symbol`` column (first value).

        Raises
        ------
        KeyError
            If a required column is missing.
        """
        time = df["time"]
        if np.issubdtype(time.dtype, np.datetime64) or isinstance(time.dtype, pd.DatetimeTZDtype):
            time = pd.to_datetime(time, utc=True).astype("datetime64[ms, UTC]").astype("int64")
        tid = next((df[c] for c in ("trade_id", "agg_trade_id", "id") if c in df), None)
        if tid is None:
            raise KeyError("trade_id (or agg_trade_id / id) column missing")
        qty = df["qty"] if "qty" in df else df["quantity"]
        if symbol is None:
            symbol = str(df["symbol"].iloc[0]) if "symbol" in df and len(df) else ""
        return cls(
            np.asarray(time), np.asarray(df["price"]), np.asarray(qty),
            np.asarray(df["is_buyer_maker"]), np.asarray(tid), symbol,
        )

    @classmethod
    def from_bytes(cls, data: bytes, symbol: str = "") -> TradeBatch:
        """Decode bytes written by :meth:`to_bytes` (packed :data:`RECORD_DTYPE`)."""
        rec = np.frombuffer(data, dtype=RECORD_DTYPE)
        return cls(rec["time"], rec["price"], rec["qty"], rec["is_buyer_maker"], rec["trade_id"], symbol)

    # -- views --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.time)

    def take(self, index) -> TradeBatch:
        """Select trades by boolean mask, integer indices or slice."""
        return TradeBatch(
            self.time[index], self.price[index], self.qty[index],
            self.is_buyer_maker[index], self.trade_id[index], self.symbol,
        )

    def time_slice(self, start: int | None = None, end: int | None = None) -> TradeBatch:
        """Trades with ``start <= time < end`` (UTC ms), assuming time is sorted ascending."""
        lo = 0 if start is None else int(np.searchsorted(self.time, start, side="left"))
        hi = len(self) if end is None else int(np.searchsorted(self.time, end, side="left"))
        return self.take(slice(lo, max(lo, hi)))

    def to_bytes(self) -> bytes:
        """Pack as :data:`RECORD_DTYPE` records (25 bytes per trade)."""
        rec = np.empty(len(self), dtype=RECORD_DTYPE)
        rec["time"], rec["price"], rec["qty"] = self.time, self.price, self.qty
        rec["trade_id"], rec["is_buyer_maker"] = self.trade_id, self.is_buyer_maker
        return rec.tobytes()

    def to_frame(self) -> pd.DataFrame:
        """Return a DataFrame with the columns of :data:`COLUMNS` (time as int64 ms)."""
        return pd.DataFrame(
            {
                "time": self.time, "price": self.price, "qty": self.qty,
                "is_buyer_maker": self.is_buyer_maker, "trade_id": self.trade_id,
            }
        )

    @property
    def buy_qty(self) -> np.ndarray:
        """Taker-buy quantity per trade (0 for taker sells), shape (N,), float64."""
        return np.where(self.is_buyer_maker, 0.0, self.qty)

    @property
    def sell_qty(self) -> np.ndarray:
        """Taker-sell quantity per trade (0 for taker buys), shape (N,), float64."""
        return np.where(self.is_buyer_maker, self.qty, 0.0)


@dataclass(frozen=True, eq=False)
class LiquidationBatch:
    """Liquidations (Binance ``forceOrder`` snapshots) of one symbol, carried in-band beside its trades.

    Attributes
    ----------
    symbol : str
        Upper-case exchange symbol.
    frame : pandas.DataFrame
        One row per liquidation, columns :data:`feeds.decode.LIQUIDATION_COLUMNS` (or a
        subset): ``symbol``, ``side`` (``"SELL"``: a long was liquidated), ``order_type``,
        ``time_in_force``, ``status`` (str); ``price``, ``avg_price`` (quote currency),
        ``orig_qty``, ``filled_qty``, ``last_filled_qty`` (base asset; contracts on
        COIN-M) float64; ``time`` (trade time ``T``) and ``event_time`` (``E``) int64
        UTC ms. Rows of this symbol only, in time order.
    """

    symbol: str
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def of(cls, frame: pd.DataFrame, symbol: str) -> LiquidationBatch:
        """The rows of ``frame`` whose ``symbol`` is ``symbol`` (any case), as a batch (maybe empty)."""
        sym = symbol.upper()
        if len(frame) and "symbol" in frame:
            frame = frame[frame["symbol"].astype(str).str.upper() == sym]
        return cls(sym, frame)

    def shifted(self, ms: int) -> LiquidationBatch:
        """A copy with ``time`` and ``event_time`` moved by ``ms`` (a replay's loop shift)."""
        df = self.frame.copy()
        for col in ("time", "event_time"):
            if col in df:
                df[col] += ms
        return LiquidationBatch(self.symbol, df)
