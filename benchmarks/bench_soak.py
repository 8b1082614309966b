"""Soak: does memory stay flat once the retention is reached? (issue 13, bounded memory)

    python -m benchmarks.bench_soak [--minutes 30] [--speed 50] [--pages 3] [--retention-min 10]

Path timed: ``serve.py --source replay`` (the bundled real recording, looping, shifted in time and ids
each loop) at ``--speed``, with ``--pages`` headless Chromium pages of the full dashboard open the whole
time, and ``--retention-min`` short enough that trades, candles and liquidations start being trimmed
within the first minutes (10 min of exchange time is 12 s of wall time at 50x).

Every ``--every-s`` seconds it prints the server's resident memory (RSS of serve.py, psutil), Redis ``used_memory``
(``INFO memory``), the keys' sizes (trade stream entries, candles hash fields) and the trades written.
At the end: the slope of RSS and of ``used_memory`` after the first ``--warm-min`` minutes (least
squares, MB per 10 min). Baseline: the same figures at the end of the warm-up, i.e. zero growth; the
target is a slope under 1 MB / 10 min for both once the retention is reached.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402
from browser import launch, served  # noqa: E402

from store import keys  # noqa: E402
from store.embedded import url_from_announcement  # noqa: E402

TARGET_MB_PER_10_MIN = 1.0


def slope_mb_per_10min(minutes: np.ndarray, mb: np.ndarray) -> float:
    """Least-squares slope of ``mb`` over ``minutes``, in MB per 10 minutes (NaN with fewer than 2 points)."""
    if len(minutes) < 2:
        return float("nan")
    return float(np.polyfit(minutes, mb, 1)[0] * 10)


def sample(r: redis.Redis, server: psutil.Process, symbol: str) -> dict:
    """One reading: server RSS (MB), Redis used_memory (MB), stream entries, candle fields, trades written."""
    meta = r.hgetall(keys.meta("usdm", symbol))
    return {
        "rss": server.memory_info().rss / 2**20,
        "redis": r.info("memory")["used_memory"] / 2**20,
        "entries": r.xlen(keys.trades("usdm", symbol)),
        "candles": r.hlen(keys.candles("usdm", symbol)),
        "written": int(meta.get(b"trades_written", 0)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warm-min", type=float, default=5.0, help="minutes left out of the slope")
    ap.add_argument("--speed", type=float, default=50.0)
    ap.add_argument("--pages", type=int, default=3)
    ap.add_argument("--retention-min", type=int, default=10)
    ap.add_argument("--every-s", type=float, default=60.0, help="seconds between readings")
    ap.add_argument("--serve-args", default="", help="more serve.py arguments, e.g. '--gc-freeze-s 0'")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for serve.py's environment, e.g. "
                                                               "MALLOC_ARENA_MAX=2 (repeatable)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args(argv)
    print(f"soak: serve.py replay at {a.speed:g}x, {a.pages} Chromium pages, --retention-min {a.retention_min}, "
          f"{a.minutes:g} min {a.serve_args} {' '.join(a.env)}; load average {os.getloadavg()[0]:.2f}; target slope < {TARGET_MB_PER_10_MIN} MB/10 min "
          f"after {a.warm_min:g} min (baseline: flat, 0)", flush=True)
    from playwright.sync_api import sync_playwright

    rows = []
    env = dict(kv.split("=", 1) for kv in a.env)
    with served("--speed", f"{a.speed:g}", "--retention-min", str(a.retention_min), *a.serve_args.split(),
                env=env) as (url, proc, _):
        r = redis.Redis.from_url(next(filter(None, map(url_from_announcement, proc.output_lines))))
        server = psutil.Process(proc.pid)
        with sync_playwright() as pw:
            browser = launch(pw, a.chromium)
            pages = [browser.new_page(viewport={"width": 1280, "height": 720}) for _ in range(a.pages)]
            for pg in pages:
                pg.goto(url)
            t0 = time.monotonic()
            print(f"{'min':>5} | {'RSS MB':>7} | {'Redis MB':>8} | {'entries':>7} | {'candles':>7} | {'written':>10}")
            while (m := (time.monotonic() - t0) / 60) <= a.minutes:
                s = sample(r, server, "BTCUSDT")
                rows.append((m, s))
                print(f"{m:>5.1f} | {s['rss']:>7.1f} | {s['redis']:>8.2f} | {s['entries']:>7} | {s['candles']:>7} | "
                      f"{s['written']:>10,}", flush=True)
                pages[0].wait_for_timeout(a.every_s * 1000)  # keeps the browser's event loop turning meanwhile
            browser.close()
        r.close()
    late = [(m, s) for m, s in rows if m >= a.warm_min]
    mins = np.array([m for m, _ in late])
    for name, label in (("rss", "server RSS"), ("redis", "Redis used_memory")):
        mb = np.array([s[name] for _, s in late])
        k = slope_mb_per_10min(mins, mb)
        verdict = "met" if abs(k) < TARGET_MB_PER_10_MIN else "MISSED"
        base = mb[0] if len(mb) else float("nan")
        print(f"{label}: slope {k:+.2f} MB/10 min after {a.warm_min:g} min (at {a.warm_min:g} min {base:.1f} MB, "
              f"end {mb[-1] if len(mb) else float('nan'):.1f} MB); baseline 0, target |slope| < "
              f"{TARGET_MB_PER_10_MIN} -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
