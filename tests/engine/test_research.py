"""engine.research.LiveData against a real Valkey holding real trades written in flowlens's layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from compute.batch import TradeBatch
from compute.candles import CandleAccumulator, candles
from compute.footprint import footprint
from compute.levels import developing_levels
from compute.profile import volume_profile
from compute.split import split_profile
from compute.timeweighted import recency_profile, tpo_profile
from engine.research import LiveData
from feeds.history import HISTORY_DTYPES, frame_from_batches
from feeds.readers import read_trades
from store.redis_store import CANDLE_COLUMNS, RedisStore, connect

SYM = "BTCUSDT"


@pytest.fixture(scope="module")
def trades(recording_path) -> TradeBatch:
    return read_trades(recording_path)


class Writer:
    """Appends real trades batch by batch, as the ingest service does (batch + touched candles + meta)."""

    def __init__(self, url: str, trades: TradeBatch):
        self.store = RedisStore(connect(url))
        self.trades = trades
        self.acc = CandleAccumulator(60_000)
        self.pos = 0

    async def write(self, n: int, batch_size: int = 700) -> None:
        end = min(self.pos + n, len(self.trades))
        await self.store.register_symbol(SYM)
        while self.pos < end:
            b = self.trades.take(slice(self.pos, min(self.pos + batch_size, end)))
            await self.store.append(b, self.acc.update(b), {"tick": "0.01", "source": "test"})
            self.pos += len(b)

    @property
    def written(self) -> TradeBatch:
        return self.trades.take(slice(0, self.pos))


@pytest.fixture
async def writer(valkey_url, trades):
    w = Writer(valkey_url, trades)
    await w.write(20_000)
    yield w
    await w.store.r.aclose()


@pytest.fixture
def live(valkey_url):
    with LiveData(valkey_url) as ld:
        yield ld


async def test_trades_and_candles_come_back_as_written(writer, live):
    assert live.symbols() == [SYM]
    assert float(live.meta(SYM)["tick"]) == 0.01
    got = live.trades(SYM)
    for c, d in HISTORY_DTYPES.items():
        assert got[c].dtype == d
    pd.testing.assert_frame_equal(got, frame_from_batches([writer.written], [SYM]), check_exact=True)
    c = live.candles(SYM)
    assert tuple(c.columns) == CANDLE_COLUMNS
    want = candles(writer.written)
    np.testing.assert_array_equal(c["time"], want["time"])
    np.testing.assert_array_equal(c[["open", "high", "low", "close"]], want[["open", "high", "low", "close"]])
    np.testing.assert_array_equal(c["trades"], want["trades"])
    np.testing.assert_allclose(c[["volume", "buy_volume", "sell_volume"]], want[["volume", "buy_volume", "sell_volume"]],
                               rtol=1e-12)


async def test_since_and_until_cut_exactly_at_the_trade(writer, live):
    w = writer.written
    s, e = int(w.time[3_333]) + 1, int(w.time[15_000])
    got = live.trades(SYM, since=s, until=e)
    pd.testing.assert_frame_equal(got, frame_from_batches([w.time_slice(s, e)], [SYM]), check_exact=True)
    last_hour = live.trades(SYM, since=-600_000)  # the last 10 minutes before the newest trade
    assert int(last_hour["time"].min()) >= int(w.time[-1]) + 1 - 600_000
    assert len(last_hour) == int((w.time >= int(w.time[-1]) + 1 - 600_000).sum())
    iso = pd.Timestamp(s, unit="ms", tz="UTC").isoformat()
    assert len(live.trades(SYM, since=iso)) == int((w.time >= s).sum())
    c = live.candles(SYM, since=-5 * 60_000)
    assert len(c) == 5


@pytest.mark.parametrize("kind,fn,kw", [
    ("volume", volume_profile, {}), ("recency", recency_profile, {"half_life_s": 300}),
    ("tpo", tpo_profile, {}), ("split", split_profile, {"value_area": 0.8}),
    ("developing", developing_levels, {"candle_ms": 300_000}),
])
async def test_profiles_are_computed_with_compute_on_the_pulled_trades(writer, live, kind, fn, kw):
    w = writer.written
    s = int(w.time[2_000])
    got = live.profile(SYM, kind, since=s, row_size=0.5, **kw)
    want = fn(w.time_slice(s, None), 0.01, 0.5, **kw)
    assert got.to_dict() == want.to_dict()


async def test_default_row_size_is_the_automatic_one_and_footprint_works(writer, live):
    w = writer.written
    from compute.grid import auto_row_size

    vp = live.profile(SYM)
    assert vp.row_size == auto_row_size(float(w.price.min()), float(w.price.max()), 0.01)
    assert vp.total_volume == pytest.approx(float(w.qty.sum()), rel=1e-12)
    fp = live.footprint(SYM, row_size=1.0, interval_ms=300_000)
    assert fp.to_dict() == footprint(w, 0.01, 1.0, interval_ms=300_000).to_dict()


async def test_coroutines_from_another_loop_and_growth_between_pulls(writer, live):
    c1 = await live.acandles(SYM)
    t1 = await live.atrades(SYM)
    p1 = await live.aprofile(SYM, "volume", row_size=1.0)
    await writer.write(8_000)  # the "server" goes on ingesting
    c2, t2 = await live.acandles(SYM), await live.atrades(SYM)
    p2 = await live.aprofile(SYM, "volume", row_size=1.0)
    assert len(t2) == len(t1) + 8_000 and len(c2) > len(c1)
    assert p2.trades == p1.trades + 8_000
    assert p2.to_dict() == volume_profile(writer.written, 0.01, 1.0).to_dict()
    fp = await live.afootprint(SYM, row_size=1.0)
    assert fp.summary["trades"] == len(t2)
    assert await live.asymbols() == [SYM]
    assert (await live.ameta(SYM))["source"] == "test"


async def test_errors_are_clear(writer, live):
    with pytest.raises(ValueError, match="kind"):
        live.profile(SYM, "vwap")
    with pytest.raises(ValueError, match="no trades in range"):
        live.profile("ETHUSDT")
    assert len(live.trades("ETHUSDT")) == 0 and len(live.candles("ETHUSDT")) == 0
    live.close()
    live.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        live.candles(SYM)
