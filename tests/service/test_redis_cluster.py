"""Redis Cluster for real: three Valkey masters in cluster mode on loopback, reached through redis-py's cluster
client (``redis+cluster://`` URL). Ingest, two serve.py processes answering /api/v1/vpvr identically, and the
ingest lease failing over from a killed process to the other, with every trade id once."""

from __future__ import annotations

import asyncio
import signal
import time

import numpy as np
import pytest
import redis
from test_service import get, start_servers, stop, stream_ids, wait_until

from feeds.readers import read_trades
from store import keys
from store.embedded import start_embedded_cluster


@pytest.fixture(scope="module")
def cluster():
    servers, url = start_embedded_cluster(3)
    try:
        yield servers, url
    finally:
        for s in servers:
            s.stop()


def node_of_key(servers, url: str, key: str) -> int:
    """Index of the node whose slots hold ``key`` (asked of the cluster itself)."""
    password = url.split("://:")[1].split("@")[0]
    r = redis.Redis(host="127.0.0.1", port=servers[0].port, password=password)
    try:
        slot = r.execute_command("CLUSTER", "KEYSLOT", key)
        for lo, hi, (_, port, *_), *_ in r.execute_command("CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                return [s.port for s in servers].index(port)
    finally:
        r.close()
    raise AssertionError(f"no node serves slot {slot}")


def test_cluster_has_three_masters_and_spreads_markets(cluster):
    servers, url = cluster

    async def info():
        from store.redis_store import connect

        c = connect(url)
        try:
            return await c.cluster_info(), await c.ping()
        finally:
            await c.aclose()

    ci, pong = asyncio.run(info())
    assert pong is True
    assert ci["cluster_state"] == "ok" and int(ci["cluster_size"]) == 3 and int(ci["cluster_known_nodes"]) == 3
    # one symbol's keys share a slot (its hash tag); different markets/symbols land on different nodes
    tags = [keys.trades(m, s) for m in keys.MARKETS for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")]
    assert len({node_of_key(servers, url, k) for k in tags}) == 3
    one_symbol = (keys.trades, keys.candles, keys.meta, keys.lease, keys.liquidations, keys.results_prefix)
    assert len({node_of_key(servers, url, f("usdm", "BTCUSDT")) for f in one_symbol}) == 1


def test_two_processes_on_a_cluster_agree_and_fail_over_with_every_id_once(cluster, recording_path):
    _, url = cluster
    rec = read_trades(recording_path)
    frm = int(rec.time[0]) // 60_000 * 60_000
    to = frm + 20 * 60_000
    q = f"/api/v1/vpvr?symbol=BTCUSDT&from={frm}&to={to}&row_size=0.5&value_area=0.7"
    # 300x: the compared range stays within the 24 h retention for 288 s however slow the machine
    args = ("--speed", "300", "--lease-ttl-ms", "1500", "--api-rate", "0")
    (a, base_a), (b, base_b) = start_servers(url, args, args)
    try:
        for base in (base_a, base_b):  # each process's view holds the whole range (its answer's coverage says so)
            wait_until(lambda b=base: get(f"{b}/api/v1/trades?symbol=BTCUSDT&from={to}&limit=1")[1].get("count"), 90)
        (code_a, body_a), (code_b, body_b) = get(base_a + q), get(base_b + q)
        assert code_a == code_b == 200 and body_a == body_b, "processes disagree"
        want = rec.time_slice(frm, to)
        assert body_a["trades"] == len(want) and abs(body_a["total_volume"] - want.qty.sum()) < 1e-6
        # the ingesting process dies without releasing its lease: the other takes over on the cluster
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        n_dead = len(stream_ids(url))
        t_kill = time.monotonic()
        wait_until(lambda: len(stream_ids(url)) > n_dead + 500, 60, 0.05)
        print(f"\ncluster failover: trades resumed {time.monotonic() - t_kill:.2f} s after SIGKILL")
        ids = stream_ids(url)
        assert np.all(np.diff(ids) == 1), "lost or doubled trade ids across the failover"
        assert ids[0] == rec.trade_id[0]
        assert get(base_b + q) == (200, body_a)
        assert get(base_b + "/health")[0] == 200
    finally:
        stop(a)
        stop(b)
