"""The stages of :func:`compute.footprint.footprint` before its frames are built: the trades of the
range, candle bounds, the exact per-cell sums on each candle's dense row grid, diagonal
imbalances, stacked zones and gaps. Definitions in :mod:`compute.footprint`'s docstring;
every sum is an exact integer (units of ``10**-qty_decimals`` base asset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

from .batch import TradeBatch
from .grid import row_index

#: Largest denominator used to read ``imbalance_ratio`` as an exact fraction.
RATIO_MAX_DENOMINATOR = 10**4
_EXACT = 2.0**53  # integer-valued float64 sums are exact below this


def columns(trades):
    """Return ``(time, price, qty, is_buyer_maker, trade_id or None)`` from a TradeBatch or DataFrame."""
    if isinstance(trades, TradeBatch):
        return trades.time, trades.price, trades.qty, trades.is_buyer_maker, trades.trade_id
    if isinstance(trades, pd.DataFrame):
        has_id = any(c in trades for c in ("trade_id", "agg_trade_id", "id"))
        df = trades if has_id else trades.assign(trade_id=np.zeros(len(trades), dtype=np.int64))
        b = TradeBatch.from_frame(df)
        return b.time, b.price, b.qty, b.is_buyer_maker, (b.trade_id if has_id else None)
    raise TypeError(f"trades must be a TradeBatch or a pandas DataFrame, got {type(trades).__name__}")


def ratio_fraction(ratio: float) -> tuple[int, int]:
    """``ratio`` as ``(numerator, denominator)`` of the decimal it is written as."""
    fr = Fraction(str(float(ratio))).limit_denominator(RATIO_MAX_DENOMINATOR)
    return fr.numerator, fr.denominator


def check_args(interval_ms, imbalance_ratio, min_volume, stacked_min, gap_ms, qty_decimals, start, end) -> None:
    """Raise ValueError for a bad interval, ratio, min_volume, stack length, gap rule, decimals or range."""
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be > 0, got {interval_ms}")
    if not imbalance_ratio >= 1.0 or not math.isfinite(imbalance_ratio):
        raise ValueError(f"imbalance_ratio must be a finite number >= 1, got {imbalance_ratio!r}")
    if not min_volume >= 0.0 or not math.isfinite(min_volume):
        raise ValueError(f"min_volume must be a finite number >= 0, got {min_volume!r}")
    if stacked_min < 1:
        raise ValueError(f"stacked_min must be >= 1, got {stacked_min!r}")
    if gap_ms is not None and not gap_ms >= 0:
        raise ValueError(f"gap_ms must be >= 0 or None, got {gap_ms!r}")
    if not (isinstance(qty_decimals, int | np.integer) and 0 <= int(qty_decimals) <= 12):
        raise ValueError(f"qty_decimals must be an integer in 0..12, got {qty_decimals!r}")
    if start is not None and end is not None and start >= end:
        raise ValueError(f"empty time range: start {start} >= end {end}")


@dataclass(frozen=True)
class Trades:
    """The trades of the range, sorted by time (stable): N-arrays; ``ids`` None when absent."""

    time: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    ibm: np.ndarray
    ids: np.ndarray | None


def select(trades, start, end) -> Trades:
    """Columns of ``trades`` sorted by time (stable) and cut to ``[start, end)``; ValueError when empty."""
    time, price, qty, ibm, ids = columns(trades)
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
    if not qty.min() >= 0:  # NaN fails too
        raise ValueError("quantities must not be negative or NaN")
    return Trades(time, price, qty, ibm, ids)


@dataclass(frozen=True)
class Candles:
    """Candles with trades: first trade index ``starts``, ``candle_no`` (time // interval), trade
    ``counts``, ``high``/``low`` prices; C-arrays."""

    starts: np.ndarray
    candle_no: np.ndarray
    counts: np.ndarray
    high: np.ndarray
    low: np.ndarray


def candle_bounds(tr: Trades, interval_ms: int) -> Candles:
    """Where each candle's trades start (time is sorted); ValueError for a non-finite price."""
    time, n = tr.time, len(tr.time)
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
    high = np.maximum.reduceat(tr.price, starts)
    low = np.minimum.reduceat(tr.price, starts)
    if not (np.isfinite(high).all() and np.isfinite(low).all()):
        raise ValueError("prices must be finite")
    return Candles(starts, candle_no, np.diff(np.append(starts, n)), high, low)


@dataclass(frozen=True)
class Cells:
    """Per-candle dense row grids laid end to end: M cells. ``row_lo``/``span``/``offset`` per candle (C);
    exact integer ``ask`` (taker buy), ``bid`` (taker sell), ``vol`` and trade counts ``ntr`` per cell (M);
    each cell's candle index and row index."""

    row_lo: np.ndarray
    row_hi: np.ndarray
    span: np.ndarray
    offset: np.ndarray
    ask: np.ndarray
    bid: np.ndarray
    vol: np.ndarray
    ntr: np.ndarray
    cell_candle: np.ndarray
    cell_row: np.ndarray


def cell_sums(tr: Trades, c: Candles, tick: float, tpr: int, scale: float, qty_decimals: int) -> Cells:
    """Exact per-cell sums (units of ``1 / scale`` base asset); ValueError for non-finite or too large sums.

    row = floor(round(price / tick) / tpr) as :func:`compute.grid.row_index`, computed in one float64
    buffer (rint gives integer-valued doubles; the floor of their quotient by tpr is exact below 2**52
    ticks). The row is monotonic in price, so each candle's lowest and highest rows are the rows of its
    low and high. key = 2 * cell + side (1 = taker sell = bid).
    """
    row_lo = row_index(c.low, tick, tpr)
    row_hi = row_index(c.high, tick, tpr)
    span = row_hi - row_lo + 1
    offset = np.concatenate(([0], np.cumsum(span)[:-1]))
    ncell = int(span.sum())
    f = np.divide(tr.price, tick)
    np.rint(f, out=f)
    if tpr > 1:
        f /= tpr
        np.floor(f, out=f)
    f *= 2.0
    f += tr.ibm
    rep = np.repeat((2 * (offset - row_lo)).astype(np.float64), c.counts)
    f += rep
    key = rep.view(np.int64)  # reuse the buffer: exact cast of integer-valued doubles
    np.copyto(key, f, casting="unsafe")
    del f, rep
    cnt2 = np.bincount(key, minlength=2 * ncell)
    # Exact sums.  Fast path: sum the float quantities and round each sum to 10**-qty_decimals.
    # That equals the sum of the per-trade rounded integers when the float error bound
    # (k + 1) * 2**-53 * sum * 10**qty_decimals of a k-trade sum is below half a unit (checked
    # with a 4x margin below); otherwise (huge sums) the integers are summed directly.
    vol2 = np.bincount(key, weights=tr.qty, minlength=2 * ncell)
    if np.all((cnt2 + 2) * vol2 * (scale * 2.0**-52) < 0.25):
        np.rint(vol2 * scale, out=vol2)
    else:
        qi = np.multiply(tr.qty, scale)
        np.rint(qi, out=qi)
        vol2 = np.bincount(key, weights=qi, minlength=2 * ncell)
        del qi
    del key
    total = float(vol2.sum())
    if not np.isfinite(total):
        raise ValueError("quantities must be finite")
    if not total < _EXACT:
        raise ValueError(f"total quantity {total / scale:.6g} too large for exact sums at {qty_decimals} decimals")
    ask = vol2[0::2].astype(np.int64)  # taker buy
    bid = vol2[1::2].astype(np.int64)  # taker sell
    return Cells(row_lo, row_hi, span, offset, ask, bid, ask + bid, cnt2[0::2] + cnt2[1::2],
                  np.repeat(np.arange(len(span)), span),
                  np.arange(ncell, dtype=np.int64) + np.repeat(row_lo - offset, span))


def imbalances(g: Cells, imbalance_ratio: float, ignore_zeros: bool, min_units: float):
    """Diagonal imbalances by exact integer comparison: (buy, sell) flags per cell (M bools each)."""
    num, den = ratio_fraction(imbalance_ratio)
    minv = math.ceil(min_units)
    same = g.cell_candle[1:] == g.cell_candle[:-1]  # pair (j, j + 1) inside one candle
    a_up, b_dn = g.ask[1:], g.bid[:-1]
    buy_pair = same & (a_up > 0) & (a_up >= minv) & (a_up * den >= b_dn * num)
    sell_pair = same & (b_dn > 0) & (b_dn >= minv) & (b_dn * den >= a_up * num)
    if ignore_zeros:
        buy_pair &= b_dn > 0
        sell_pair &= a_up > 0
    ncell = len(g.ask)
    buy_imb = np.zeros(ncell, dtype=bool)
    sell_imb = np.zeros(ncell, dtype=bool)
    buy_imb[1:] = buy_pair
    sell_imb[:-1] = sell_pair
    return buy_imb, sell_imb


def stacked_zones(g: Cells, buy_imb, sell_imb, stacked_min: int, candle_time, cell_low, cell_high) -> pd.DataFrame:
    """Stacked imbalances: runs of >= ``stacked_min`` imbalanced cells of one side within a candle."""
    ncell = len(g.ask)
    same = g.cell_candle[1:] == g.cell_candle[:-1]
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
    return pd.DataFrame({
        "time": candle_time[g.cell_candle[zs]],
        "side": np.array(["buy", "sell"], dtype=object)[zside],
        "price_low": cell_low[zs],
        "price_high": cell_high[zs + zl - 1],
        "rows": zl.astype(np.int64),
    })


def gaps(tr: Trades, c: Candles, gap_ms, check_ids):
    """(gap before each candle, missing trade ids before it, whether ids were checked); see the module docstring."""
    nc, n, starts = len(c.starts), len(tr.time), c.starts
    gap = np.zeros(nc, dtype=bool)
    if gap_ms is None:
        gap[1:] = np.diff(c.candle_no) > 1
    else:
        gap[1:] = (tr.time[starts[1:]] - tr.time[starts[1:] - 1]) > gap_ms
    missing = np.zeros(nc, dtype=np.int64)
    ids, ids_checked = tr.ids, False
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
    return gap, missing, ids_checked
