"""LocalBinance (feeds.emulator): Binance's protocol on 127.0.0.1, serving REAL recorded data.

Every expectation is derived independently of the server code: the recordings
are re-read here with gzip/json/csv, and Binance's documented formats (reference
d1-d6) give the expected envelopes, acknowledgements, REST fields and the
data.binance.vision layout. Real sockets on loopback only.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from feeds.emulator import (
    LIQUIDATION_MODE,
    LocalBinance,
    load_recording,
    synthetic_liquidations_at_real_trades,
)

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"


# ----------------------------------------------------------------------------- independent readers
def csv_trades(path: Path) -> dict[str, list]:
    """The trades dump read with the csv module: id, price, qty, time, is_buyer_maker as in the file."""
    with gzip.open(path, "rt") as f:
        rows = list(csv.DictReader(f))
    return {"a": [int(r["id"]) for r in rows], "p": [r["price"] for r in rows], "q": [r["qty"] for r in rows],
            "T": [int(r["time"]) for r in rows], "m": [r["is_buyer_maker"] == "true" for r in rows]}


def hft_trades(path: Path, symbol: str) -> list[dict]:
    """The ``trade`` payloads of an hftbacktest recording, in file order, read with json."""
    out = []
    with gzip.open(path, "rt") as f:
        for line in f:
            _, _, frame = line.partition(" ")
            if '"e":"trade"' not in frame:
                continue
            d = json.loads(frame)["data"]
            if d["s"] == symbol:
                out.append(d)
    return out


def jsonl_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as f:
        return [x.rstrip("\n") for x in f if x.strip()]


@pytest.fixture(scope="module")
def eth_path(shared_dir) -> Path:
    return shared_dir / "ws-raw-usdm-ethusdt-2024-08-08.hftbacktest.txt.gz"


@pytest.fixture(scope="module")
def alts_path(shared_dir) -> Path:
    return shared_dir / "ws-aggTrade-usdm-alts-2021-07-22.cryptofeed.jsonl.gz"


def eth_head(eth_path: Path, n: int):
    (t,) = load_recording(eth_path)
    return t.take(slice(0, n))


def _agg_id(m) -> int | None:
    if m.type != aiohttp.WSMsgType.TEXT:
        return None
    try:
        o = json.loads(m.data)
    except ValueError:
        return None
    d = o.get("data", o) if isinstance(o, dict) else None
    if isinstance(d, dict) and d.get("e") == "aggTrade" and isinstance(d.get("a"), int):
        return d["a"]
    return None


async def read_frames(ws, n: int | None = None, aggs: int | None = None, last_id: int | None = None,
                      pred=None, timeout: float = 20.0) -> list:
    """Receive messages until ``n`` messages, ``aggs`` aggTrade frames, the aggTrade ``last_id``, ``pred(msg)``
    or the server closes (with no condition given: until closed). Fails after ``timeout`` s (a hang, not a timing
    check)."""
    msgs, n_agg = [], 0
    async with asyncio.timeout(timeout):
        while True:
            m = await ws.receive()
            msgs.append(m)
            if m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
            a = _agg_id(m) if (aggs is not None or last_id is not None) else None
            n_agg += a is not None
            if ((n is not None and len(msgs) >= n) or (aggs is not None and n_agg >= aggs)
                    or (last_id is not None and a == last_id) or (pred is not None and pred(m))):
                break
    return msgs


def agg_ids(msgs) -> list[int]:
    return [a for a in map(_agg_id, msgs) if a is not None]


# ----------------------------------------------------------------------------- loading
def test_loader_reencodes_trade_frames_and_keeps_aggtrade_frames_verbatim(eth_path, alts_path):
    (eth,) = load_recording(eth_path)
    ref = hft_trades(eth_path, "ETHUSDT")
    assert eth.market == "usdm" and eth.symbol == "ETHUSDT" and len(eth) == len(ref) == 14076
    assert eth.a.tolist() == [d["t"] for d in ref]  # a = f = l = t
    assert eth.f.tolist() == eth.a.tolist() == eth.l.tolist()
    assert eth.p.tolist() == [d["p"] for d in ref] and eth.q.tolist() == [d["q"] for d in ref]
    assert eth.T.tolist() == [d["T"] for d in ref] and eth.E.tolist() == [d["E"] for d in ref]
    assert eth.m.tolist() == [d["m"] for d in ref]
    alts = {t.symbol: t for t in load_recording(alts_path)}
    lines = jsonl_lines(alts_path)
    sushi = [json.loads(x) for x in lines if x.startswith('{"stream":"sushiusdt@')]
    assert alts["SUSHIUSDT"].a.tolist() == [o["data"]["a"] for o in sushi]
    # the verbatim payload text of each real frame is kept
    for raw, o in zip(alts["SUSHIUSDT"].raw, sushi, strict=True):
        assert json.loads(raw) == o["data"]


def test_bundled_trades_dump_loads_as_real_aggtrades():
    (t,) = load_recording(BUNDLED)
    ref = csv_trades(BUNDLED)
    assert (t.market, t.symbol, len(t)) == ("usdm", "BTCUSDT", 69_239)
    assert t.a.tolist() == ref["a"] and t.p.tolist() == ref["p"] and t.T.tolist() == ref["T"]
    assert t.m.tolist() == ref["m"]


def test_synthetic_liquidations_sit_on_real_trades_at_most_one_per_second(eth_path):
    (t,) = load_recording(eth_path)
    idx = synthetic_liquidations_at_real_trades(t, every_s=1.0)
    assert len(idx) > 100
    sec = t.T[idx] // 1000
    assert len(np.unique(sec)) == len(sec)  # at most one per symbol per second
    for i in idx[:50]:  # each is the biggest trade of its second
        same = t.T // 1000 == t.T[i] // 1000
        assert float(t.q[i]) == max(float(x) for x in t.q[same])
    with pytest.raises(ValueError):
        synthetic_liquidations_at_real_trades(t, every_s=0.5)


# ----------------------------------------------------------------------------- WebSocket protocol
async def test_combined_stream_frames_are_the_real_frames_and_subscribe_is_acknowledged(alts_path):
    lines = jsonl_lines(alts_path)
    want = {s: [x for x in lines if x.startswith(f'{{"stream":"{s}@aggTrade"')] for s in ("sushiusdt", "ctkusdt")}
    async with LocalBinance([alts_path], speed=0, liquidations="none") as srv, aiohttp.ClientSession() as s:
        async with s.ws_connect(srv.ws_base + "/market/stream?streams=sushiusdt@aggTrade") as ws:
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["ctkusdt@aggTrade"], "id": 7}))
            await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
            n_want = len(want["sushiusdt"]) + len(want["ctkusdt"]) + 2
            msgs = await read_frames(ws, n=n_want)
    texts = [m.data for m in msgs]
    replies = [json.loads(x) for x in texts if x.startswith('{"result"')]
    assert {"result": None, "id": 7} in replies
    assert {"result": ["sushiusdt@aggTrade", "ctkusdt@aggTrade"], "id": 8} in replies
    for sym, frames in want.items():  # byte-identical to the recorded envelopes, in order
        assert [x for x in texts if x.startswith(f'{{"stream":"{sym}@')] == frames


async def test_raw_ws_path_sends_payloads_without_envelope(eth_path):
    ref = hft_trades(eth_path, "ETHUSDT")[:300]
    async with LocalBinance(tables=[eth_head(eth_path, 300)], speed=0, liquidations="none") as srv:
        async with aiohttp.ClientSession() as s, s.ws_connect(srv.ws_base + "/market/ws/ethusdt@aggTrade") as ws:
            msgs = await read_frames(ws, n=300)
    got = [json.loads(m.data) for m in msgs]
    expect = [{"e": "aggTrade", "E": d["E"], "a": d["t"], "s": "ETHUSDT", "p": d["p"], "q": d["q"], "f": d["t"],
               "l": d["t"], "T": d["T"], "m": d["m"]} for d in ref]
    assert got == expect


async def test_unrouted_legacy_path_acknowledges_but_delivers_no_aggtrade_on_usdm(eth_path):
    tab = eth_head(eth_path, 500)
    async with LocalBinance(tables=[tab], speed=0) as srv, aiohttp.ClientSession() as s:
        legacy = await s.ws_connect(srv.ws_base + "/stream")
        await legacy.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@aggTrade"], "id": 1}))
        ack = await legacy.receive(timeout=10)
        assert json.loads(ack.data) == {"result": None, "id": 1}
        async with s.ws_connect(srv.ws_base + "/market/stream?streams=ethusdt@aggTrade") as routed:
            msgs = await read_frames(routed, aggs=500)
        assert agg_ids(msgs) == tab.a.tolist()
        # everything has been published to every listener by now: the legacy connection got none of it
        await srv.wait_finished("ETHUSDT")
        legacy_conn = next(c for c in srv.connections if c.path == "/stream")
        assert legacy_conn.frames_sent == 0 and not legacy_conn.routed
        await legacy.close()


async def test_coinm_and_spot_layouts_deliver_on_stream_path(shared_dir):
    cm = shared_dir / "ws-raw-cm-btcusd_perp-2024-08-08.hftbacktest.txt.gz"
    spot = shared_dir / "ws-raw-spot-btcusdt-2024-08-08.hftbacktest.txt.gz"
    (cm_t,) = load_recording(cm)
    (sp_t,) = load_recording(spot)
    tables = [cm_t.take(slice(0, 200)), sp_t.take(slice(0, 200))]
    async with LocalBinance(tables=tables, market="coinm", speed=0, liquidations="none") as srv:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(srv.ws_base + "/stream?streams=btcusd_perp@aggTrade") as ws:
                cm_msgs = await read_frames(ws, aggs=200)
            async with s.ws_connect(srv.ws_bases["spot"] + "/ws/btcusdt@aggTrade") as ws:
                sp_msgs = await read_frames(ws, aggs=200)
            r = await s.get(srv.ws_base.replace("ws://", "http://") + "/market/stream", headers={"Upgrade": "websocket"})
            assert r.status == 404  # coinm has no routed /market paths
    assert agg_ids(cm_msgs) == cm_t.a[:200].tolist()
    spot_ref = hft_trades(spot, "BTCUSDT")[:200]
    got = [json.loads(m.data) for m in sp_msgs]
    assert [g["a"] for g in got] == [d["t"] for d in spot_ref]
    assert all(g["M"] == d["M"] for g, d in zip(got, spot_ref, strict=True))  # spot keeps the best-match flag


async def test_server_pings_and_closes_when_pongs_stop(eth_path):
    async with LocalBinance(tables=[eth_head(eth_path, 10)], ping_interval=0.05, pong_timeout=0.5) as srv:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(srv.ws_base + "/market/stream", autoping=False) as ws:
                m = await ws.receive(timeout=10)
                assert m.type == aiohttp.WSMsgType.PING and m.data
                await ws.pong(m.data)
                async with asyncio.timeout(10):
                    while srv.stats["pongs_received"] < 1:
                        await asyncio.sleep(0.01)
                # stop answering: the server must close the connection
                msgs = await read_frames(ws)
            assert msgs[-1].type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert srv.connections[0].closed_reason == "pong_timeout"
    assert srv.stats["pong_timeouts"] == 1


async def test_answer_pings_knob(eth_path):
    async with LocalBinance(tables=[eth_head(eth_path, 10)]) as srv, aiohttp.ClientSession() as s:
        async with s.ws_connect(srv.ws_base + "/market/stream", autoping=False) as ws:
            await ws.ping(b"hello")
            m = await ws.receive(timeout=10)
            assert (m.type, m.data) == (aiohttp.WSMsgType.PONG, b"hello")
            srv.faults.answer_pings = False
            await ws.ping(b"again")
            await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}))
            m = await ws.receive(timeout=10)  # messages are handled in order: no pong came before the reply
            assert m.type == aiohttp.WSMsgType.TEXT and json.loads(m.data) == {"result": [], "id": 3}


async def test_max_lifetime_cut_and_message_rate_limit(eth_path):
    async with LocalBinance(tables=[eth_head(eth_path, 10)]) as srv, aiohttp.ClientSession() as s:
        srv.faults.max_lifetime = 0.2
        async with s.ws_connect(srv.ws_base + "/market/stream") as ws:
            msgs = await read_frames(ws)
            assert msgs[-1].type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1001
        assert srv.connections[-1].closed_reason == "max_lifetime"
        srv.faults.max_lifetime = 3600
        async with s.ws_connect(srv.ws_base + "/market/stream") as ws:
            for i in range(12):  # Binance: more than 10 incoming messages per second -> disconnected
                await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
            msgs = await read_frames(ws)
            assert ws.close_code == 1008
        assert srv.connections[-1].closed_reason == "too_many_messages"


async def test_drop_after_frames_then_reconnect_continues_with_later_trades(eth_path):
    tab = eth_head(eth_path, 1000)
    async with LocalBinance(tables=[tab], speed=0, fast_backlog=20) as srv, aiohttp.ClientSession() as s:
        srv.faults.drop_after_frames = 100
        url = srv.ws_base + "/market/stream?streams=ethusdt@aggTrade"
        async with s.ws_connect(url) as ws:
            first = await read_frames(ws)
        assert agg_ids(first) == tab.a[:100].tolist()  # cut without a close frame after exactly 100 frames
        assert srv.connections[0].closed_reason == "drop_after_frames"
        srv.faults.drop_after_frames = None
        async with s.ws_connect(url) as ws:
            second = await read_frames(ws, last_id=int(tab.a[-1]))
        ids2 = agg_ids(second)
        assert ids2 == sorted(ids2) and ids2[0] > tab.a[99]  # the exchange went on meanwhile
        async with s.get(srv.rest_base + "/fapi/v1/aggTrades",
                         params={"symbol": "ETHUSDT", "fromId": str(tab.a[100]), "limit": "1000"}) as r:
            rest = [x["a"] for x in await r.json()]
        missed = [a for a in rest if a < ids2[0]]
        assert agg_ids(first) + missed + ids2 == tab.a.tolist()  # REST has exactly what fell between


async def test_fault_frames_duplicate_reorder_garbage_truncate_and_skipped_ids(eth_path):
    tab = eth_head(eth_path, 2000)
    lo, hi = int(tab.a[500]), int(tab.a[549])
    async with LocalBinance(tables=[tab], speed=0, liquidations="none") as srv, aiohttp.ClientSession() as s:
        f = srv.faults
        f.duplicate_every, f.reorder_every, f.garbage_every, f.truncate_every = 37, 53, 41, 97
        f.skip_ids = [("ETHUSDT", lo, hi)]
        async with s.ws_connect(srv.ws_base + "/market/stream?streams=ethusdt@aggTrade") as ws:
            seen: set[int] = set()

            def done(m) -> bool:
                if (x := _agg_id(m)) is not None:
                    seen.add(x)
                return len(seen) == 2000 - (hi - lo + 1)

            msgs = await read_frames(ws, pred=done)
        async with s.get(srv.rest_base + "/fapi/v1/aggTrades",
                         params={"symbol": "ETHUSDT", "fromId": str(lo), "limit": "50"}) as r:
            rest = await r.json()
    ids = agg_ids(msgs)
    expected = [int(a) for a in tab.a if not lo <= a <= hi]
    assert set(ids) == set(expected)  # every id except the skipped range arrived
    assert len(ids) > len(set(ids))  # duplicates
    assert any(b < a for a, b in zip(ids, ids[1:], strict=False))  # reordering
    bad = [m for m in msgs if m.type == aiohttp.WSMsgType.BINARY or not _valid_agg(m.data)]
    assert len(bad) >= 2000 // 41
    texts = {m.data for m in msgs if m.type == aiohttp.WSMsgType.TEXT}
    truncated = [t for t in texts if t and not _valid_json(t) and t.startswith('{"stream":"ethusdt@aggTrade","data":{"e"')]
    assert truncated
    # REST still serves the range the WebSocket skipped, with the recorded fields
    assert [r["a"] for r in rest] == list(range(lo, hi + 1)) == tab.a[500:550].tolist()
    assert [r["p"] for r in rest] == tab.p[500:550].tolist()


def _valid_json(t: str) -> bool:
    try:
        json.loads(t)
        return True
    except ValueError:
        return False


def _valid_agg(t) -> bool:
    try:
        d = json.loads(t)["data"]
        return d["e"] == "aggTrade" and isinstance(d["a"], int) and float(d["p"]) > 0
    except (ValueError, KeyError, TypeError):
        return False


async def test_silent_stream_is_acknowledged_but_delivers_nothing_while_liquidations_flow(eth_path):
    tab = eth_head(eth_path, 3000)
    async with LocalBinance(tables=[tab], speed=0) as srv, aiohttp.ClientSession() as s:
        srv.faults.silent_streams = ["ethusdt@aggTrade"]
        n_liq = len(srv.feed("ETHUSDT").liq_fields)
        assert n_liq > 5
        async with s.ws_connect(srv.ws_base + "/market/stream") as ws:
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@aggTrade",
                                                                             "ethusdt@forceOrder"], "id": 1}))
            msgs = await read_frames(ws, n=n_liq + 1)
    assert json.loads(msgs[0].data) == {"result": None, "id": 1}
    assert agg_ids(msgs) == []


async def test_forceorder_frames_follow_binance_format_at_real_trades(eth_path):
    tab = eth_head(eth_path, 3000)
    by_t = {}
    for i in range(len(tab)):
        by_t.setdefault(int(tab.T[i]), set()).add((tab.p[i], tab.q[i]))
    async with LocalBinance(tables=[tab], speed=0, liquidation_every_s=2.0) as srv, aiohttp.ClientSession() as s:
        n_liq = len(srv.feed("ETHUSDT").liq_fields)
        async with s.ws_connect(srv.ws_base + "/market/stream?streams=!forceOrder@arr") as ws:
            msgs = await read_frames(ws, n=n_liq)
    assert srv.liquidations == LIQUIDATION_MODE
    frames = [json.loads(m.data) for m in msgs]
    secs = []
    for fr in frames:
        assert fr["stream"] == "!forceOrder@arr"
        d = fr["data"]
        assert d["e"] == "forceOrder" and set(d["o"]) == {"s", "S", "o", "f", "q", "p", "ap", "X", "l", "z", "T"}
        o = d["o"]
        assert o["s"] == "ETHUSDT" and o["S"] in ("BUY", "SELL") and o["X"] == "FILLED"
        assert (o["p"], o["q"]) in by_t[o["T"]]  # price, qty and time of a real trade
        secs.append(o["T"] // 2000)
    assert len(secs) == len(set(secs)) == n_liq


async def test_speed_change_while_running_and_loop_mode(alts_path):
    (ctk,) = [t for t in load_recording(alts_path) if t.symbol == "CTKUSDT"]
    assert np.all(np.diff(ctk.a) == 1)
    async with LocalBinance(tables=[ctk], speed=1e-6, loop=True, liquidations="none") as srv:
        async with aiohttp.ClientSession() as s, s.ws_connect(srv.ws_base + "/market/stream?streams=ctkusdt@aggTrade") as ws:
            first = await read_frames(ws, n=1)  # the first trade is due at once
            assert srv.published("CTKUSDT") == 1
            srv.speed = 0  # now as fast as possible: the replay continues, wrapping around
            more = await read_frames(ws, n=3 * len(ctk))
    frames = [json.loads(m.data)["data"] for m in first + more]
    a = [d["a"] for d in frames]
    assert a == list(range(int(ctk.a[0]), int(ctk.a[0]) + len(a)))  # ids continue across the wrap
    T = [d["T"] for d in frames]
    assert all(y >= x for x, y in zip(T, T[1:], strict=False))
    assert frames[len(ctk)]["p"] == ctk.p[0]  # the second pass replays the same real trades


async def test_retime_shifts_times_to_now(eth_path):
    tab = eth_head(eth_path, 5)
    async with LocalBinance(tables=[tab], speed=0, retime=True, liquidations="none") as srv:
        async with aiohttp.ClientSession() as s, s.ws_connect(srv.ws_base + "/market/ws/ethusdt@aggTrade") as ws:
            msgs = await read_frames(ws, n=5)
    d = [json.loads(m.data) for m in msgs]
    shift = d[0]["T"] - int(tab.T[0])
    assert abs(d[0]["T"] - time.time() * 1000) < 120_000
    assert [x["T"] - shift for x in d] == tab.T.tolist() and [x["E"] - shift for x in d] == tab.E.tolist()


async def test_on_send_sees_each_data_frame_once_it_is_written(eth_path):
    """The send hook (benchmarks stamp frame send times with it) gets every aggTrade frame the client then reads."""
    tab = eth_head(eth_path, 5)
    sent = []
    async with LocalBinance(tables=[tab], speed=0, liquidations="none") as srv:
        srv.on_send = lambda fr: sent.append((fr.agg_id, fr.text(True)))
        async with aiohttp.ClientSession() as s, s.ws_connect(srv.ws_base + "/market/stream?streams=ethusdt@aggTrade") as ws:
            msgs = await read_frames(ws, n=5)
    assert [a for a, _ in sent] == agg_ids(msgs) == tab.a.tolist()
    assert [t for _, t in sent] == [m.data for m in msgs]


# ----------------------------------------------------------------------------- REST
async def test_rest_aggtrades_fromid_paging_returns_the_recording():
    ref = csv_trades(BUNDLED)
    async with LocalBinance([BUNDLED]) as srv, aiohttp.ClientSession() as s:
        url = srv.rest_base + "/fapi/v1/aggTrades"
        async with s.get(url, params={"symbol": "BTCUSDT", "fromId": str(ref["a"][0])}) as r:
            assert r.status == 200 and await r.json() == []  # nothing has happened yet on this exchange
        srv.preplay("BTCUSDT")  # the whole recording is now history
        got, weights, nxt = [], [], ref["a"][0]
        while True:
            async with s.get(url, params={"symbol": "BTCUSDT", "fromId": str(nxt), "limit": "1000"}) as r:
                page = await r.json()
                weights.append(int(r.headers["X-MBX-USED-WEIGHT-1M"]))
            if not page:
                break
            assert len(page) <= 1000
            got.extend(page)
            nxt = page[-1]["a"] + 1
        assert [g["a"] for g in got] == ref["a"]
        assert [g["p"] for g in got] == ref["p"] and [g["q"] for g in got] == ref["q"]
        assert [g["T"] for g in got] == ref["T"] and [g["m"] for g in got] == ref["m"]
        assert all(g["f"] == g["l"] == g["a"] for g in got)
        assert set(got[0]) == {"a", "p", "q", "f", "l", "T", "m"}
        assert np.all(np.diff(weights) == 20)  # USD-M aggTrades weight 20
        # time window
        t0 = ref["T"][1000]
        async with s.get(url, params={"symbol": "BTCUSDT", "startTime": str(t0), "endTime": str(t0 + 60_000),
                                      "limit": "1000"}) as r:
            win = await r.json()
        want = [a for a, t in zip(ref["a"], ref["T"], strict=True) if t0 <= t <= t0 + 60_000][:1000]
        assert [w["a"] for w in win] == want
        # errors in Binance's format
        for params, code in (({"symbol": "BTCUSDT", "limit": "1001"}, -1130), ({}, -1102),
                             ({"symbol": "NOPEUSDT"}, -1121), ({"symbol": "BTCUSDT", "fromId": "x"}, -1100),
                             ({"symbol": "BTCUSDT", "startTime": "0", "endTime": str(3_600_001)}, -1127)):
            async with s.get(url, params=params) as r:
                assert r.status == 400 and (await r.json())["code"] == code


async def test_rest_injected_429_5xx_451_and_weight_limit(eth_path):
    async with LocalBinance(tables=[eth_head(eth_path, 10)]) as srv, aiohttp.ClientSession() as s:
        srv.preplay("ETHUSDT")
        url = srv.rest_base + "/fapi/v1/aggTrades?symbol=ETHUSDT"
        f = srv.faults
        for status in (429, 503):
            f.rest_fail_status, f.rest_fail_next, f.rest_retry_after = status, 2, 3
            seen = []
            for _ in range(3):
                async with s.get(url) as r:
                    seen.append((r.status, r.headers.get("Retry-After")))
            assert seen == [(status, "3"), (status, "3"), (200, None)]
        f.rest_fail_status, f.rest_fail_next = 451, -1
        for _ in range(3):
            async with s.get(url) as r:
                assert r.status == 451 and "restricted location" in (await r.json())["msg"]
        f.rest_fail_next = 0
        srv.rest_weight_limit = 50  # 20 per call: the third call in the window exceeds it
        statuses = []
        for _ in range(3):
            async with s.get(url + "&limit=5") as r:
                statuses.append((r.status, "Retry-After" in r.headers))
        assert statuses[-1] == (429, True)


# ----------------------------------------------------------------------------- data.binance.vision
async def test_vision_daily_zip_checksum_and_layout(shared_dir):
    ref = csv_trades(BUNDLED)
    spot_path = shared_dir / "ws-raw-spot-btcusdt-2024-08-08.hftbacktest.txt.gz"
    async with LocalBinance([BUNDLED, spot_path]) as srv, aiohttp.ClientSession() as s:
        base = srv.vision_base + "/data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2020-02-22.zip"
        async with s.get(base) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "application/zip"
            body = await r.read()
        async with s.get(base + ".CHECKSUM") as r:
            chk = await r.text()
        async with s.get(base, headers={"Range": "bytes=100-199"}) as r:
            assert r.status == 206 and await r.read() == body[100:200]
            assert r.headers["Content-Range"] == f"bytes 100-199/{len(body)}"
        async with s.get(base.replace("2020-02-22", "2020-02-21")) as r:
            assert r.status == 404 and "NoSuchKey" in await r.text()
        spot_url = srv.vision_base + "/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-08-08.zip"
        async with s.get(spot_url) as r:
            spot_body = await r.read()
    assert chk == f"{hashlib.sha256(body).hexdigest()}  BTCUSDT-aggTrades-2020-02-22.zip\n"
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.namelist() == ["BTCUSDT-aggTrades-2020-02-22.csv"]
        rows = list(csv.reader(io.StringIO(zf.read("BTCUSDT-aggTrades-2020-02-22.csv").decode())))
    assert rows[0] == ["agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time",
                       "is_buyer_maker"]
    assert [int(r[0]) for r in rows[1:]] == ref["a"] and [r[1] for r in rows[1:]] == ref["p"]
    assert [int(r[5]) for r in rows[1:]] == ref["T"] and [r[6] == "true" for r in rows[1:]] == ref["m"]
    spot_ref = [d for d in hft_trades(spot_path, "BTCUSDT") if d["T"] < 1723161600000]  # trades of 2024-08-08
    with zipfile.ZipFile(io.BytesIO(spot_body)) as zf:
        srows = list(csv.reader(io.StringIO(zf.read(zf.namelist()[0]).decode())))
    assert len(srows[0]) == 8 and srows[0][0].isdigit()  # spot: 8 columns, no header
    assert [int(r[0]) for r in srows] == [d["t"] for d in spot_ref]
    assert [r[6] for r in srows] == ["True" if d["m"] else "False" for d in spot_ref]


# ----------------------------------------------------------------------------- thread and CLI
def test_start_in_thread_serves_sync_code(eth_path):
    with LocalBinance.start_in_thread(tables=[eth_head(eth_path, 10)]) as srv:
        srv.call(srv.preplay, "ETHUSDT")
        with urllib.request.urlopen(srv.rest_base + "/fapi/v1/aggTrades?symbol=ETHUSDT&limit=3") as r:
            page = json.loads(r.read())
        assert [p["a"] for p in page] == [int(x) for x in eth_head(eth_path, 10).a[-3:]]


def test_cli_local_server_prints_urls(eth_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "feeds", "local-server", "--port", "0", "--data", str(eth_path)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        urls = {}
        for line in p.stdout:
            if line.startswith("serving"):
                assert "usdm:ETHUSDT(14076)" in line
                break
            k, v = line.split()
            urls[k] = v
        assert urls["ws_base"].startswith("ws://127.0.0.1:")
        with urllib.request.urlopen(urls["rest_base"] + "/fapi/v1/ping") as r:
            assert json.loads(r.read()) == {}
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(20) == 0
