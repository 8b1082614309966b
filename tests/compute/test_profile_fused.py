"""compute.profile's fused numba pass against the numpy reference it replaces, on the real recording.

``volume_profile`` sums per row in one pass (:func:`compute.kernels.bin_fused`) over a slice of
the time-sorted trades; :func:`compute.profile.reference_sums` is the boolean-mask numpy path it
must equal to the digit (and the path that raises the documented errors).
"""

from __future__ import annotations

import numpy as np
import pytest

from compute.batch import TradeBatch
from compute.profile import reference_sums, volume_profile
from feeds.readers import read_trades

TICK = 0.01


@pytest.fixture(scope="module")
def rec(recording_path) -> TradeBatch:
    return read_trades(recording_path)


def _assert_same(res, ref) -> None:
    s, e, (r0, vol, buy, cnt) = ref
    assert (res.start, res.end, res.first_row) == (s, e, r0)
    np.testing.assert_array_equal(res.volume_int, vol)
    np.testing.assert_array_equal(res.buy_int, buy)
    np.testing.assert_array_equal(res.trades_per_row, cnt)


@pytest.mark.parametrize("row_size", [0.01, 0.5, 1.0, 25.0])
def test_whole_recording_equals_reference(rec, row_size):
    tpr = round(row_size / TICK)
    _assert_same(volume_profile(rec, TICK, row_size), reference_sums(rec, TICK, tpr, 10**8, None, None))


@pytest.mark.parametrize("which", ["sub", "open_start", "open_end", "exact_edges"])
def test_sub_ranges_are_slices_equal_to_the_mask(rec, which):
    t = rec.time
    a, z = int(t[12_345]), int(t[54_321])
    start, end = {"sub": (a, z), "open_start": (None, z), "open_end": (a, None), "exact_edges": (a, a + 1)}[which]
    res = volume_profile(rec, TICK, 0.5, start=start, end=end)
    ref = reference_sums(rec, TICK, 50, 10**8, start, end)
    _assert_same(res, ref)
    assert res.trades == int(((t >= ref[0]) & (t < ref[1])).sum())


def test_unsorted_input_gives_the_same_profile(rec):
    rng = np.random.default_rng(7)
    shuffled = rec.take(rng.permutation(len(rec)))
    a, z = int(rec.time[5_000]), int(rec.time[30_000])
    for start, end in ((None, None), (a, z)):
        assert volume_profile(shuffled, TICK, 1.0, start=start, end=end).to_dict() == \
            volume_profile(rec, TICK, 1.0, start=start, end=end).to_dict()


def test_every_row_sum_is_exact_on_a_few_trades():
    """Hand-checkable: three rows, sides, a trade on a row edge, an empty row in between."""
    b = TradeBatch(np.array([1, 2, 3, 4, 5]), np.array([10.00, 10.49, 10.50, 11.51, 10.02]),
                   np.array([0.1, 0.2, 0.3, 0.4, 0.00000001]), np.array([False, True, False, False, True]),
                   np.arange(5))
    r = volume_profile(b, 0.01, 0.5)
    assert r.first_row == 20
    assert r.volume_int.tolist() == [30_000_001, 30_000_000, 0, 40_000_000]
    assert r.buy_int.tolist() == [10_000_000, 30_000_000, 0, 40_000_000]
    assert r.trades_per_row.tolist() == [3, 1, 0, 1]


@pytest.mark.parametrize("bad, match", [
    ({"price": np.nan}, "prices must be finite"),
    ({"price": np.inf}, "prices must be finite"),
    ({"qty": np.nan}, "quantities must be finite"),
    ({"qty": -0.5}, "must not be negative"),
    ({"qty": 0.123456789}, "more than 8 decimals"),
])
def test_bad_values_raise_the_reference_errors(rec, bad, match):
    b = rec.take(slice(0, 1_000))
    cols = {"price": b.price.copy(), "qty": b.qty.copy()}
    for k, v in bad.items():
        cols[k][500] = v
    b = TradeBatch(b.time, cols["price"], cols["qty"], b.is_buyer_maker, b.trade_id)
    with pytest.raises(ValueError, match=match):
        volume_profile(b, TICK, 1.0)
    # outside the range the bad trade does not count
    assert volume_profile(b, TICK, 1.0, end=int(b.time[400])).trades == int((b.time < b.time[400]).sum())


def test_empty_inputs_and_ranges_raise():
    with pytest.raises(ValueError, match="no trades in range"):
        volume_profile(TradeBatch.empty(), TICK, 1.0)
    b = TradeBatch(np.array([10, 20]), np.array([1.0, 2.0]), np.array([1.0, 1.0]), np.array([True, False]),
                   np.arange(2))
    with pytest.raises(ValueError, match=r"no trades in range \[11, 20\)"):
        volume_profile(b, TICK, 1.0, start=11, end=20)


@pytest.mark.parametrize("method", ["single", "dual"])
@pytest.mark.parametrize("fraction", [0.5, 0.7, 0.95])
def test_levels_kernel_equals_the_python_walk(method, fraction):
    """compute.kernels.profile_levels (used by build_result for int64 volumes) against value_area's functions."""
    from compute.kernels import profile_levels
    from compute.value_area import _decimal, percentile_indices, poc_index, value_area_bounds

    rng = np.random.default_rng(int(fraction * 100) + (method == "dual"))
    ps = (0.0, 0.25, 0.5, 0.75, 1.0)
    fr = _decimal(fraction)
    nums = np.array([_decimal(p).numerator for p in ps], np.int64)
    dens = np.array([_decimal(p).denominator for p in ps], np.int64)
    for n in (1, 2, 3, 10, 385, 1000):
        for _ in range(20):
            v = rng.integers(0, 5, n) * rng.integers(1, 10**9, n)  # many ties and empty rows
            if rng.random() < 0.3:
                v[:] = 7  # all equal
            p = poc_index(v)
            want = (p, *value_area_bounds(v, p, fraction, method), percentile_indices(v, ps))
            got = profile_levels(v.astype(np.int64), fr.numerator, fr.denominator, method == "dual", nums, dens)
            assert got[:3] == want[:3] and got[3].tolist() == want[3], (n, v.tolist()[:20])
