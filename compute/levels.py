"""Level lines: percentile lines and developing POC/VAH/VAL.

Percentile lines (issue 3 item 2; reference b9)
    For each p in a list (default 0.25, 0.5, 0.75): the **middle price** of the first
    row, from the bottom, at which the cumulative traded volume reaches ``p`` of the
    total (compared exactly; 0.5 is the volume-weighted median row).

Developing POC/VAH/VAL (issue 3 item 2; reference b10, Sierra Chart VbP, Linn TPO)
    For each candle of ``candle_ms`` (epoch-aligned, like :func:`compute.candles.candles`)
    that has trades in ``[start, end)``: the POC, VAH and VAL of the volume profile of
    all trades from ``start`` up to that candle's close (``min(candle end, end)``), on
    the grid of the rows traded so far, exactly as :func:`compute.profile.volume_profile`
    would give for that sub-range. Computed incrementally: one running per-row sum
    updated candle by candle, POC and value area taken from it at each close.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import grid
from .profile import volume_profile
from .result import (
    DEFAULT_PERCENTILES,
    QTY_DECIMALS,
    ProfileResult,
    RawTrades,
    as_batch,
    check_percentiles,
    check_value_area,
    empty_range_error,
    percentile_indices,
    poc_index,
    time_bounds,
    value_area_bounds,
)

#: Columns of the developing-levels DataFrame.
DEVELOPING_COLUMNS = ("time", "close_time", "poc", "vah", "val", "total_volume", "trades")


def percentile_prices(profile: ProfileResult, percentiles=DEFAULT_PERCENTILES) -> dict[float, float]:
    """Percentile lines of an existing profile: ``{p: row middle price}`` (see module docstring)."""
    ps = check_percentiles(percentiles)
    idx = percentile_indices(profile.volume_int, ps)
    return {p: profile.row_middle(i) for p, i in zip(ps, idx, strict=True)}


def percentile_levels(
    trades, tick: float, row_size: float, percentiles=DEFAULT_PERCENTILES, start: int | None = None,
    end: int | None = None, qty_decimals: int = QTY_DECIMALS,
) -> dict[float, float]:
    """Percentile lines ``{p: price}`` of the volume profile of ``trades`` in ``[start, end)``.

    ``trades``: TradeBatch or DataFrame; prices quote currency; times UTC ms.
    Raises ValueError as :func:`compute.profile.volume_profile`, or for p outside [0, 1].
    """
    ps = check_percentiles(percentiles)
    return volume_profile(trades, tick, row_size, start=start, end=end, percentiles=ps, qty_decimals=qty_decimals).percentiles


@dataclass(eq=False)
class DevelopingResult:
    """Developing POC/VAH/VAL of a range.

    Attributes
    ----------
    profile : ProfileResult
        The volume profile of the whole range (its values equal the last developing row).
    developing : DataFrame
        One row per candle with trades: ``time`` (candle open, UTC ms, int64), ``close_time``
        (UTC ms, int64, exclusive), ``poc``, ``vah``, ``val`` (quote currency, float64),
        ``total_volume`` (base asset, cumulative) and ``trades`` (cumulative, int64).
    candle_ms : int
    """

    profile: ProfileResult
    developing: pd.DataFrame
    candle_ms: int

    @property
    def levels(self) -> pd.DataFrame:
        return self.profile.levels

    def summary(self) -> dict:
        d = self.profile.summary()
        d["kind"] = "developing"
        d["candle_ms"] = int(self.candle_ms)
        return d

    def to_dict(self) -> dict:
        d = self.profile.to_dict()
        d["kind"] = "developing"
        d["candle_ms"] = int(self.candle_ms)
        d["developing"] = [
            {k: (int(v) if k in ("time", "close_time", "trades") else float(v)) for k, v in rec.items()}
            for rec in self.developing.to_dict("records")
        ]
        return d


def check_candle(candle_ms) -> int:
    c = int(candle_ms)
    if c <= 0 or c != candle_ms:
        raise ValueError(f"candle_ms must be a positive whole number of ms, got {candle_ms!r}")
    return c


def developing_from_entries(
    candle_idx: np.ndarray, rows: np.ndarray, vol: np.ndarray, cnt: np.ndarray, candle_ms: int, end: int,
    tick: float, row_size: float, *, value_area: float, value_area_method: str, qty_decimals: int,
) -> pd.DataFrame:
    """Developing levels from per-(candle, row) entries (all shape (M,), int64; repeats allowed).

    ``vol`` exact integer volume, ``cnt`` trade counts (a row is traded when its count > 0).
    """
    tpr = grid.ticks_per_row(row_size, tick)
    dec = grid.decimals_for(tick)
    scale = float(10**qty_decimals)
    order = np.argsort(candle_idx, kind="stable")
    c, r, v, n = candle_idx[order], rows[order], vol[order], cnt[order]
    traded = n > 0
    r_lo = int(r[traded].min())
    cum = np.zeros(int(r[traded].max()) - r_lo + 1, np.int64)
    bounds = np.flatnonzero(np.r_[True, c[1:] != c[:-1], True])
    out = {k: [] for k in DEVELOPING_COLUMNS}
    lo = hi = None
    total = trades = 0
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        ng = n[a:b]
        if not ng.any():
            continue
        rg = r[a:b] - r_lo
        np.add.at(cum, rg, v[a:b])
        t = rg[ng > 0]
        lo = int(t.min()) if lo is None else min(lo, int(t.min()))
        hi = int(t.max()) if hi is None else max(hi, int(t.max()))
        total += int(v[a:b].sum())
        trades += int(ng.sum())
        seg = cum[lo : hi + 1]
        p = poc_index(seg)
        va_lo, va_hi = value_area_bounds(seg, p, value_area, value_area_method)
        base = r_lo + lo
        ci = int(c[a])
        out["time"].append(ci * candle_ms)
        out["close_time"].append(min((ci + 1) * candle_ms, int(end)))
        out["poc"].append(round((2 * (base + p) + 1) * tpr * tick / 2, dec + 1))
        out["vah"].append(round((base + va_hi + 1) * tpr * tick, dec))
        out["val"].append(round((base + va_lo) * tpr * tick, dec))
        out["total_volume"].append(total / scale)
        out["trades"].append(trades)
    df = pd.DataFrame(out)
    return df.astype({"time": np.int64, "close_time": np.int64, "trades": np.int64, "poc": float, "vah": float,
                      "val": float, "total_volume": float})


def developing_levels(
    trades, tick: float, row_size: float, candle_ms: int = 60_000, value_area: float = 0.7,
    start: int | None = None, end: int | None = None, value_area_method: str = "single",
    percentiles=DEFAULT_PERCENTILES, qty_decimals: int = QTY_DECIMALS,
) -> DevelopingResult:
    """Developing POC/VAH/VAL of the trades in ``[start, end)`` at each ``candle_ms`` close.

    ``trades``: TradeBatch or DataFrame (times UTC ms, prices quote currency, qty base asset).
    Returns a :class:`DevelopingResult`. Raises ValueError as
    :func:`compute.profile.volume_profile`, or for a bad ``candle_ms``.
    """
    c = check_candle(candle_ms)
    tpr = grid.ticks_per_row(row_size, tick)
    check_value_area(value_area, value_area_method)
    batch = as_batch(trades)
    s, e = time_bounds(batch.time, start, end)
    raw = RawTrades.from_batch(batch, tick, qty_decimals).slice_time(s, e)
    if not len(raw):
        raise empty_range_error(s, e)
    prof = volume_profile(batch, tick, row_size, value_area=value_area, start=s, end=e,
                          value_area_method=value_area_method, percentiles=percentiles, qty_decimals=qty_decimals)
    dev = developing_from_entries(
        raw.time // c, np.floor_divide(raw.tick, tpr), raw.qint, np.ones(len(raw), np.int64), c, e, tick, row_size,
        value_area=value_area, value_area_method=value_area_method, qty_decimals=qty_decimals,
    )
    return DevelopingResult(prof, dev, c)
