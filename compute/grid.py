"""The price-row grid every profile, footprint and heat-map shares.

Definitions (issue 2, following ``shared/reference/orderflow-and-binance.md`` b2):

* ``tick index  = round(price / tick)`` — integer arithmetic from here on, so
  float noise in ``price / tick`` never moves a trade to another row;
* ``row index   = floor(tick_index / ticks_per_row)``;
* a row covers ``[row * row_size, (row + 1) * row_size)`` in quote currency,
  its *low edge* labels it and its *middle* is ``low + row_size / 2``;
* ``row_size = ticks_per_row * tick`` with ``ticks_per_row`` a positive integer.
"""

from __future__ import annotations

import functools
import math

import numpy as np

#: Mantissas of the automatic row-size ladder (1-2-2.5-5 x 10^k).
LADDER = (1.0, 2.0, 2.5, 5.0)


def ticks_per_row(row_size: float, tick: float) -> int:
    """Return ``row_size / tick`` as an int.

    Raises
    ------
    ValueError
        If ``tick`` or ``row_size`` is not positive, or ``row_size`` is not a
        whole number of ticks (tolerance 1e-6 of a tick).
    """
    if not (tick > 0 and math.isfinite(tick)):
        raise ValueError(f"tick must be a positive number, got {tick!r}")
    if not (row_size > 0 and math.isfinite(row_size)):
        raise ValueError(f"row size must be a positive number, got {row_size!r}")
    k = row_size / tick
    n = round(k)
    if n < 1 or abs(k - n) > 1e-6:
        raise ValueError(f"row size {row_size:g} is not a whole number of ticks of {tick:g}")
    return int(n)


def tick_index(price: np.ndarray, tick: float) -> np.ndarray:
    """Integer tick index ``round(price / tick)``; shape as ``price``, int64."""
    return np.rint(np.asarray(price, dtype=np.float64) / tick).astype(np.int64)


def row_index(price: np.ndarray, tick: float, tpr: int) -> np.ndarray:
    """Row index ``floor(round(price / tick) / tpr)``; shape as ``price``, int64."""
    return np.floor_divide(tick_index(price, tick), int(tpr))


def row_low(rows: np.ndarray, tick: float, tpr: int) -> np.ndarray:
    """Low edge price of each row (quote currency), float64."""
    return np.asarray(rows, dtype=np.int64) * int(tpr) * tick


@functools.lru_cache(maxsize=256)
def decimals_for(tick: float) -> int:
    """Decimal places needed to print prices on a ``tick`` grid (0.01 -> 2, 0.5 -> 1)."""
    for d in range(0, 12):
        if abs(round(tick, d) - tick) < 1e-12:
            return d
    return 12


def auto_row_size(price_low: float, price_high: float, tick: float, target_rows: int = 120) -> float:
    """Pick a row size for a visible price range.

    The row size is a whole number of ticks on the 1-2-2.5-5 x 10^k ladder
    (never finer than ``tick``) whose number of rows over
    ``[price_low, price_high]`` is closest to ``target_rows`` (compared on a log
    scale, ties to the coarser size). When the range is empty the tick is used.

    Returns the row size in quote currency, rounded to the tick's decimals.

    Raises
    ------
    ValueError
        If ``tick`` is not positive or ``target_rows`` < 1.
    """
    if not tick > 0:
        raise ValueError(f"tick must be positive, got {tick!r}")
    if target_rows < 1:
        raise ValueError(f"target_rows must be >= 1, got {target_rows!r}")
    span = float(price_high) - float(price_low)
    if not (span > 0 and math.isfinite(span)):
        return tick
    ideal = span / target_rows
    best, best_err = tick, abs(math.log(span / tick / target_rows))
    k0 = math.floor(math.log10(max(ideal, tick))) - 1
    for k in range(k0, k0 + 4):
        for m in LADDER:
            size = m * 10.0**k
            if size < tick * (1 - 1e-9):
                continue
            tpr = size / tick
            if abs(tpr - round(tpr)) > 1e-6:
                continue
            err = abs(math.log(span / size / target_rows))
            if err < best_err - 1e-12 or (abs(err - best_err) <= 1e-12 and size > best):
                best, best_err = size, err
    return round(round(best / tick) * tick, decimals_for(tick))


def infer_tick(prices: np.ndarray, max_decimals: int = 8) -> float:
    """Guess the tick size from traded prices: the coarsest ``10**-d`` that every price is a multiple of.

    Used only when the tick is not known from the exchange (a replayed file).
    ``prices`` has shape (N,), float64. Returns e.g. 0.01 for BTCUSDT in 2020.
    An empty input gives 0.01.
    """
    p = np.asarray(prices, dtype=np.float64)
    if p.size == 0:
        return 0.01
    p = p[: 200_000]
    for d in range(0, max_decimals + 1):
        scaled = p * 10.0**d
        if np.all(np.abs(scaled - np.rint(scaled)) < 1e-6 * np.maximum(1.0, np.abs(scaled)) * 1e-3 + 1e-6):
            return round(10.0**-d, d)
    return round(10.0**-max_decimals, max_decimals)
