"""Browser benchmark: one real Chromium page on a replay; time to first chart, trade-to-page delay, memory over time.

    python -m benchmarks.bench_browser [--minutes 10] [--speed 10] [--chromium /usr/bin/chromium] [--path /]

Starts ``serve.py --speed S`` (the bundled recording, embedded Valkey) and opens one headless Chromium page at
1920x1080 (issue 6's "Done when": browser memory after 10 minutes at 10x replay, time to first chart, delay p50/p99):

* time to first chart: from ``page.goto`` to the first drawn VPVR (the page's profile source has rows);
* once a minute: the page's JS heap (CDP ``Performance.getMetrics`` JSHeapUsedSize, then again after a forced
  GC, ``HeapProfiler.collectGarbage``: what the page retains), ``performance.memory.usedJSHeapSize`` (precise
  memory info on), DOM nodes (CDP ``Nodes``, after the GC), the memory of all Chromium processes (the browser
  Playwright launched and its renderer, GPU and utility children: RSS, and USS, their private pages, which
  counts shared libraries once and does not depend on other Chromiums on the host) and serve.py's RSS
  (without the embedded Valkey);
  then the growth from minute 1 to the last minute;
* trade-to-page delay: a MutationObserver in the page notes (Date.now(), ``data-last-id``) each time the status
  bar (``.fl-status``) shows a new last trade id; a Redis pub/sub subscriber notes when the ingest announces
  each batch (``store.keys.updated``); ``bench_load.trade_delays`` pairs them (same host, same clock).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import os
import sys
import threading
import time

import numpy as np
import psutil

from benchmarks.bench_load import ROOT, announcements, trade_delays

sys.path.insert(0, str(ROOT / "tests"))

from browser import CHROMIUM_ARGS, JS_STATE, served  # noqa: E402

from store.embedded import url_from_announcement  # noqa: E402

MB = 2**20
DRAIN = "() => (window.__flSeen || []).splice(0)"

#: Installs the observer on the shadow root that holds the status bar (Bokeh Divs render in shadow DOM);
#: re-attaches if Bokeh re-renders the view. Entries accumulate in window.__flSeen, drained by the bench.
JS_OBSERVE = """() => {
  const find = (root) => { if (root.querySelector('.fl-status')) return root;
    for (const e of root.querySelectorAll('*')) if (e.shadowRoot) { const r = find(e.shadowRoot); if (r) return r; }
    return null; };
  const seen = window.__flSeen = []; let last = null, root = null, obs = null;
  const check = () => { const el = root && root.querySelector('.fl-status'); const id = el && el.dataset.lastId;
    if (id && id !== last) { last = id; seen.push([Date.now(), +id]); } };
  const attach = () => { if (root && (root === document || root.host.isConnected)) return;
    const r = find(document); if (!r) return; if (obs) obs.disconnect(); root = r;
    obs = new MutationObserver(check); obs.observe(root, {subtree: true, childList: true, attributes: true, characterData: true});
    check(); };
  attach(); setInterval(attach, 1000);
  return root !== null;
}"""


def chromium_procs(exclude: psutil.Process) -> list[psutil.Process]:
    """Chromium processes started under this process (via the Playwright driver), not under serve.py."""
    skip = {exclude.pid, *(c.pid for c in exclude.children(recursive=True))}
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid not in skip and "chrom" in p.name():
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def rss(procs: list[psutil.Process], uss: bool = False) -> float:
    """Summed RSS (MB; shared pages counted in each process), or USS (pages private to each process) with ``uss``."""
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().uss if uss else p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / MB


def main(argv=None) -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--path", default="/", help="the page to open, e.g. '/?embed=1'")
    a = ap.parse_args(argv)
    print(f"browser: {' '.join(sys.argv)}\nserve.py --speed {a.speed:g} (replay, embedded Valkey), one Chromium page "
          f"{a.path} at 1920x1080, {a.minutes} min; load average {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    with served("--speed", f"{a.speed:g}") as (base, proc, _):
        print(f"server: {' '.join(map(str, proc.args))}")
        redis_url = next(filter(None, map(url_from_announcement, proc.output_lines)))
        srv = psutil.Process(proc.pid)
        batches: list[tuple[float, int]] = []
        stop = threading.Event()
        with sync_playwright() as pw, cf.ThreadPoolExecutor(1) as ex:
            # Playwright's sync API holds this thread's event loop: the subscriber gets a thread of its own
            sub = ex.submit(asyncio.run, announcements(redis_url, "BTCUSDT", batches, stop.is_set))
            try:
                browser = pw.chromium.launch(executable_path=a.chromium, headless=True,
                                             args=[*CHROMIUM_ARGS, "--enable-precise-memory-info"])
                page = browser.new_page(viewport={"width": 1920, "height": 1080})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                t0 = time.monotonic()
                page.goto(base + a.path.lstrip("/"))
                first = None
                while time.monotonic() - t0 < 120:
                    s = page.evaluate(JS_STATE)
                    if s and s["rows"]:
                        first = time.monotonic() - t0
                        break
                    page.wait_for_timeout(50)
                print(f"time to first chart (page.goto -> first VPVR rows drawn): "
                      f"{'not within 120 s' if first is None else f'{first:.2f} s'}")
                observing = page.evaluate(JS_OBSERVE)
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable")
                seen: list[tuple[float, int]] = []
                t_start = time.time() * 1000
                print(f"{'min':>3} | {'JS heap MB':>10} | {'after GC MB':>11} | {'perf.memory MB':>14} | {'DOM nodes':>9} | "
                      f"{'Chromium RSS MB':>15} | {'USS MB':>6} | {'procs':>5} | {'serve.py RSS MB':>15} | {'ids shown':>9}")
                rows = []
                for minute in range(a.minutes + 1):  # minute 0: right after the first chart
                    deadline = t0 + (first or 0) + 60 * minute
                    while (left := deadline - time.monotonic()) > 0:
                        page.wait_for_timeout(min(left, 5.0) * 1000)
                        seen += [tuple(x) for x in page.evaluate(DRAIN)]
                    m = {x["name"]: x["value"] for x in cdp.send("Performance.getMetrics")["metrics"]}
                    cdp.send("HeapProfiler.collectGarbage")
                    gc = {x["name"]: x["value"] for x in cdp.send("Performance.getMetrics")["metrics"]}
                    perf = page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : null")
                    chrome = chromium_procs(srv)
                    srv_procs = [srv, *(c for c in srv.children(recursive=True) if "valkey" not in c.name())]
                    r = (minute, m["JSHeapUsedSize"] / MB, gc["JSHeapUsedSize"] / MB, (perf or float("nan")) / MB,
                         int(gc["Nodes"]), rss(chrome), len(chrome), rss(srv_procs), len(seen), rss(chrome, uss=True))
                    rows.append(r)
                    print(f"{r[0]:>3} | {r[1]:>10.1f} | {r[2]:>11.1f} | {r[3]:>14.1f} | {r[4]:>9} | {r[5]:>15.0f} | {r[9]:>6.0f} | "
                          f"{r[6]:>5} | {r[7]:>15.0f} | {r[8]:>9}", flush=True)
                end_ms = time.time() * 1000
                seen += [tuple(x) for x in page.evaluate(DRAIN)]  # what the page showed while sampling
                browser.close()
            finally:
                stop.set()
                sub.result()
    delays, missed = trade_delays([b for b in batches if b[0] >= t_start], [seen], end_ms)
    d = np.array(delays) if delays else np.array([np.nan])
    print("\nsummary")
    print(f"  time to first chart: {'n/a' if first is None else f'{first:.2f} s'} (page.goto -> VPVR drawn)")
    print(f"  trade-to-page delay: p50 {np.nanpercentile(d, 50):.0f} ms, p99 {np.nanpercentile(d, 99):.0f} ms over "
          f"{len(delays)} batches, {missed} missed (ingest announcement -> status bar's data-last-id in the DOM; "
          f"observer {'on' if observing else 'NOT attached'})")
    r0, r1, rn = rows[0], rows[min(1, len(rows) - 1)], rows[-1]
    for name, i in (("JS heap after GC", 2), ("DOM nodes", 4), ("Chromium RSS", 5), ("Chromium USS", 9), ("serve.py RSS", 7)):
        unit, f = ("", ".0f") if i == 4 else (" MB", ".1f")
        print(f"  {name}: minute 1 {r1[i]:{f}}{unit} -> minute {rn[0]} {rn[i]:{f}}{unit} "
              f"({rn[i] - r1[i]:+{f}}{unit}, {(rn[i] - r1[i]) / r1[i] * 100:+.1f} %); "
              f"since the first chart {rn[i] - r0[i]:+{f}}{unit}")
    print(f"  page errors: {len(errors)}{': ' + errors[0][:200] if errors else ''}")
    print(f"  load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
