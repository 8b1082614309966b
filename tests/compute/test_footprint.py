"""Footprint candles: hand-made cases with known answers, and the real recording against the profile.

Hand-made cases use tick 1 and row size 1 (row = price) unless stated, candles of
one minute, and trades written as ``(second, price, qty, side)`` with side "b"
(taker buy, at ask) or "s" (taker sell, at bid).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from compute.batch import TradeBatch
from compute.candles import candles as ohlc_candles
from compute.footprint import QTY_DECIMALS, footprint, poc_rows
from compute.profile import poc_index, volume_profile
from compute.result import QTY_DECIMALS as PROFILE_QTY_DECIMALS
from feeds.readers import read_trades

T0 = 1_582_329_600_000  # 2020-02-22 00:00 UTC, a minute boundary
MIN = 60_000


def make(trades, ids=None) -> TradeBatch:
    """Batch from ``(ms offset, price, qty, "b"|"s")`` tuples; ids 1..N unless given."""
    t = np.array([T0 + x[0] for x in trades], dtype=np.int64)
    p = np.array([x[1] for x in trades], dtype=np.float64)
    q = np.array([x[2] for x in trades], dtype=np.float64)
    s = np.array([x[3] == "s" for x in trades], dtype=bool)
    i = np.arange(1, len(trades) + 1) if ids is None else np.asarray(ids)
    return TradeBatch(t, p, q, s, i, "TEST")


def cell(res, price_low, time=T0):
    """The cells row of one candle and row (exactly one must exist)."""
    c = res.cells
    sel = c[(c.time == time) & (c.price_low == price_low)]
    assert len(sel) == 1, sel
    return sel.iloc[0]


# -- cells ----------------------------------------------------------------------------------
def test_cells_bid_ask_delta_trades_and_dense_grid():
    # rows 100 and 102 traded, 101 empty but inside the candle's grid
    r = footprint(make([(0, 100, 1.5, "b"), (1, 100.4, 0.5, "s"), (2, 102, 2.0, "s"), (3, 102.9, 1.0, "s")]), 0.1, 1.0)
    assert list(r.cells.price_low) == [100.0, 101.0, 102.0]
    assert r.cells.price_low.dtype == np.float64 and footprint(make([(0, 7, 1, "b")]), 1, 1).cells.price_low.dtype == np.float64
    assert list(r.cells.price_high) == [101.0, 102.0, 103.0]
    assert list(r.cells.ask) == [1.5, 0.0, 0.0]
    assert list(r.cells.bid) == [0.5, 0.0, 3.0]
    assert list(r.cells.delta) == [1.0, 0.0, -3.0]
    assert list(r.cells.trades) == [2, 0, 2]
    assert list(r.cells.volume) == [2.0, 0.0, 3.0]


def test_candles_align_to_the_epoch_minute_and_report_ohlc():
    r = footprint(make([(59_999, 10, 1, "b"), (60_000, 12, 1, "s"), (61_000, 11, 2, "b"), (119_999, 13, 1, "s")]), 1, 1)
    c = r.candles
    assert list(c.time) == [T0, T0 + MIN]
    assert list(c.open) == [10, 12] and list(c.close) == [10, 13]
    assert list(c.high) == [10, 13] and list(c.low) == [10, 11]
    assert list(c.trades) == [1, 3]
    assert list(c.buy) == [1, 2] and list(c.sell) == [0, 2]


def test_delta_and_delta_pct():
    # buy 3, sell 1: delta 2, delta % = 2 / 4 * 100 = 50; second candle sells only: -100 %
    r = footprint(make([(0, 10, 3, "b"), (1, 11, 1, "s"), (MIN, 10, 0.25, "s")]), 1, 1)
    assert list(r.candles.delta) == [2.0, -0.25]
    assert list(r.candles.delta_pct) == [50.0, -100.0]
    assert list(r.candles.volume) == [4.0, 0.25]


def test_exact_sums_on_both_paths():
    # small quantities take the fast path (float sums rounded to 1e-8), huge ones the integer path;
    # both must give the decimal sums: 0.1 + 0.2 = 0.3 and 1e7 + 0.1 + (1e7 + 0.2) = 20000000.3
    small = footprint(make([(0, 10, 0.1, "b"), (1, 10, 0.2, "b"), (2, 10, 0.7, "s")]), 1, 1)
    assert small.cells.ask.iloc[0] == 0.3 and small.cells.bid.iloc[0] == 0.7 and small.cells.volume.iloc[0] == 1.0
    big = footprint(make([(0, 10, 1e7 + 0.1, "b"), (1, 10, 1e7 + 0.2, "b"), (2, 10, 0.3, "s")]), 1, 1)
    assert big.cells.ask.iloc[0] == 20_000_000.3 and big.cells.delta.iloc[0] == 20_000_000.0
    assert 0.1 + 0.2 != 0.3 and (1e7 + 0.1) + (1e7 + 0.2) != 20_000_000.3  # the plain float sums are off


# -- imbalances -----------------------------------------------------------------------------
def imb(trades, **kw):
    r = footprint(make(trades), 1, 1, **kw)
    c = r.cells.set_index("price_low")
    return set(c.index[c.buy_imbalance]), set(c.index[c.sell_imbalance])


def test_buy_imbalance_exactly_at_the_ratio_counts_just_below_does_not():
    assert imb([(0, 100, 1.0, "s"), (1, 101, 3.0, "b")]) == ({101}, set())
    assert imb([(0, 100, 1.0, "s"), (1, 101, 2.999, "b")]) == (set(), set())
    # decimal quantities: 0.3 against 0.1 is exactly 3x although 3 * 0.1 != 0.3 in binary
    assert imb([(0, 100, 0.1, "s"), (1, 101, 0.3, "b")]) == ({101}, set())
    assert imb([(0, 100, 0.1, "s"), (1, 101, 0.299, "b")]) == (set(), set())


def test_sell_imbalance_exactly_at_the_ratio_counts_just_below_does_not():
    # sell imbalance at P when bid[P] >= 3 * ask[P + 1]
    assert imb([(0, 100, 3.0, "s"), (1, 101, 1.0, "b")]) == (set(), {100})
    assert imb([(0, 100, 2.999, "s"), (1, 101, 1.0, "b")]) == (set(), set())
    assert imb([(0, 100, 0.6, "s"), (1, 101, 0.2, "b")]) == (set(), {100})


def test_ratio_is_configurable():
    t = [(0, 100, 1.0, "s"), (1, 101, 2.0, "b")]
    assert imb(t, imbalance_ratio=2.0) == ({101}, set())
    assert imb(t, imbalance_ratio=2.5) == (set(), set())
    # 1.1 read as the decimal 11/10: 1.1 against 1.0 is exactly at the ratio
    assert imb([(0, 100, 1.0, "s"), (1, 101, 1.1, "b")], imbalance_ratio=1.1) == ({101}, set())


def test_diagonal_not_horizontal():
    # ask and bid in the same row never compare: 9 asks over 1 bid at row 100 alone is no imbalance
    assert imb([(0, 100, 1.0, "s"), (1, 100, 9.0, "b")], ignore_zeros=False) == (set(), set())
    # the diagonal is ask[P+1] vs bid[P], not ask[P] vs bid[P+1]
    assert imb([(0, 100, 9.0, "b"), (1, 101, 1.0, "s")]) == (set(), set())


def test_ignore_zeros():
    # row 100 has only asks (bid 0), row 101 asks 5: buy imbalance only when zeros are not ignored
    t = [(0, 100, 1.0, "b"), (1, 101, 5.0, "b")]
    assert imb(t, ignore_zeros=True) == (set(), set())
    assert imb(t, ignore_zeros=False) == ({101}, set())
    # row 100 bids 2, row 101 bids only (ask 0): sell imbalance at 100 only when zeros are not ignored
    t = [(0, 100, 2.0, "s"), (1, 101, 1.0, "s")]
    assert imb(t, ignore_zeros=True) == (set(), set())
    assert imb(t, ignore_zeros=False) == (set(), {100})
    # an empty row inside the grid is a zero cell on both sides: bid 2 at 100 against ask 0 at 101
    # and ask 1 at 102 against bid 0 at 101
    t = [(0, 100, 2.0, "s"), (1, 102, 1.0, "b")]
    assert imb(t, ignore_zeros=False) == ({102}, {100})
    assert imb(t, ignore_zeros=True) == (set(), set())


def test_candle_edges_are_not_compared_with_rows_outside_the_candle():
    # one row only: nothing below or above it inside the candle
    assert imb([(0, 100, 5.0, "b"), (1, 100, 5.0, "s")], ignore_zeros=False) == (set(), set())
    # the neighbouring row traded in another candle does not count
    assert imb([(0, 100, 1.0, "s"), (MIN, 101, 9.0, "b")], ignore_zeros=False) == (set(), set())


def test_min_volume():
    t = [(0, 100, 1.0, "s"), (1, 101, 3.0, "b")]
    assert imb(t, min_volume=3.0) == ({101}, set())
    assert imb(t, min_volume=3.001) == (set(), set())
    t = [(0, 100, 0.3, "s"), (1, 101, 0.1, "b")]
    assert imb(t, min_volume=0.3) == (set(), {100})
    assert imb(t, min_volume=0.31) == (set(), set())


# -- stacked imbalances ---------------------------------------------------------------------
def ladder(rows, start_row=100, t0=0):
    """Bid 1 at each row and ask 3 at the ``rows`` rows above the first: buy imbalances at each of those."""
    out = [(t0, start_row + k, 1.0, "s") for k in range(rows + 1)]
    out += [(t0 + 1, start_row + k, 3.0, "b") for k in range(1, rows + 1)]
    return out


def test_stacked_exactly_n_rows_is_a_zone():
    r = footprint(make(ladder(3)), 1, 1)
    assert list(r.cells.buy_imbalance) == [False, True, True, True]
    assert r.stacked.to_dict("records") == [
        {"time": T0, "side": "buy", "price_low": 101.0, "price_high": 104.0, "rows": 3}
    ]


def test_stacked_n_minus_one_rows_is_not_a_zone():
    r = footprint(make(ladder(2)), 1, 1)
    assert int(r.cells.buy_imbalance.sum()) == 2
    assert r.stacked.empty
    # configurable N
    assert len(footprint(make(ladder(2)), 1, 1, stacked_min=2).stacked) == 1


def test_stacked_sell_zone_and_longer_run():
    # bid 3 at rows 100..103, ask 1 at rows 101..104: sell imbalances at 100..103 (4 rows)
    t = [(0, 100 + k, 3.0, "s") for k in range(4)] + [(1, 101 + k, 1.0, "b") for k in range(4)]
    r = footprint(make(t), 1, 1)
    assert r.stacked.to_dict("records") == [
        {"time": T0, "side": "sell", "price_low": 100.0, "price_high": 104.0, "rows": 4}
    ]


def test_stacked_runs_do_not_join_across_candles():
    # two candles each with 2 buy imbalances; adjacent in the cell table but in different candles
    t = ladder(2, start_row=100) + ladder(2, start_row=103, t0=MIN)
    r = footprint(make(t), 1, 1)
    assert int(r.cells.buy_imbalance.sum()) == 4
    assert r.stacked.empty
    assert len(footprint(make(t), 1, 1, stacked_min=2).stacked) == 2


# -- POC ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("vols", "poc_row"),
    [
        ([1, 5, 2], 101),  # single max
        ([2, 1, 2, 1, 2], 102),  # three-way tie: the middle one
        ([2, 1, 1, 2], 100),  # equidistant tie: the lower one
        ([1, 2, 2, 1], 101),  # equidistant around the middle: the lower one
        ([3, 0, 0, 0, 3, 1], 104),  # tie nearer the middle (2.5) wins: 104 is 1.5 away, 100 is 2.5
    ],
)
def test_candle_poc_ties(vols, poc_row):
    t = [(i, 100 + i, float(v), "b") for i, v in enumerate(vols) if v]
    r = footprint(make(t), 1, 1)
    assert r.candles.poc.iloc[0] == poc_row + 0.5  # middle of the row


def test_poc_rows_matches_poc_index_on_random_groups():
    rng = np.random.default_rng(7)
    spans = rng.integers(1, 9, size=400)
    vol = rng.integers(0, 4, size=int(spans.sum()))  # small ints: many ties
    offsets = np.concatenate(([0], np.cumsum(spans)[:-1]))
    got = poc_rows(vol, offsets, spans)
    want = [poc_index(vol[o : o + s]) for o, s in zip(offsets, spans, strict=True)]
    assert list(got) == want


# -- CVD and gaps ---------------------------------------------------------------------------
def test_cvd_carries_over_consecutive_candles():
    r = footprint(make([(0, 10, 2, "b"), (MIN, 10, 1, "s"), (2 * MIN, 10, 4, "b")]), 1, 1)
    assert list(r.candles.cvd) == [2.0, 1.0, 5.0]
    assert list(r.candles.cvd_segment) == [0, 0, 0]
    assert not r.candles.gap_before.any()


def test_cvd_restarts_and_is_marked_at_a_missing_candle():
    # minute 2 has no trade: the third candle starts a new segment at its own delta
    r = footprint(make([(0, 10, 2, "b"), (MIN, 10, 1, "s"), (3 * MIN, 10, 4, "b"), (4 * MIN, 10, 1, "b")]), 1, 1)
    assert list(r.candles.gap_before) == [False, False, True, False]
    assert list(r.candles.cvd_segment) == [0, 0, 1, 1]
    assert list(r.candles.cvd) == [2.0, 1.0, 4.0, 5.0]
    assert r.summary["gaps"] == 1


def test_gap_ms_threshold_on_trade_silence():
    # last trade of minute 0 at 59 s, first of minute 2 at 120.5 s: 61.5 s of silence
    t = [(59_000, 10, 1, "b"), (120_500, 10, 1, "b")]
    assert list(footprint(make(t), 1, 1).candles.gap_before) == [False, True]  # empty minute 1
    assert list(footprint(make(t), 1, 1, gap_ms=61_500).candles.gap_before) == [False, False]
    assert list(footprint(make(t), 1, 1, gap_ms=61_499).candles.gap_before) == [False, True]


def test_trade_id_gap_restarts_cvd():
    t = [(0, 10, 1, "b"), (MIN, 10, 1, "b"), (MIN + 1, 10, 1, "b"), (2 * MIN, 10, 1, "b")]
    r = footprint(make(t, ids=[1, 2, 7, 8]), 1, 1)  # ids 3..6 missing, inside minute 1
    assert r.ids_checked
    assert list(r.candles.gap_before) == [False, True, False]
    assert list(r.candles.missing_ids) == [0, 4, 0]
    assert list(r.candles.cvd) == [1.0, 2.0, 3.0]
    # a break exactly at a candle boundary marks the later candle
    r = footprint(make(t, ids=[1, 5, 6, 7]), 1, 1)
    assert list(r.candles.gap_before) == [False, True, False]
    assert list(r.candles.missing_ids) == [0, 3, 0]
    # checking switched off
    r = footprint(make(t, ids=[1, 2, 7, 8]), 1, 1, check_ids=False)
    assert not r.ids_checked and not r.candles.gap_before.any()


def test_ids_that_are_not_a_sequence_are_not_checked_by_default():
    t = [(0, 10, 1, "b"), (MIN, 10, 1, "b")]
    assert not footprint(make(t, ids=[0, 0]), 1, 1).ids_checked
    assert not footprint(make(t, ids=[5, 3]), 1, 1).ids_checked
    df = make(t).to_frame().drop(columns="trade_id")
    r = footprint(df, 1, 1)
    assert not r.ids_checked and not r.candles.gap_before.any()


# -- input handling -------------------------------------------------------------------------
def test_unsorted_input_and_dataframe_input_give_the_same_result():
    t = [(5, 100, 1.0, "s"), (MIN + 3, 102, 3.0, "b"), (1, 101, 3.0, "b"), (MIN, 101, 1.0, "s"), (2, 100, 0.5, "b")]
    b = make(t)
    order = np.argsort(b.time, kind="stable")
    a = footprint(b, 1, 1)
    s = footprint(b.take(order), 1, 1, check_ids=False)
    d = footprint(b.to_frame(), 1, 1, check_ids=False)
    for x in (s, d):
        pd.testing.assert_frame_equal(a.cells, x.cells)
        pd.testing.assert_frame_equal(a.candles, x.candles)


def test_start_end_select_half_open_range():
    b = make([(0, 10, 1, "b"), (MIN, 10, 2, "b"), (2 * MIN, 10, 4, "b")])
    r = footprint(b, 1, 1, start=T0 + MIN, end=T0 + 2 * MIN)
    assert list(r.candles.volume) == [2.0]


def test_bad_input_raises_clear_errors():
    b = make([(0, 10, 1, "b")])
    with pytest.raises(ValueError, match="whole number of ticks"):
        footprint(b, 0.01, 0.015)
    with pytest.raises(ValueError, match="no trades in range"):
        footprint(b, 1, 1, start=T0 + MIN)
    with pytest.raises(ValueError, match="imbalance_ratio"):
        footprint(b, 1, 1, imbalance_ratio=0.5)
    with pytest.raises(ValueError, match="stacked_min"):
        footprint(b, 1, 1, stacked_min=0)
    with pytest.raises(ValueError, match="quantities"):
        footprint(make([(0, 10, -1, "b")]), 1, 1)
    with pytest.raises(ValueError, match="prices must be finite"):
        footprint(make([(0, float("nan"), 1, "b")]), 1, 1)
    with pytest.raises(TypeError):
        footprint([1, 2, 3], 1, 1)


def test_to_dict_is_strict_json():
    r = footprint(make(ladder(3) + [(MIN * 2, 100, 1, "s")]), 1, 1)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["stacked"] == [{"time": T0, "side": "buy", "price_low": 101.0, "price_high": 104.0, "rows": 3}]
    assert len(d["cells"]) == len(r.cells) and len(d["candles"]) == 2
    assert d["candles"][1]["gap_before"] is True


# -- the real recording ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(recording_path):
    return read_trades(recording_path)


def test_qty_decimals_agree_with_the_profile():
    assert QTY_DECIMALS == PROFILE_QTY_DECIMALS


@pytest.mark.parametrize("row_size", [0.01, 0.5, 5.0])
def test_footprint_cells_add_up_to_the_volume_profile(real, row_size):
    fp = footprint(real, 0.01, row_size)
    vp = volume_profile(real, 0.01, row_size)
    # both sum exact integer quantities: equal, not just close
    pd.testing.assert_frame_equal(fp.levels, vp.levels[list(fp.levels.columns)])
    assert fp.summary["total_volume"] == vp.total_volume
    assert fp.summary["buy_volume"] == vp.buy_volume and fp.summary["sell_volume"] == vp.sell_volume
    assert fp.summary["poc"] == vp.poc
    assert int(fp.cells.trades.sum()) == len(real)


def test_every_candle_matches_its_own_profile_and_the_candle_module(real):
    fp = footprint(real, 0.01, 5.0)
    c = fp.candles
    ref = ohlc_candles(real, 60_000)
    for col in ("time", "open", "high", "low", "close", "trades"):
        assert list(c[col]) == list(ref[col]), col
    np.testing.assert_allclose(c.volume, ref.volume, rtol=1e-12)
    np.testing.assert_allclose(c.buy, ref.buy_volume, rtol=1e-12)
    # POC of each candle = the volume profile's POC of that candle's trades, for a sample of candles
    for i in range(0, len(c), 37):
        t = int(c.time.iloc[i])
        vp = volume_profile(real, 0.01, 5.0, start=t, end=t + 60_000)
        assert c.poc.iloc[i] == vp.poc, t
        cc = fp.cells[fp.cells.time == t]
        assert list(cc.volume) == list(vp.volume)


def test_real_recording_cvd_has_no_gap_and_ends_at_total_delta(real):
    fp = footprint(real, 0.01, 5.0)
    assert fp.ids_checked and fp.summary["gaps"] == 0
    assert fp.candles.cvd.iloc[-1] == pytest.approx(fp.summary["buy_volume"] - fp.summary["sell_volume"], abs=1e-6)
    np.testing.assert_allclose(fp.candles.cvd, np.cumsum(fp.candles.delta), atol=1e-6)


def test_real_recording_with_a_hole_restarts_cvd_there(real):
    # drop 3 minutes of real trades (10:00-10:03 UTC) and 5 trades inside the 11:00 minute
    t = real.time
    hole = (t >= T0 + 600 * MIN) & (t < T0 + 603 * MIN)
    inner = np.flatnonzero(t >= T0 + 660 * MIN)[10:15]
    assert t[inner[-1] + 1] < T0 + 661 * MIN  # the 5 trades and their neighbours lie inside that minute
    keep = ~hole
    keep[inner] = False
    fp = footprint(real.take(keep), 0.01, 5.0)
    c = fp.candles.set_index("time")
    marked = list(c.index[c.gap_before])
    assert marked == [T0 + 603 * MIN, T0 + 660 * MIN]
    assert c.missing_ids[T0 + 603 * MIN] == int(hole.sum())
    assert c.missing_ids[T0 + 660 * MIN] == 5
    # each segment's CVD is the running sum of its own deltas only
    for _, seg in fp.candles.groupby("cvd_segment"):
        np.testing.assert_allclose(seg.cvd, np.cumsum(seg.delta), atol=1e-6)
    # imbalance flags are consistent with the cells, recomputed here row pair by row pair for one candle
    c0 = fp.cells[fp.cells.time == T0 + 5 * MIN].reset_index(drop=True)
    assert len(c0) >= 3
    ask = [round(x * 1e8) for x in c0.ask]
    bid = [round(x * 1e8) for x in c0.bid]
    assert not c0.buy_imbalance.iloc[0] and not c0.sell_imbalance.iloc[-1]
    for j in range(len(c0) - 1):
        assert c0.buy_imbalance.iloc[j + 1] == (ask[j + 1] > 0 and bid[j] > 0 and ask[j + 1] >= 3 * bid[j])
        assert c0.sell_imbalance.iloc[j] == (bid[j] > 0 and ask[j + 1] > 0 and bid[j] >= 3 * ask[j + 1])
