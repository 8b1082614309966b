"""Load benchmark: N concurrent dashboard sessions on one server, replay at 20x.

    python -m benchmarks.bench_load [--sessions 1,50,200] [--seconds 30] [--browsers 2] [--speed 20]

For each N it starts ``serve.py`` (embedded Valkey), opens N sessions (each says ``document_ready`` as BokehJS does; four at a time, ``--path`` picks the
page: the full dashboard or e.g. ``/?embed=1``, the chart that other sites embed) with raw WebSocket clients speaking
the Bokeh protocol (the page's session token, ``PULL-DOC-REQ``, then every ``PATCH-DOC`` the server pushes)
plus ``--browsers`` real Chromium pages, waits until every session holds its document, and then measures
the steady state for ``--seconds``:

* the delay of each trade batch in each session: from the batch's arrival on the trade stream (the bench
  tails it with ``XREAD BLOCK``, as the views do, and notes the arrival) to the first message in
  which the session's status bar shows a last trade id (``data-last-id``) at or past the batch's last id:
  p50 and p99 over all (batch, session) pairs ("samples"); a batch not shown within the window is "missed";
* server CPU (% of one core, serve.py and its --num-procs workers) and resident memory per session
  ((RSS with N sessions - RSS before the first) / N);
* computations per second, from /metrics (``flowlens_computations_total``), which must not grow with N for
  sessions on the same view;
* the CPU of this bench (the load generator: raw clients, Playwright) and of the whole machine, the
  server's garbage-collector pauses over 100 ms (``flowlens_gc_pause_seconds``; the box has 2 cores for
  all), how much the server's RSS grew while measuring ("RSS +MB"), and the websocket frames each raw
  session received per second.

The baseline row is N = 0 (no session): the server's own CPU and memory while ingesting. ``--baseline ARGS``
also measures each N with those serve.py arguments (e.g. ``--gc-freeze-s 0``, without the collector's
freezing) right after, and prints the ratios of its delays to the row's.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import os
import re
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import launch, served  # noqa: E402

from store.embedded import url_from_announcement  # noqa: E402

LAST_ID = re.compile(rb'data-last-id=(?:\\*"|&quot;)(\d+)')  # escaped once or twice inside Panel's HTML model
TOKEN = re.compile(r'"token":\s*"([^"]+)"')


def _metrics(base: str) -> dict[str, float]:
    """The server's computations and long garbage-collector pauses (> 100 ms) so far, from /metrics (NaN when
    the server is too busy to answer in 10 s)."""
    try:
        with urllib.request.urlopen(base + "metrics", timeout=10) as r:
            text = r.read().decode()
    except (TimeoutError, OSError):
        print("  /metrics did not answer within 10 s: the server is saturated")
        return {"comps": float("nan"), "long_gc": float("nan")}

    def total(pattern: str) -> float:
        return sum(float(m.group(1)) for m in re.finditer(rf"^{pattern} ([0-9.e+]+)$", text, re.M))

    return {"comps": total(r"flowlens_computations_total(?:{[^}]*})?"),
            "long_gc": total(r'flowlens_gc_pause_seconds_count{[^}]*}')
            - total(r'flowlens_gc_pause_seconds_bucket{generation="\d",le="0.1"}')}


def _msg(msgtype: str) -> list[str]:
    header = {"msgid": f"{msgtype}-{time.monotonic_ns()}", "msgtype": msgtype}
    return [orjson.dumps(header).decode(), "{}", "{}"]


#: The ``document_ready`` event BokehJS sends once it has drawn the document.
READY = [orjson.dumps({"msgid": "ready", "msgtype": "PATCH-DOC"}).decode(), "{}", orjson.dumps({"events": [
    {"kind": "MessageSent", "msg_type": "bokeh_event",
     "msg_data": {"type": "event", "name": "document_ready", "values": {"type": "map"}}}]}).decode()]


class Clients:
    """Shared state of the raw sessions: how many hold their document, and the delays while measuring."""

    def __init__(self):
        self.ready = 0
        self.failed: list[BaseException] = []
        self.measuring = False
        #: per session: (arrival wall ms, last trade id shown) for every new id seen while measuring
        self.seen: list[list[tuple[float, int]]] = []
        self.stop = asyncio.Event()
        self.frames = 0  # websocket messages (frames) received by all sessions while measuring


async def session(http: aiohttp.ClientSession, url: str, st: Clients, sem: asyncio.Semaphore):
    """One Bokeh session over a raw WebSocket: GET the page, PULL-DOC, then read every PATCH-DOC.

    While ``st.measuring``, each new ``data-last-id`` (last trade id shown) is noted with its arrival time.
    """
    async with sem:  # open the sessions a few at a time, as a crowd arriving, not one burst
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=600)) as r:
            html = await r.text()
    m = TOKEN.search(html)
    if not m:
        raise RuntimeError("no session token in the page")
    base = url.split("?")[0]
    ws_url = base.replace("http://", "ws://") + "ws"
    async with http.ws_connect(ws_url, protocols=("bokeh", m.group(1)), max_msg_size=0) as ws:
        for _ in range(3):  # ACK: header, metadata, content
            await ws.receive()
        for part in _msg("PULL-DOC-REQ"):
            await ws.send_str(part)
        last, counted = None, False
        seen: list[tuple[float, int]] = []
        st.seen.append(seen)
        while not st.stop.is_set():
            try:
                msg = await asyncio.wait_for(ws.receive(), 1.0)
            except TimeoutError:
                continue
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            if st.measuring:
                st.frames += 1
            if not counted and b"PULL-DOC-REPLY" in data:
                st.ready += 1
                counted = True
                for part in READY:  # as BokehJS does once the page is drawn (Panel's onload, batched writes)
                    await ws.send_str(part)
            for s in LAST_ID.findall(data):
                lid = int(s)
                if lid != last and st.measuring:
                    seen.append((time.time() * 1000, lid))
                last = lid


async def announcements(redis_url: str, symbol: str, out: list, stopped, recording=lambda: True) -> None:
    """Note (wall ms, last trade id) of every batch the ingest writes to the symbol's trade stream.

    Tails the stream with ``XREAD BLOCK`` (the way the views read it) and stamps each entry when it
    arrives: the trade's time at ingest to the bench's clock (same host, loopback; the read adds
    well under a millisecond). Runs until ``stopped()`` is true; notes only while ``recording()``
    is true (both called without arguments).
    """
    import redis.asyncio as aioredis

    from store import keys

    r = aioredis.from_url(redis_url)
    stream, last = keys.trades("usdm", symbol), "$"  # serve.py's default --market
    try:
        while not stopped():
            got = await r.xread({stream: last}, block=500)
            for _, entries in got or ():
                for entry_id, fields in entries:
                    last = entry_id
                    if recording():
                        out.append((time.time() * 1000, int(fields[b"id1"])))
    finally:
        await r.aclose()


def delay_matrix(batches: list[tuple[float, int]], sessions: list[list[tuple[float, int]]], end_ms: float) -> np.ndarray:
    """Delay (ms) of each announced batch in each session, shape (sessions, batches announced at least 1 s
    before ``end_ms``), float64: the first arrival showing the batch's last trade id minus its announcement;
    NaN where no message of the session covered it (missed: its delay is longer than the window)."""
    counted = [(t, i) for t, i in batches if t <= end_ms - 1000]
    out = np.full((len(sessions), len(counted)), np.nan)
    for r, seen in enumerate(sessions):
        arr = np.array([a for a, _ in seen])
        ids = np.maximum.accumulate(np.array([i for _, i in seen])) if seen else np.array([], dtype=np.int64)
        for c, (t_pub, id1) in enumerate(counted):
            k = int(np.searchsorted(ids, id1))  # first message whose shown id reaches the batch's last id
            while k < len(arr) and arr[k] < t_pub:  # shown before announced: the clocks' order; take the next
                k += 1
            if k < len(arr):
                out[r, c] = arr[k] - t_pub
    return out


def trade_delays(batches: list[tuple[float, int]], sessions: list[list[tuple[float, int]]], end_ms: float):
    """:func:`delay_matrix` as (delays, missed): the shown delays (ms, session by session) and the count of missed."""
    m = delay_matrix(batches, sessions, end_ms)
    return m[np.isfinite(m)].tolist(), int(np.isnan(m).sum())


def _procs(root: psutil.Process) -> list[psutil.Process]:
    """serve.py and its forked workers (--num-procs), not the embedded Valkey."""
    return [root, *(c for c in root.children(recursive=True) if "valkey" not in c.name())]


async def run_clients(url: str, n: int, seconds: float, srv: psutil.Process, open_timeout: float,
                      redis_url: str, symbol: str) -> dict:
    """Open ``n`` sessions, wait until each holds its document, then measure for ``seconds``."""
    st = Clients()
    sem = asyncio.Semaphore(4)
    conn = aiohttp.TCPConnector(limit=0)
    out: dict = {}
    async with aiohttp.ClientSession(connector=conn) as http:
        batches: list[tuple[float, int]] = []
        watcher = asyncio.ensure_future(announcements(redis_url, symbol, batches, st.stop.is_set,
                                                              lambda: st.measuring))
        tasks = [asyncio.ensure_future(session(http, url, st, sem)) for _ in range(n)]
        t0 = time.monotonic()
        while st.ready + sum(t.done() for t in tasks) < n and time.monotonic() - t0 < open_timeout:
            await asyncio.sleep(0.5)
        out["open_s"] = time.monotonic() - t0
        out["ready"] = st.ready
        await asyncio.sleep(3)  # let the last sessions' first refreshes pass
        procs = _procs(srv)
        cpu0 = sum(sum(p.cpu_times()[:2]) for p in procs)
        me = psutil.Process()
        own0, box0 = sum(me.cpu_times()[:2]), psutil.cpu_times()
        rss_start = sum(p.memory_info().rss for p in procs)
        m0 = await asyncio.to_thread(_metrics, url.split("?")[0])
        st.measuring = True
        t1 = time.monotonic()
        await asyncio.sleep(seconds)
        st.measuring = False
        end_ms = time.time() * 1000
        wall = time.monotonic() - t1
        out["cpu"] = (sum(sum(p.cpu_times()[:2]) for p in procs) - cpu0) / wall * 100
        out["client_cpu"] = (sum(me.cpu_times()[:2]) - own0) / wall * 100
        out["frames"] = st.frames / wall / max(n, 1)
        box1 = psutil.cpu_times()
        out["box_cpu"] = ((sum(box1) - box1.idle - box1.iowait) - (sum(box0) - box0.idle - box0.iowait)) / wall * 100
        out["rss"] = sum(p.memory_info().rss for p in procs)
        out["rss_growth"] = out["rss"] - rss_start
        m1 = await asyncio.to_thread(_metrics, url.split("?")[0])
        out["comps"] = (m1["comps"] - m0["comps"]) / wall
        out["long_gc"] = m1["long_gc"] - m0["long_gc"]
        st.stop.set()
        res = await asyncio.gather(*tasks, return_exceptions=True)
        await watcher
    errors = [r for r in res if isinstance(r, BaseException)]
    if errors:
        print(f"  {len(errors)} session(s) failed: {errors[0]!r}")
    m = delay_matrix(batches, st.seen, end_ms)
    out["delays"], out["missed"] = m[np.isfinite(m)].tolist(), int(np.isnan(m).sum())
    late = (m > 500).sum(axis=0)  # per batch: in how many sessions it was late (NaN compares False)
    if late.any():  # a few batches late in many sessions at once (a stalled process) or spread out
        top = np.argsort(late, kind="stable")[-3:]
        print("  batches late (> 500 ms) in the most sessions: "
              + ", ".join(f"{late[j]} sessions at +{(batches[j][0] - batches[0][0]) / 1000:.1f} s" for j in top))
    out["batches"] = len(batches)
    silent = sum(not seen for seen in st.seen)
    if silent:
        print(f"  {silent} of {len(st.seen)} sessions showed no new trade id while measuring")
    return out


def measure(n: int, seconds: float, browsers: int, speed: float, chromium: str, path: str, procs: int,
            serve_args: tuple[str, ...] = (), server_log: str = "") -> dict:
    from playwright.sync_api import sync_playwright

    args = ["--speed", f"{speed:g}", "--update-ms", "250", *serve_args] + (["--num-procs", str(procs)] if procs > 1 else [])
    with served(*args) as (base, proc, _):
        redis_url = next(filter(None, map(url_from_announcement, proc.output_lines)))
        srv = psutil.Process(proc.pid)
        time.sleep(3)
        rss0 = sum(p.memory_info().rss for p in _procs(srv))
        url = base + path.lstrip("/")
        pages, pw, browser = [], None, None
        if browsers and n:
            pw = sync_playwright().start()
            browser = launch(pw, chromium)
            for _ in range(browsers):
                pg = browser.new_page(viewport={"width": 1280, "height": 720})
                pg.goto(url)
                pages.append(pg)
        # Playwright's sync API holds this thread's event loop: the clients get a thread of their own
        with cf.ThreadPoolExecutor(1) as ex:
            out = ex.submit(asyncio.run, run_clients(url, n, seconds, srv, 60 + 3 * n, redis_url, "BTCUSDT")).result()
        if browser is not None:
            browser.close()
            pw.stop()
        if server_log:
            Path(server_log).write_text("".join(proc.output_lines))
    d = np.array(out["delays"]) if out["delays"] else np.array([np.nan])
    sessions = n + browsers * bool(n)
    return {"n": n, "cpu": out["cpu"], "rss_mb": out["rss"] / 2**20, "open_s": out["open_s"], "ready": out["ready"],
            "per_session_mb": (out["rss"] - rss0) / 2**20 / max(sessions, 1),
            "p50": float(np.percentile(d, 50)), "p99": float(np.percentile(d, 99)), "samples": int(np.isfinite(d).sum()),
            "missed": out["missed"], "batches": out["batches"],
            "comps": out["comps"], "client_cpu": out["client_cpu"], "box_cpu": out["box_cpu"],
            "long_gc": out["long_gc"], "rss_growth_mb": out["rss_growth"] / 2**20,
            "frames": out["frames"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="0,1,50,200")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--browsers", type=int, default=2)
    ap.add_argument("--speed", type=float, default=20.0)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--path", default="/", help="the page the sessions open, e.g. '/?embed=1' for the embedded chart")
    ap.add_argument("--num-procs", type=int, default=1, help="serve.py --num-procs")
    ap.add_argument("--serve-args", default="", help="more serve.py arguments for every row")
    ap.add_argument("--baseline", default="", help="serve.py arguments of a baseline measured after each N, with "
                                                   "the ratios of its p50/p99 to the row's, e.g. '--gc-freeze-s 0'")
    ap.add_argument("--server-log", default="", help="write the server's output to this file (the last N's)")
    a = ap.parse_args(argv)
    print(f"load: replay at {a.speed:g}x, page {a.path}, {a.num_procs} server process(es) {a.serve_args}, {a.seconds:g} s measured "
          f"once every session holds its document; raw Bokeh-protocol sessions + {a.browsers} Chromium pages "
          f"(for N > 0); targets: p99 <= 500 ms at N=200, <= 15 MB/session, comp/s flat in N")
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'N':>4} | {'open s':>6} | {'ready':>5} | {'server CPU %':>12} | {'RSS MB':>7} | {'MB/session':>10} | "
          f"{'p50 ms':>7} | {'p99 ms':>7} | {'batches':>7} | {'samples':>7} | {'missed':>6} | {'comp/s':>6} | "
          f"{'bench CPU %':>11} | {'box CPU %':>9} | {'GC > 100 ms':>11} | {'RSS +MB':>7} | {'frames/s':>8}")
    def row(label, r):
        print(f"{label:>4} | {r['open_s']:>6.0f} | {r['ready']:>5} | {r['cpu']:>12.0f} | {r['rss_mb']:>7.0f} | "
              f"{r['per_session_mb']:>10.2f} | {r['p50']:>7.0f} | {r['p99']:>7.0f} | {r['batches']:>7} | {r['samples']:>7} | "
              f"{r['missed']:>6} | {r['comps']:>6.1f} | {r['client_cpu']:>11.0f} | {r['box_cpu']:>9.0f} | {r['long_gc']:>11.0f} | {r['rss_growth_mb']:>7.0f} | {r['frames']:>8.1f}",
              flush=True)

    for n in (int(x) for x in a.sessions.split(",")):
        r = measure(n, a.seconds, a.browsers, a.speed, a.chromium, a.path, a.num_procs, tuple(a.serve_args.split()),
                    a.server_log)
        row(str(n), r)
        if a.baseline and n:
            b = measure(n, a.seconds, a.browsers, a.speed, a.chromium, a.path, a.num_procs,
                        (*a.serve_args.split(), *a.baseline.split()))
            row("base", b)
            print(f"  N={n}: baseline ({a.baseline}) / this: p50 x{b['p50'] / r['p50']:.2f}, p99 x{b['p99'] / r['p99']:.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
