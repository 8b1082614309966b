"""The shared row grid: row index rule and the automatic row-size ladder."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compute.grid import LADDER, auto_row_size, decimals_for, row_index, row_low, tick_index, ticks_per_row

TICKS = [0.01, 0.1, 0.5, 1.0, 0.001, 0.0001, 5.0, 0.25, 0.00001, 10.0]


def test_row_index_low_edge_rule():
    # row = floor(round(price / tick) / tpr): a price on a row's low edge belongs to that row
    p = np.array([9640.0, 9644.99, 9645.0, 9649.999999999, 9639.99, -0.01, 0.0])
    assert list(row_index(p, 0.01, 500)) == [1928, 1928, 1929, 1930, 1927, -1, 0]  # 9649.999999999 is tick 9650.00
    # float noise in price / tick never moves a trade across a row edge
    assert list(tick_index(np.array([0.1 + 0.2, 9640.000000001]), 0.1)) == [3, 96400]
    assert list(row_low(np.array([1928, 1929]), 0.01, 500)) == pytest.approx([9640.0, 9645.0])


def test_ticks_per_row():
    assert ticks_per_row(5.0, 0.01) == 500
    assert ticks_per_row(0.3, 0.1) == 3
    for bad in [(0.015, 0.01), (0.005, 0.01), (0.0, 0.01), (1.0, 0.0), (float("nan"), 0.01)]:
        with pytest.raises(ValueError):
            ticks_per_row(*bad)


def test_decimals_for():
    assert [decimals_for(t) for t in (1.0, 0.5, 0.01, 0.25, 0.0001, 10.0)] == [0, 1, 2, 2, 4, 0]


def ladder_values(lo_exp: int, hi_exp: int):
    return [Decimal(str(m)) * Decimal(10) ** k for k in range(lo_exp, hi_exp + 1) for m in LADDER]


def brute_force(price_low: float, price_high: float, tick: float, target: int) -> float:
    """Enumerate the whole ladder: whole ticks, >= tick, rows closest to target on a log scale, ties coarser."""
    span = price_high - price_low
    tick_d = Decimal(str(tick))
    cands = [float(tick_d)]
    for v in ladder_values(-12, 12):
        q = v / tick_d
        if v >= tick_d and q == q.to_integral_value():
            cands.append(float(v))
    return min(cands, key=lambda s: (round(abs(math.log(span / s / target)), 9), -s))


@settings(max_examples=300, deadline=None)
@given(
    low=st.floats(0.001, 200_000, allow_nan=False),
    width=st.floats(1e-3, 5.0),
    tick=st.sampled_from(TICKS),
    target=st.integers(10, 400),
)
def test_auto_row_size_ladder_properties(low, width, tick, target):
    high = low * (1 + width)
    size = auto_row_size(low, high, tick, target)
    tpr = size / tick
    assert size >= tick * (1 - 1e-12)  # never finer than the tick
    assert abs(tpr - round(tpr)) < 1e-6  # a whole number of ticks
    mant = size / 10 ** math.floor(math.log10(size) + 1e-12)
    assert size == pytest.approx(tick) or any(abs(mant - m) < 1e-9 for m in LADDER)  # on the ladder (or the tick)
    assert size == pytest.approx(brute_force(low, high, tick, target), rel=1e-12)
    rows = (high - low) / size
    ideal = (high - low) / target
    if ideal >= 10 * tick:
        # whole-tick ladder values are at most 2.5x apart here, so rows stay within sqrt(2.5) of the target
        assert target / math.sqrt(2.5) - 1e-9 <= rows <= target * math.sqrt(2.5) + 1e-9


def test_auto_row_size_examples():
    # BTC around 9600 with a 145-dollar visible range: 145 / 120 = 1.2 -> 1 (145 rows)
    assert auto_row_size(9565.0, 9710.0, 0.01, 120) == 1.0
    # a wide range: 4000 / 120 = 33 -> 25 (160 rows) vs 50 (80 rows): 25 is closer on a log scale
    assert auto_row_size(60_000.0, 64_000.0, 0.1, 120) == 25.0
    # a tiny range cannot go below the tick
    assert auto_row_size(100.0, 100.05, 0.01, 120) == 0.01
    # empty range: the tick
    assert auto_row_size(100.0, 100.0, 0.5) == 0.5
    with pytest.raises(ValueError):
        auto_row_size(1.0, 2.0, 0.0)
    with pytest.raises(ValueError):
        auto_row_size(1.0, 2.0, 0.01, 0)
