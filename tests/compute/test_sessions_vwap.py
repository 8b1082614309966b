"""Session profiles, naked POCs and VWAP on the real recording, against independent code.

* a session profile equals ``volume_profile`` of its interval (hypothesis over lengths, starts and row sizes);
* ``touched_at`` equals a brute-force scan of the later trades;
* VWAP and σ equal an exact computation in Fractions within 1e-9 relative (series and final values).
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute.profile import volume_profile
from compute.sessions import SESSION_LENGTHS, session_bounds, session_profiles
from compute.vwap import vwap
from feeds.readers import read_trades

TICK = 0.01


@pytest.fixture(scope="module")
def rec(recording_path):
    return read_trades(recording_path)


def utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def test_sessions_are_aligned_on_the_session_start_and_weeks_on_monday():
    t = int(dt.datetime(2020, 2, 22, 10, 0, tzinfo=dt.UTC).timestamp() * 1000)  # a Saturday
    b = session_bounds(t, t + 3 * 86_400_000, "1d", "08:30")
    assert [utc(int(s)).strftime("%a %H:%M") for s in b[:, 0]] == ["Sat 08:30", "Sun 08:30", "Mon 08:30", "Tue 08:30"]
    assert np.all(b[:, 1] - b[:, 0] == 86_400_000)
    w = session_bounds(t, t + 1, "1w")
    assert utc(int(w[0, 0])) == dt.datetime(2020, 2, 17, tzinfo=dt.UTC) and utc(int(w[0, 0])).weekday() == 0
    h4 = session_bounds(t, t + 86_400_000, "4h", "01:00")
    assert {utc(int(s)).hour for s in h4[:, 0]} == {1, 5, 9, 13, 17, 21}
    for bad in ({"session_length": "3h"}, {"session_start": "24:00"}, {"session_start": "7:00"}):
        with pytest.raises(ValueError, match="session_"):
            session_bounds(t, t + 1, **{"session_length": "1d", **bad})
    with pytest.raises(ValueError, match="'to' must be after 'from'"):
        session_bounds(t, t, "1d")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(length=st.sampled_from([k for k in SESSION_LENGTHS if k != "1w"]),
       start_min=st.integers(0, 24 * 60 - 1), ticks=st.sampled_from([1, 10, 50, 500]))
def test_each_session_profile_is_the_volume_profile_of_its_interval(rec, length, start_min, ticks):
    row = round(ticks * TICK, 2)
    hhmm = f"{start_min // 60:02d}:{start_min % 60:02d}"
    res = session_profiles(rec, TICK, row, session_length=length, session_start=hhmm)
    s, e = int(rec.time.min()), int(rec.time.max()) + 1
    bounds = session_bounds(s, e, length, hhmm)
    held = [(a, b) for a, b in bounds if np.any((rec.time >= a) & (rec.time < b))]
    assert [(x.start, x.end) for x in res.sessions] == [(int(a), int(b)) for a, b in held]
    for x in res.sessions:
        want = volume_profile(rec, TICK, row, start=max(x.start, s), end=min(x.end, e))
        assert x.profile.to_dict() == want.to_dict()
    assert sum(x.profile.trades for x in res.sessions) == len(rec)
    assert res.composite.to_dict() == volume_profile(rec, TICK, row, start=s, end=e).to_dict()
    prior = res.prior_levels()
    assert prior[0] is None and all(p["poc"] == x.profile.poc for p, x in zip(prior[1:], res.sessions, strict=False))


@pytest.mark.parametrize("length,row", [("1h", 5.0), ("2h", 1.0), ("4h", 0.5)])
def test_touched_at_is_the_first_later_trade_in_the_poc_row(rec, length, row):
    res = session_profiles(rec, TICK, row, session_length=length)
    rows = np.floor(np.rint(rec.price / TICK) / round(row / TICK)).astype(np.int64)
    order = np.argsort(rec.time, kind="stable")
    t, r = rec.time[order], rows[order]
    for x in res.sessions:
        poc_row = int(np.floor(np.rint(x.profile.poc / TICK) / round(row / TICK)))
        assert poc_row == x.poc_row
        later = np.flatnonzero((t >= x.end) & (r == poc_row))  # brute force: every later trade
        assert x.touched_at == (int(t[later[0]]) if len(later) else None)
    assert any(x.naked for x in res.sessions) and any(not x.naked for x in res.sessions)


def exact_vwap(batch, a: int, t: int) -> tuple[float, float]:
    sel = (batch.time >= a) & (batch.time < t)
    p = [Fraction(float(v)) for v in batch.price[sel]]
    q = [Fraction(float(v)) for v in batch.qty[sel]]
    sq = sum(q)
    v = sum(pi * qi for pi, qi in zip(p, q, strict=True)) / sq
    var = sum(qi * (pi - v) ** 2 for pi, qi in zip(p, q, strict=True)) / sq
    return float(v), float(var) ** 0.5


def test_anchored_vwap_and_sd_equal_exact_fractions(rec):
    a = int(rec.time[0]) + 17 * 60_000 + 123
    end = a + 3 * 3_600_000
    res = vwap(rec, start=a, end=end, bands=(1, 2.5), interval_ms=900_000)
    assert res.time[-1] == end and np.all(np.diff(res.time) > 0) and np.all(res.anchor == a)
    for i in (0, len(res.time) // 2, len(res.time) - 1):
        v, sd = exact_vwap(rec, a, int(res.time[i]))
        assert res.vwap[i] == pytest.approx(v, rel=1e-9) and res.sd[i] == pytest.approx(sd, rel=1e-9)
    v, sd = exact_vwap(rec, a, end)
    assert res.final["vwap"] == pytest.approx(v, rel=1e-9) and res.final["sd"] == pytest.approx(sd, rel=1e-9)
    assert res.final["bands"][2.5] == pytest.approx((v - 2.5 * sd, v + 2.5 * sd), rel=1e-9)
    assert res.final["trades"] == int(((rec.time >= a) & (rec.time < end)).sum())


def test_session_vwap_starts_afresh_at_each_session(rec):
    res = vwap(rec, session_length="2h", interval_ms=1_800_000)
    starts = np.unique(res.anchor)
    assert len(starts) == 6 and np.all(np.diff(starts[1:]) == 7_200_000)
    for a in starts[1:3]:
        i = int(np.flatnonzero(res.anchor == a)[-1])  # the session's last sample: its whole session
        v, sd = exact_vwap(rec, int(a), int(res.time[i]))
        assert res.vwap[i] == pytest.approx(v, rel=1e-9) and res.sd[i] == pytest.approx(sd, rel=1e-9)


def test_clear_errors(rec):
    s = int(rec.time[0])
    with pytest.raises(ValueError, match="'to' must be after 'from'"):
        vwap(rec, start=s, end=s)
    with pytest.raises(ValueError, match="no trades in range"):
        vwap(rec, start=s - 10_000, end=s - 1)
    with pytest.raises(ValueError, match="bands"):
        vwap(rec, bands=(0,))
    with pytest.raises(ValueError, match="no trades in range"):
        session_profiles(rec, TICK, 1.0, start=s - 10_000, end=s - 1)


def test_results_survive_the_shared_cache_codec(rec):
    from store.codec import decode, encode

    s = session_profiles(rec, TICK, 5.0, session_length="4h")
    assert decode(encode(s)).to_dict() == s.to_dict()
    v = vwap(rec, session_length="4h")
    assert decode(encode(v)).to_dict() == v.to_dict()


@pytest.mark.parametrize("length,start,row", [("1h", "00:00", 1.0), ("4h", "02:30", 5.0), ("1d", "00:00", 0.5)])
def test_the_stores_session_profiles_equal_recomputation(rec, length, start, row):
    from compute.incremental import ProfileStore
    from compute.sessions import sessions_from_store

    store = ProfileStore(TICK, symbol="BTCUSDT")
    store.update(rec)
    s, e = int(rec.time[0]) + 1234, int(rec.time[-1]) - 5678
    want = session_profiles(rec, TICK, row, start=s, end=e, session_length=length, session_start=start)
    got = sessions_from_store(store, s, e, rec.time_slice(s, e), row, session_length=length, session_start=start)
    assert got.to_dict() == want.to_dict()
    assert [x.profile.to_dict() for x in got.sessions] == [x.profile.to_dict() for x in want.sessions]
