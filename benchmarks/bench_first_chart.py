"""Time to first chart, cold and warm, in one real Chromium page at 1920x1080.

    python -m benchmarks.bench_first_chart [--runs 3] [--chromium /usr/bin/chromium] [--path /]

Paths timed (wall clock, medians of ``--runs``):

* **cold start**: ``serve.py --source replay`` on an empty embedded Valkey; from the process's start to the
  first drawn VPVR (the page's profile source has rows) in a page opened as soon as the server prints its URL;
* **warm start**: ``serve.py --no-ingest --redis-url URL`` against the Valkey the cold run filled (an
  operator's restart of a page server: the trades are in Redis, nothing in the process); process start ->
  URL line -> first VPVR;
* **warm page**: a second page on the same, already warm server: ``page.goto`` -> first VPVR.

Baseline: the same page with ``profile=0`` (candles only) on the warm server, which shows what the profile
adds. Target (issue 15/19): a first chart within 10 s of a warm start on this 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from benchmarks.bench_load import ROOT

sys.path.insert(0, str(ROOT / "tests"))

from browser import CHROMIUM_ARGS, JS_STATE, served  # noqa: E402

from store.embedded import start_embedded  # noqa: E402

TARGET_S = 10.0


def first_chart(browser, url: str, need_rows: bool = True, timeout: float = 120.0) -> float:
    """Seconds from ``page.goto(url)`` to the first drawn chart (VPVR rows, or candles when not ``need_rows``)."""
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    try:
        t0 = time.monotonic()
        page.goto(url)
        while time.monotonic() - t0 < timeout:
            s = page.evaluate(JS_STATE)
            if s and (s["rows"] if need_rows else s["candles"]):
                return time.monotonic() - t0
            page.wait_for_timeout(20)
        raise RuntimeError(f"no chart at {url} after {timeout:.0f} s")
    finally:
        page.close()


def _run(browser, redis_url: str, path: str) -> dict:
    out = {}
    with served("--redis-url", redis_url, "--speed", "600") as (base, _proc, t0):
        out["cold: URL line"] = time.monotonic() - t0
        out["cold: process start -> first VPVR"] = (time.monotonic() - t0) + first_chart(browser, base + path)
    with served("--no-ingest", "--redis-url", redis_url) as (base, _proc, t0):
        out["warm: URL line"] = time.monotonic() - t0
        out["warm: process start -> first VPVR"] = (time.monotonic() - t0) + first_chart(browser, base + path)
        out["warm page: goto -> first VPVR"] = first_chart(browser, base + path)
        sep = "&" if "?" in path else "?"
        out["baseline, warm page without profile: goto -> candles"] = first_chart(
            browser, base + path + sep + "profile=0", need_rows=False)
    return out


def main(argv=None) -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--path", default="/")
    a = ap.parse_args(argv)
    print(f"first chart: {' '.join(sys.argv)}; load average {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    runs: list[dict] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=a.chromium, headless=True, args=CHROMIUM_ARGS)
        for _ in range(a.runs):
            server, url = start_embedded()  # a fresh, empty Valkey per run: the cold start is cold
            try:
                runs.append(_run(browser, url, a.path.lstrip("/")))
            finally:
                server.stop()
        browser.close()
    print(f"{'path':<55} | median s | runs")
    for k in runs[0]:
        vals = [r[k] for r in runs]
        print(f"{k:<55} | {statistics.median(vals):8.2f} | {' '.join(f'{v:.2f}' for v in vals)}")
    warm = statistics.median(r["warm: process start -> first VPVR"] for r in runs)
    print(f"target: first chart within {TARGET_S:.0f} s of a warm start: {warm:.2f} s "
          f"({'PASS' if warm <= TARGET_S else 'FAIL'}); load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
