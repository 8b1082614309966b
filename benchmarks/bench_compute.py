"""Benchmarks of the order-flow engine (issue 3, "Benchmarks"), each against a baseline measured in the same run.

Run::

    python -m benchmarks.bench_compute            # full run (~3 M trades), writes benchmarks/results/latest.md
    python -m benchmarks.bench_compute --quick    # small smoke run (~280 k trades), writes nothing unless --out

Input: the bundled real recording (69,239 BTCUSDT trades over 12 h) repeated with
shifted times to about 3 million trades over 24 h (see :mod:`benchmarks.data`).

Figures (median wall time of repeated runs on one thread; first calls, e.g. the
datashader JIT compile, are warm-up and not counted):

a. profile of the last 24 h from the incremental ProfileStore, against pandas
   ``groupby`` and a plain numpy ``bincount`` over the raw trades of the same range;
b. ingest into the store (trades per second);
c. memory of the store holding those 24 h at tick 0.01;
d. heat-map of 3 M trades on 1200 x 600 bins, against ``numpy.histogram2d``;
e. footprint of 24 h of 1-minute candles, against a pandas ``groupby`` footprint.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import datashader
import numpy as np
import pandas as pd

from benchmarks.data import DAY_MS, build_day
from compute.batch import TradeBatch
from compute.footprint import footprint
from compute.grid import auto_row_size, row_index, ticks_per_row
from compute.heatmap import heatmap
from compute.profile import volume_profile

RESULTS = Path(__file__).resolve().parent / "results"
TICK = 0.01


@dataclass
class Row:
    """One line of the table."""

    figure: str
    value: float | None
    unit: str
    target: str
    ok: bool | None
    baseline: str = ""
    baseline_value: float | None = None
    ratio: str = ""
    note: str = ""


@dataclass
class Timing:
    """Median and minimum wall time and median CPU time (process) of repeated runs, in ms."""

    median: float
    min: float
    cpu: float
    result: object


def timeit(fn, repeat: int, warmup: int = 1) -> Timing:
    """Run ``fn`` ``warmup`` times, then ``repeat`` times; wall (perf_counter) and CPU (process_time) ms."""
    out = None
    for _ in range(warmup):
        out = fn()
    gc.collect()
    wall, cpu = [], []
    for _ in range(repeat):
        c = time.process_time()
        t = time.perf_counter()
        out = fn()
        wall.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return Timing(statistics.median(wall), min(wall), statistics.median(cpu), out)


# -- baselines ------------------------------------------------------------------------------
def pandas_profile(df: pd.DataFrame, start: int, end: int, tick: float, row_size: float) -> pd.DataFrame:
    """What a user would write: filter the range, row index, groupby row -> volume, buy, sell, trades."""
    d = df[(df["time"] >= start) & (df["time"] < end)]
    tpr = ticks_per_row(row_size, tick)
    row = np.floor_divide(np.rint(d["price"].to_numpy() / tick).astype(np.int64), tpr)
    buy = d["qty"].where(~d["is_buyer_maker"], 0.0)
    g = pd.DataFrame({"row": row, "qty": d["qty"].to_numpy(), "buy": buy.to_numpy()}).groupby("row")
    out = g.agg(volume=("qty", "sum"), buy=("buy", "sum"), trades=("qty", "size"))
    out["sell"] = out["volume"] - out["buy"]
    return out


def numpy_profile(b: TradeBatch, start: int, end: int, tick: float, row_size: float):
    """Plain numpy: slice the sorted range, row index, three bincounts."""
    lo, hi = np.searchsorted(b.time, [start, end], side="left")
    price, qty, ibm = b.price[lo:hi], b.qty[lo:hi], b.is_buyer_maker[lo:hi]
    rows = row_index(price, tick, ticks_per_row(row_size, tick))
    r = rows - rows.min()
    vol = np.bincount(r, weights=qty)
    buy = np.bincount(r, weights=np.where(ibm, 0.0, qty), minlength=len(vol))
    cnt = np.bincount(r, minlength=len(vol))
    return vol, buy, vol - buy, cnt


def pandas_footprint(df: pd.DataFrame, tick: float, row_size: float, interval_ms: int) -> pd.DataFrame:
    """A pandas footprint: groupby (candle, row, side) -> volume and count, unstacked to bid/ask columns."""
    tpr = ticks_per_row(row_size, tick)
    d = pd.DataFrame({
        "candle": df["time"].to_numpy() // interval_ms,
        "row": np.floor_divide(np.rint(df["price"].to_numpy() / tick).astype(np.int64), tpr),
        "side": df["is_buyer_maker"].to_numpy(),
        "qty": df["qty"].to_numpy(),
    })
    g = d.groupby(["candle", "row", "side"]).qty.agg(["sum", "count"]).unstack("side", fill_value=0)
    out = pd.DataFrame({
        "ask": g[("sum", False)], "bid": g[("sum", True)], "trades": g[("count", False)] + g[("count", True)],
    })
    out["delta"] = out["ask"] - out["bid"]
    return out


# -- the store (compute/store.py, owned by the profile helper) -----------------------------
def _store_class():
    try:
        from compute.store import ProfileStore
    except ImportError:
        return None
    return ProfileStore


def _deep_nbytes(obj, seen=None) -> int:
    """Sum of ``nbytes`` of every numpy array reachable from ``obj`` (attributes, dicts, lists)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes if obj.base is None or id(obj.base) not in seen else 0
    if isinstance(obj, dict):
        return sum(_deep_nbytes(v, seen) for v in obj.values())
    if isinstance(obj, list | tuple | set):
        return sum(_deep_nbytes(v, seen) for v in obj)
    total = 0
    for name in getattr(obj, "__slots__", ()):
        total += _deep_nbytes(getattr(obj, name, None), seen)
    d = getattr(obj, "__dict__", None)
    if d:
        total += _deep_nbytes(d, seen)
    return total


def bench_store(day: TradeBatch, df: pd.DataFrame, row_size: float, start: int, end: int, rep: int, quick: bool):
    """Items a, b, c: ingest rate, memory and the 24 h profile from the store vs pandas and numpy."""
    cls = _store_class()
    if cls is None:
        note = "compute/store.py (ProfileStore) not available in this tree"
        return [
            Row("a. 24 h profile from the store", None, "ms", "<= 5 ms, >= 50x pandas", None, note=note),
            Row("b. ingest into the store", None, "M trades/s", ">= 2 M/s", None, note=note),
            Row("c. store memory, 24 h at tick 0.01", None, "MB", "<= 150 MB", None, note=note),
        ]
    rows = []

    def batches_of(ms: int) -> list[TradeBatch]:
        edges = np.arange(int(day.time[0]) // ms * ms, int(day.time[-1]) + ms + 1, ms)
        bounds = np.searchsorted(day.time, edges)
        return [day.take(slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]

    def ingest(batches):
        s = cls(TICK)
        for b in batches:
            s.update(b)
        return s

    # b. ingest, one core, a fresh store per run: batches of one minute of exchange time (what the
    #    ingest service hands over when it catches up), and of one second (live pace) for information.
    minute = batches_of(60_000)
    ing_rep = 2 if quick else 3
    tm = timeit(lambda: ingest(minute), ing_rep, warmup=1)
    store = tm.result
    rate = len(day) / (tm.median / 1e3) / 1e6
    rows.append(Row("b. ingest into the store", rate, "M trades/s", ">= 2 M/s", rate >= 2.0,
                    note=f"{len(minute):,} batches of 1 min (~{len(day) // len(minute):,} trades); median of "
                         f"{ing_rep} full-day runs, {tm.median:.0f} ms each (CPU {tm.cpu:.0f} ms)"))
    second = batches_of(1_000)
    ts = timeit(lambda: ingest(second), 1, warmup=0)
    rate_s = len(day) / (ts.median / 1e3) / 1e6
    rows.append(Row("b. (same) in 1-second batches", rate_s, "M trades/s", "(info)", None,
                    note=f"{len(second):,} batches of 1 s (~{len(day) // len(second):,} trades), live pace; "
                         f"one full-day run, {ts.median:.0f} ms"))

    # c. memory: what the store keeps after ingesting the day (tracemalloc, after the ingest's temporaries are freed)
    gc.collect()
    tracemalloc.start()
    s = ingest(minute)
    gc.collect()
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    nbytes = s.nbytes if hasattr(s, "nbytes") else _deep_nbytes(s)
    del s
    mb = traced / 2**20
    rows.append(Row("c. store memory, 24 h at tick 0.01", mb, "MB", "<= 150 MB", mb <= 150,
                    note=f"tracemalloc of everything the store keeps after the day's ingest; its own nbytes (numpy "
                         f"arrays): {nbytes / 2**20:.1f} MB; {len(day):,} trades"))

    # a. the profile of the last 24 h
    t_s = timeit(lambda: store.profile(start, end, row_size), rep * 2, warmup=2)
    t_p = timeit(lambda: pandas_profile(df, start, end, TICK, row_size), max(3, rep // 3))
    t_n = timeit(lambda: numpy_profile(day, start, end, TICK, row_size), rep)
    prof, ref = t_s.result, t_p.result
    same = bool(np.array_equal(prof.volume_int, volume_profile(day, TICK, row_size, start=start, end=end).volume_int))
    close = abs(float(prof.total_volume) - float(ref["volume"].sum())) <= 1e-9 * float(ref["volume"].sum())
    ratio_p, ratio_n = t_p.median / t_s.median, t_n.median / t_s.median
    rows.insert(0, Row(
        "a. 24 h profile from the store", t_s.median, "ms", "<= 5 ms, >= 50x pandas",
        t_s.median <= 5.0 and ratio_p >= 50, "pandas groupby", t_p.median, f"{ratio_p:.0f}x",
        note=f"min {t_s.min:.2f} ms, CPU {t_s.cpu:.2f} ms; {prof.rows} rows of {row_size:g} over "
             f"{prof.trades:,} trades; identical to volume_profile on the raw trades: {same}; "
             f"pandas totals agree: {close}",
    ))
    rows.insert(1, Row("a. (same) vs numpy bincount", t_s.median, "ms", "(info)", None, "numpy bincount",
                       t_n.median, f"{ratio_n:.0f}x", note="plain bincount over the raw trades of the same range"))
    return rows


# -- main -----------------------------------------------------------------------------------
def run(quick: bool) -> tuple[list[Row], str, dict]:
    layers = 2 if quick else 22
    rep = 5 if quick else 15
    day, desc = build_day(layers=layers)
    df = day.to_frame()
    end = int(day.time[-1]) + 1
    start = end - DAY_MS
    lo, hi = float(day.price.min()), float(day.price.max())
    prof_row = auto_row_size(lo, hi, TICK, 120)
    fp_row = 1.0
    info = {"trades": len(day), "profile_row_size": prof_row, "footprint_row_size": fp_row}
    rows: list[Row] = []

    rows += bench_store(day, df, prof_row, start, end, rep, quick)

    # d. heat-map 1200 x 600 of every trade of the day
    t0, t1 = int(day.time[0]), int(day.time[-1])
    t_h = timeit(lambda: heatmap(day, t0, t1, lo, hi, 1200, 600, agg="volume"), rep, warmup=2)
    t_b = timeit(
        lambda: np.histogram2d(day.time, day.price, bins=(1200, 600), range=((t0, t1), (lo, hi)), weights=day.qty),
        max(3, rep // 3),
    )
    hsum, bsum = float(np.nansum(t_h.result.values)), float(t_b.result[0].sum())
    agree = abs(hsum - bsum) <= 1e-9 * bsum
    rows.append(Row("d. heat-map 1200 x 600", t_h.median, "ms", "<= 150 ms", t_h.median <= 150, "numpy histogram2d",
                    t_b.median, f"{t_b.median / t_h.median:.1f}x",
                    note=f"{len(day):,} trades; min {t_h.min:.1f} ms, CPU {t_h.cpu:.1f} ms; totals agree: {agree}"))

    # e. footprint of the last 24 h in 1-minute candles
    t_f = timeit(lambda: footprint(day, TICK, fp_row, start=start, end=end), rep, warmup=1)
    d24 = df[(df["time"] >= start) & (df["time"] < end)]
    t_g = timeit(lambda: pandas_footprint(d24, TICK, fp_row, 60_000), max(3, rep // 3))
    fp = t_f.result
    agree = abs(fp.summary["total_volume"] - float(d24["qty"].sum())) <= 1e-9 * float(d24["qty"].sum())
    rows.append(Row(
        "e. footprint, 24 h of 1-min candles", t_f.median, "ms", "<= 50 ms", t_f.median <= 50, "pandas groupby",
        t_g.median, f"{t_g.median / t_f.median:.1f}x",
        note=f"{fp.summary['trades']:,} trades, {fp.summary['candle_count']} candles, {len(fp.cells):,} cells of "
             f"{fp_row:g} (imbalances, stacked zones, POC, CVD included; the pandas baseline only sums bid/ask/"
             f"count per cell); min {t_f.min:.1f} ms, CPU {t_f.cpu:.1f} ms; totals agree: {agree}",
    ))
    return rows, desc, info


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "ms":
        return f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms"
    if unit == "MB":
        return f"{v:.1f} MB"
    return f"{v:.2f} {unit}"


def table(rows: list[Row]) -> list[list[str]]:
    head = ["figure", "measured", "target", "baseline", "baseline figure", "ratio", "result"]
    body = [head]
    for r in rows:
        res = "PASS" if r.ok else ("MISS" if r.ok is False else ("n/a" if r.value is None else "-"))
        body.append([r.figure, fmt(r.value, r.unit), r.target, r.baseline or "-",
                     fmt(r.baseline_value, r.unit) if r.baseline_value is not None else "-", r.ratio or "-", res])
    return body


def render_text(body: list[list[str]]) -> str:
    w = [max(len(row[i]) for row in body) for i in range(len(body[0]))]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(row)) for row in body]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def render_md(body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(body[0]) + " |", "|" + "|".join("---" for _ in body[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body[1:]]
    return "\n".join(lines)


def environment() -> str:
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}; {cpu}, {os.cpu_count()} cores, load avg {load}; "
            f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
            f"datashader {datashader.__version__}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_compute", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run (2 layers, ~280 k trades)")
    ap.add_argument("--out", type=Path, default=None,
                    help="markdown file for the table (default: benchmarks/results/latest.md on a full run)")
    args = ap.parse_args(argv)
    env_before = environment()
    rows, desc, info = run(args.quick)
    body = table(rows)
    notes = [f"- {r.figure}: {r.note}" for r in rows if r.note]
    header = (f"flowlens compute benchmarks{' (QUICK smoke run: targets are for the full run)' if args.quick else ''}\n"
              f"Input: {desc}.\nRow size: profile {info['profile_row_size']:g} (auto, ~120 rows), footprint "
              f"{info['footprint_row_size']:g}; tick {TICK}.\nEnvironment: {env_before}.")
    print(header)
    print()
    print(render_text(body))
    print()
    print("\n".join(notes))
    out = args.out if args.out is not None else (None if args.quick else RESULTS / "latest.md")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            "# flowlens compute benchmarks\n\nCommand: `python -m benchmarks.bench_compute"
            f"{' --quick' if args.quick else ''}`\n\n" + header.replace("\n", "  \n") + "\n\n" + render_md(body)
            + "\n\nNotes:\n\n" + "\n".join(notes) + "\n"
        )
        print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
