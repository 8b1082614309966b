"""serve.py against Binance's protocol on loopback (the local server replaying real recorded trades),
and the visible fallback to the bundled replay when Binance cannot be reached."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from browser import free_port, served

from feeds.emulator import LocalBinance
from feeds.readers import read_trades
from store.redis_store import RedisStore, connect


def _get(url):
    """JSON of a GET, also for error statuses (/health answers 503 until the first heartbeat)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def _metric(url, name, **labels) -> float | None:
    with urllib.request.urlopen(url + "metrics", timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_live_source_fills_redis_with_every_id_once_and_says_live(shared_dir):
    """Also: poisoned frames in the middle of the stream (a = 2**63, the issue-13 wedge; 100k-deep nesting) cost
    only themselves; they show in the status meta and in /metrics, and /health stays ok."""
    from store.embedded import start_embedded

    recording = shared_dir / "ws-raw-usdm-btcusdt-2024-08-08.hftbacktest.txt.gz"  # 21,313 real trades, 6 min
    srv = LocalBinance.start_in_thread(data=[str(recording)], speed=0, liquidation_every_s=2.0)
    rec = read_trades(recording)
    poison = json.dumps({"stream": "btcusdt@aggTrade", "data": {
        "e": "aggTrade", "E": int(rec.time[2000]), "a": 2**63, "s": "BTCUSDT", "p": str(rec.price[2000]),
        "q": str(rec.qty[2000]), "f": 2**63, "l": 2**63, "T": int(rec.time[2000]), "m": True}})
    srv.faults.inject_frames = {2000: poison, 4000: '{"a":' * 100_000}  # set before any connection opens
    redis_server, redis_url = start_embedded()
    try:
        with served("--source", "live", "--ws-base", srv.ws_base, "--rest-base", srv.rest_base,
                    "--redis-url", redis_url) as (url, proc, t0):
            assert any("LIVE usdm BTCUSDT" in line for line in proc.output_lines)

            async def ids():
                c = connect(redis_url)
                try:
                    b, _ = await RedisStore(c).read_range("BTCUSDT")
                    liq, _ = await RedisStore(c).liquidations("BTCUSDT")
                    return b.trade_id, liq
                finally:
                    await c.aclose()

            deadline = time.monotonic() + 60
            want = read_trades(recording).trade_id
            got = np.empty(0)
            while time.monotonic() < deadline:
                got, liq = asyncio.run(ids())
                if len(got) and got[-1] == want[-1]:
                    break
                time.sleep(0.5)
            # a live feed starts at the first id it sees; from there every id arrives once, in order
            assert len(got) > 1000 and got[-1] == want[-1]
            np.testing.assert_array_equal(got, want[np.searchsorted(want, got[0]):])
            assert len(liq) > 0 and set(liq["side"]) <= {"BUY", "SELL"}
            health = _get(url + "health")
            assert health["status"] == "ok", health
            assert health["BTCUSDT"]["source"].startswith("LIVE usdm BTCUSDT")
            meta = asyncio.run(_meta(redis_url))
            (stream,) = json.loads(meta["streams"])
            rejected = {"out_of_range": 1, "too_deep": 1}
            assert stream["rejected"] == rejected
            deadline = time.monotonic() + 10  # /metrics is refreshed from the meta once a second (0 until then)
            while time.monotonic() < deadline and not all(_metric(url, "flowlens_frames_rejected_total",
                                                                  symbol="BTCUSDT", reason=r) for r in rejected):
                time.sleep(0.2)
            for reason in rejected:
                assert _metric(url, "flowlens_frames_rejected_total", symbol="BTCUSDT", reason=reason) == 1.0
            code_liq = _get(url + "api/v1/liquidations?symbol=BTCUSDT")
            assert code_liq["liquidations"]
    finally:
        srv.stop()
        redis_server.stop()


async def _meta(redis_url) -> dict:
    c = connect(redis_url)
    try:
        return await RedisStore(c).meta("BTCUSDT")
    finally:
        await c.aclose()


def test_unreachable_binance_falls_back_to_the_replay_and_says_why():
    dead = free_port()  # nothing listens here
    with served("--source", "live", "--ws-base", f"ws://127.0.0.1:{dead}", "--rest-base",
                f"http://127.0.0.1:{dead}") as (url, proc, t0):
        started = time.monotonic() - t0
        lines = "".join(proc.output_lines)
        fallback = [ln for ln in proc.output_lines if "unreachable" in ln]
        assert len(fallback) == 1 and "replaying the bundled recording" in fallback[0], lines
        assert "REPLAY BTCUSDT-trades-2020-02-22" in lines
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            h = _get(url + "health")
            if h.get("BTCUSDT", {}).get("source"):
                break
            time.sleep(0.3)
        src = h["BTCUSDT"]["source"]
        assert src.startswith("REPLAY") and "Binance unreachable at start-up" in src
        print(f"\nfallback to the replay: serving {started:.1f} s after start")
        assert started < 30, f"fallback took {started:.1f} s"


@pytest.mark.parametrize("argv", [["--source", "bogus"], ["--source", "live:x"], ["--symbols", "BTC/USDT"],
                                  ["--speed", "0"], ["--no-ingest"], ["--num-procs", "0"]])
def test_bad_command_lines_give_a_clear_error(argv):
    import subprocess
    import sys

    from browser import ROOT

    r = subprocess.run([sys.executable, str(ROOT / "serve.py"), *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr


def test_backfill_hours_seed_history_then_live_with_every_id_once(recording_path, tmp_path):
    """--backfill-hours: the daily archive (built from the real 2020-02-22 trades, checksum-verified) seeds
    the first 6 h; the live stream then continues after the last seeded id."""
    from store.embedded import start_embedded

    srv = LocalBinance.start_in_thread(data=[str(recording_path)], speed=0, liquidations="none")
    redis_server, redis_url = start_embedded()
    rec = read_trades(recording_path)
    end = int(rec.time[0]) // 3600_000 * 3600_000 + 6 * 3600_000  # 2020-02-22 06:00 UTC
    try:
        with served("--source", "live", "--ws-base", srv.ws_base, "--rest-base", srv.rest_base,
                    "--vision-base", srv.vision_base, "--redis-url", redis_url, "--backfill-hours", "6",
                    "--backfill-dir", str(tmp_path / "bf"), "--backfill-end", str(end), timeout=90) as (url, proc, t0):
            async def ids():
                c = connect(redis_url)
                try:
                    b, _ = await RedisStore(c).read_range("BTCUSDT")
                    return b.trade_id, b.time
                finally:
                    await c.aclose()

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                got, times = asyncio.run(ids())
                if len(got) and got[-1] == rec.trade_id[-1]:
                    break
                time.sleep(0.5)
            seeded = int(np.sum(rec.time < end))
            assert got[0] == rec.trade_id[0], "the seeded history does not start the stream"
            assert len(got) > seeded, "nothing came after the seeded hours"
            np.testing.assert_array_equal(got, rec.trade_id)  # history then live: every id once, in order
        assert f"seeded {seeded:,} trades" in "".join(proc.output_lines)
    finally:
        srv.stop()
        redis_server.stop()


def test_replayed_liquidations_reach_redis_the_api_and_the_view(recording_path):
    """--liquidations FILE replays forceOrder frames in step with the trades (the fixture's frames are placed at
    the prices and times of real trades of the bundled recording; no real liquidation recording exists)."""
    from browser import ROOT

    from feeds.liquidations import read_liquidations

    fixture = ROOT / "tests/fixtures/dashboard_liquidations_at_real_trade_prices.jsonl"
    want = read_liquidations(fixture)
    assert len(want) >= 10
    with served("--speed", "4000", "--liquidations", str(fixture)) as (url, proc, t0):
        deadline = time.monotonic() + 40
        got = []
        while time.monotonic() < deadline:
            got = _get(url + "api/v1/liquidations?symbol=BTCUSDT&from=1582329600000&to=1582372800000").get(
                "liquidations", [])  # 400 "no data yet" until the first batch is in
            if len(got) >= len(want):
                break
            time.sleep(0.5)
        assert [g["time"] for g in got[: len(want)]] == want["time"].tolist()
        assert [g["side"] for g in got[: len(want)]] == want["side"].tolist()
        rec = read_trades(recording_path)
        assert all(rec.time[0] <= g["time"] <= rec.time[-1] for g in got[: len(want)])


def test_history_dir_seeds_trades_and_liquidations_then_the_stream_resumes_after_it(recording_path, tmp_path):
    """serve.py --history DIR (issue 17 item 5): what the recorder wrote (trades of the first 3 hours, the fixture's
    liquidations) seeds Redis first, then the replay continues after the last recorded id: every id once, and the
    liquidations show on the API although no --liquidations replay runs."""
    import pandas as pd
    from browser import ROOT

    from feeds.liquidations import read_liquidations
    from feeds.recorder import RecordingSink

    rec = read_trades(recording_path)
    head = rec.time_slice(None, int(rec.time[0]) + 3 * 3_600_000)
    liq = read_liquidations(ROOT / "tests/fixtures/dashboard_liquidations_at_real_trade_prices.jsonl")
    sink = RecordingSink(tmp_path, "usdm")
    sink.add_trades("BTCUSDT", pd.DataFrame({"agg_trade_id": head.trade_id, "price": head.price, "qty": head.qty,
                                             "first_trade_id": head.trade_id, "last_trade_id": head.trade_id,
                                             "time": head.time, "is_buyer_maker": head.is_buyer_maker}))
    sink.add_liquidations(liq)
    sink.flush()
    from store.embedded import start_embedded

    redis_server, redis_url = start_embedded()
    with served("--speed", "300", "--history", str(tmp_path), "--redis-url", redis_url) as (url, proc, _):
        deadline = time.monotonic() + 40
        got = []
        while time.monotonic() < deadline:
            got = _get(url + "api/v1/liquidations?symbol=BTCUSDT&from=1582329600000&to=1582372800000").get(
                "liquidations", [])
            n = _get(url + f"api/v1/trades?symbol=BTCUSDT&from={int(head.time[-1]) + 1}&limit=5").get("count", 0)
            if len(got) >= len(liq) and n:
                break
            time.sleep(0.3)
        assert [g["time"] for g in got] == liq["time"].tolist()
        assert any(f"seeded {len(head):,} trades and {len(liq):,} liquidations" in line for line in proc.output_lines)

        async def ids():
            c = connect(redis_url)
            try:
                return (await RedisStore(c).read_range("BTCUSDT"))[0].trade_id
            finally:
                await c.aclose()
        got_ids = asyncio.run(ids())
        assert got_ids[0] == rec.trade_id[0] and len(got_ids) > len(head) and np.all(np.diff(got_ids) == 1)
    redis_server.stop()


def test_liquidation_replay_shifts_times_on_each_loop(recording_path):
    from browser import ROOT

    from feeds.liquidations import LiquidationReplay, read_liquidations
    from feeds.replay import ReplaySource
    from feeds.source import LiquidationBatch

    liq = read_liquidations(ROOT / "tests/fixtures/dashboard_liquidations_at_real_trade_prices.jsonl")
    released = []

    async def run():
        src = LiquidationReplay(ReplaySource(recording_path, speed=1e6), liq, "BTCUSDT")
        n = 0
        async for item in src:  # trade batches and, in-band, liquidation batches
            if isinstance(item, LiquidationBatch):
                released.append(item.frame)
                continue
            n += len(item)
            if n > 2 * 69_239 + 10:  # into the third loop
                return src.source.period_ms

    period = asyncio.run(run())
    times = np.concatenate([d["time"].to_numpy() for d in released])
    t = liq["time"].to_numpy()
    np.testing.assert_array_equal(times[: 2 * len(t)], np.concatenate([t, t + period]))


def test_an_ingest_only_process_feeds_the_pages_of_another(recording_path):
    """``serve.py --no-pages`` (issue 19 item 2): the feeds, the lease and the alerts without the Panel server —
    ``/health`` and ``/metrics`` on its port, no page — while a ``--no-ingest`` process on the same Redis serves
    the API (and the page: tests/service/test_service.py's two processes) from what it ingests."""
    from store.embedded import start_embedded

    redis_server, redis_url = start_embedded()
    try:
        with served("--no-pages", "--speed", "300", "--redis-url", redis_url) as (ingest_url, ingest, _), \
                served("--no-ingest", "--redis-url", redis_url) as (pages_url, _, _):
            assert any("ingest only (--no-pages)" in line for line in ingest.output_lines)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and _get(pages_url + "api/v1/trades?symbol=BTCUSDT&from=1582329600000&limit=5").get(
                    "count") != 5:
                time.sleep(0.2)
            got = _get(pages_url + "api/v1/trades?symbol=BTCUSDT&from=1582329600000&limit=5")
            assert got["count"] == 5 and got["trades"]["trade_id"][0] == int(read_trades(recording_path).trade_id[0])
            with urllib.request.urlopen(ingest_url + "health", timeout=10) as r:
                assert r.status == 200
            with urllib.request.urlopen(ingest_url + "metrics", timeout=10) as r:
                assert 'flowlens_trades_total{market="usdm",symbol="BTCUSDT"}' in r.read().decode()
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(ingest_url, timeout=10)
            assert e.value.code == 404
    finally:
        redis_server.stop()
