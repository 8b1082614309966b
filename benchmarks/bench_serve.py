"""Measure serve.py end to end: time to first drawn VPVR, replayed trades/s, CPU and memory per process.

    python -m benchmarks.bench_serve [--seconds 20] [--speeds 1,100]

For each speed it starts ``serve.py`` on a free port (embedded Valkey), opens the page in headless
Chromium, records when candles and the VPVR are first drawn, then samples for ``--seconds``: the ingest
rate (trades written / wall second, from Redis's meta hash) and each process's CPU % and resident memory
(psutil). The baseline for the trade rate is the recording's own rate (trades per exchange second) times
the speed; the ratio says how well the replay keeps up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402
from browser import JS_STATE, launch, served  # noqa: E402

from feeds.readers import read_trades  # noqa: E402
from store import keys  # noqa: E402
from store.embedded import url_from_announcement  # noqa: E402

RECORDING = ROOT / "assets/recordings/BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"


def _meta(url: str) -> dict:
    with redis.Redis.from_url(url, decode_responses=True) as r:
        return r.hgetall(keys.meta("usdm", "BTCUSDT"))  # serve.py's default --market


def measure(speed: float, seconds: float, chromium: str, default_command: bool = False) -> dict:
    from playwright.sync_api import sync_playwright

    rec = read_trades(RECORDING)
    native_rate = len(rec) / ((rec.time[-1] - rec.time[0]) / 1000)
    args = ("--source", "live") if default_command else ("--speed", f"{speed:g}")  # live: Binance unreachable -> replay
    with served(*args) as (url, proc, t0):
        redis_url = next(filter(None, map(url_from_announcement, proc.output_lines)))
        with sync_playwright() as pw:
            browser = launch(pw, chromium)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(url)
            first = None
            while time.monotonic() - t0 < 60:
                s = page.evaluate(JS_STATE)
                if s and s["candles"] and s["rows"] and s["poc_visible"]:
                    first = time.monotonic() - t0
                    break
                page.wait_for_timeout(100)
            procs = {"serve.py": psutil.Process(proc.pid)}
            for c in procs["serve.py"].children(recursive=True):
                if "valkey" in " ".join(c.cmdline()):
                    procs["valkey-server"] = c
            chrome = [p for p in psutil.process_iter(["name", "cmdline"]) if "chromium" in (p.info["name"] or "")]
            for p in list(procs.values()) + chrome:
                p.cpu_percent(None)
            m0 = _meta(redis_url)
            w0 = time.monotonic()
            time.sleep(seconds)
            m1 = _meta(redis_url)
            w1 = time.monotonic()
            rows = {}
            for name, p in procs.items():
                rows[name] = (p.cpu_percent(None), p.memory_info().rss / 2**20)
            cpu = sum(p.cpu_percent(None) for p in chrome if p.is_running())
            rss = sum(p.memory_info().rss for p in chrome if p.is_running()) / 2**20
            rows["chromium (all)"] = (cpu, rss)
            browser.close()
    rate = (int(m1["trades_written"]) - int(m0["trades_written"])) / (w1 - w0)
    return {"speed": speed, "first_vpvr_s": first, "rate": rate, "expected": native_rate * speed, "procs": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--speeds", default="1,100")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args(argv)
    print("serve.py end to end (bundled recording, embedded Valkey, one Chromium page)")
    print(f"{'speed':>6} | {'first VPVR s':>12} | {'trades/s':>9} | {'recording x speed':>17} | {'ratio':>5} | process: CPU %, RSS MB")
    runs = [(float(x), False) for x in a.speeds.split(",")] + [(10.0, True)]
    for sp, default in runs:
        r = measure(sp, a.seconds, a.chromium, default)
        procs = "; ".join(f"{k}: {c:.0f} %, {m:.0f} MB" for k, (c, m) in r["procs"].items())
        label = "dflt" if default else f"{sp:g}x"
        print(f"{label:>6} | {r['first_vpvr_s']:>12.1f} | {r['rate']:>9.1f} | {r['expected']:>17.1f} | "
              f"{r['rate'] / r['expected']:>5.2f} | {procs}")
    print("dflt = the README's command (serve.py with no source: live, Binance unreachable here -> replay at 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
