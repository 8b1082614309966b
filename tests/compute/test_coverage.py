"""Coverage of a set of real trades: id range, count, gaps found exactly, a hash that tells trades apart."""

from __future__ import annotations

import numpy as np
import pytest

from compute.coverage import MAX_GAPS_LISTED, coverage
from feeds.readers import read_trades


@pytest.fixture(scope="module")
def rec(recording_path):
    return read_trades(recording_path)


def test_the_recording_is_complete_and_its_hash_is_stable(rec):
    c = coverage(rec)
    assert (c.first_id, c.last_id, c.trades) == (int(rec.trade_id[0]), int(rec.trade_id[-1]), len(rec))
    assert c.complete and c.missing == 0 and c.gaps == [] and len(c.sha256) == 64
    shuffled = rec.take(np.random.default_rng(7).permutation(len(rec)))
    assert coverage(shuffled).sha256 == c.sha256  # order does not matter: hashed in id order
    changed = rec.take(np.arange(len(rec)))
    changed.qty[100] += 0.001
    assert coverage(changed).sha256 != c.sha256
    assert c.summary().endswith("complete · " + c.sha256[:12])


def test_holes_are_found_exactly(rec):
    drop = np.r_[10:15, 500, 20_000:20_100]  # three holes: 5, 1 and 100 ids
    keep = np.setdiff1d(np.arange(len(rec)), drop)
    c = coverage(rec.take(keep))
    ids = rec.trade_id
    assert (c.gap_count, c.missing, c.trades) == (3, 106, len(rec) - 106) and not c.complete
    assert [g[:2] for g in c.gaps] == [(int(ids[10]), int(ids[14])), (int(ids[500]), int(ids[500])),
                                       (int(ids[20_000]), int(ids[20_099]))]
    assert c.gaps[0][2:] == (int(rec.time[9]), int(rec.time[15]))  # the trades around the hole
    assert "3 gaps, 106 ids missing" in c.summary()
    many = coverage(rec.take(np.arange(0, 200, 2)))  # 99 holes: all counted, the first ones listed
    assert many.gap_count == 99 and many.missing == 99 and len(many.gaps) == MAX_GAPS_LISTED


def test_no_trades():
    from compute.batch import TradeBatch

    c = coverage(TradeBatch.empty("BTCUSDT"))
    assert (c.first_id, c.trades, c.complete) == (None, 0, True) and c.summary() == "no trades"


def test_without_digest_the_ids_and_gaps_alone(rec):
    c = coverage(rec.take(np.r_[0:100, 105:300]), digest=False)
    assert c.sha256 == "" and c.gap_count == 1 and c.missing == 5 and c.summary().endswith("1 gap, 5 ids missing")


def test_rows_over_a_gap_are_those_between_the_prices_around_it(rec):
    from compute.coverage import rows_over_gaps
    from compute.profile import volume_profile

    s = int(rec.time[0])
    part = rec.time_slice(s, s + 1_800_000)
    i = int(np.argmax(np.abs(np.diff(part.price)) > 1.0))  # a hole where the price moved more than a dollar
    holed = part.take(np.r_[0:i + 1, i + 4:len(part)])  # ids i+1..i+3 lost: prices around it part.price[i], [i+4]
    c = coverage(holed)
    res = volume_profile(holed, 0.01, 0.5)
    marked = rows_over_gaps(res.price_low, res.price_high, c)
    lo, hi = sorted((float(part.price[i]), float(part.price[i + 4])))
    want = (res.price_high > lo) & (res.price_low <= hi)
    assert c.gap_count == 1 and marked.any() and np.array_equal(marked, want)
    assert not rows_over_gaps(res.price_low, res.price_high, coverage(part)).any()
