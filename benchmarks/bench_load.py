"""Load benchmark: N concurrent dashboard sessions on one server, replay at 20x.

    python -m benchmarks.bench_load [--sessions 1,50,200] [--seconds 30] [--browsers 2] [--speed 20]

For each N it starts ``serve.py`` (embedded Valkey), opens N sessions with raw WebSocket clients speaking
the Bokeh protocol (the page's session token, ``PULL-DOC-REQ``, then every ``PATCH-DOC`` the server pushes)
plus ``--browsers`` real Chromium pages, and measures for ``--seconds``:

* the delay from a batch's ingest (the ingest service stamps each batch with the wall time it writes it,
  shown in the status bar as ``data-heartbeat``) to the arrival of that stamp in each session: p50, p99;
* server CPU (% of one core, serve.py process) and resident memory per session
  ((RSS with N sessions - RSS with none) / N);
* computations per second, from /metrics (``flowlens_computations_total``), which must not grow with N for
  sessions on the same view.

The baseline row is N = 0 (no session): the server's own CPU and memory while ingesting.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
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

STAMP = re.compile(rb'data-heartbeat=(?:\\?"|&quot;)(\d+)')  # HTML-escaped inside Panel's HTML model
TOKEN = re.compile(r'"token":\s*"([^"]+)"')


def _metric(base: str, name: str) -> float:
    """Sum of a metric over its labels; NaN when the server is too busy to answer /metrics in 10 s."""
    try:
        with urllib.request.urlopen(base + "metrics", timeout=10) as r:
            text = r.read().decode()
    except (TimeoutError, OSError):
        print("  /metrics did not answer within 10 s: the server is saturated")
        return float("nan")
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


def _msg(msgtype: str) -> list[str]:
    header = {"msgid": f"{msgtype}-{time.monotonic_ns()}", "msgtype": msgtype}
    return [orjson.dumps(header).decode(), "{}", "{}"]


async def session(http: aiohttp.ClientSession, base: str, delays: list, stop: asyncio.Event, warmup: float):
    """One Bokeh session over a raw WebSocket: collect (arrival - ingest stamp) of every status patch."""
    async with http.get(base) as r:
        html = await r.text()
    m = TOKEN.search(html)
    if not m:
        raise RuntimeError("no session token in the page")
    ws_url = base.replace("http://", "ws://") + "ws"
    async with http.ws_connect(ws_url, protocols=("bokeh", m.group(1)), max_msg_size=0) as ws:
        await ws.receive()  # ACK: header
        await ws.receive()
        await ws.receive()
        for part in _msg("PULL-DOC-REQ"):
            await ws.send_str(part)
        t0 = time.monotonic()
        last = None
        while not stop.is_set():
            try:
                msg = await asyncio.wait_for(ws.receive(), 1.0)
            except TimeoutError:
                continue
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            for s in STAMP.findall(data):
                stamp = int(s)
                if stamp != last and time.monotonic() - t0 > warmup:
                    delays.append(time.time() * 1000 - stamp)
                last = stamp


async def run_clients(base: str, n: int, seconds: float, warmup: float) -> list[float]:
    delays: list[float] = []
    stop = asyncio.Event()
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        tasks = [asyncio.ensure_future(session(http, base, delays, stop, warmup)) for _ in range(n)]
        await asyncio.sleep(seconds + warmup)
        stop.set()
        res = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in res if isinstance(r, Exception)]
    if errors:
        print(f"  {len(errors)} session(s) failed: {errors[0]!r}")
    return delays


def measure(n: int, seconds: float, browsers: int, speed: float, chromium: str) -> dict:
    from playwright.sync_api import sync_playwright

    with served("--speed", f"{speed:g}", "--update-ms", "250") as (url, proc, _):
        srv = psutil.Process(proc.pid)
        time.sleep(3)
        rss0 = srv.memory_info().rss
        pages, pw, browser = [], None, None
        if browsers and n:
            pw = sync_playwright().start()
            browser = launch(pw, chromium)
            for _ in range(browsers):
                pg = browser.new_page(viewport={"width": 1280, "height": 720})
                pg.goto(url)
                pages.append(pg)
        warmup = 3.0 + n * 0.02
        c0 = _metric(url, "flowlens_computations_total")
        srv.cpu_percent(None)
        t0 = time.monotonic()
        if n:  # Playwright's sync API holds this thread's event loop: the clients get a thread of their own
            with cf.ThreadPoolExecutor(1) as ex:
                delays = ex.submit(asyncio.run, run_clients(url, n, seconds, warmup)).result()
        else:
            time.sleep(seconds + warmup)
            delays = []
        wall = time.monotonic() - t0
        cpu = srv.cpu_percent(None)
        rss = srv.memory_info().rss
        comps = (_metric(url, "flowlens_computations_total") - c0) / wall
        if browser is not None:
            browser.close()
            pw.stop()
    d = np.array(delays) if delays else np.array([np.nan])
    return {"n": n, "cpu": cpu, "rss_mb": rss / 2**20, "per_session_mb": (rss - rss0) / 2**20 / max(n + browsers * bool(n), 1),
            "p50": float(np.nanpercentile(d, 50)), "p99": float(np.nanpercentile(d, 99)), "samples": int(np.isfinite(d).sum()),
            "comps": comps}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="0,1,50,200")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--browsers", type=int, default=2)
    ap.add_argument("--speed", type=float, default=20.0)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args(argv)
    print(f"load: replay at {a.speed:g}x, {a.seconds:g} s per row, raw Bokeh-protocol sessions "
          f"+ {a.browsers} Chromium pages (for N > 0); targets: p99 <= 500 ms at N=200, <= 15 MB/session")
    print(f"{'N':>4} | {'server CPU %':>12} | {'RSS MB':>7} | {'MB/session':>10} | {'p50 ms':>7} | {'p99 ms':>7} | "
          f"{'samples':>7} | {'comp/s':>6}")
    for n in (int(x) for x in a.sessions.split(",")):
        r = measure(n, a.seconds, a.browsers, a.speed, a.chromium)
        print(f"{r['n']:>4} | {r['cpu']:>12.0f} | {r['rss_mb']:>7.0f} | {r['per_session_mb']:>10.2f} | "
              f"{r['p50']:>7.0f} | {r['p99']:>7.0f} | {r['samples']:>7} | {r['comps']:>6.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
