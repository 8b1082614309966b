"""A burst of cached ``/api/v1/vpvr`` requests from one client address, with the rate limit on and off.

    python -m benchmarks.bench_api_burst [--requests 2000] [--concurrency 50] [--speed 1000] [--out FILE]

For each configuration (``serve.py`` defaults, i.e. ``--api-rate 20 --api-burst 40``; then
``--api-rate 0``, no limit) it starts ``serve.py --source replay`` on a free port (embedded
Valkey), polls ``/health`` (not rate limited) until ingest runs, then the profile of a closed
half hour of the recording until it answers (that result is then cached), waits for the
client's token bucket to be full again (burst / rate seconds), and sends ``--requests``
identical requests with ``--concurrency`` in flight (aiohttp, one address: 127.0.0.1).

It prints per configuration: answered (200), refused (429), other, p50/p99 latency of the
answered, requests/s (all answers / wall time of the burst); then the limit-on figures against
the limit-off baseline (ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import served  # noqa: E402

from service.ratelimit import DEFAULT_BURST, DEFAULT_RATE  # noqa: E402

T0 = 1582329600000  # 2020-02-22 00:00 UTC: the bundled recording's first minute
QUERY = f"/api/v1/vpvr?symbol=BTCUSDT&from={T0}&to={T0 + 1800_000}&row_size=1&value_area=0.7"


async def _poll(session, url: str, want: int, timeout: float = 60.0, step: float = 0.25) -> None:
    """GET ``url`` every ``step`` s until it answers ``want``; RuntimeError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            async with session.get(url) as r:
                last = r.status
                await r.read()
                if r.status == want:
                    return
        except OSError as e:
            last = repr(e)
        await asyncio.sleep(step)
    raise RuntimeError(f"{url} did not answer {want} in {timeout:g} s (last: {last})")


async def burst(base: str, n: int, concurrency: int, refill_s: float) -> dict:
    """Send ``n`` GETs of :data:`QUERY` with ``concurrency`` in flight; statuses, latencies (s), wall time (s)."""
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await _poll(session, base + "health", 200)
        await _poll(session, base + QUERY.lstrip("/"), 200)  # data in and the profile cached
        await asyncio.sleep(refill_s)  # the probes took tokens: start the burst with a full bucket
        statuses, latencies = [], []
        todo = iter(range(n))

        async def worker():
            for _ in todo:
                t = time.perf_counter()
                async with session.get(base + QUERY.lstrip("/")) as r:
                    await r.read()
                    statuses.append(r.status)
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"statuses": np.array(statuses), "latencies": np.array(latencies), "wall": wall}


def summarize(r: dict) -> dict:
    st, lat = r["statuses"], r["latencies"]
    ok = lat[st == 200]
    return {"answered": int((st == 200).sum()), "refused": int((st == 429).sum()),
            "other": int(((st != 200) & (st != 429)).sum()),
            "p50_ms": float(np.percentile(ok, 50) * 1000) if len(ok) else float("nan"),
            "p99_ms": float(np.percentile(ok, 99) * 1000) if len(ok) else float("nan"),
            "rps": len(st) / r["wall"], "wall_s": r["wall"]}


def run(extra: tuple[str, ...], args) -> dict:
    rate = float(extra[extra.index("--api-rate") + 1]) if "--api-rate" in extra else DEFAULT_RATE
    refill = DEFAULT_BURST / rate if rate > 0 else 0.0
    with served("--speed", f"{args.speed:g}", *extra) as (url, _proc, _t0):
        return summarize(asyncio.run(burst(url, args.requests, args.concurrency, refill)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--speed", type=float, default=1000.0, help="replay speed of the server (default 1000x)")
    p.add_argument("--out", default=None, help="also write the report to this file")
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    lines = [f"api burst: {args.requests} x GET {QUERY} (cached), concurrency {args.concurrency}, one address; "
             f"serve.py --source replay --speed {args.speed:g}; load average {load:.2f} (1 min), {os.cpu_count()} CPUs",
             f"{'configuration':<50} | answered | refused | other | p50 ms | p99 ms | requests/s | wall s"]
    print("\n".join(lines), flush=True)
    results = {}
    for label, extra in ((f"limit on (defaults: --api-rate {DEFAULT_RATE:g} --api-burst {DEFAULT_BURST})", ()),
                         ("limit off (--api-rate 0)", ("--api-rate", "0"))):
        s = results[label] = run(extra, args)
        lines.append(f"{label:<50} | {s['answered']:8d} | {s['refused']:7d} | {s['other']:5d} | {s['p50_ms']:6.1f} | "
                     f"{s['p99_ms']:6.1f} | {s['rps']:10.1f} | {s['wall_s']:6.2f}")
        print(lines[-1], flush=True)
    on, off = results.values()
    lines += ["", "figure (limit on) vs baseline (limit off):",
              f"  answered {on['answered']} vs {off['answered']} (ratio {on['answered'] / max(off['answered'], 1):.3f})",
              f"  p99 of the answered {on['p99_ms']:.1f} ms vs {off['p99_ms']:.1f} ms "
              f"(ratio {on['p99_ms'] / off['p99_ms']:.3f})",
              f"  requests/s {on['rps']:.1f} vs {off['rps']:.1f} (ratio {on['rps'] / off['rps']:.3f})"]
    text = "\n".join(lines)
    print("\n".join(lines[len(results) + 2:]))
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
