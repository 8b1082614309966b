"""compute.incremental.ProfileStore: a range's profile from the store is identical to recomputing from its raw trades."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute.batch import TradeBatch
from compute.candles import candles
from compute.incremental import ProfileStore
from compute.levels import developing_levels
from compute.profile import volume_profile
from compute.split import split_profile
from compute.timeweighted import recency_profile, tpo_profile
from feeds.readers import read_trades, read_trades_by_symbol

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"
SHARED = ROOT.parent / "shared" / "data" / "binance"
TICK = 0.01


@pytest.fixture(scope="module")
def real() -> TradeBatch:
    return read_trades(RECORDING)


def feed(store: ProfileStore, b: TradeBatch, n_batches: int, seed: int) -> ProfileStore:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(b)), size=n_batches - 1, replace=False))
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(b)], strict=True):
        store.update(b.take(slice(lo, hi)))
    return store


@pytest.fixture(scope="module")
def stores(real):
    """The recording fed in random batches into a default store and one with small blocks (3 and 12 minutes)."""
    return [
        feed(ProfileStore(TICK), real, 3000, 1),
        feed(ProfileStore(TICK, levels=(3, 12)), real, 500, 2),
    ]


def assert_same(a, b):
    """Bit-identical profiles: grid, exact sums, levels, summary."""
    assert (a.first_row, a.rows, a.start, a.end) == (b.first_row, b.rows, b.start, b.end)
    np.testing.assert_array_equal(a.volume_int, b.volume_int)
    np.testing.assert_array_equal(a.buy_int, b.buy_int)
    np.testing.assert_array_equal(a.trades_per_row, b.trades_per_row)
    pd.testing.assert_frame_equal(a.levels, b.levels, check_exact=True)
    assert (a.poc, a.vah, a.val) == (b.poc, b.vah, b.val)
    assert a.to_dict() == b.to_dict()


# The recording spans 1582329602111 .. 1582372799748 (UTC ms); ranges reach a little beyond both ends.
T0, T1 = 1582329602111, 1582372799749
times = st.integers(T0 - 120_000, T1 + 120_000)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=times, b=times, tpr=st.one_of(st.integers(1, 20), st.integers(21, 3000)),
       va=st.sampled_from([0.5, 0.68, 0.7, 0.8, 0.95]), method=st.sampled_from(["single", "dual"]),
       which=st.integers(0, 1))
def test_store_equals_recompute_on_random_slices(real, stores, a, b, tpr, va, method, which):
    start, end = min(a, b), max(a, b) + 1
    row_size = round(tpr * TICK, 2)
    store = stores[which]
    try:
        want = volume_profile(real, TICK, row_size, value_area=va, start=start, end=end, value_area_method=method)
    except ValueError as err:
        with pytest.raises(ValueError, match="no trades in range"):
            store.profile(start, end, row_size, value_area=va, value_area_method=method)
        assert "no trades in range" in str(err)
        return
    got = store.profile(start, end, row_size, value_area=va, value_area_method=method)
    assert_same(got, want)
    # and the raw-trade slice really is [start, end)
    assert got.trades == int(((real.time >= start) & (real.time < end)).sum())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=times, b=times, tpr=st.integers(1, 1000), kind=st.sampled_from(["split", "tpo", "tpo-fixed", "recency"]),
       which=st.integers(0, 1))
def test_store_kinds_equal_functions(real, stores, a, b, tpr, kind, which):
    start, end = min(a, b), max(a, b) + 1
    row_size = round(tpr * TICK, 2)
    store = stores[which]
    if not ((real.time >= start) & (real.time < end)).any():
        return
    if kind == "split":
        want, got = split_profile(real, TICK, row_size, start=start, end=end), store.profile(start, end, row_size, kind="split")
        assert want.extra == got.extra
    elif kind == "tpo":
        want, got = tpo_profile(real, TICK, row_size, start=start, end=end), store.profile(start, end, row_size, kind="tpo")
    elif kind == "tpo-fixed":  # 7 s blocks are not whole buckets: the store reads the raw trades
        want = tpo_profile(real, TICK, row_size, block_ms=7_000, start=start, end=end)
        got = store.profile(start, end, row_size, kind="tpo", block_ms=7_000)
    else:
        want = recency_profile(real, TICK, row_size, half_life_s=900, start=start, end=end)
        got = store.profile(start, end, row_size, kind="recency", half_life_s=900)
    assert_same(got, want)


def test_store_developing_equals_function(real, stores):
    start, end = T0 + 3_600_000 + 1234, T0 + 4 * 3_600_000 - 777
    for store in stores:
        got = store.developing(start, end, 2.5)
        want = developing_levels(real, TICK, 2.5, start=start, end=end)
        pd.testing.assert_frame_equal(got.developing, want.developing, check_exact=True)
        assert_same(got.profile, want.profile)
    # 90 s candles are not whole buckets: raw path, same answer
    pd.testing.assert_frame_equal(stores[0].developing(start, end, 2.5, candle_ms=90_000).developing,
                                  developing_levels(real, TICK, 2.5, candle_ms=90_000, start=start, end=end).developing)


def test_whole_recording_totals(real, stores):
    for store in stores:
        assert len(store) == len(real)
        assert (store.start_time, store.end_time) == (int(real.time[0]), int(real.time[-1]) + 1)
        r = store.profile(row_size=5.0)
        assert r.trades == len(real)
        assert r.total_volume == pytest.approx(float(real.qty.sum()), rel=1e-12)
        assert r.buy_volume == pytest.approx(float(real.qty[~real.is_buyer_maker].sum()), rel=1e-12)
        assert_same(r, volume_profile(real, TICK, 5.0))


def test_live_edge_open_bucket(real):
    """Queries that end inside the newest (still open) bucket see every trade ingested so far."""
    store = ProfileStore(TICK)
    n = 30_000
    for i in range(0, n, 250):
        store.update(real.take(slice(i, i + 250)))
        if i % 5000 == 0:
            end = int(real.time[i + 249]) + 1
            seen = real.take(slice(0, i + 250))
            assert_same(store.profile(end - 90_000, end, 0.5), volume_profile(seen, TICK, 0.5, start=end - 90_000, end=end))


def test_late_trades_are_merged_exactly(real):
    """A batch arriving after later ones (into closed buckets and built blocks) is merged exactly."""
    b = real.take(slice(0, 40_000))
    rng = np.random.default_rng(7)
    late = np.zeros(len(b), bool)
    late[rng.choice(len(b), 300, replace=False)] = True
    store = ProfileStore(TICK, levels=(2, 4))
    feed(store, b.take(~late), 200, 3)
    store.update(b.take(late))  # all of them late, spread over hours
    assert len(store) == len(b)
    for start, end in [(T0, T0 + 10**9), (T0 + 1_000_001, T0 + 9_000_000), (T0 + 60_000, T0 + 360_000)]:
        assert_same(store.profile(start, end, 0.25), volume_profile(b, TICK, 0.25, start=start, end=end))
    assert_same(store.profile(T0, T0 + 9_000_000, 1.0, kind="tpo"), tpo_profile(b, TICK, 1.0, start=T0, end=T0 + 9_000_000))


def test_trim_and_horizon(real):
    b = real.take(slice(0, 20_000))
    store = feed(ProfileStore(TICK, levels=(2, 6)), b, 50, 4)
    cut = T0 + 2_000_000
    dropped = store.trim(cut)
    horizon = cut // 60_000 * 60_000
    assert store.horizon == horizon
    kept = b.time >= horizon
    assert dropped == int((~kept).sum()) and len(store) == int(kept.sum())
    assert store.start_time == int(b.time[kept][0])
    assert_same(store.profile(row_size=1.0), volume_profile(b.take(kept), TICK, 1.0, end=store.end_time))
    assert_same(store.profile(horizon + 1, horizon + 5_000_000, 1.0),
                volume_profile(b, TICK, 1.0, start=horizon + 1, end=horizon + 5_000_000))
    # a trade older than the horizon is refused and nothing of its batch is stored
    n = len(store)
    with pytest.raises(ValueError, match="horizon"):
        store.update(b.take(slice(0, 10)))
    assert len(store) == n


def test_bad_batches_leave_the_store_unchanged(real):
    store = ProfileStore(TICK)
    store.update(real.take(slice(0, 1000)))
    before = store.profile(row_size=1.0).to_dict()
    bad = TradeBatch([T1], [float("nan")], [1.0], [False], [1])
    with pytest.raises(ValueError, match="finite"):
        store.update(bad)
    bad = TradeBatch([T1, T1], [9600.0, 9600.0], [1.0, -2.0], [False, True], [1, 2])
    with pytest.raises(ValueError, match="negative"):
        store.update(bad)
    assert len(store) == 1000 and store.profile(row_size=1.0).to_dict() == before


def test_errors():
    store = ProfileStore(TICK)
    with pytest.raises(ValueError, match="no trades"):
        store.profile()
    store.update(TradeBatch([1_000], [100.0], [1.0], [False], [1]))
    with pytest.raises(ValueError, match="no trades in range"):
        store.profile(2_000, 3_000)
    with pytest.raises(ValueError, match="whole number of ticks"):
        store.profile(row_size=0.015)
    with pytest.raises(ValueError, match="kind"):
        store.profile(kind="dwell")
    with pytest.raises(ValueError, match="value_area"):
        store.profile(value_area=0.99)
    with pytest.raises(ValueError):
        ProfileStore(TICK, levels=(10, 25))


def test_unsorted_batch_is_sorted_stably(real):
    b = real.take(slice(0, 5000))
    perm = np.random.default_rng(5).permutation(len(b))
    store = ProfileStore(TICK)
    store.update(b.take(perm))
    assert_same(store.profile(row_size=0.5), volume_profile(b, TICK, 0.5))
    # float weights are summed in time order (input order within one ms), as the function does
    assert_same(store.profile(row_size=0.5, kind="recency"), recency_profile(b.take(perm), TICK, 0.5))


def test_store_candles_equal_candles(real, stores):
    start, end = T0 + 100_000, T0 + 5_000_000
    got = stores[0].candles(start, end)
    sl = real.time_slice(start, end)
    want = candles(sl)
    pd.testing.assert_frame_equal(got[["time", "open", "high", "low", "close", "trades"]],
                                  want[["time", "open", "high", "low", "close", "trades"]])
    np.testing.assert_allclose(got["volume"], want["volume"], rtol=1e-12)


def _infer_tick(price: np.ndarray) -> float:
    for d in range(0, 9):
        x = price * 10**d
        if np.allclose(x, np.rint(x), atol=1e-6):
            return round(10.0**-d, d)
    return 1e-8


def _shared_files():
    if not SHARED.is_dir():
        return []
    return sorted(p for p in SHARED.iterdir() if p.suffix == ".gz" and "tardis" not in p.name)


@pytest.mark.parametrize("path", _shared_files(), ids=lambda p: p.name)
def test_store_equals_recompute_on_every_shared_recording(path):
    rng = np.random.default_rng(11)
    for sym, b in read_trades_by_symbol(path).items():
        tick = _infer_tick(b.price)
        store = feed(ProfileStore(tick, levels=(2, 4)), b, max(2, min(len(b) - 1, 100)), 6) if len(b) > 2 else None
        if store is None:
            store = ProfileStore(tick)
            store.update(b)
        t0, t1 = int(b.time.min()), int(b.time.max()) + 1
        for _ in range(10):
            s, e = sorted(rng.integers(t0 - 5_000, t1 + 5_000, size=2))
            tpr = int(rng.integers(1, 200))
            try:
                want = volume_profile(b, tick, tpr * tick, start=int(s), end=int(e) + 1)
            except ValueError:
                continue
            assert_same(store.profile(int(s), int(e) + 1, tpr * tick), want), (sym, s, e)
        assert store.profile().trades == len(b)


@pytest.mark.parametrize("block_ms", [600_000, 1_800_000, 3_600_000, 7_200_000])
def test_tpo_from_block_levels(real, stores, block_ms):
    """TPO blocks that are whole 10-minute / 1-hour store blocks use those blocks' traded ticks."""
    start, end = T0 + 61_000, T1 - 3_000_000
    want = tpo_profile(real, TICK, 0.5, block_ms=block_ms, start=start, end=end)
    for store in stores:
        assert_same(store.profile(start, end, 0.5, kind="tpo", block_ms=block_ms), want)
    assert want.to_dict()["tpo_blocks"] == (end - 1) // block_ms - start // block_ms + 1
