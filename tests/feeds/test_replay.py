"""feeds.replay.ReplaySource on the bundled real recording: order, batch spans, loop shift, pacing.

Assertions are on exchange-time spans and order; the only wall-clock checks are
loose lower bounds (a replay at speed S cannot finish X ms of exchange time in
less than X / S ms, minus the documented ``min_sleep`` early-release margin).
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compute.batch import TradeBatch
from feeds.replay import ReplaySource, loop_id_span, loop_period_ms, loop_shift

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"
SHARED = ROOT.parent / "shared" / "data" / "binance"


@pytest.fixture(scope="module")
def real() -> TradeBatch:
    """The bundled real trades, parsed independently with pandas (sorted by time then id)."""
    df = pd.read_csv(BUNDLED).sort_values(["time", "id"], kind="stable")
    return TradeBatch(df["time"].to_numpy(), df["price"].to_numpy(), df["qty"].to_numpy(),
                      df["is_buyer_maker"].to_numpy(), df["id"].to_numpy(), "BTCUSDT")


def _excerpt(real: TradeBatch, minutes: float) -> TradeBatch:
    return real.time_slice(None, int(real.time[0] + minutes * 60_000))


async def _collect_pass(src: ReplaySource) -> list[TradeBatch]:
    """Everything up to the end of the current pass (loops == 0)."""
    out = []
    while src.loops == 0:
        out.extend(await src.next_due())
    return out


def _check_windows(batches, max_ms=100):
    for b in batches:
        assert len(b) > 0
        assert np.all(np.diff(b.time) >= 0)
        # one aligned window [k*max_ms, (k+1)*max_ms): hence a span < max_ms
        assert b.time[0] // max_ms == b.time[-1] // max_ms
        assert b.time[-1] - b.time[0] < max_ms
    starts = np.array([b.time[0] // max_ms for b in batches])
    assert np.all(np.diff(starts) > 0), "windows strictly increase, none emitted twice"


def test_describe_name_symbol_and_runtime_speed():
    src = ReplaySource(BUNDLED, speed=10)
    assert src.name == "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"
    assert src.symbol == "BTCUSDT"
    assert src.describe() == "REPLAY BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz at 10x"
    src.speed = 2.5
    assert src.describe().endswith("at 2.5x")
    with pytest.raises(ValueError):
        src.speed = 0


async def test_a_speed_change_keeps_the_replay_position(real):
    """Slowing down mid-replay applies the new speed from the current position, not from the start."""
    src = ReplaySource(real, speed=1e6, loop=False)
    first = await src.__anext__()
    while src.status()["position_ms"] - int(first.time[0]) < 60_000:  # a minute of exchange time, at once
        await src.__anext__()
    pos = src.status()["position_ms"]
    src.speed = 1.0  # re-anchored here: the next 100 ms window is due within ~0.1 s, not a minute later
    t0 = time.monotonic()
    nxt = await asyncio.wait_for(src.__anext__(), 5.0)
    assert time.monotonic() - t0 < 2.0
    assert int(nxt.time[0]) >= pos


async def test_one_full_pass_emits_every_trade_once_in_exchange_time_order(real):
    src = ReplaySource(BUNDLED, speed=1e6, loop=False)
    batches = []
    while True:
        try:
            batches.extend(await src.next_due())
        except StopAsyncIteration:
            break
    _check_windows(batches)
    allb = TradeBatch.concat(batches)
    assert len(allb) == 69_239  # PROVENANCE.md
    for col in ("time", "price", "qty", "is_buyer_maker", "trade_id"):
        np.testing.assert_array_equal(getattr(allb, col), getattr(real, col))
    # the number of batches is the number of distinct 100 ms windows holding a trade
    assert len(batches) == len(np.unique(real.time // 100))


async def test_next_due_groups_are_whole_windows_in_order(real):
    src = ReplaySource(_excerpt(real, 30), speed=1e6, loop=False)
    groups = []
    while True:
        try:
            groups.append(await src.next_due())
        except StopAsyncIteration:
            break
    assert all(1 <= len(g) <= src.max_group for g in groups)
    assert any(len(g) > 1 for g in groups), "at 1e6x several windows are due per turn"
    flat = [b for g in groups for b in g]
    _check_windows(flat)
    np.testing.assert_array_equal(TradeBatch.concat(flat).trade_id, _excerpt(real, 30).trade_id)


def test_loop_period_of_the_bundled_recording_is_721_minutes(real):
    # PROVENANCE: 00:00:02.111 -> 11:59:59.748, span 43 197 637 ms = 719.96 min -> 720 whole minutes + 1
    assert int(real.time[-1] - real.time[0]) == 43_197_637
    assert loop_period_ms(real) == 721 * 60_000
    assert loop_id_span(real) == 42447182 - 42377944 + 1


async def test_loop_shift_times_and_ids_and_candle_alignment(real):
    part = _excerpt(real, 3.5)  # real trades of the first 3.5 minutes
    span = int(part.time[-1] - part.time[0])
    period = (math.ceil(span / 60_000) + 1) * 60_000  # independent derivation of the rule
    ids = int(part.trade_id[-1] - part.trade_id[0] + 1)
    src = ReplaySource(part, speed=1e6, loop=True)
    assert (src.period_ms, src.id_span) == (period, ids)
    seen = []
    while src.loops < 3:
        seen.extend(await src.next_due())
    _check_windows(seen)
    got = TradeBatch.concat(seen)
    n = len(part)
    for k in range(3):
        chunk = got.take(slice(k * n, (k + 1) * n))
        np.testing.assert_array_equal(chunk.time, part.time + k * period)
        np.testing.assert_array_equal(chunk.trade_id, part.trade_id + k * ids)
        np.testing.assert_array_equal(chunk.price, part.price)
        np.testing.assert_array_equal(chunk.is_buyer_maker, part.is_buyer_maker)
        shifted = loop_shift(part, k)
        np.testing.assert_array_equal(chunk.time, shifted.time)
        np.testing.assert_array_equal(chunk.trade_id, shifted.trade_id)
    assert np.all(np.diff(got.time) >= 0) and np.all(np.diff(got.trade_id) > 0)
    # 1-minute candle boundaries do not move: same minute offsets in every loop
    assert np.array_equal((got.time[n : 2 * n] % 60_000), part.time % 60_000)


async def test_pacing_lower_bound_and_exchange_span(real):
    speed = 200.0
    src = ReplaySource(real, speed=speed, loop=False)
    t0 = time.monotonic()
    first = last = None
    n = 0
    async for b in src:
        first = b.time[0] if first is None else first
        last = b.time[-1]
        n += 1
        if last - first >= 20_000:
            break
    elapsed = time.monotonic() - t0
    ex_span = (last // 100 + 1) * 100 - (first // 100) * 100  # window-aligned exchange span emitted
    assert elapsed >= ex_span / speed / 1000 - src.min_sleep - 0.001
    assert n > 1


async def test_speed_change_keeps_the_position(real):
    part = _excerpt(real, 2)
    src = ReplaySource(part, speed=1000, loop=False)
    got = [await src.__anext__() for _ in range(5)]
    src.speed = 1e6
    async for b in src:
        got.append(b)
    _check_windows(got)
    np.testing.assert_array_equal(TradeBatch.concat(got).trade_id, part.trade_id)


async def test_late_consumer_gets_the_backlog_at_once(real):
    """A consumer that stalls is not left behind: due batches come without sleeping."""
    src = ReplaySource(_excerpt(real, 5), speed=100, loop=False)
    await src.__anext__()
    await asyncio.sleep(0.3)  # 30 s of exchange time become due meanwhile
    group = await src.next_due()
    covered = group[-1].time[-1] - group[0].time[0]
    assert covered >= 20_000


async def test_start_at(real):
    start = int(real.time[0]) + 3_600_000 + 37  # an hour in, mid-window
    src = ReplaySource(BUNDLED, speed=1e6, start_at=start, loop=True)
    b = await src.__anext__()
    i0 = int(np.searchsorted(real.time, start))
    assert b.time[0] == real.time[i0] and b.trade_id[0] == real.trade_id[i0]
    assert b.time[0] >= start
    with pytest.raises(ValueError, match="after the last trade"):
        ReplaySource(BUNDLED, start_at=int(real.time[-1]) + 1)


async def test_multi_symbol_recording_needs_a_symbol():
    path = SHARED / "ws-raw-usdm-alts-2021-07-22.cryptofeed.txt.gz"
    with pytest.raises(ValueError, match="several symbols"):
        ReplaySource(path)
    src = ReplaySource(path, symbol="CTKUSDT", speed=1e6, loop=False)
    out = [b async for b in src]
    assert sum(len(b) for b in out) == 38  # PROVENANCE: CTKUSDT 38 aggTrades
    assert src.describe() == "REPLAY ws-raw-usdm-alts-2021-07-22.cryptofeed.txt.gz at 1000000x"


def test_empty_source_is_an_error():
    with pytest.raises(ValueError, match="no trades"):
        ReplaySource(TradeBatch.empty("BTCUSDT"))
