"""Ingest into Redis, Redis memory and a cold load, each against a baseline measured in the same run (issue 16).

Run::

    python -m benchmarks.bench_ingest            # full day (~3.05 M trades), writes benchmarks/results/ingest.md
    python -m benchmarks.bench_ingest --quick    # 2 layers (~280 k trades), writes nothing unless --out

Input: :func:`benchmarks.data.build_day` (the real 12 h recording repeated with shifted times to
3.05 M trades over 24 h). Redis: an embedded Valkey started here (:func:`store.embedded.start_embedded`),
emptied (``FLUSHALL``, not timed) before every run.

What each figure times:

* **ingest, 1-min / 1-s batches** — the product's path: a source yielding the day cut into batches of
  one minute (or one second) of exchange time, as fast as they are taken, read by
  :class:`store.ingest.IngestService` (exactly-once id checks, 1-minute candles, meta with heartbeat and
  trades/s) writing through :meth:`store.redis_store.RedisStore.append_many`, fenced by the ingest lease as
  serve.py's ingest writes (one script that checks the lease's holder, then appends: one round trip a
  write; :func:`fenced`). The product group-commits:
  what queued up while a write was in flight goes in the next transaction, and queued 1-s batches are
  merged into entries of up to 60 s. Baselines, redis-py (synchronous client, what a user writes)
  pipelined ``XADD``, one ``execute`` per 1,000 entries: (a) one entry per source batch holding the bytes
  the product's codec makes of that batch (packed before timing); (b) exactly the entries the product
  stored (same count, same fields). The target is on (a); (b) is printed too. All figures are CPU time
  of this process (``time.process_time``; the Valkey server is another process), medians of interleaved
  runs. The 1-s batches use the first ``--second-hours`` hours of the day.
* **live pace** — the 1-s batches of the first 30 min handed over one at a time, each only after the
  last one's write was tried, so each is its own transaction (as at live pace): CPU per batch, against
  one synchronous redis-py ``XADD`` round trip per batch.
* **Redis memory** — ``INFO memory`` ``used_memory`` after minus before ingesting the whole day through
  the product's path in 1-min batches (trades, candles, meta). Baseline: the issue's 16 B/trade layout
  (int32 time + int32 tick + int64 signed quantity) for the same trades, as a figure.
* **cold load** — a new Python process (``sys.executable``) connects and reads the whole kept day with
  :meth:`RedisStore.read_range`; the figure is the wall time of that call (imports and interpreter start
  are printed apart). Baseline: the same process fetching the same stream with raw redis-py ``XRANGE``
  (synchronous, no decoding).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

from benchmarks.data import build_day
from compute.batch import TradeBatch
from feeds.source import BatchList, cut_by_time
from store import keys
from store.embedded import start_embedded
from store.ingest import IngestService
from store.redis_store import RedisStore, connect
from store.trade_codec import TradeEncoder

RESULTS = Path(__file__).resolve().parent / "results"
SYMBOL = "BTCUSDT"
TICK = 0.01
PIPELINE_ENTRIES = 1000


@dataclass
class Row:
    """One line of the table: the figure, its baseline, their ratio and the target."""

    figure: str
    value: float
    unit: str
    baseline: str
    baseline_value: float | None
    ratio: float | None
    target: str
    ok: bool | None
    note: str = ""


def packed(batches: list[TradeBatch]) -> list[bytes]:
    """The bytes the product stores for each batch (:class:`store.trade_codec.TradeEncoder`), one blob a batch."""
    enc = TradeEncoder()
    return [enc.encode(b) for b in batches]


LEASE_OWNER = "bench:0:lease"


async def fenced(store: RedisStore) -> RedisStore:
    """``store`` as serve.py's ingest writes with it: holding the symbol's ingest lease, every write fenced by it
    (one script: check its holder, then append; :meth:`RedisStore.append_many`)."""
    key = keys.lease("usdm", SYMBOL)
    await store.r.set(key, LEASE_OWNER, px=3_600_000)
    store.fences[SYMBOL] = (key, LEASE_OWNER)
    return store


def product_cpu(url: str, batches: list[TradeBatch]) -> tuple[float, float, list]:
    """CPU and wall seconds of the product's ingest of ``batches`` into an emptied Redis, and the stream
    entries it stored (``(ms, fields)``, for the second baseline)."""
    r = redis.Redis.from_url(url)
    r.flushall()

    async def go():
        client = connect(url)
        svc = IngestService(BatchList(batches), await fenced(RedisStore(client)), symbol=SYMBOL, tick=TICK)
        gc.collect()
        c, w = time.process_time(), time.perf_counter()
        await svc.run()
        c, w = time.process_time() - c, time.perf_counter() - w
        assert svc.trades_written == sum(len(b) for b in batches), "the product lost trades"
        await client.aclose()
        return c, w

    c, w = asyncio.run(go())
    stored = [(int(eid.split(b"-")[0]), f) for eid, f in r.xrange(keys.trades("usdm", SYMBOL))]
    r.close()
    return c, w, stored


def raw_cpu(url: str, entries: list[tuple[int, dict]]) -> tuple[float, float]:
    """CPU and wall seconds of redis-py pipelined XADD of ``entries`` (``(ms, fields)``) into an emptied Redis."""
    r = redis.Redis.from_url(url)
    r.flushall()
    key = keys.trades("usdm", SYMBOL)
    gc.collect()
    c, w = time.process_time(), time.perf_counter()
    p = r.pipeline(transaction=False)
    for i, (t, fields) in enumerate(entries):
        p.xadd(key, fields, id=f"{t}-*")
        if (i + 1) % PIPELINE_ENTRIES == 0:
            p.execute()
    p.execute()
    c, w = time.process_time() - c, time.perf_counter() - w
    r.close()
    return c, w


def bench_ingest(url: str, batches: list[TradeBatch], label: str, reps: int, target: str,
                 need: float) -> list[Row]:
    """Interleaved runs of the product's ingest and two raw pipelined XADDs: (a) one entry per source batch
    (the bytes the product's codec makes of it), (b) exactly the entries the product stored."""
    n = sum(len(b) for b in batches)
    per_batch = [(int(b.time[-1]), {b"c": blob}) for b, blob in zip(batches, packed(batches), strict=True)]
    prod, raw_a, raw_b = [], [], []
    for _ in range(reps):
        c, w, stored = product_cpu(url, batches)
        prod.append((c, w))
        raw_a.append(raw_cpu(url, per_batch))
        raw_b.append(raw_cpu(url, stored))
    pc = statistics.median(c for c, _ in prod)
    ra, rb = statistics.median(c for c, _ in raw_a), statistics.median(c for c, _ in raw_b)
    rate = n / pc / 1e6
    note = (f"{len(batches):,} source batches (~{n // len(batches):,} trades each), {n:,} trades; the product "
            f"stored {len(stored):,} entries; CPU medians of {reps}: product {pc * 1e3:.0f} ms "
            f"({pc / len(batches) * 1e6:.0f} µs a batch), raw (a) {ra * 1e3:.0f} ms, raw (b) {rb * 1e3:.0f} ms; "
            f"wall medians {statistics.median(w for _, w in prod) * 1e3:.0f} / "
            f"{statistics.median(w for _, w in raw_a) * 1e3:.0f} / {statistics.median(w for _, w in raw_b) * 1e3:.0f} ms")
    return [Row(label, rate, "M trades/s", "(a) raw pipelined XADD, one entry per batch, same bytes", n / ra / 1e6,
                ra / pc, target, rate >= need and ra / pc >= 0.5, note=note),
            Row(label + ", vs the product's own entries", rate, "M trades/s",
                "(b) raw pipelined XADD of exactly the entries the product stored", n / rb / 1e6, rb / pc, "(info)",
                None)]


class _Signalled(RedisStore):
    """The product's store, noting each write attempt (for a source that waits for it: live pace)."""

    attempted: asyncio.Event

    async def append_many(self, *a, **k):
        try:
            return await super().append_many(*a, **k)
        finally:
            self.attempted.set()


class PacedSource(BatchList):
    """Hands over the next batch only once the last one's write was tried: one transaction per batch, as live."""

    def __init__(self, batches: list[TradeBatch], attempted: asyncio.Event):
        super().__init__(batches)
        self._attempted, self._first = attempted, True

    async def __anext__(self) -> TradeBatch:
        if not self._first:
            await self._attempted.wait()
        self._first = False
        self._attempted.clear()
        return await super().__anext__()


def bench_live(url: str, batches: list[TradeBatch], reps: int) -> Row:
    """CPU per 1-s batch written as its own transaction (live pace) vs one raw XADD round trip per batch."""
    per_batch = [(int(b.time[-1]), {b"c": blob}) for b, blob in zip(batches, packed(batches), strict=True)]

    async def go():
        client = connect(url)
        store = await fenced(_Signalled(client))
        store.attempted = asyncio.Event()
        svc = IngestService(PacedSource(batches, store.attempted), store, symbol=SYMBOL, tick=TICK)
        c = time.process_time()
        await svc.run()
        c = time.process_time() - c
        await client.aclose()
        return c

    prod, raw = [], []
    for _ in range(reps):
        redis.Redis.from_url(url).flushall()
        prod.append(asyncio.run(go()))
        r = redis.Redis.from_url(url)
        r.flushall()
        key = keys.trades("usdm", SYMBOL)
        c = time.process_time()
        for t, fields in per_batch:
            r.xadd(key, fields, id=f"{t}-*")
        raw.append(time.process_time() - c)
        r.close()
    pc, rc = statistics.median(prod) / len(batches) * 1e6, statistics.median(raw) / len(batches) * 1e6
    return Row("live pace: CPU per 1-s batch, one transaction each", pc, "µs", "raw redis-py XADD, one round trip "
               "per batch", rc, rc / pc, "(info)", None,
               note=f"{len(batches):,} batches; the product's write holds the batch, its candles and meta (one fenced script)")


def bench_memory(url: str, day: TradeBatch, minute: list[TradeBatch]) -> Row:
    """``used_memory`` delta of the day ingested through the product's path."""
    r = redis.Redis.from_url(url)
    r.flushall()
    before = int(r.info("memory")["used_memory"])
    r.close()
    asyncio.run(_ingest_once(url, minute))
    r = redis.Redis.from_url(url)
    after = int(r.info("memory")["used_memory"])
    entries = r.xlen(keys.trades("usdm", SYMBOL))
    r.close()
    mb, ref = (after - before) / 1e6, len(day) * 16 / 1e6
    return Row("Redis used_memory, the day", mb, "MB", "16 B/trade (int32+int32+int64)", ref, ref / mb,
               "<= 50 MB", mb <= 50,
               note=f"{(after - before) / len(day):.1f} B/trade over {len(day):,} trades in {entries:,} stream "
                    f"entries (1-min batches), candles and meta included")


async def _ingest_once(url: str, batches: list[TradeBatch]) -> None:
    client = connect(url)
    await IngestService(BatchList(batches), RedisStore(client), symbol=SYMBOL, tick=TICK).run()
    await client.aclose()


COLD = """
import time, json, sys
t0 = time.perf_counter()
import asyncio, redis
from store import keys
from store.redis_store import RedisStore, connect
from store.trade_codec import TradeEncoder
t1 = time.perf_counter()
url = sys.argv[1]
async def go():
    c = connect(url)
    w = time.perf_counter()
    b, _ = await RedisStore(c).read_range("BTCUSDT")
    w = time.perf_counter() - w
    await c.aclose()
    return b, w
b, load = asyncio.run(go())
r = redis.Redis.from_url(url)
w = time.perf_counter()
raw = r.xrange(keys.trades("usdm", "BTCUSDT"))
raw_s = time.perf_counter() - w
print(json.dumps({"imports": t1 - t0, "load": load, "raw": raw_s, "n": len(b), "entries": len(raw)}))
"""


def bench_cold(url: str, n_day: int, reps: int, label: str = "cold load of the day, new process",
               target: str = "<= 0.5 s wall") -> Row:
    """A new process reads the day back (whatever the last step left in Redis)."""
    runs = []
    for _ in range(reps):
        w = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", COLD, url], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parents[1])
        d = json.loads(p.stdout)
        d["process"] = time.perf_counter() - w
        assert d["n"] == n_day, f"cold load read {d['n']} trades, not {n_day}"
        runs.append(d)
    med = {k: statistics.median(r[k] for r in runs) for k in ("imports", "load", "raw", "process")}
    return Row(label, med["load"], "s", "raw redis-py XRANGE, no decode", med["raw"],
               med["raw"] / med["load"], target, med["load"] <= 0.5 if target != "(info)" else None,
               note=f"wall median of {reps} processes; {runs[0]['entries']:,} entries, {n_day:,} trades; imports "
                    f"{med['imports']:.2f} s, whole process {med['process']:.2f} s")


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    return f"{v:.3f} {unit}" if v < 1 else f"{v:.2f} {unit}" if v < 100 else f"{v:.0f} {unit}"


def render(rows: list[Row]) -> str:
    head = ["figure", "measured", "baseline", "baseline figure", "ratio", "target", "result"]
    body = [head] + [[r.figure, fmt(r.value, r.unit), r.baseline, fmt(r.baseline_value, r.unit),
                      "-" if r.ratio is None else f"{r.ratio:.3f}x", r.target,
                      "PASS" if r.ok else ("FAIL" if r.ok is False else "-")] for r in rows]
    lines = ["| " + " | ".join(body[0]) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(x) + " |" for x in body[1:]])


def environment() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}; {os.cpu_count()} cores, load avg {load}; "
            f"Python {platform.python_version()}, numpy {np.__version__}, redis-py {redis.__version__}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_ingest", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 layers (~280 k trades), 2 runs each")
    ap.add_argument("--reps", type=int, default=None, help="interleaved runs per figure (default 5, quick 2)")
    ap.add_argument("--second-hours", type=float, default=24.0, help="hours of the day ingested in 1-s batches")
    ap.add_argument("--out", type=Path, default=None, help="markdown output (default: results/ingest.md, full run)")
    args = ap.parse_args(argv)
    reps = args.reps or (2 if args.quick else 5)
    env = environment()
    day, desc = build_day(layers=2 if args.quick else 22)
    minute = cut_by_time(day, 60_000)
    second = cut_by_time(day.time_slice(None, int(day.time[0]) + int(args.second_hours * 3600_000)), 1_000)
    server, url = start_embedded()
    try:
        rows = [*bench_ingest(url, minute, "ingest, 1-min batches", reps, ">= 5 M/s and >= 0.5x (a)", 5.0),
                *bench_ingest(url, second, "ingest, 1-s batches", reps, ">= 0.5x (a)", 0.0),
                bench_live(url, second[:1800], max(1, reps // 2)),
                bench_memory(url, day, minute)]
        rows.append(bench_cold(url, len(day), reps))
        if len(second) > 10_000:  # a day left in 1-s entries, as a day of live ingest (one write a second) is
            raw_cpu(url, [(int(b.time[-1]), {b"c": blob}) for b, blob in zip(second, packed(second), strict=True)])
            rows.append(bench_cold(url, sum(len(b) for b in second), max(1, reps // 2),
                                   "(info) cold load, the day in 1-s entries (as live ingest leaves it)", "(info)"))
    finally:
        server.stop()
    head = f"Input: {desc}.\nEnvironment (at start): {env}.\nAt end: load avg " + \
        " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = head + "\n\n" + render(rows) + "\n\nNotes:\n\n" + "\n".join(f"- {r.figure}: {r.note}" for r in rows if r.note)
    print(text)
    out = args.out if args.out is not None else (None if args.quick else RESULTS / "ingest.md")
    if out is not None:
        cmd = "python -m benchmarks.bench_ingest" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
        out.write_text(f"# flowlens ingest benchmarks\n\nCommand: `{cmd}`\n\n{text.replace(chr(10), '  ' + chr(10), 2)}\n")
        print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
