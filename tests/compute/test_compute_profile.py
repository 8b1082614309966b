"""compute.profile: hand-made cases with known answers, the real recording, and the value-area walk."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compute.batch import TradeBatch
from compute.profile import poc_index, value_area_bounds, volume_profile
from compute.value_area import _target, _va_loop, _va_vectorized

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"


def trades(rows_qty, tick=1.0, row_size=1.0, sell=False, t0=1_000):
    """Trades at the low edge (+ half a tick) of the given rows: [(row, qty), ...]."""
    price = [r * row_size for r, _ in rows_qty]
    qty = [q for _, q in rows_qty]
    n = len(price)
    return TradeBatch(
        np.arange(t0, t0 + n, dtype=np.int64), np.array(price, float), np.array(qty, float),
        np.full(n, sell), np.arange(n), "TEST",
    )


def by_volume(vols, **kw):
    """One trade per row with the given volumes (rows 0..len-1; zero volume -> no trade)."""
    return volume_profile(trades([(i, v) for i, v in enumerate(vols) if v > 0]), 1.0, 1.0, **kw)


# -- reference value-area walk (written straight from the words) ----------------
def va_reference(v, poc, fraction, method="single"):
    total = sum(v)
    target = Fraction(str(fraction)) * Fraction(str(total))  # the decimal fraction, exactly
    lo = hi = poc
    acc = v[poc]
    step = 2 if method == "dual" else 1
    while Fraction(str(acc)) < target:
        up = v[hi + 1 : hi + 1 + step]
        dn = v[max(lo - step, 0) : lo][::-1]
        if not up and not dn:
            break
        if up and (not dn or sum(up) >= sum(dn)):
            acc += sum(up)
            hi += len(up)
        else:
            acc += sum(dn)
            lo -= len(dn)
    return lo, hi


def poc_reference(v):
    m = max(v)
    mid = (len(v) - 1) / 2
    cands = [i for i, x in enumerate(v) if x == m]
    return min(cands, key=lambda i: (abs(i - mid), i))


# -- POC -------------------------------------------------------------------------------
def test_poc_tie_goes_to_row_nearest_middle():
    # rows 10..16, ties at 10, 13, 16; the middle of the grid is row 13.
    r = volume_profile(trades([(10, 3), (12, 1), (13, 3), (14, 1), (16, 3)]), 1.0, 1.0)
    assert r.rows == 7 and r.first_row == 10
    assert r.poc == 13.5


def test_poc_tie_equidistant_goes_to_lower_row():
    r = by_volume([1, 2, 2, 1])  # rows 1 and 2 both 0.5 rows from the middle (1.5)
    assert r.poc == 1.5
    r = by_volume([5, 1, 1, 5])
    assert r.poc == 0.5


def test_poc_index_helper():
    assert poc_index(np.array([0, 7, 7, 0, 7])) == 2
    assert poc_index(np.array([7, 0, 0, 7])) == 0
    assert poc_index(np.array([1.0])) == 0
    with pytest.raises(ValueError):
        poc_index(np.array([]))


# -- value area ------------------------------------------------------------------------
def test_value_area_tie_adds_the_row_above():
    # total 22, target 15.4: POC 12, then 4 above vs 4 below -> above wins -> 16 >= 15.4.
    r = by_volume([1, 4, 12, 4, 1])
    assert (r.poc, r.val, r.vah) == (2.5, 2.0, 4.0)


def test_value_area_adds_the_larger_side_and_takes_other_when_exhausted():
    # POC is the top row: only rows below can be added. total 16, target 11.2: 10 + 3 -> 13.
    r = by_volume([1, 2, 3, 10])
    assert (r.poc, r.val, r.vah) == (3.5, 2.0, 4.0)
    # larger side first: 5 below beats 1 above; total 20, target 14: 10 + 5 = 15.
    r = by_volume([2, 5, 10, 1, 2])
    assert (r.val, r.vah) == (1.0, 3.0)


def test_value_area_empty_rows_are_real_rows():
    # trades in rows 0, 4 and 5 only; rows 1..3 exist with zero volume.
    r = volume_profile(trades([(0, 2), (4, 1), (5, 6)]), 1.0, 1.0)
    assert r.rows == 6
    assert list(r.volume) == [2, 0, 0, 0, 1, 6]
    assert list(r.trades_per_row) == [1, 0, 0, 0, 1, 1]
    # total 9, target 6.3: POC row 5 (6) -> top exhausted -> row 4 (1) -> 7.
    assert (r.poc, r.val, r.vah) == (5.5, 4.0, 6.0)


def test_dual_row_value_area():
    v = [1, 1, 4, 10, 3, 3, 1]  # total 23, target 16.1
    # single: 10, 4 below > 3 above -> 14, 3 above > 1 below -> 17.
    r = by_volume(v)
    assert (r.val, r.vah) == (2.0, 5.0)
    # dual: 10, pair above 3+3=6 > pair below 4+1=5 -> 16, pair above (1) < pair below 5 -> 21.
    r = by_volume(v, value_area_method="dual")
    assert (r.val, r.vah) == (1.0, 6.0)


@pytest.mark.parametrize("va", [0.49, 0.96, 1.0, 0.0, float("nan")])
def test_value_area_out_of_range_is_rejected(va):
    with pytest.raises(ValueError, match="value_area"):
        by_volume([1, 2, 3], value_area=va)


def test_value_area_bounds_accepts_the_limits():
    assert by_volume([1, 2, 3], value_area=0.5).poc == 2.5
    assert by_volume([1, 2, 3], value_area=0.95).val == 0.0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=25),
    st.sampled_from([0.5, 0.6, 0.68, 0.7, 0.8, 0.95]),
    st.sampled_from(["single", "dual"]),
)
def test_value_area_walk_equals_reference(v, fraction, method):
    arr = np.array(v, dtype=np.int64)
    p = poc_index(arr)
    assert p == poc_reference(v)
    want = va_reference(v, p, fraction, method)
    assert value_area_bounds(arr, p, fraction, method) == want
    # both implementations (plain walk for small grids, vectorised merge for large ones), ints and floats
    for a in (arr, arr.astype(float)):
        assert _va_vectorized(a, p, a.sum(), fraction, method) == want
        assert _va_loop(a.tolist(), p, _target(a.dtype, a.sum(), fraction), method == "dual") == want


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=390, max_size=600), st.sampled_from([0.5, 0.7, 0.95]),
       st.sampled_from(["single", "dual"]))
def test_value_area_large_grid_equals_reference(v, fraction, method):
    arr = np.array(v, dtype=np.int64)
    p = poc_index(arr)
    assert value_area_bounds(arr, p, fraction, method) == va_reference(v, p, fraction, method)


def test_value_area_float_paths_agree_on_real_weights():
    rng = np.random.default_rng(3)
    for n in (5, 50, 383, 385, 2000):
        v = rng.random(n) * rng.integers(1, 1000, n)
        p = poc_index(v)
        for m in ("single", "dual"):
            assert _va_vectorized(v, p, v.sum(), 0.7, m) == _va_loop(v.tolist(), p, _target(v.dtype, v.sum(), 0.7), m == "dual")


# -- single trade, one row, empty range, sides --------------------------------------------
def test_one_trade():
    b = TradeBatch([5_000], [9640.37], [0.25], [False], [1], "BTCUSDT")
    r = volume_profile(b, 0.01, 5.0)
    assert r.rows == 1 and r.trades == 1
    assert (r.poc, r.val, r.vah) == (9642.5, 9640.0, 9645.0)
    assert (r.total_volume, r.buy_volume, r.sell_volume) == (0.25, 0.25, 0.0)
    lv = r.levels
    assert list(lv.columns) == ["price_low", "price_high", "volume", "buy", "sell", "delta", "trades"]
    assert lv.iloc[0].to_dict() == {
        "price_low": 9640.0, "price_high": 9645.0, "volume": 0.25, "buy": 0.25, "sell": 0.0, "delta": 0.25, "trades": 1,
    }


def test_all_trades_in_one_row_with_sides():
    # tick 0.5, row 2.0 (4 ticks): 100.0 .. 101.5 are all row 50.
    b = TradeBatch([1, 2, 3, 4], [100.0, 100.5, 101.0, 101.5], [1.0, 2.0, 3.0, 4.0], [True, False, True, False], [1, 2, 3, 4])
    r = volume_profile(b, 0.5, 2.0)
    assert r.rows == 1 and r.first_row == 50
    assert (r.poc, r.val, r.vah) == (101.0, 100.0, 102.0)
    assert (r.buy_volume, r.sell_volume, r.total_volume) == (6.0, 4.0, 10.0)
    assert r.levels["delta"].tolist() == [2.0]


def test_price_rounding_to_tick_decides_the_row():
    # 101.999999999 rounds to tick 10200 (row 51 at 2.0 per row); 101.98 is tick 10198 (row 50).
    b = TradeBatch([1, 2], [101.999999999, 101.98], [1.0, 1.0], [False, False], [1, 2])
    r = volume_profile(b, 0.01, 2.0)
    assert r.first_row == 50 and r.rows == 2
    assert r.volume.tolist() == [1.0, 1.0]


def test_range_is_start_inclusive_end_exclusive():
    b = trades([(0, 1), (1, 2), (2, 4)], t0=100)  # times 100, 101, 102
    r = volume_profile(b, 1.0, 1.0, start=101, end=102)
    assert r.trades == 1 and r.total_volume == 2.0
    with pytest.raises(ValueError, match="no trades in range"):
        volume_profile(b, 1.0, 1.0, start=103, end=200)
    with pytest.raises(ValueError, match="no trades in range"):
        volume_profile(b, 1.0, 1.0, start=101, end=101)


def test_row_size_must_be_whole_ticks():
    with pytest.raises(ValueError, match="whole number of ticks"):
        volume_profile(trades([(0, 1)]), 0.01, 0.015)


def test_bad_quantities_are_rejected():
    b = TradeBatch([1], [100.0], [float("nan")], [False], [1])
    with pytest.raises(ValueError, match="finite"):
        volume_profile(b, 0.01, 1.0)
    b = TradeBatch([1], [100.0], [-1.0], [False], [1])
    with pytest.raises(ValueError, match="negative"):
        volume_profile(b, 0.01, 1.0)


def test_dataframe_input_and_to_dict():
    df = pd.DataFrame({"time": [1, 2], "price": [10.0, 12.0], "qty": [1.0, 3.0], "is_buyer_maker": [True, False], "id": [1, 2]})
    r = volume_profile(df, 1.0, 1.0)
    d = r.to_dict()
    for k in ("rows", "total_volume", "buy_volume", "sell_volume", "trades", "poc", "vah", "val", "levels"):
        assert k in d
    assert d["rows"] == 3 and d["poc"] == 12.5 and d["trades"] == 2
    assert d["levels"][1] == {"price_low": 11.0, "price_high": 12.0, "volume": 0.0, "buy": 0.0, "sell": 0.0, "delta": 0.0, "trades": 0}
    # percentiles: cumulative 1, 1, 4 of 4 -> 0.25 at row 10, 0.5 and 0.75 at row 12
    assert d["percentiles"] == {"0.25": 10.5, "0.5": 12.5, "0.75": 12.5}


# -- the real recording ------------------------------------------------------------------
@pytest.fixture(scope="module")
def real():
    df = pd.read_csv(RECORDING)
    return df


def test_real_totals_equal_file_sums(real):
    r = volume_profile(real, 0.01, 5.0)
    assert r.trades == len(real)
    assert r.total_volume == pytest.approx(real["qty"].sum(), rel=1e-12)
    assert r.buy_volume == pytest.approx(real.loc[~real["is_buyer_maker"], "qty"].sum(), rel=1e-12)
    assert r.sell_volume == pytest.approx(real.loc[real["is_buyer_maker"], "qty"].sum(), rel=1e-12)
    lv = r.levels
    assert lv["trades"].sum() == len(real)
    assert lv["volume"].sum() == pytest.approx(real["qty"].sum(), rel=1e-12)


@pytest.mark.parametrize("row_size", [0.01, 0.5, 5.0, 25.0])
def test_real_rows_equal_pandas_groupby(real, row_size):
    start, end = int(real["time"].iloc[10_000]), int(real["time"].iloc[40_000])
    sl = real[(real["time"] >= start) & (real["time"] < end)]
    # independent row computation with Python's Decimal-free integer math on the price strings' cents
    cents = (sl["price"] * 100).round().astype("int64")
    tpr = round(row_size * 100)
    row = cents // tpr
    g = sl.assign(row=row, buy=np.where(sl["is_buyer_maker"], 0.0, sl["qty"])).groupby("row").agg(
        volume=("qty", "sum"), buy=("buy", "sum"), trades=("qty", "size"))
    r = volume_profile(real, 0.01, row_size, start=start, end=end)
    assert r.first_row == g.index.min() and r.rows == g.index.max() - g.index.min() + 1
    lv = r.levels.set_index(np.arange(r.first_row, r.first_row + r.rows))
    nz = lv.loc[g.index]
    np.testing.assert_allclose(nz["volume"], g["volume"], rtol=1e-9)
    np.testing.assert_allclose(nz["buy"], g["buy"], rtol=1e-9)
    np.testing.assert_array_equal(nz["trades"], g["trades"])
    assert lv["trades"].sum() == len(sl)
    # POC: independent from the groupby (dense grid, middle tie rule)
    dense = g["volume"].reindex(range(r.first_row, r.first_row + r.rows), fill_value=0.0).round(8).tolist()
    assert r.poc_idx == poc_reference(dense)
    assert (r.va_lo, r.va_hi) == va_reference(dense, r.poc_idx, 0.7)
