"""Heat-map on a time x price grid (datashader): bin placement by hand, totals on the real recording."""

from __future__ import annotations

import numpy as np
import pytest

from compute.batch import TradeBatch
from compute.heatmap import heatmap
from feeds.readers import read_trades


def make(times, prices, qtys, sells) -> TradeBatch:
    n = len(times)
    return TradeBatch(np.array(times), np.array(prices, float), np.array(qtys, float), np.array(sells, bool),
                      np.arange(n), "TEST")


def test_bins_by_hand_both_range_ends_inclusive():
    # time 0..1000 in 10 bins of 100 ms, price 100..110 in 5 bins of 2
    b = make(
        [0, 99, 100, 999, 1000, 1001, 500, 500],
        [100, 101.9, 102, 109.9, 110, 105, 99.99, 110.01],
        [1, 2, 4, 8, 16, 32, 64, 128],
        [False] * 8,
    )
    h = heatmap(b, 0, 1000, 100.0, 110.0, width=10, height=5)
    assert h.dims == ("price", "time") and h.shape == (5, 10)
    v = np.nan_to_num(h.values)
    assert v[0, 0] == 3  # t 0 and 99 at prices 100 and 101.9: bin (0, 0)
    assert v[1, 1] == 4  # t 100, price 102: second bin on both axes
    assert v[4, 9] == 8 + 16  # t 999 @ 109.9 and the upper edges t 1000 @ 110 fall in the last bins
    assert v.sum() == 1 + 2 + 4 + 8 + 16  # t 1001 and prices outside [100, 110] are dropped
    np.testing.assert_allclose(h.coords["time"].values, np.arange(50, 1000, 100))
    np.testing.assert_allclose(h.coords["price"].values, [101, 103, 105, 107, 109])
    np.testing.assert_allclose(h.attrs["x_edges"], np.arange(0, 1001, 100))
    np.testing.assert_allclose(h.attrs["y_edges"], np.arange(100, 111, 2))


def test_empty_bins_are_nan_for_sums_and_zero_for_count_and_delta_signs():
    b = make([0, 10, 20], [100, 100, 100], [1.0, 0.25, 1.0], [False, True, True])
    vol = heatmap(b, 0, 100, 100.0, 101.0, 2, 2, agg="volume")
    assert vol.values[0, 0] == 2.25 and np.isnan(vol.values[1, 1])
    delta = heatmap(b, 0, 100, 100.0, 101.0, 2, 2, agg="delta")
    assert delta.values[0, 0] == 1.0 - 0.25 - 1.0
    count = heatmap(b, 0, 100, 100.0, 101.0, 2, 2, agg="count")
    assert count.values[0, 0] == 3 and count.values[1, 1] == 0
    # a bin whose buys and sells cancel holds 0.0, not NaN
    z = heatmap(make([0, 1], [100, 100], [1.0, 1.0], [False, True]), 0, 100, 100.0, 101.0, 2, 2, agg="delta")
    assert z.values[0, 0] == 0.0


def test_bad_arguments():
    b = make([0], [1.0], [1.0], [False])
    with pytest.raises(ValueError, match="agg"):
        heatmap(b, 0, 10, 0.0, 2.0, 4, 4, agg="vwap")
    with pytest.raises(ValueError, match="time range"):
        heatmap(b, 10, 10, 0.0, 2.0, 4, 4)
    with pytest.raises(ValueError, match="price range"):
        heatmap(b, 0, 10, 2.0, 2.0, 4, 4)
    with pytest.raises(ValueError, match="width"):
        heatmap(b, 0, 10, 0.0, 2.0, 0, 4)


@pytest.fixture(scope="module")
def real(recording_path):
    return read_trades(recording_path)


@pytest.mark.parametrize("agg", ["volume", "delta", "count"])
def test_real_totals_equal_the_trades_inside_the_ranges(real, agg):
    # a window whose edges sit exactly on real trades (both ends inclusive), price range cutting the data
    i, j = 10_000, 50_000
    start, end = int(real.time[i]), int(real.time[j])
    lo, hi = float(np.quantile(real.price, 0.2)), float(real.price[j])
    inside = (real.time >= start) & (real.time <= end) & (real.price >= lo) & (real.price <= hi)
    assert inside[j] and 0 < inside.sum() < len(real)
    h = heatmap(real, start, end, lo, hi, 1200, 600, agg=agg)
    signed = np.where(real.is_buyer_maker, -real.qty, real.qty)
    want = {"volume": real.qty[inside].sum(), "delta": signed[inside].sum(), "count": inside.sum()}[agg]
    assert float(np.nansum(h.values)) == pytest.approx(want, rel=1e-12, abs=1e-9)


def test_real_dataframe_input_equals_batch_input(real):
    start, end = int(real.time[0]), int(real.time[-1])
    lo, hi = float(real.price.min()), float(real.price.max())
    a = heatmap(real, start, end, lo, hi, 300, 200)
    b = heatmap(real.to_frame(), start, end, lo, hi, 300, 200)
    np.testing.assert_array_equal(a.values, b.values)
    # every trade is inside the full range: the grid holds the whole recorded volume
    assert float(np.nansum(a.values)) == pytest.approx(real.qty.sum(), rel=1e-12)
