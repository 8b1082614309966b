"""Footprint candles: bid/ask volume per candle and price row, imbalances, POC, delta and CVD.

Definitions (issue 3 item 2; ``shared/reference/orderflow-and-binance.md`` b1, b2, b3, b5, b6):

* **Rows** follow :mod:`compute.grid`: ``row = floor(round(price / tick) / ticks_per_row)``,
  a row covers ``[low, low + row_size)`` in quote currency.
* **Candles** are fixed intervals aligned to multiples of ``interval_ms`` since
  the Unix epoch (UTC), so 1-minute candles start at ``hh:mm:00.000``; a trade
  at time ``T`` belongs to candle ``floor(T / interval_ms)``.  Only candles
  holding at least one trade are reported; a ``start``/``end`` inside a candle
  gives a partial candle (its trades in range only).
* **Cells**: each candle's grid is dense from its lowest to its highest traded
  row (empty rows inside are real cells with zero volume).  Per cell:
  ``bid`` = taker-sell volume (``is_buyer_maker`` true, Binance ``m``),
  ``ask`` = taker-buy volume, ``delta = ask - bid``, ``trades`` = trade count.
* **Exact sums**: like :mod:`compute.result`, each quantity counts as the
  integer ``round(qty * 10**qty_decimals)`` (default 8 decimals, Binance's finest
  step; quantities are assumed to have no more decimals) and every cell is an
  exact integer sum, reported as ``sum / 10**qty_decimals``.  So the cells add
  up *exactly* to the volume profile of the same trades, and POC ties and
  imbalance thresholds are decided exactly.  (Fast path: the float sums are
  rounded to whole units when their error bound ``(k + 1) * 2**-53 * sum`` for
  ``k`` trades is far below half a unit, which holds for any realistic cell;
  otherwise the integers are summed directly.)
* **Diagonal imbalance** (reference b5, stated as a plain ratio): within a
  candle, for adjacent rows ``P`` and ``P + 1``

  - *buy imbalance* at ``P + 1`` when ``ask[P+1] >= ratio * bid[P]``;
  - *sell imbalance* at ``P`` when ``bid[P] >= ratio * ask[P+1]``.

  The comparison is exact, with ``ratio`` taken as the decimal number it is
  written as (``Fraction(str(ratio))``, denominator at most 10**4), so 0.3
  against 0.1 is exactly at a ratio of 3 and counts.  The imbalanced cell's own
  side must be positive and at least ``min_volume`` (ATAS "Imbalance Volume").
  With ``ignore_zeros`` a zero on the compared side creates no imbalance
  (flowsurface ``ignore_zeros``, ATAS "Ignore zero values").  Only rows inside
  the candle's grid are compared, so a candle's lowest row never carries a buy
  imbalance and its highest row never a sell imbalance.
* **Stacked imbalance** (reference b5, Quantower / ATAS "Imbalance Range"):
  ``stacked_min`` or more consecutive rows of one candle with an imbalance of
  the same side form one zone.
* **POC** per candle (reference b3, thinkorswim rule, the rule of
  :func:`compute.profile.poc_index`): the row with the largest volume; ties go
  to the row nearest the middle of the candle's grid, then to the lower row.
  Reported as that row's middle price.
* **Delta %** = ``delta / volume * 100`` (Quantower; 0 when the volume is 0).
* **CVD** (reference b6): running sum of candle delta.  It restarts (at the
  candle's own delta) where the data has a gap, ``gap_before`` marks that
  candle and ``cvd_segment`` numbers the unbroken stretches, so no sum is
  carried across missing data (flowsurface #122).  A gap before candle ``c`` is

  - with ``gap_ms=None``: at least one whole empty candle interval between
    ``c`` and the previous reported candle;
  - with ``gap_ms`` given: more than ``gap_ms`` milliseconds between the last
    trade before ``c`` and the first trade of ``c`` (for rarely traded symbols,
    where empty candles are normal);
  - in both cases also a break in the trade ids (Binance aggregate trade ids
    ``a``, like plain trade ids ``t``, run consecutively per symbol): when ids
    are checked, two time-consecutive trades whose ids do not differ by exactly
    1 mark the candle of the later trade (the missing trades belong to it or to
    the stretch just before it); ``missing_ids`` counts the ids skipped.

All work is columnar (``np.searchsorted`` for candle bounds, ``ufunc.reduceat``
per candle, ``np.bincount`` over the key ``2 * cell + side`` on a per-candle dense
cell index); there is no per-trade or per-candle Python loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pandas as pd

from compute.batch import TradeBatch
from compute.grid import decimals_for, row_index, ticks_per_row

__all__ = ["FootprintResult", "footprint", "poc_rows"]

#: Default decimals of the exact integer quantity (as ``compute.result.QTY_DECIMALS``).
QTY_DECIMALS = 8

#: Largest denominator used to read ``imbalance_ratio`` as an exact fraction.
RATIO_MAX_DENOMINATOR = 10**4

_EXACT = 2.0**53  # integer-valued float64 sums are exact below this

CELL_COLUMNS = (
    "time", "price_low", "price_high", "bid", "ask", "volume", "delta", "trades", "buy_imbalance", "sell_imbalance",
)
CANDLE_COLUMNS = (
    "time", "open", "high", "low", "close", "volume", "buy", "sell", "delta", "delta_pct", "poc", "trades",
    "cvd", "cvd_segment", "gap_before", "missing_ids",
)
STACKED_COLUMNS = ("time", "side", "price_low", "price_high", "rows")
LEVEL_COLUMNS = ("price_low", "price_high", "volume", "buy", "sell", "delta", "trades")


@dataclass(frozen=True, eq=False)
class FootprintResult:
    """The footprint of a set of trades.

    Attributes
    ----------
    cells : DataFrame, one row per (candle, price row); candles ascending, then rows ascending
        ``time`` (int64, candle open time, UTC ms), ``price_low``/``price_high``
        (float64 row edges, quote currency), ``bid``/``ask``/``volume``/``delta``
        (float64, base asset), ``trades`` (int64), ``buy_imbalance``/``sell_imbalance`` (bool).
    candles : DataFrame, one row per candle holding trades
        ``time`` (int64 UTC ms, candle open), ``open, high, low, close`` (float64 trade
        prices), ``volume, buy, sell, delta`` (float64 base asset), ``delta_pct`` (float64, %),
        ``poc`` (float64, middle price of the candle's POC row), ``trades`` (int64),
        ``cvd`` (float64 base asset), ``cvd_segment`` (int64, from 0), ``gap_before`` (bool),
        ``missing_ids`` (int64 trade ids skipped before/in the candle; 0 when ids are not checked).
    stacked : DataFrame, one row per stacked-imbalance zone, by candle then price
        ``time`` (int64 candle open), ``side`` (``"buy"``/``"sell"``), ``price_low``
        (low edge of the bottom row), ``price_high`` (high edge of the top row), ``rows`` (int64).
    levels : DataFrame, the cells summed over all candles on one dense grid from the
        lowest to the highest traded row (the columns of a volume profile's levels):
        ``price_low, price_high, volume, buy, sell, delta`` (float64), ``trades`` (int64).
    tick, row_size : float
        The row grid (quote currency).
    interval_ms : int
        Candle length.
    imbalance_ratio, min_volume : float; ignore_zeros : bool; stacked_min : int
        The imbalance settings used.
    ids_checked : bool
        Whether trade-id continuity was used to find gaps.
    qty_decimals : int
        Decimals of the exact integer quantity.
    summary : dict
        ``candle_count, total_volume, buy_volume, sell_volume, delta, trades, poc``
        (POC of ``levels``), ``gaps`` (candles with ``gap_before``), ``stacked_zones``.
    """

    cells: pd.DataFrame
    candles: pd.DataFrame
    stacked: pd.DataFrame
    levels: pd.DataFrame
    tick: float
    row_size: float
    interval_ms: int
    imbalance_ratio: float
    ignore_zeros: bool
    min_volume: float
    stacked_min: int
    ids_checked: bool
    qty_decimals: int = QTY_DECIMALS
    summary: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict: settings, ``summary`` values, and ``candles``/``cells``/``stacked``/``levels`` as record lists."""
        return {
            "tick": self.tick,
            "row_size": self.row_size,
            "interval_ms": self.interval_ms,
            "imbalance_ratio": self.imbalance_ratio,
            "ignore_zeros": self.ignore_zeros,
            "min_volume": self.min_volume,
            "stacked_min": self.stacked_min,
            "ids_checked": self.ids_checked,
            **self.summary,
            "candles": _records(self.candles),
            "cells": _records(self.cells),
            "stacked": _records(self.stacked),
            "levels": _records(self.levels),
        }


def _records(df: pd.DataFrame) -> list[dict]:
    """DataFrame rows as dicts of plain Python values (int, float, bool, str)."""
    cols = []
    for c in df.columns:
        a = df[c].to_numpy()
        cols.append((c, a.tolist() if a.dtype != object else [str(x) for x in a]))
    return [dict(zip([c for c, _ in cols], vals, strict=True)) for vals in zip(*(v for _, v in cols), strict=True)]


def _columns(trades):
    """Return ``(time, price, qty, is_buyer_maker, trade_id or None)`` from a TradeBatch or DataFrame."""
    if isinstance(trades, TradeBatch):
        return trades.time, trades.price, trades.qty, trades.is_buyer_maker, trades.trade_id
    if isinstance(trades, pd.DataFrame):
        has_id = any(c in trades for c in ("trade_id", "agg_trade_id", "id"))
        df = trades if has_id else trades.assign(trade_id=np.zeros(len(trades), dtype=np.int64))
        b = TradeBatch.from_frame(df)
        return b.time, b.price, b.qty, b.is_buyer_maker, (b.trade_id if has_id else None)
    raise TypeError(f"trades must be a TradeBatch or a pandas DataFrame, got {type(trades).__name__}")


def poc_rows(volume: np.ndarray, offsets: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """POC of many profiles at once.

    Parameters
    ----------
    volume : ndarray, shape (M,), int or float
        Concatenated dense row volumes of G profiles, each bottom row first.
    offsets : ndarray, shape (G,), int
        Index in ``volume`` of each profile's bottom row (ascending, first 0).
    spans : ndarray, shape (G,), int, all >= 1, summing to M
        Number of rows of each profile.

    Returns
    -------
    ndarray, shape (G,), int64
        Index *within each profile* of its POC row: the largest volume, ties to
        the row nearest the middle of that profile's grid, then to the lower row
        (reference b3; the rule of :func:`compute.profile.poc_index`).
    """
    volume = np.asarray(volume)
    offsets = np.asarray(offsets, dtype=np.int64)
    spans = np.asarray(spans, dtype=np.int64)
    vmax = np.maximum.reduceat(volume, offsets)
    local = np.arange(len(volume), dtype=np.int64) - np.repeat(offsets, spans)
    two_i = 2 * local
    last = np.repeat(spans - 1, spans)
    # doubled distance to the middle stays integral; +1 sends an equidistant pair to the lower row
    score = 2 * np.abs(two_i - last) + (two_i > last)
    score[volume != np.repeat(vmax, spans)] = np.iinfo(np.int64).max
    best = np.minimum.reduceat(score, offsets)
    return local[np.flatnonzero(score == np.repeat(best, spans))]


def _ratio_fraction(ratio: float) -> tuple[int, int]:
    """``ratio`` as ``(numerator, denominator)`` of the decimal it is written as."""
    fr = Fraction(str(float(ratio))).limit_denominator(RATIO_MAX_DENOMINATOR)
    return fr.numerator, fr.denominator


def footprint(
    trades,
    tick: float,
    row_size: float,
    interval_ms: int = 60_000,
    imbalance_ratio: float = 3.0,
    ignore_zeros: bool = True,
    min_volume: float = 0.0,
    stacked_min: int = 3,
    start: int | None = None,
    end: int | None = None,
    gap_ms: int | None = None,
    check_ids: bool | None = None,
    qty_decimals: int = QTY_DECIMALS,
) -> FootprintResult:
    """Compute footprint candles (definitions in the module docstring).

    Parameters
    ----------
    trades : TradeBatch or DataFrame
        N trades; a DataFrame needs ``time`` (int64 UTC ms or datetime64),
        ``price``, ``qty`` (or ``quantity``), ``is_buyer_maker`` and optionally
        ``trade_id``/``agg_trade_id``/``id``.  Need not be sorted (a stable sort
        by time is done when it is not).
    tick : float
        Tick size (quote currency), > 0.
    row_size : float
        Row height (quote currency), a whole number of ticks.
    interval_ms : int
        Candle length in milliseconds (default one minute), > 0.
    imbalance_ratio : float
        Diagonal ratio, >= 1 (default 3.0, i.e. 300 %).
    ignore_zeros : bool
        A zero on the compared side creates no imbalance (default True).
    min_volume : float
        Minimum volume (base asset) of the imbalanced side of a cell, >= 0.
    stacked_min : int
        Consecutive imbalanced rows of one side that form a stacked zone, >= 1 (default 3).
    start, end : int, optional
        Only trades with ``start <= time < end`` (UTC ms).
    gap_ms : int, optional
        CVD gap rule (module docstring); None = any empty candle interval is a gap.
    check_ids : bool, optional
        Use trade-id continuity to find gaps.  None (default): when ids are present
        and strictly increasing in time order (absent, zero or unordered ids are
        never mistaken for gaps).
    qty_decimals : int
        Decimals of the exact integer quantity, 0..12 (default 8).

    Returns
    -------
    FootprintResult

    Raises
    ------
    ValueError
        A non-positive tick, a row size that is not a whole number of ticks, a bad
        interval/ratio/min_volume/stacked_min/gap_ms/qty_decimals, ``start >= end``,
        a negative or non-finite quantity, a non-finite price, or no trade in
        ``[start, end)`` (message starts with ``"no trades in range"``).
    TypeError
        If ``trades`` is neither a TradeBatch nor a DataFrame.
    """
    tpr = ticks_per_row(row_size, tick)
    tick = float(tick)
    interval_ms = int(interval_ms)
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be > 0, got {interval_ms}")
    if not imbalance_ratio >= 1.0 or not math.isfinite(imbalance_ratio):
        raise ValueError(f"imbalance_ratio must be a finite number >= 1, got {imbalance_ratio!r}")
    if not min_volume >= 0.0 or not math.isfinite(min_volume):
        raise ValueError(f"min_volume must be a finite number >= 0, got {min_volume!r}")
    if int(stacked_min) < 1:
        raise ValueError(f"stacked_min must be >= 1, got {stacked_min!r}")
    if gap_ms is not None and not gap_ms >= 0:
        raise ValueError(f"gap_ms must be >= 0 or None, got {gap_ms!r}")
    if not (isinstance(qty_decimals, int | np.integer) and 0 <= int(qty_decimals) <= 12):
        raise ValueError(f"qty_decimals must be an integer in 0..12, got {qty_decimals!r}")
    if start is not None and end is not None and start >= end:
        raise ValueError(f"empty time range: start {start} >= end {end}")
    stacked_min = int(stacked_min)
    scale = float(10 ** int(qty_decimals))

    time, price, qty, ibm, ids = _columns(trades)
    if len(time) > 1 and not bool(np.all(time[1:] >= time[:-1])):
        order = np.argsort(time, kind="stable")
        time, price, qty, ibm = time[order], price[order], qty[order], ibm[order]
        ids = None if ids is None else ids[order]
    lo = 0 if start is None else int(np.searchsorted(time, start, side="left"))
    hi = len(time) if end is None else int(np.searchsorted(time, end, side="left"))
    if hi <= lo:
        raise ValueError(f"no trades in range [{start}, {end}) (UTC ms)")
    if lo or hi < len(time):
        time, price, qty, ibm = time[lo:hi], price[lo:hi], qty[lo:hi], ibm[lo:hi]
        ids = None if ids is None else ids[lo:hi]
    n = len(time)

    # -- candle bounds (time is sorted) --------------------------------------------------
    c_first, c_last = int(time[0]) // interval_ms, int(time[-1]) // interval_ms
    n_int = c_last - c_first + 1
    if n_int <= n + 1:
        inner = np.searchsorted(time, (c_first + np.arange(1, n_int, dtype=np.int64)) * interval_ms, side="left")
        bounds = np.concatenate(([0], inner, [n]))
        keep = np.diff(bounds) > 0
        starts = bounds[:-1][keep]
        candle_no = c_first + np.flatnonzero(keep)
    else:  # sparse: fewer trades than intervals
        cid = time // interval_ms
        starts = np.concatenate(([0], np.flatnonzero(cid[1:] != cid[:-1]) + 1))
        candle_no = cid[starts]
    counts = np.diff(np.append(starts, n))
    nc = len(starts)
    high_p = np.maximum.reduceat(price, starts)
    low_p = np.minimum.reduceat(price, starts)
    if not (np.isfinite(high_p).all() and np.isfinite(low_p).all()):
        raise ValueError("prices must be finite")

    if not qty.min() >= 0:  # NaN fails too
        raise ValueError("quantities must not be negative or NaN")

    # -- rows and the key 2 * cell + side ----------------------------------------------
    # row = floor(round(price / tick) / tpr) as compute.grid.row_index, computed in one float64
    # buffer (rint gives integer-valued doubles; the floor of their quotient by tpr is exact below
    # 2**52 ticks).  The row is monotonic in price, so each candle's lowest and highest rows are
    # the rows of its low and high.  key = 2 * cell + side (1 = taker sell = bid), with cell the
    # index on the per-candle dense grids laid end to end.
    row_lo = row_index(low_p, tick, tpr)
    row_hi = row_index(high_p, tick, tpr)
    span = row_hi - row_lo + 1
    offset = np.concatenate(([0], np.cumsum(span)[:-1]))
    ncell = int(span.sum())
    f = np.divide(price, tick)
    np.rint(f, out=f)
    if tpr > 1:
        f /= tpr
        np.floor(f, out=f)
    f *= 2.0
    f += ibm
    rep = np.repeat((2 * (offset - row_lo)).astype(np.float64), counts)
    f += rep
    key = rep.view(np.int64)  # reuse the buffer: exact cast of integer-valued doubles
    np.copyto(key, f, casting="unsafe")
    del f, rep
    cnt2 = np.bincount(key, minlength=2 * ncell)
    # Exact sums.  Fast path: sum the float quantities and round each sum to 10**-qty_decimals.
    # That equals the sum of the per-trade rounded integers when the float error bound
    # (k + 1) * 2**-53 * sum * 10**qty_decimals of a k-trade sum is below half a unit (checked
    # with a 4x margin below); otherwise (huge sums) the integers are summed directly.
    vol2 = np.bincount(key, weights=qty, minlength=2 * ncell)
    if np.all((cnt2 + 2) * vol2 * (scale * 2.0**-52) < 0.25):
        np.rint(vol2 * scale, out=vol2)
    else:
        qi = np.multiply(qty, scale)
        np.rint(qi, out=qi)
        vol2 = np.bincount(key, weights=qi, minlength=2 * ncell)
        del qi
    del key
    total = float(vol2.sum())
    if not np.isfinite(total):
        raise ValueError("quantities must be finite")
    if not total < _EXACT:
        raise ValueError(f"total quantity {total / scale:.6g} too large for exact sums at {qty_decimals} decimals")
    ask_i = vol2[0::2].astype(np.int64)  # taker buy
    bid_i = vol2[1::2].astype(np.int64)  # taker sell
    vol_i = ask_i + bid_i
    ntr = cnt2[0::2] + cnt2[1::2]

    cell_candle = np.repeat(np.arange(nc), span)
    cell_row = np.arange(ncell, dtype=np.int64) + np.repeat(row_lo - offset, span)

    # -- diagonal imbalances (exact integer comparison) ----------------------------------
    num, den = _ratio_fraction(imbalance_ratio)
    minv = math.ceil(round(float(min_volume) * scale, 6))
    same = cell_candle[1:] == cell_candle[:-1]  # pair (j, j + 1) inside one candle
    a_up, b_dn = ask_i[1:], bid_i[:-1]
    buy_pair = same & (a_up > 0) & (a_up >= minv) & (a_up * den >= b_dn * num)
    sell_pair = same & (b_dn > 0) & (b_dn >= minv) & (b_dn * den >= a_up * num)
    if ignore_zeros:
        buy_pair &= b_dn > 0
        sell_pair &= a_up > 0
    buy_imb = np.zeros(ncell, dtype=bool)
    sell_imb = np.zeros(ncell, dtype=bool)
    buy_imb[1:] = buy_pair
    sell_imb[:-1] = sell_pair

    # -- prices of rows ------------------------------------------------------------------
    tdec = decimals_for(tick)
    row_size_q = round(tpr * tick, tdec)
    cell_low = np.round(cell_row * tpr * tick, tdec)
    cell_high = np.round((cell_row + 1) * tpr * tick, tdec)
    candle_time = candle_no.astype(np.int64) * interval_ms

    # -- stacked imbalances: runs of one side within a candle -----------------------------
    z_start, z_len, z_side = [], [], []
    for side, flag in ((0, buy_imb), (1, sell_imb)):
        prev = np.zeros(ncell, dtype=bool)
        prev[1:] = flag[:-1] & same
        first = flag & ~prev
        run_start = np.flatnonzero(first)
        length = np.bincount((np.cumsum(first) - 1)[flag], minlength=len(run_start))
        ok = length >= stacked_min
        z_start.append(run_start[ok])
        z_len.append(length[ok])
        z_side.append(np.full(int(ok.sum()), side, dtype=np.int8))
    zs, zl, zside = np.concatenate(z_start), np.concatenate(z_len), np.concatenate(z_side)
    zo = np.lexsort((zside, zs))  # cell order = candle then price; buy before sell
    zs, zl, zside = zs[zo], zl[zo], zside[zo]
    stacked = pd.DataFrame({
        "time": candle_time[cell_candle[zs]],
        "side": np.array(["buy", "sell"], dtype=object)[zside],
        "price_low": cell_low[zs],
        "price_high": cell_high[zs + zl - 1],
        "rows": zl.astype(np.int64),
    })

    # -- candles -------------------------------------------------------------------------
    buy_ci = np.add.reduceat(ask_i, offset)
    sell_ci = np.add.reduceat(bid_i, offset)
    vol_ci = buy_ci + sell_ci
    delta_ci = buy_ci - sell_ci
    delta_pct = np.divide(delta_ci * 100.0, vol_ci, out=np.zeros(nc), where=vol_ci != 0)
    poc_local = poc_rows(vol_i, offset, span)
    poc_price = np.round((2 * (row_lo + poc_local) + 1) * tpr * tick / 2, tdec + 1)

    gap = np.zeros(nc, dtype=bool)
    if gap_ms is None:
        gap[1:] = np.diff(candle_no) > 1
    else:
        gap[1:] = (time[starts[1:]] - time[starts[1:] - 1]) > gap_ms
    missing = np.zeros(nc, dtype=np.int64)
    ids_checked = False
    if ids is not None and n > 1:
        increasing = bool(np.all(ids[1:] > ids[:-1]))
        ids_checked = bool(check_ids) if check_ids is not None else increasing
        # strictly increasing ids spanning exactly n - 1 have every step == 1: nothing to find
        if ids_checked and not (increasing and int(ids[-1]) - int(ids[0]) == n - 1):
            d = np.diff(ids)
            brk = np.flatnonzero(d != 1)
            where = np.searchsorted(starts, brk + 1, side="right") - 1
            gap[where] = True
            np.add.at(missing, where, np.maximum(d[brk] - 1, 0))
    gap[0] = False
    segment = np.cumsum(gap)
    cs = np.cumsum(delta_ci)  # exact integers
    seg_base = (cs - delta_ci)[np.flatnonzero(np.concatenate(([True], gap[1:])))]
    cvd_i = cs - seg_base[segment]

    ends = np.append(starts[1:], n) - 1
    candles = pd.DataFrame({
        "time": candle_time,
        "open": price[starts],
        "high": high_p,
        "low": low_p,
        "close": price[ends],
        "volume": vol_ci / scale,
        "buy": buy_ci / scale,
        "sell": sell_ci / scale,
        "delta": delta_ci / scale,
        "delta_pct": delta_pct,
        "poc": poc_price,
        "trades": counts.astype(np.int64),
        "cvd": cvd_i / scale,
        "cvd_segment": segment.astype(np.int64),
        "gap_before": gap,
        "missing_ids": missing,
    })
    cells = pd.DataFrame({
        "time": candle_time[cell_candle],
        "price_low": cell_low,
        "price_high": cell_high,
        "bid": bid_i / scale,
        "ask": ask_i / scale,
        "volume": vol_i / scale,
        "delta": (ask_i - bid_i) / scale,
        "trades": ntr.astype(np.int64),
        "buy_imbalance": buy_imb,
        "sell_imbalance": sell_imb,
    })

    # -- levels: the cells summed over candles on one dense grid ----------------------------
    g_lo, g_hi = int(row_lo.min()), int(row_hi.max())
    nrow = g_hi - g_lo + 1
    gi = cell_row - g_lo
    lv_buy = np.bincount(gi, weights=ask_i, minlength=nrow).astype(np.int64)
    lv_sell = np.bincount(gi, weights=bid_i, minlength=nrow).astype(np.int64)
    lv_vol = lv_buy + lv_sell
    rows = np.arange(g_lo, g_hi + 1, dtype=np.int64)
    levels = pd.DataFrame({
        "price_low": np.round(rows * tpr * tick, tdec),
        "price_high": np.round((rows + 1) * tpr * tick, tdec),
        "volume": lv_vol / scale,
        "buy": lv_buy / scale,
        "sell": lv_sell / scale,
        "delta": (lv_buy - lv_sell) / scale,
        "trades": np.bincount(gi, weights=ntr, minlength=nrow).astype(np.int64),
    })
    poc_all = int(poc_rows(lv_vol, np.zeros(1, np.int64), np.array([nrow]))[0])
    summary = {
        "candle_count": int(nc),
        "total_volume": int(vol_ci.sum()) / scale,
        "buy_volume": int(buy_ci.sum()) / scale,
        "sell_volume": int(sell_ci.sum()) / scale,
        "delta": int(delta_ci.sum()) / scale,
        "trades": int(n),
        "poc": round((2 * (g_lo + poc_all) + 1) * tpr * tick / 2, tdec + 1),
        "gaps": int(gap.sum()),
        "stacked_zones": int(len(stacked)),
    }
    return FootprintResult(
        cells=cells, candles=candles, stacked=stacked, levels=levels, tick=float(tick), row_size=row_size_q,
        interval_ms=interval_ms, imbalance_ratio=float(imbalance_ratio), ignore_zeros=bool(ignore_zeros),
        min_volume=float(min_volume), stacked_min=stacked_min, ids_checked=ids_checked,
        qty_decimals=int(qty_decimals), summary=summary,
    )
