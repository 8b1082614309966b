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

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from compute.grid import decimals_for, ticks_per_row

from . import cells as stages

__all__ = ["FootprintResult", "footprint", "poc_rows"]

#: Default decimals of the exact integer quantity (as ``compute.result.QTY_DECIMALS``).
QTY_DECIMALS = 8

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
    tick, interval_ms, stacked_min = float(tick), int(interval_ms), int(stacked_min)
    stages.check_args(interval_ms, imbalance_ratio, min_volume, stacked_min, gap_ms, qty_decimals, start, end)
    scale = float(10 ** int(qty_decimals))
    tr = stages.select(trades, start, end)
    c = stages.candle_bounds(tr, interval_ms)
    g = stages.cell_sums(tr, c, tick, tpr, scale, qty_decimals)
    buy_imb, sell_imb = stages.imbalances(g, imbalance_ratio, ignore_zeros, round(float(min_volume) * scale, 6))
    tdec = decimals_for(tick)
    cell_low = np.round(g.cell_row * tpr * tick, tdec)
    cell_high = np.round((g.cell_row + 1) * tpr * tick, tdec)
    candle_time = c.candle_no.astype(np.int64) * interval_ms
    stacked = stages.stacked_zones(g, buy_imb, sell_imb, stacked_min, candle_time, cell_low, cell_high)
    gap, missing, ids_checked = stages.gaps(tr, c, gap_ms, check_ids)
    candles = _candles_frame(tr, c, g, gap, missing, candle_time, tpr, tick, tdec, scale)
    cells = pd.DataFrame({
        "time": candle_time[g.cell_candle],
        "price_low": cell_low,
        "price_high": cell_high,
        "bid": g.bid / scale,
        "ask": g.ask / scale,
        "volume": g.vol / scale,
        "delta": (g.ask - g.bid) / scale,
        "trades": g.ntr.astype(np.int64),
        "buy_imbalance": buy_imb,
        "sell_imbalance": sell_imb,
    })
    levels, poc = levels_from_cells(g.cell_row, g.ask, g.bid, g.ntr, tpr, tick, scale)
    summary = {
        "candle_count": int(len(c.starts)),
        "total_volume": int(g.vol.sum()) / scale,
        "buy_volume": int(g.ask.sum()) / scale,
        "sell_volume": int(g.bid.sum()) / scale,
        "delta": int(g.ask.sum() - g.bid.sum()) / scale,
        "trades": int(len(tr.time)),
        "poc": poc,
        "gaps": int(gap.sum()),
        "stacked_zones": int(len(stacked)),
    }
    return FootprintResult(
        cells=cells, candles=candles, stacked=stacked, levels=levels, tick=float(tick),
        row_size=round(tpr * tick, tdec), interval_ms=interval_ms, imbalance_ratio=float(imbalance_ratio),
        ignore_zeros=bool(ignore_zeros), min_volume=float(min_volume), stacked_min=stacked_min,
        ids_checked=ids_checked, qty_decimals=int(qty_decimals), summary=summary,
    )


def cvd_segments(delta: np.ndarray, gap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CVD restarted at every gap: ``(cvd, segment)`` per candle (C int64 each).

    ``delta`` (C int64, exact units) per candle; ``gap`` (C bool) true where a gap precedes
    the candle (``gap[0]`` ignored). The rule of the module docstring, shared with the Dask engine.
    """
    segment = np.cumsum(gap) - (1 if len(gap) and gap[0] else 0)
    cs = np.cumsum(delta)  # exact integers
    starts = np.flatnonzero(np.concatenate(([True], gap[1:])))
    return cs - (cs - delta)[starts][segment], segment


def _candles_frame(tr, c, g, gap, missing, candle_time, tpr, tick, tdec, scale) -> pd.DataFrame:
    """The footprint's candles: OHLC, exact volume/buy/sell/delta, POC, CVD per gap-free segment."""
    buy_ci = np.add.reduceat(g.ask, g.offset)
    sell_ci = np.add.reduceat(g.bid, g.offset)
    vol_ci = buy_ci + sell_ci
    delta_ci = buy_ci - sell_ci
    poc_local = poc_rows(g.vol, g.offset, g.span)
    cvd_i, segment = cvd_segments(delta_ci, gap)
    ends = np.append(c.starts[1:], len(tr.time)) - 1
    return pd.DataFrame({
        "time": candle_time,
        "open": tr.price[c.starts],
        "high": c.high,
        "low": c.low,
        "close": tr.price[ends],
        "volume": vol_ci / scale,
        "buy": buy_ci / scale,
        "sell": sell_ci / scale,
        "delta": delta_ci / scale,
        "delta_pct": np.divide(delta_ci * 100.0, vol_ci, out=np.zeros(len(vol_ci)), where=vol_ci != 0),
        "poc": np.round((2 * (g.row_lo + poc_local) + 1) * tpr * tick / 2, tdec + 1),
        "trades": c.counts.astype(np.int64),
        "cvd": cvd_i / scale,
        "cvd_segment": segment.astype(np.int64),
        "gap_before": gap,
        "missing_ids": missing,
    })


def levels_from_cells(cell_row: np.ndarray, ask: np.ndarray, bid: np.ndarray, trades: np.ndarray, tpr: int,
                      tick: float, scale: float) -> tuple[pd.DataFrame, float]:
    """The cells summed over candles on one dense row grid, and the POC price of the whole range.

    The finalize step shared by the in-memory and the Dask footprint. ``cell_row`` (M int64 row
    indices), ``ask``/``bid`` (M int64, exact units of ``1 / scale`` base asset), ``trades`` (M ints).
    Returns the ``levels`` frame (:data:`LEVEL_COLUMNS`) and the POC (middle of its row, quote currency).
    """
    tdec = decimals_for(tick)
    g_lo, g_hi = int(cell_row.min()), int(cell_row.max())
    nrow = g_hi - g_lo + 1
    gi = cell_row - g_lo
    lv_buy, lv_sell, lv_tr = (np.zeros(nrow, np.int64) for _ in range(3))
    np.add.at(lv_buy, gi, ask)
    np.add.at(lv_sell, gi, bid)
    np.add.at(lv_tr, gi, trades)
    lv_vol = lv_buy + lv_sell
    rows = np.arange(g_lo, g_hi + 1, dtype=np.int64)
    levels = pd.DataFrame({
        "price_low": np.round(rows * tpr * tick, tdec),
        "price_high": np.round((rows + 1) * tpr * tick, tdec),
        "volume": lv_vol / scale,
        "buy": lv_buy / scale,
        "sell": lv_sell / scale,
        "delta": (lv_buy - lv_sell) / scale,
        "trades": lv_tr,
    })
    poc_all = int(poc_rows(lv_vol, np.zeros(1, np.int64), np.array([nrow]))[0])
    return levels, round((2 * (g_lo + poc_all) + 1) * tpr * tick / 2, tdec + 1)
