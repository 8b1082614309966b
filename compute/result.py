"""The result every profile kind returns, and the pure numpy helpers behind POC and value area.

Exact arithmetic
----------------
Quantities are summed as integers: each trade's ``qty`` is converted once to
``round(qty * 10**qty_decimals)`` (default 8 decimals, Binance's finest
quantity step) and every per-row sum is an exact int64. The reported float
volumes are ``sum / 10**qty_decimals`` (correctly rounded), so a profile never
depends on the order in which trades were summed. This is what lets
:class:`compute.incremental.ProfileStore` answer a range from pre-summed buckets with
a result *identical* (bit for bit) to recomputing from the raw trades.

Definitions (issue 2 item 6 and issue 3; sources: ``shared/reference/orderflow-and-binance.md``
b3 POC, b4 value area, b9 percentile lines):

* POC: the row with the largest measure (volume, weighted volume or TPO count);
  ties go to the row nearest the middle of the dense grid, then to the lower row
  (thinkorswim's documented rule). ``poc`` is the row's middle price.
* value area, ``method="single"`` (CBOT/Steidlmayer): start at the POC; while the
  accumulated measure is below ``fraction * total``, compare the next row above with
  the next row below and add the larger (above wins ties; when one side is exhausted
  take the other). ``method="dual"`` (Dalton, *Mind Over Markets* App. 1; Linn
  "Method A"): the same, comparing the sums of the next two rows above and below and
  adding both rows of the larger pair (a lone last row counts as a pair). ``vah`` is
  the high edge of the top row, ``val`` the low edge of the bottom row.
* percentile line p: the middle price of the first row, from the bottom, at which the
  cumulative traded volume reaches ``p * total`` volume.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import grid
from .batch import TradeBatch
from .value_area import VA_METHODS, _decimal, percentile_indices, poc_index, value_area_bounds

#: Default decimal places of the exact integer quantity (Binance's finest step is 1e-8).
QTY_DECIMALS = 8

#: Accepted value-area fractions (issue 3: from 50 % to 95 %).
VALUE_AREA_MIN, VALUE_AREA_MAX = 0.5, 0.95

#: Default percentile levels.
DEFAULT_PERCENTILES = (0.25, 0.5, 0.75)

_INT64_SAFE = 2**62


# -- input helpers ------------------------------------------------------------------------
def as_batch(trades) -> TradeBatch:
    """Accept a :class:`TradeBatch` or a DataFrame (see :meth:`TradeBatch.from_frame`)."""
    if isinstance(trades, TradeBatch):
        return trades
    if isinstance(trades, pd.DataFrame):
        return TradeBatch.from_frame(trades)
    raise TypeError(f"trades must be a TradeBatch or a pandas DataFrame, got {type(trades).__name__}")


def qty_scale(qty_decimals: int) -> int:
    """``10**qty_decimals`` as int; raises ValueError outside 0..12."""
    if not (isinstance(qty_decimals, int | np.integer) and 0 <= int(qty_decimals) <= 12):
        raise ValueError(f"qty_decimals must be an integer in 0..12, got {qty_decimals!r}")
    return 10 ** int(qty_decimals)


def qty_to_int(qty: np.ndarray, scale: int) -> np.ndarray:
    """Exact integer quantity ``round(qty * scale)``, shape (N,), int64.

    Raises
    ------
    ValueError
        If a quantity is negative or not finite, has more decimals than ``scale``
        holds (off by more than 1e-3 of a unit), or the total would not fit an int64.
    """
    q = np.asarray(qty, dtype=np.float64)
    if not len(q):
        return np.empty(0, np.int64)
    x = q * float(scale)
    r = np.rint(x)
    worst = float(np.abs(x - r).max()) if len(x) > 1 else abs(float(x[0]) - float(r[0]))
    lowest = float(r.min()) if len(r) > 1 else float(r[0])
    if not (worst <= 1e-3 and lowest >= 0):  # NaN fails the comparisons too
        if not np.isfinite(x).all():
            raise ValueError("quantities must be finite")
        if (x < 0).any():
            raise ValueError("quantities must not be negative")
        dec = int(round(math.log10(scale)))
        raise ValueError(f"quantities have more than {dec} decimals; pass a larger qty_decimals")
    total = float(r.sum())
    if total >= _INT64_SAFE:
        raise ValueError(
            f"total quantity {total / scale:.6g} does not fit int64 at {int(round(math.log10(scale)))} decimals; "
            "pass a smaller qty_decimals"
        )
    return r.astype(np.int64)


def check_prices(price: np.ndarray) -> None:
    """Raise ValueError if a price is not finite (zero and negative prices are valid rows)."""
    p = np.asarray(price)
    if len(p) and not np.isfinite(p).all():
        raise ValueError("prices must be finite")


def check_value_area(value_area: float, method: str) -> None:
    """Raise ValueError unless 0.5 <= value_area <= 0.95 and method is single|dual."""
    try:
        ok = VALUE_AREA_MIN <= float(value_area) <= VALUE_AREA_MAX
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"value_area must be between {VALUE_AREA_MIN} and {VALUE_AREA_MAX}, got {value_area!r}")
    if method not in VA_METHODS:
        raise ValueError(f"value_area_method must be one of {VA_METHODS}, got {method!r}")


def check_percentiles(percentiles) -> tuple[float, ...]:
    """Validate percentile levels (each in [0, 1]); returns them as a tuple of floats."""
    ps = tuple(float(p) for p in percentiles)
    for p in ps:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"percentiles must be within [0, 1], got {p!r}")
    return ps


def time_bounds(time: np.ndarray, start: int | None, end: int | None) -> tuple[int, int]:
    """Resolve a range: start defaults to the first trade, end (exclusive) to the last trade + 1 ms."""
    if start is None:
        start = int(time.min()) if len(time) else 0
    if end is None:
        end = int(time.max()) + 1 if len(time) else 0
    return int(start), int(end)


def empty_range_error(start, end) -> ValueError:
    """The ValueError raised when a range holds no trades."""
    return ValueError(f"no trades in range [{start}, {end}) (UTC ms)")


# -- POC and value area -------------------------------------------------------------------
@dataclass(eq=False)
class ProfileResult:
    """A profile on a dense row grid with its POC, value area and percentile lines.

    Row ``i`` (0 <= i < ``rows``) is grid row ``first_row + i`` and covers
    ``[price_low[i], price_low[i] + row_size)`` in quote currency.

    Attributes
    ----------
    kind : str
        ``"volume"``, ``"recency"``, ``"tpo"`` or ``"split"``.
    tick, row_size : float
        Tick size and row size (quote currency); ``ticks_per_row = row_size / tick``.
    first_row, rows : int
        Grid row index of the bottom row and number of rows (R).
    start, end : int
        The range ``[start, end)`` in UTC ms.
    total_volume, buy_volume, sell_volume : float
        Base-asset sums (taker buy = ``is_buyer_maker`` false).
    trades : int
        Number of trades.
    poc, vah, val : float
        POC row middle, value-area high edge and low edge (quote currency), computed on
        ``measure`` (volume for ``kind="volume"``).
    value_area : float
        The fraction used; ``value_area_method`` ``"single"`` or ``"dual"``.
    price_low, volume, buy, sell, measure : ndarray, shape (R,), float64
    trades_per_row : ndarray, shape (R,), int64
    volume_int, buy_int : ndarray, shape (R,), int64
        Exact sums in units of ``10**-qty_decimals``.
    poc_idx, va_lo, va_hi : int
        Row indices of the POC and the value area's bottom and top rows.
    percentiles : dict
        ``{p: price}`` (row middle; see module docstring).
    columns : dict
        The kind's own per-row columns (name -> ndarray shape (R,)), added to ``levels``.
    extra : dict
        The kind's own JSON-able summary values, added to ``to_dict()``.
    first, second : ProfileResult or None
        For ``kind="split"`` only: the halves' own volume profiles (None when a half is empty).
    """

    kind: str
    tick: float
    row_size: float
    first_row: int
    rows: int
    start: int
    end: int
    qty_decimals: int
    volume_int: np.ndarray
    buy_int: np.ndarray
    trades_per_row: np.ndarray
    measure: np.ndarray
    value_area: float
    value_area_method: str
    poc_idx: int
    va_lo: int
    va_hi: int
    percentiles: dict = field(default_factory=dict)
    columns: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    first: ProfileResult | None = None
    second: ProfileResult | None = None

    # -- derived values ---------------------------------------------------------------
    @property
    def decimals(self) -> int:
        return grid.decimals_for(self.tick)

    @property
    def ticks_per_row(self) -> int:
        return grid.ticks_per_row(self.row_size, self.tick)

    @property
    def price_low(self) -> np.ndarray:
        tpr = self.ticks_per_row
        rows = np.arange(self.first_row, self.first_row + self.rows, dtype=np.int64)
        return np.round(rows * tpr * self.tick, self.decimals)

    @property
    def price_high(self) -> np.ndarray:
        tpr = self.ticks_per_row
        rows = np.arange(self.first_row + 1, self.first_row + self.rows + 1, dtype=np.int64)
        return np.round(rows * tpr * self.tick, self.decimals)

    @property
    def volume(self) -> np.ndarray:
        return self.volume_int / float(10**self.qty_decimals)

    @property
    def buy(self) -> np.ndarray:
        return self.buy_int / float(10**self.qty_decimals)

    @property
    def sell(self) -> np.ndarray:
        return (self.volume_int - self.buy_int) / float(10**self.qty_decimals)

    @property
    def delta(self) -> np.ndarray:
        return (2 * self.buy_int - self.volume_int) / float(10**self.qty_decimals)

    @property
    def total_volume(self) -> float:
        return int(self.volume_int.sum()) / float(10**self.qty_decimals)

    @property
    def buy_volume(self) -> float:
        return int(self.buy_int.sum()) / float(10**self.qty_decimals)

    @property
    def sell_volume(self) -> float:
        return int(self.volume_int.sum() - self.buy_int.sum()) / float(10**self.qty_decimals)

    @property
    def trades(self) -> int:
        return int(self.trades_per_row.sum())

    def row_middle(self, i: int) -> float:
        """Middle price of row index ``i`` (0-based in this grid)."""
        tpr = self.ticks_per_row
        return round((2 * (self.first_row + i) + 1) * tpr * self.tick / 2, self.decimals + 1)

    @property
    def poc(self) -> float:
        return self.row_middle(self.poc_idx)

    @property
    def vah(self) -> float:
        return round((self.first_row + self.va_hi + 1) * self.ticks_per_row * self.tick, self.decimals)

    @property
    def val(self) -> float:
        return round((self.first_row + self.va_lo) * self.ticks_per_row * self.tick, self.decimals)

    @property
    def levels(self) -> pd.DataFrame:
        """One row per price row, bottom first: price_low, price_high, volume, buy, sell, delta, trades (+ kind columns)."""
        df = pd.DataFrame(
            {
                "price_low": self.price_low, "price_high": self.price_high, "volume": self.volume,
                "buy": self.buy, "sell": self.sell, "delta": self.delta, "trades": self.trades_per_row,
            }
        )
        for k, v in self.columns.items():
            df[k] = v
        return df

    def summary(self) -> dict:
        """The JSON-able summary values (no levels)."""
        d = {
            "kind": self.kind, "tick": self.tick, "row_size": self.row_size, "start": self.start, "end": self.end,
            "rows": int(self.rows), "total_volume": self.total_volume, "buy_volume": self.buy_volume,
            "sell_volume": self.sell_volume, "trades": self.trades, "poc": self.poc, "vah": self.vah, "val": self.val,
            "value_area": float(self.value_area), "value_area_method": self.value_area_method,
            "percentiles": {_pkey(p): v for p, v in self.percentiles.items()},
        }
        d.update(self.extra)
        return d

    def to_dict(self) -> dict:
        """JSON-able dict: the summary plus ``levels`` as a list of per-row dicts (bottom first)."""
        d = self.summary()
        lv = self.levels
        cols = {c: lv[c].to_numpy() for c in lv.columns}
        out = []
        for i in range(len(lv)):
            row = {}
            for c, a in cols.items():
                x = a[i]
                if np.issubdtype(a.dtype, np.integer):
                    row[c] = int(x)
                else:
                    x = float(x)
                    row[c] = x if math.isfinite(x) else None
            out.append(row)
        d["levels"] = out
        return d


def _pkey(p: float) -> str:
    """Percentile key as in the CLI JSON: 0.25 -> "0.25", 0.5 -> "0.5"."""
    return repr(float(p))


def build_result(
    kind: str, tick: float, row_size: float, first_row: int, start: int, end: int, qty_decimals: int,
    volume_int: np.ndarray, buy_int: np.ndarray, trades_per_row: np.ndarray, *, value_area: float = 0.7,
    value_area_method: str = "single", measure: np.ndarray | None = None, percentiles=DEFAULT_PERCENTILES,
    columns: dict | None = None, extra: dict | None = None,
) -> ProfileResult:
    """Assemble a :class:`ProfileResult` from dense per-row arrays (all shape (R,), R >= 1).

    ``measure`` (default: ``volume_int``) is what POC and value area are computed on;
    percentiles are always on traded volume.
    """
    m = volume_int if measure is None else measure
    ps = check_percentiles(percentiles or ())
    fast = _levels_int(m, value_area, value_area_method, ps)
    if fast is None:
        p = poc_index(m)
        lo, hi = value_area_bounds(m, p, value_area, value_area_method)
    else:
        p, lo, hi, idx = fast
    res = ProfileResult(
        kind=kind, tick=float(tick), row_size=float(row_size), first_row=int(first_row), rows=len(volume_int),
        start=int(start), end=int(end), qty_decimals=int(qty_decimals), volume_int=volume_int, buy_int=buy_int,
        trades_per_row=trades_per_row, measure=np.asarray(m, dtype=np.float64) / (
            float(10**qty_decimals) if measure is None else 1.0),
        value_area=float(value_area), value_area_method=value_area_method, poc_idx=p, va_lo=lo, va_hi=hi,
        columns=dict(columns or {}), extra=dict(extra or {}),
    )
    if ps:
        if fast is None or m is not volume_int:
            idx = percentile_indices(volume_int, ps)
        res.percentiles = {p_: res.row_middle(int(i)) for p_, i in zip(ps, idx, strict=True)}
    return res


_profile_levels = None  # compute.kernels.profile_levels, imported on first use (numba is slow to import)


@functools.lru_cache(maxsize=256)
def _num_den(x: float) -> tuple[int, int] | None:
    """``x`` as the decimal it prints as, ``(numerator, denominator)``, when both are small and x >= 0."""
    f = _decimal(x)
    return (f.numerator, f.denominator) if 0 <= f and f.numerator < 2**20 and f.denominator < 2**20 else None


def _levels_int(m, value_area: float, method: str, ps: tuple):
    """POC, value area and percentile rows from one numba call (:func:`compute.kernels.profile_levels`).

    Only for a non-empty int64 measure and fractions that are short decimals (0.7 = 7/10);
    returns None otherwise (the numpy/Python helpers of :mod:`compute.value_area`, which the
    kernel equals, then run and raise their errors).
    """
    if not (isinstance(m, np.ndarray) and m.dtype == np.int64 and m.ndim == 1 and len(m)) or method not in VA_METHODS:
        return None
    fr = [_num_den(float(x)) for x in (value_area, *ps)]
    if None in fr:
        return None
    global _profile_levels
    if _profile_levels is None:
        from .kernels import profile_levels as _profile_levels
    nums = np.array([f[0] for f in fr[1:]], np.int64)
    dens = np.array([f[1] for f in fr[1:]], np.int64)
    p, lo, hi, idx = _profile_levels(m, fr[0][0], fr[0][1], method == "dual", nums, dens)
    return int(p), int(lo), int(hi), idx


def bin_rows(rows: np.ndarray, qint: np.ndarray, is_buyer_maker: np.ndarray):
    """Dense per-row int sums for trades given by row index.

    Returns ``(first_row, volume_int, buy_int, trades)`` with arrays of shape (R,), int64,
    R = max(rows) - min(rows) + 1. Requires at least one trade.
    """
    r0 = int(rows.min())
    idx = rows - r0
    n = int(idx.max()) + 1
    vol = np.zeros(n, np.int64)
    buy = np.zeros(n, np.int64)
    np.add.at(vol, idx, qint)
    take = ~is_buyer_maker
    np.add.at(buy, idx[take], qint[take])
    cnt = np.bincount(idx, minlength=n).astype(np.int64)
    return r0, vol, buy, cnt


def combine_rows(parts: list):
    """Sum partial ``(first_row, volume_int, buy_int, trades)`` tuples (:func:`bin_rows`) on their union span.

    The combine step of the additive kinds (datashader's partial → combine → finalize): integer
    addition is exact and order-free, so partitions may come in any order. None entries are
    skipped; returns None when all are None.

    Raises
    ------
    ValueError
        The total quantity would not fit int64 at this ``qty_decimals``.
    """
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
    if int(vol.sum()) >= 2**62:
        raise ValueError("total quantity does not fit int64 at this qty_decimals; pass a smaller qty_decimals")
    return r0, vol, buy, cnt


# -- raw trades on the tick grid (shared by the functions and the store) ------------------
@dataclass(frozen=True, eq=False)
class RawTrades:
    """N trades on the integer tick grid, sorted by time (stable), as the kinds consume them.

    time : int64 (N,) UTC ms, ascending; tick : int64 (N,) ``round(price / tick)``;
    qint : int64 (N,) exact quantity in units of ``10**-qty_decimals``; sell : bool (N,)
    taker sell (``is_buyer_maker``).
    """

    time: np.ndarray
    tick: np.ndarray
    qint: np.ndarray
    sell: np.ndarray

    def __len__(self) -> int:
        return len(self.time)

    @classmethod
    def from_batch(cls, batch: TradeBatch, tick: float, qty_decimals: int = QTY_DECIMALS) -> RawTrades:
        """Convert (and stably sort by time) a batch; raises ValueError on bad prices or quantities."""
        check_prices(batch.price)
        qint = qty_to_int(batch.qty, qty_scale(qty_decimals))
        t, ticks, sell = batch.time, grid.tick_index(batch.price, tick), batch.is_buyer_maker
        if len(t) > 1 and not (t[1:] >= t[:-1]).all():
            o = np.argsort(t, kind="stable")
            t, ticks, qint, sell = t[o], ticks[o], qint[o], sell[o]
        return cls(t, ticks, qint, sell)

    @classmethod
    def concat(cls, parts) -> RawTrades:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool))
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("time", "tick", "qint", "sell")))

    def slice_time(self, start: int, end: int) -> RawTrades:
        lo, hi = np.searchsorted(self.time, [start, end], side="left")
        if lo == 0 and hi == len(self.time):
            return self
        return RawTrades(self.time[lo:hi], self.tick[lo:hi], self.qint[lo:hi], self.sell[lo:hi])

    def bin_rows(self, tpr: int):
        """``(first_row, volume_int, buy_int, trades)`` on the dense row grid (see :func:`bin_rows`)."""
        return bin_rows(np.floor_divide(self.tick, tpr), self.qint, self.sell)
