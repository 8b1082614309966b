"""Profile kinds (recency, TPO, split, percentiles, developing): hand-made known answers and the real recording."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compute.batch import TradeBatch
from compute.incremental import ProfileStore
from compute.levels import developing_levels, percentile_levels, percentile_prices
from compute.profile import volume_profile
from compute.split import split_profile, split_time
from compute.timeweighted import TPO_BLOCK_LADDER, auto_tpo_block, recency_profile, tpo_profile
from feeds.readers import read_trades

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"


def tb(rows):
    """Trades from (time ms, price, qty, is_buyer_maker) tuples."""
    t, p, q, m = zip(*rows, strict=True)
    return TradeBatch(np.array(t), np.array(p, float), np.array(q, float), np.array(m), np.arange(len(t)))


@pytest.fixture(scope="module")
def real() -> TradeBatch:
    return read_trades(RECORDING)


# -- recency ------------------------------------------------------------------------------
def test_recency_weights_and_mean_time():
    # row 10: 3 at t=0 (age 2 s -> weight 1/4); row 11: 2 at t=1000 (age 1 s -> 1/2); end 2000, half-life 1 s.
    b = tb([(0, 10.0, 3.0, False), (1000, 11.0, 2.0, True)])
    r = recency_profile(b, 1.0, 1.0, half_life_s=1.0, end=2000)
    assert r.levels["weighted_volume"].tolist() == [0.75, 1.0]
    assert r.poc == 11.5  # the recent row wins although it traded less
    assert r.levels["mean_time"].tolist() == [0.0, 1000.0]
    assert r.total_volume == 5.0 and r.to_dict()["weighted_total"] == 1.75


def test_recency_mean_time_is_volume_weighted_and_empty_rows_are_null():
    b = tb([(0, 10.0, 1.0, False), (1000, 10.0, 3.0, False), (500, 12.0, 1.0, False)])
    r = recency_profile(b, 1.0, 1.0, half_life_s=60.0)
    assert r.levels["mean_time"].iloc[0] == 750.0  # (0*1 + 1000*3) / 4
    assert math.isnan(r.levels["mean_time"].iloc[1])
    assert r.to_dict()["levels"][1]["mean_time"] is None
    assert r.to_dict()["half_life_s"] == 60.0


def test_recency_default_half_life_is_a_quarter_of_the_range():
    b = tb([(0, 10.0, 1.0, False), (7999, 11.0, 1.0, False)])
    assert recency_profile(b, 1.0, 1.0).to_dict()["half_life_s"] == 2.0  # range [0, 8000) ms


def test_recency_huge_half_life_equals_plain_volume(real):
    r = recency_profile(real, 0.01, 2.5, half_life_s=1e18)
    v = volume_profile(real, 0.01, 2.5)
    assert (r.poc, r.vah, r.val) == (v.poc, v.vah, v.val)
    np.testing.assert_allclose(r.levels["weighted_volume"], v.levels["volume"], rtol=1e-12)


def test_recency_tiny_half_life_keeps_only_the_last_trades(real):
    end = int(real.time[-1]) + 1
    last_row = math.floor(round(real.price[-1] / 0.01) / 250)  # rows of 2.5 = 250 ticks
    r = recency_profile(real, 0.01, 2.5, half_life_s=0.001, end=end)  # weights halve every ms
    assert r.first_row + r.poc_idx == last_row
    assert r.to_dict()["weighted_total"] < float(real.qty[real.time >= end - 60].sum())


@pytest.mark.parametrize("h", [0, -1, float("nan"), float("inf")])
def test_recency_bad_half_life(h):
    with pytest.raises(ValueError, match="half_life"):
        recency_profile(tb([(0, 10.0, 1.0, False)]), 1.0, 1.0, half_life_s=h)


# -- TPO ----------------------------------------------------------------------------------
def test_tpo_counts_blocks_not_volume():
    # 1 s blocks: row 10 traded in blocks 0 and 1, row 11 once (with much more volume).
    b = tb([(100, 10.0, 1.0, False), (200, 10.0, 1.0, True), (1500, 10.0, 1.0, False), (300, 11.0, 50.0, False)])
    r = tpo_profile(b, 1.0, 1.0, block_ms=1000)
    assert r.levels["tpo"].tolist() == [2, 1]
    assert r.poc == 10.5
    assert r.to_dict()["tpo_block_ms"] == 1000 and r.to_dict()["tpo_blocks"] == 2
    assert volume_profile(b, 1.0, 1.0).poc == 11.5


def test_tpo_blocks_are_epoch_aligned_and_ties_go_to_the_middle():
    # 999 and 1000 are in different 1 s blocks; rows 0..2 each count 1 -> tie -> middle row.
    b = tb([(999, 0.0, 1.0, False), (1000, 0.0, 1.0, False), (1000, 1.0, 1.0, False), (1001, 1.0, 9.0, False),
            (2500, 2.0, 1.0, False), (2600, 2.0, 1.0, False)])
    r = tpo_profile(b, 1.0, 1.0, block_ms=1000)
    assert r.levels["tpo"].tolist() == [2, 1, 1]
    assert r.poc == 0.5
    b2 = tb([(0, 0.0, 1.0, False), (0, 1.0, 1.0, False), (0, 2.0, 5.0, False)])
    assert tpo_profile(b2, 1.0, 1.0, block_ms=1000).poc == 1.5


def test_tpo_value_area_on_counts_single_row():
    b = tb([(t, 5.0, 1.0, False) for t in (0, 1000, 2000)])
    r = tpo_profile(b, 1.0, 1.0, block_ms=1000)
    assert r.rows == 1 and r.levels["tpo"].tolist() == [3] and (r.val, r.vah) == (5.0, 6.0)


@pytest.mark.parametrize("span, block", [(3_600_000, 60_000), (7_200_000, 120_000), (86_400_000, 1_800_000),
                                         (36_000_000, 600_000), (5_000, 1_000)])
def test_auto_tpo_block_known(span, block):
    assert auto_tpo_block(0, span) == block


@settings(max_examples=200, deadline=None)
@given(st.integers(30_000, 400 * 86_400_000), st.integers(0, 10**13))
def test_auto_tpo_block_gives_30_to_60_blocks(span, start):
    b = auto_tpo_block(start, start + span)
    assert 30 < span / b <= 60 or b == TPO_BLOCK_LADDER[0]


def test_tpo_bad_block():
    with pytest.raises(ValueError, match="block"):
        tpo_profile(tb([(0, 10.0, 1.0, False)]), 1.0, 1.0, block_ms=0)


# -- split --------------------------------------------------------------------------------
def test_split_midpoint_and_halves():
    assert split_time(0, 10) == 5 and split_time(0, 9) == 5 and split_time(1, 2) == 2
    # [0, 9): midpoint 4.5 -> t=4 first half, t=5 second half
    b = tb([(0, 10.0, 2.0, False), (4, 10.0, 1.0, True), (5, 12.0, 3.0, False), (8, 10.0, 1.0, False)])
    r = split_profile(b, 1.0, 1.0, start=0, end=9)
    lv = r.levels
    assert lv["first_volume"].tolist() == [3.0, 0.0, 0.0]
    assert lv["second_volume"].tolist() == [1.0, 0.0, 3.0]
    assert lv["change"].tolist() == [-2.0, 0.0, 3.0]
    assert lv["first_delta"].tolist() == [1.0, 0.0, 0.0]
    d = r.to_dict()
    assert d["split_time"] == 5
    assert (d["first"]["poc"], d["first"]["vah"], d["first"]["val"]) == (10.5, 11.0, 10.0)
    assert (d["second"]["poc"], d["second"]["vah"], d["second"]["val"]) == (12.5, 13.0, 12.0)
    assert (d["poc"], d["trades"]) == (10.5, 4)  # the whole range's


def test_split_one_empty_half():
    b = tb([(0, 10.0, 2.0, False), (1, 11.0, 1.0, False)])
    d = split_profile(b, 1.0, 1.0, start=0, end=100).to_dict()
    assert d["second"]["poc"] is None and d["second"]["trades"] == 0
    assert d["first"]["poc"] == 10.5


def test_split_halves_add_up_and_match_their_own_profiles(real):
    s, e = int(real.time[1000]), int(real.time[-1000])
    r = split_profile(real, 0.01, 5.0, start=s, end=e)
    lv = r.levels
    np.testing.assert_allclose(lv["first_volume"] + lv["second_volume"], lv["volume"], rtol=0, atol=1e-9)
    assert (lv["first_trades"] + lv["second_trades"]).tolist() == lv["trades"].tolist()
    mid = split_time(s, e)
    for half, (a, z) in (("first", (s, mid)), ("second", (mid, e))):
        v = volume_profile(real, 0.01, 5.0, start=a, end=z)
        h = r.to_dict()[half]
        assert (h["poc"], h["vah"], h["val"], h["trades"]) == (v.poc, v.vah, v.val, v.trades)
        assert h["total_volume"] == pytest.approx(float(real.qty[(real.time >= a) & (real.time < z)].sum()), rel=1e-12)


# -- percentiles --------------------------------------------------------------------------
def test_percentiles_known():
    # volumes 1, 1, 2 (total 4): cumulative 1, 2, 4 -> 0.25 row 0, 0.5 row 1 (reached exactly), 0.75 row 2
    b = tb([(0, 0.0, 1.0, True), (1, 1.0, 1.0, True), (2, 2.0, 2.0, True)])  # one-sided: all taker sells
    assert percentile_levels(b, 1.0, 1.0) == {0.25: 0.5, 0.5: 1.5, 0.75: 2.5}
    assert percentile_levels(b, 1.0, 1.0, percentiles=[0.0, 1.0, 0.51]) == {0.0: 0.5, 1.0: 2.5, 0.51: 2.5}
    assert percentile_prices(volume_profile(b, 1.0, 1.0), [0.5]) == {0.5: 1.5}
    with pytest.raises(ValueError):
        percentile_levels(b, 1.0, 1.0, percentiles=[1.5])


def test_median_line_is_the_volume_weighted_median_row(real):
    df = real.to_frame()
    df["row"] = np.floor(np.rint(df["price"] / 0.01) / 100).astype(int)  # row size 1.0
    per_row = df.groupby("row")["qty"].sum().sort_index()
    cum = per_row.cumsum()
    median_row = cum.index[np.argmax(cum.to_numpy() >= per_row.sum() / 2 - 1e-9)]
    assert percentile_levels(real, 0.01, 1.0)[0.5] == median_row + 0.5


# -- developing ---------------------------------------------------------------------------
def test_developing_hand_made():
    # candle 0: row 0 x2, row 1 x1 -> POC row 0; candle 1 adds row 1 x5 -> POC row 1.
    b = tb([(0, 0.0, 2.0, False), (10, 1.0, 1.0, False), (60_500, 1.0, 5.0, False), (180_000, 3.0, 1.0, False)])
    d = developing_levels(b, 1.0, 1.0, candle_ms=60_000).developing
    assert d["time"].tolist() == [0, 60_000, 180_000]
    assert d["close_time"].tolist() == [60_000, 120_000, 180_001]
    assert d["poc"].tolist() == [0.5, 1.5, 1.5]
    assert d["total_volume"].tolist() == [3.0, 8.0, 9.0]
    assert d["trades"].tolist() == [2, 3, 4]


def test_developing_equals_profile_of_each_prefix(real):
    s, e = int(real.time[20_000]) + 17, int(real.time[20_000]) + 2 * 3_600_000
    dev = developing_levels(real, 0.01, 2.5, candle_ms=300_000, start=s, end=e, value_area_method="dual")
    assert len(dev.developing) >= 20
    for rec in dev.developing.to_dict("records"):
        p = volume_profile(real, 0.01, 2.5, start=s, end=rec["close_time"], value_area_method="dual")
        assert (rec["poc"], rec["vah"], rec["val"], rec["trades"]) == (p.poc, p.vah, p.val, p.trades)
    last = dev.developing.iloc[-1]
    assert (last["poc"], last["vah"], last["val"]) == (dev.profile.poc, dev.profile.vah, dev.profile.val)
    assert dev.to_dict()["developing"][0]["time"] == (s // 300_000) * 300_000


# -- totals across kinds ------------------------------------------------------------------
def test_totals_conserved_across_kinds(real):
    s, e = int(real.time[3_000]), int(real.time[60_000])
    store = ProfileStore(0.01)
    store.update(real)
    results = [
        volume_profile(real, 0.01, 5.0, start=s, end=e),
        recency_profile(real, 0.01, 5.0, half_life_s=300, start=s, end=e),
        tpo_profile(real, 0.01, 5.0, start=s, end=e),
        split_profile(real, 0.01, 5.0, start=s, end=e),
        store.profile(s, e, 5.0, kind="tpo"),
    ]
    want = real.qty[(real.time >= s) & (real.time < e)].sum()
    base = results[0].levels[["price_low", "price_high", "volume", "buy", "sell", "delta", "trades"]]
    for r in results:
        assert r.total_volume == pytest.approx(float(want), rel=1e-12)
        pd.testing.assert_frame_equal(r.levels[base.columns], base)
        assert r.trades == int(((real.time >= s) & (real.time < e)).sum())


def test_dual_method_for_every_kind(real):
    for f in (volume_profile, recency_profile, tpo_profile, split_profile):
        single = f(real, 0.01, 5.0)
        dual = f(real, 0.01, 5.0, value_area_method="dual")
        assert single.poc == dual.poc
        assert dual.value_area_method == "dual"
        assert dual.val <= dual.poc <= dual.vah
