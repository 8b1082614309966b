"""Ingest isolation benchmark: feed -> Redis delay with N page sessions, ingest in its own process or not.

    python -m benchmarks.bench_isolation [--sessions 0,200] [--seconds 30] [--speed 1] [--rounds 1] [--path /]

The loopback Binance (feeds.emulator, in a child process of its own: the "probe") plays the real 2024-08-08
USD-M BTCUSDT recording (21,313 aggregate trades in 343 s, about 62 a second at 1x; looped, retimed to now)
at ``--speed`` x real time to a ``serve.py --source live --ws-base ...`` that ingests into one embedded Valkey.
Two configurations are measured in the same run, interleaved (for each N: shared, isolated; the next round
in the other order), each against the same replay and the same N raw Bokeh-protocol sessions on ``--path``
(bench_load's clients: the page's token, ``PULL-DOC-REQ``, ``document_ready``, then every ``PATCH-DOC``):

* **shared**: one ``serve.py --source live ... --redis-url R`` ingests and serves the sessions;
* **isolated**: ``serve.py --no-pages --source live ... --redis-url R`` ingests (feeds, lease, alerts) and
  ``serve.py --no-ingest --redis-url R`` serves the sessions.

Timed path, per batch the ingest writes to the trade stream: from the moment the emulator has written the
aggTrade frame of the batch's last trade (``id1``) to the ingest's socket (its ``on_send`` hook, stamped in
the probe) to the moment the batch arrives at an ``XREAD BLOCK`` tail of the stream (bench_load's
``announcements``, in the same probe process: one clock, a lightly loaded event loop). That is: loopback
socket, the ingest's client, decode, batching, the write into Valkey, and the tail's read (well under
a millisecond). The send is stamped by the hook, not read from the frame's ``E``: retimed, ``E`` is 1-5 ms
earlier than the measured send at 1x (results/isolation.txt) and drifts by (1 - 1/speed) of the elapsed exchange
time at other speeds. The measuring window (``--seconds``) starts 3 s after every session holds its document; only
batches arriving in it count. Valkey is FLUSHALLed before each row.

Baseline: the N = 0 row of each configuration (the floor: ingest alone, and for isolated an idle pages
process). Also printed: the CPU (% of one core) of the ingesting and page-serving processes, Valkey, the
probe, this bench (the clients) and the whole box (2 cores for all), and how far each frame's ``E`` (event
time, retimed) is from its measured send time. Target: isolated p99 at the largest N <= 1.5 x the isolated
0-session p99, and below the shared p99 at that N.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from contextlib import ExitStack, contextmanager

import aiohttp
import numpy as np
import psutil
import redis

from benchmarks.bench_feed_latency import RECORDING
from benchmarks.bench_load import Clients, _procs, announcements, served, session
from store import keys
from store.embedded import start_embedded

SYMBOL = "BTCUSDT"
CONFIGS = ("shared", "isolated")


# ----------------------------------------------------------------------------- the probe (child process)
def _event_time(payload: str) -> int:
    """The ``E`` field of an aggTrade payload (``{"e":"aggTrade","E":123,...``)."""
    i = payload.index('"E":') + 4
    return int(payload[i:payload.index(",", i)])


async def _probe(conn, recording: str, speed: float, redis_url: str) -> None:
    """Serve the recording, stamp every aggTrade frame sent and every batch seen on the stream until told to stop;
    then send back ``(sends {agg id: (send wall ms, E)}, batches [(arrival wall ms, id1)], connections fed)``."""
    from feeds.emulator import LocalBinance, load_recording

    sent: dict[int, tuple[float, str]] = {}
    batches: list[tuple[float, int]] = []
    stop = asyncio.Event()

    def on_send(fr) -> None:
        if fr.agg_id >= 0:
            sent[fr.agg_id] = (time.time() * 1000, fr.payload)

    async with LocalBinance(tables=load_recording(recording), speed=speed, loop=True, retime=True) as srv:
        srv.on_send = on_send
        tail = asyncio.ensure_future(announcements(redis_url, SYMBOL, batches, stop.is_set))
        conn.send((srv.ws_base, srv.rest_base))
        await asyncio.to_thread(conn.recv)
        stop.set()
        await tail
        feeding = sum(bool(c.sent_ids) for c in srv.connections)
    conn.send(({a: (t, _event_time(p)) for a, (t, p) in sent.items()}, batches, feeding))


def _probe_main(conn, recording: str, speed: float, redis_url: str) -> None:
    asyncio.run(_probe(conn, recording, speed, redis_url))


@contextmanager
def probe(speed: float, redis_url: str):
    """Start the probe; yield ``(ws_base, rest_base, pid, result)``; ``result`` holds its stamps afterwards."""
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    p = ctx.Process(target=_probe_main, args=(there, str(RECORDING), speed, redis_url), daemon=True)
    p.start()
    if not here.poll(60):
        p.terminate()
        raise RuntimeError("the emulator did not start in 60 s")
    ws_base, rest_base = here.recv()
    result: dict = {}
    try:
        yield ws_base, rest_base, p.pid, result
    finally:
        here.send("stop")
        if here.poll(60):
            result["sends"], result["batches"], result["connections"] = here.recv()
        p.join(10)
        if p.is_alive():
            p.terminate()


# ----------------------------------------------------------------------------- the servers
@contextmanager
def servers(config: str, ws_base: str, rest_base: str, redis_url: str):
    """Start the configuration's serve.py process(es); yield ``(page url, {role: psutil.Process})``."""
    # --no-fallback: no start-up probe connection, so the emulator feeds exactly one connection (the ingest's)
    live = ("--source", "live", "--ws-base", ws_base, "--rest-base", rest_base, "--symbols", SYMBOL, "--market", "usdm",
            "--no-fallback", "--redis-url", redis_url)
    with ExitStack() as stack:
        if config == "shared":
            url, proc, _ = stack.enter_context(served(*live, "--update-ms", "250"))
            yield url, {"ingest": psutil.Process(proc.pid)}
            return
        _, ingest, _ = stack.enter_context(served("--no-pages", *live))
        url, pages, _ = stack.enter_context(served("--no-ingest", *live, "--update-ms", "250"))
        yield url, {"ingest": psutil.Process(ingest.pid), "pages": psutil.Process(pages.pid)}


def _wait_for_trades(redis_url: str, timeout: float = 60.0) -> None:
    """Poll until the ingest has written its first batch."""
    r = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while not r.xlen(keys.trades("usdm", SYMBOL)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no trade in Redis {timeout:g} s after the ingest started")
        time.sleep(0.1)
    r.close()


def _cpu(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def _busy() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - t.iowait


async def sessions_window(url: str, n: int, seconds: float, watched: dict[str, list[psutil.Process]],
                          open_timeout: float) -> dict:
    """Open ``n`` sessions, wait until each holds its document (+3 s), then measure for ``seconds``:
    the window's wall-clock bounds (ms) and the CPU (% of one core) of each watched group and of the box."""
    st = Clients()
    sem = asyncio.Semaphore(4)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        tasks = [asyncio.ensure_future(session(http, url, st, sem)) for _ in range(n)]
        t0 = time.monotonic()
        while st.ready + sum(t.done() for t in tasks) < n and time.monotonic() - t0 < open_timeout:
            await asyncio.sleep(0.5)
        out: dict = {"open_s": time.monotonic() - t0, "ready": st.ready}
        await asyncio.sleep(3)  # let the last sessions' first refreshes pass
        cpu0, box0 = {k: _cpu(v) for k, v in watched.items()}, _busy()
        out["start_ms"], w0 = time.time() * 1000, time.monotonic()
        await asyncio.sleep(seconds)
        out["end_ms"], wall = time.time() * 1000, time.monotonic() - w0
        out["cpu"] = {k: (_cpu(v) - cpu0[k]) / wall * 100 for k, v in watched.items()}
        out["cpu"]["box"] = (_busy() - box0) / wall * 100
        st.stop.set()
        res = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in res if isinstance(r, BaseException)]
    if errors:
        print(f"  {len(errors)} session(s) failed: {errors[0]!r}", flush=True)
    return out


def delays(result: dict, start_ms: float, end_ms: float) -> tuple[np.ndarray, np.ndarray, int]:
    """(send -> Redis delays ms of the batches arriving in the window, E - send time ms of their last frames,
    batches whose last trade was not stamped as sent)."""
    d, e, unknown = [], [], 0
    for arrived, id1 in result["batches"]:
        if not start_ms <= arrived <= end_ms:
            continue
        if id1 not in result["sends"]:
            unknown += 1
            continue
        sent, event = result["sends"][id1]
        d.append(arrived - sent)
        e.append(event - sent)
    return np.array(d), np.array(e), unknown


# ----------------------------------------------------------------------------- one row
def measure(config: str, n: int, a, valkey: psutil.Process, redis_url: str) -> dict:
    redis.Redis.from_url(redis_url).flushall()
    with probe(a.speed, redis_url) as (ws_base, rest_base, probe_pid, result):
        with servers(config, ws_base, rest_base, redis_url) as (base, roles):
            _wait_for_trades(redis_url)
            watched = {k: _procs(p) for k, p in roles.items()}
            watched.update(valkey=[valkey], probe=[psutil.Process(probe_pid)], bench=[psutil.Process()])
            url = base + a.path.lstrip("/")
            w = asyncio.run(sessions_window(url, n, a.seconds, watched, 60 + 3 * n))
    d, e, unknown = delays(result, w["start_ms"], w["end_ms"])
    if unknown:
        print(f"  {unknown} batch(es) whose last trade was never stamped as sent", flush=True)
    if result["connections"] != 1:
        print(f"  the emulator sent trades to {result['connections']} connections (expected 1: the ingest's)")
    return {"config": config, "n": n, "ready": w["ready"], "open_s": w["open_s"], "cpu": w["cpu"], "d": d, "e": e}


def _pct(d: np.ndarray, q: float) -> float:
    return float(np.percentile(d, q)) if len(d) else float("nan")


HEADER = (f"{'N':>4} | {'config':<8} | {'ready':>5} | {'open s':>6} | {'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>7} | "
          f"{'batches':>7} | {'ingest proc CPU %':>17} | {'pages proc CPU %':>16} | {'Valkey %':>8} | {'probe %':>7} | "
          f"{'bench %':>7} | {'box CPU %':>9}")


def print_row(r: dict) -> None:
    c, d = r["cpu"], r["d"]
    pages = f"{c['pages']:>16.0f}" if "pages" in c else f"{'(same process)':>16}"
    print(f"{r['n']:>4} | {r['config']:<8} | {r['ready']:>5} | {r['open_s']:>6.0f} | {_pct(d, 50):>7.1f} | "
          f"{_pct(d, 99):>7.1f} | {d.max() if len(d) else float('nan'):>7.1f} | {len(d):>7} | {c['ingest']:>17.0f} | "
          f"{pages} | {c['valkey']:>8.0f} | {c['probe']:>7.0f} | {c['bench']:>7.0f} | {c['box']:>9.0f}", flush=True)


def summary(rows: list[dict], sessions: list[int]) -> None:
    """Pool the rounds per (config, N); print the ratios at the largest N and the target."""
    pooled = {(c, n): np.concatenate([r["d"] for r in rows if r["config"] == c and r["n"] == n] or [np.empty(0)])
              for c in CONFIGS for n in sessions}
    e = np.concatenate([r["e"] for r in rows])
    if len(e):
        print(f"frame E (event time, retimed) minus its measured send time: p50 {_pct(e, 50):+.1f} ms, "
              f"p1 {_pct(e, 1):+.1f}, p99 {_pct(e, 99):+.1f} ms")
    top, low = max(sessions), min(sessions)
    s, i = pooled[("shared", top)], pooled[("isolated", top)]
    print(f"N={top}: isolated / shared: p50 x{_pct(i, 50) / _pct(s, 50):.2f}, p99 x{_pct(i, 99) / _pct(s, 99):.2f}")
    floor = _pct(pooled[("isolated", low)], 99)
    ok = _pct(i, 99) <= 1.5 * floor and _pct(i, 99) < _pct(s, 99)
    print(f"target: isolated p99 at N={top} ({_pct(i, 99):.1f} ms) <= 1.5 x its N={low} p99 ({1.5 * floor:.1f} ms) "
          f"and < shared p99 at N={top} ({_pct(s, 99):.1f} ms): {'met' if ok else 'NOT met'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="0,200")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--speed", type=float, default=1.0, help="replay speed of the recording (1 = real time)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--path", default="/", help="the page the sessions open, e.g. '/?embed=1'")
    a = ap.parse_args(argv)
    if not RECORDING.exists():
        print(f"needs {RECORDING}")
        return 2
    sessions = [int(x) for x in a.sessions.split(",")]
    print(f"isolation: feed -> Redis delay (emulator frame sent -> batch on the stream), real BTCUSDT 2024-08-08 "
          f"USD-M at {a.speed:g}x, {a.seconds:g} s per row, N raw sessions on {a.path} (--update-ms 250), "
          f"{a.rounds} round(s); shared = one serve.py, isolated = --no-pages + --no-ingest")
    print("load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f", {os.cpu_count()} cores")
    server, redis_url = start_embedded()
    rows = []
    try:
        valkey = psutil.Process(server._process.pid)
        print(HEADER, flush=True)
        for rnd in range(a.rounds):
            for n in sessions:
                for config in (CONFIGS if rnd % 2 == 0 else CONFIGS[::-1]):
                    rows.append(measure(config, n, a, valkey, redis_url))
                    print_row(rows[-1])
        summary(rows, sessions)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
