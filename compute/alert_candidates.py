"""The candidates of each alert rule type (before the cooldown): the definitions of :mod:`compute.alerts`
(its module docstring), one function per type, each reading only the part of the context the new trades need.

Each ``candidates(rule, trades, first, tick)`` returns ``(index, level, value)``: int64 indices (K,) into
``trades`` (all ≥ ``first``, ascending) and float64 (K,) arrays. Quantities are exact integers of 1e-8 base
asset (:func:`compute.result.qty_to_int`); prices quote currency; times UTC ms.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd

from . import alert_kernels as ak
from . import grid
from .alert_rules import Delta, LevelRef, Liquidation, PriceCross, StackedImbalance, VolumeSpike
from .batch import TradeBatch
from .candles import INTERVALS
from .cells import ratio_fraction
from .result import QTY_DECIMALS, _num_den, qty_scale, qty_to_int
from .sessions import session_bounds

__all__ = ["CANDIDATES", "DIRECTIONS", "liquidation_candidates", "reference_levels"]

SCALE = qty_scale(QTY_DECIMALS)
#: direction -> bit mask (1 up, 2 down).
DIRECTIONS = {"up": 1, "down": 2, "any": 3}


def _crossings(price: np.ndarray, level, lo: int, direction: str) -> np.ndarray:
    """Indices i > lo (into the full arrays; ``price`` starts at ``lo``) where price[i-1] → price[i] crosses
    ``level`` (a number or an array aligned with ``price``) in ``direction``."""
    prev, cur = price[:-1], price[1:]
    lv = level if np.isscalar(level) else level[1:]
    d = DIRECTIONS[direction]
    mask = np.zeros(len(cur), bool)
    if d & 1:
        mask |= (prev < lv) & (cur >= lv)
    if d & 2:
        mask |= (prev > lv) & (cur <= lv)
    return lo + 1 + np.flatnonzero(mask)


def _price_cross(rule: PriceCross, trades: TradeBatch, first: int, tick):
    if not isinstance(rule.level, LevelRef):
        lo = max(first - 1, 0)
        idx = _crossings(trades.price[lo:], float(rule.level), lo, rule.direction)
        return idx, np.full(len(idx), float(rule.level)), trades.price[idx]
    lo, levels = reference_levels(rule.level, trades, first, _tick(tick, trades))
    idx = _crossings(trades.price[lo:], levels, lo, rule.direction)
    idx = idx[idx >= first]
    return idx, levels[idx - lo], trades.price[idx]


def _tick(tick, trades: TradeBatch) -> float:
    t = grid.infer_tick(trades.price) if tick is None else float(tick)
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"tick must be a positive number, got {tick!r}")
    return t


def _sessions(time: np.ndarray, ref: LevelRef) -> np.ndarray:
    """Session bounds as trade indices, int64 (S+1,), sessions holding trades only."""
    sb = session_bounds(int(time[0]), int(time[-1]) + 1, ref.session_length, ref.session_start)
    return np.unique(np.append(np.searchsorted(time, sb[:, 0]), len(time)))


def reference_levels(ref: LevelRef, trades: TradeBatch, first: int, tick: float):
    """``(lo, L)``: ``L`` float64 (N - lo,) the level trade ``lo + i`` compares with (NaN: none), for the trades
    from ``first - 1`` on (the session of trade ``first - 1`` is all the developing levels read; ``naked_poc`` reads
    every session of the context)."""
    t = trades.time
    i0 = max(first - 1, 0)
    if ref.ref == "naked_poc":
        lo = 0
    else:  # the session of trade i0 is all that L(i) for i > i0 reads
        s0 = session_bounds(int(t[i0]), int(t[i0]) + 1, ref.session_length, ref.session_start)[0, 0]
        lo = int(np.searchsorted(t, s0))
    time, price, qty = t[lo:], trades.price[lo:], trades.qty[lo:]
    bounds = _sessions(time, ref)
    want = np.zeros(len(time), bool)
    want[i0 - lo:] = True
    state = np.full(len(time), np.nan)
    tpr = int(ref.ticks_per_row)
    if ref.ref == "vwap":
        state = ak.developing_vwap(price, qty, bounds, want)
    else:
        rows = grid.row_index(price, tick, tpr)
        if ref.ref == "naked_poc":
            want[bounds[1:] - 1] = True
        num, den = _num_den(float(ref.value_area))
        poc, va_lo, va_hi = ak.developing_rows(rows, qty_to_int(qty, SCALE), bounds, want,
                                               ref.ref in ("vah", "val"), num, den)
        if ref.ref == "naked_poc":
            nk = ak.naked_levels(rows, bounds, poc[bounds[1:] - 1], i0 + 1)
            return lo, _row_prices(nk, tick, tpr, "mid")
        row = {"poc": poc, "vah": va_hi, "val": va_lo}[ref.ref]
        state = _row_prices(row, tick, tpr, {"poc": "mid", "vah": "high", "val": "low"}[ref.ref])
    levels = np.full(len(time), np.nan)
    levels[1:] = state[:-1]  # L(i) = the state after trade i - 1
    return lo, levels


def _row_prices(rows: np.ndarray, tick: float, tpr: int, edge: str) -> np.ndarray:
    """Prices of absolute rows as :class:`compute.result.ProfileResult` prints them (``poc`` row middle, ``vah``
    high edge, ``val`` low edge, rounded like it); NaN for :data:`alert_kernels.NO_ROW`."""
    out = np.full(len(rows), np.nan)
    ok = rows != ak.NO_ROW
    if not ok.any():
        return out
    uniq, inv = np.unique(rows[ok], return_inverse=True)
    d = grid.decimals_for(tick)
    if edge == "mid":
        vals = [round((2 * int(r) + 1) * tpr * tick / 2, d + 1) for r in uniq]
    else:
        vals = [round((int(r) + (edge == "high")) * tpr * tick, d) for r in uniq]
    out[ok] = np.asarray(vals)[inv]
    return out


def _candle_slice(trades: TradeBatch, first: int, interval_ms: int) -> tuple[int, np.ndarray]:
    """``(lo, bounds)``: trades from the start of the candle of trade ``first``; candle bounds (C+1,) from lo."""
    t = trades.time
    lo = int(np.searchsorted(t, int(t[first]) // interval_ms * interval_ms))
    key = t[lo:] // interval_ms
    return lo, np.append(np.flatnonzero(np.r_[True, key[1:] != key[:-1]]), len(key)).astype(np.int64)


def _stacked(rule: StackedImbalance, trades: TradeBatch, first: int, tick):
    tick = _tick(tick, trades)
    lo, bounds = _candle_slice(trades, first, INTERVALS[rule.interval])
    rows = grid.row_index(trades.price[lo:], tick, int(rule.ticks_per_row))
    q = qty_to_int(trades.qty[lo:], SCALE)
    sell = trades.is_buyer_maker[lo:]
    num, den = ratio_fraction(rule.ratio)
    minv = math.ceil(round(float(rule.min_volume) * SCALE, 6))
    mode = {"buy": 1, "sell": 2, "any": 3}[rule.side]
    idx, length = ak.first_stacks(rows, np.where(sell, 0, q), np.where(sell, q, 0), bounds, first - lo, num, den,
                                  minv, bool(rule.ignore_zeros), int(rule.min_stack), mode)
    return lo + idx, np.full(len(idx), float(rule.min_stack)), length.astype(np.float64)


def _threshold_units(x: float) -> int:
    """``x`` base asset as the smallest whole number of 1e-8 units ≥ it (exact: x read as the decimal it prints)."""
    return math.ceil(Fraction(repr(float(x))) * SCALE)


def _signed(trades: TradeBatch, lo: int) -> np.ndarray:
    q = qty_to_int(trades.qty[lo:], SCALE)
    return np.where(trades.is_buyer_maker[lo:], -q, q)


def _delta(rule: Delta, trades: TradeBatch, first: int, tick):
    thr, d = _threshold_units(rule.threshold), DIRECTIONS[rule.direction]
    if rule.window == "candle":
        lo, bounds = _candle_slice(trades, first, INTERVALS[rule.interval])
        s = _signed(trades, lo)
        cs = np.cumsum(s)
        starts, counts = bounds[:-1], np.diff(bounds)
        val = cs - np.repeat(cs[starts] - s[starts], counts)  # the candle's delta so far (exact integers)
        cid = np.repeat(np.arange(len(starts)), counts)
        found = []
        for sign, hit in ((1, val >= thr), (2, val <= -thr)):
            if d & sign:
                i = np.flatnonzero(hit)
                found.append(i[np.r_[True, cid[i][1:] != cid[i][:-1]]] if len(i) else i)
        idx = np.sort(np.concatenate(found))
        idx = idx[idx >= first - lo]
        return lo + idx, np.where(val[idx] > 0, 1.0, -1.0) * rule.threshold, val[idx] / SCALE
    w = round(rule.window_s * 1000)
    lo, time, c, warm = _window_context(trades, first, w, signed=True)
    val = c[1:] - c[np.searchsorted(time, time - w, side="right")]  # D(t): the trailing window up to t itself
    up = (val[:-1] < thr) & (val[1:] >= thr) if d & 1 else np.zeros(len(val) - 1, bool)
    dn = (val[:-1] > -thr) & (val[1:] <= -thr) if d & 2 else np.zeros(len(val) - 1, bool)
    i = 1 + np.flatnonzero((up | dn) & warm[1:] & warm[:-1])
    i = i[lo + i >= first]
    return lo + i, np.where(up[i - 1], 1.0, -1.0) * rule.threshold, val[i] / SCALE


def _window_context(trades: TradeBatch, first: int, span: int, signed: bool):
    """``(lo, time, c, warm)`` from ``lo``, the first trade a window of ``span`` ms ending at a trade ≥ first - 1
    reads: ``time`` (M,), ``c`` int64 (M+1,) the running sum of the (signed) exact quantities from 0, ``warm``
    bool (M,) ``time - span >= time[0]`` of the whole context."""
    t = trades.time
    i0 = max(first - 1, 0)
    lo = min(int(np.searchsorted(t, int(t[i0]) - span, side="right")), i0)
    x = _signed(trades, lo) if signed else qty_to_int(trades.qty[lo:], SCALE)
    return lo, t[lo:], np.concatenate(([0], np.cumsum(x))), t[lo:] - span >= t[0]


def _volume_spike(rule: VolumeSpike, trades: TradeBatch, first: int, tick):
    w, n_back = round(rule.window_s * 1000), int(rule.lookback)
    lo, time, c, warm = _window_context(trades, first, (n_back + 1) * w, signed=False)
    a_now = np.searchsorted(time, time - w, side="right")  # first trade with time > T - W
    a_back = np.searchsorted(time, time - (n_back + 1) * w, side="right")
    v, b = c[1:] - c[a_now], c[a_now] - c[a_back]  # V(t) and the lookback windows' total B(t)
    cond = warm & (b > 0) & (v * n_back >= rule.k * b)
    i = 1 + np.flatnonzero(cond[1:] & ~cond[:-1] & warm[:-1])
    i = i[lo + i >= first]
    return lo + i, np.full(len(i), float(rule.k)), v[i] * n_back / b[i]


def liquidation_candidates(rule: Liquidation, liq: pd.DataFrame | None, after_id: int):
    """``(time, price, level, value)`` of the rule's symbol's (and side's) liquidations with time > ``after_id`` and
    notional ≥ ``min_notional`` (reference b11: ``filled_qty × avg_price`` when both > 0, else ``orig_qty × price``),
    in time order: int64 (K,) UTC ms and float64 (K,) (``price`` the average fill price, else the order price).
    Raises ValueError without liquidations."""
    if liq is None:
        raise ValueError("a liquidation rule needs liquidations (a forceOrder DataFrame)")
    df = liq
    if "symbol" in df and len(df):
        df = df[df["symbol"].astype(str).str.upper() == rule.symbol]
    if rule.side is not None and len(df):
        df = df[df["side"].astype(str).str.upper() == rule.side]
    time = df["time"].to_numpy(np.int64)
    filled, avg = df["filled_qty"].to_numpy(np.float64), df["avg_price"].to_numpy(np.float64)
    orig, limit = df["orig_qty"].to_numpy(np.float64), df["price"].to_numpy(np.float64)
    use_fill = (filled > 0) & (avg > 0)
    notional = np.where(use_fill, filled * avg, orig * limit)
    price = np.where(avg > 0, avg, limit)
    sel = np.flatnonzero((time > after_id) & (notional >= rule.min_notional))
    sel = sel[np.argsort(time[sel], kind="stable")]
    return time[sel], price[sel], np.full(len(sel), float(rule.min_notional)), notional[sel]


CANDIDATES = {PriceCross: _price_cross, StackedImbalance: _stacked, Delta: _delta, VolumeSpike: _volume_spike}
