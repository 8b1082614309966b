"""Benchmarks of the order-flow engine (issue 16), each figure against its baseline in the same run.

Run::

    python -m benchmarks.bench_compute             # full run (3.05 M trades) + scaling 1/3/10/30 M,
                                                   # writes benchmarks/results/latest.md
    python -m benchmarks.bench_compute --quick     # smoke run (~280 k trades, no scaling), writes nothing
    python -m benchmarks.bench_compute --no-scaling

Input: the bundled real recording (69,239 BTCUSDT trades over 12 h) repeated with shifted
times to 3.05 M trades over 24 h (:func:`benchmarks.data.build_day`; 30 M = ``layers=220``).

Every figure names the exact call it times; its baseline (the strongest plain alternative a
user would write) runs in the same process, interleaved with it; both are CPU-time medians
(:func:`benchmarks.timing.interleaved`). The targets are issue 16's:

a. 24 h profile from the incremental store, ``ProfileStore.profile(start, end, row_size)``:
   <= 0.3 ms and >= 1000x pandas doing the same work (filter the range, row index, groupby sums);
b. ``volume_profile`` full recompute: >= 1.0x numpy ``bincount`` on the same trades;
c. heat-map 1200 x 600, ``compute.heatmap.heatmap``: >= 0.9x datashader ``Canvas.points`` +
   ``ds.sum``/``ds.count`` on a prebuilt DataFrame;
d. (info) the in-memory ``ProfileStore.update`` rate (not the Redis ingest path: that is
   ``benchmarks/bench_ingest.py``), the store's memory, the footprint against pandas;
e. scaling at 1/3/10/30 M trades: volume_profile, numpy bincount, the store's 24 h profile and pandas.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from pathlib import Path

import datashader as ds
import numpy as np
import pandas as pd

from benchmarks.data import DAY_MS, build_day
from benchmarks.timing import RESULTS, Row, environment, interleaved, load_avg, render_md, render_text, table
from compute.batch import TradeBatch
from compute.footprint import footprint
from compute.grid import auto_row_size, row_index, ticks_per_row
from compute.heatmap import heatmap
from compute.incremental import ProfileStore
from compute.profile import volume_profile

TICK = 0.01
#: Layers of build_day for the scaling table: ~1, 3, 10 and 30 M trades.
SCALING_LAYERS = (7, 22, 73, 220)


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


def minute_batches(day: TradeBatch, ms: int = 60_000) -> list[TradeBatch]:
    """The day cut into batches of ``ms`` of exchange time (what the ingest hands over when catching up)."""
    edges = np.arange(int(day.time[0]) // ms * ms, int(day.time[-1]) + ms + 1, ms)
    bounds = np.searchsorted(day.time, edges)
    return [day.take(slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def fill_store(batches: list[TradeBatch]) -> ProfileStore:
    s = ProfileStore(TICK)
    for b in batches:
        s.update(b)
    return s


def bench_store(day, df, row_size, start, end, rep) -> list[Row]:
    """a and d: the store's 24 h profile against pandas (and numpy), its update rate and memory."""
    minute = minute_batches(day)
    t = interleaved({"update": lambda: fill_store(minute)}, 3, warmup=1)["update"]
    store = t["result"]
    rate = len(day) / (t["cpu"] / 1e3) / 1e6
    rows = [Row("d. in-memory store update, 1-min batches", "ProfileStore.update per 1-min batch, fresh store "
                "(in memory, not Redis)", rate, "M trades/s",
                notes=[f"{len(minute):,} batches (~{len(day) // len(minute):,} trades); CPU {t['cpu']:.0f} ms a day"])]
    gc.collect()
    tracemalloc.start()
    s2 = fill_store(minute)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    s2.profile(start, end, row_size)  # the prefix sums are built by the first long query: count them
    rows.append(Row("d. in-memory store memory, 24 h at tick 0.01", "tracemalloc after ingest; nbytes incl. "
                    "prefix sums", traced, "MB", notes=[f"nbytes after a 24 h query: {s2.nbytes / 2**20:.1f} MB"]))
    del s2
    r = interleaved({
        "store": lambda: store.profile(start, end, row_size),
        "pandas": lambda: pandas_profile(df, start, end, TICK, row_size),
        "numpy": lambda: numpy_profile(day, start, end, TICK, row_size),
    }, rep, warmup=2)
    prof, ref = r["store"]["result"], r["pandas"]["result"]
    same = prof.to_dict() == volume_profile(day, TICK, row_size, start=start, end=end).to_dict()
    agree = abs(prof.total_volume - float(ref["volume"].sum())) <= 1e-9 * float(ref["volume"].sum())
    v, p, n = r["store"]["cpu"], r["pandas"]["cpu"], r["numpy"]["cpu"]
    rows.insert(0, Row(
        "a. 24 h profile from the store", "ProfileStore.profile(start, end, row_size) (kind volume, POC/VA/pct)",
        v, "ms", "pandas: filter range + row + groupby sums", p, p / v, "<= 0.3 ms, >= 1000x",
        v <= 0.3 and p / v >= 1000,
        notes=[f"{prof.rows} rows of {row_size:g} over {prof.trades:,} trades; min {r['store']['min']:.3f} ms; "
               f"identical to volume_profile on the raw trades: {same}; pandas totals agree: {agree}"]))
    rows.insert(1, Row("a. (same) vs numpy bincount", "as above", v, "ms", "numpy: slice + row + 3 bincounts", n,
                       n / v))
    hot = interleaved({"store": lambda: store.profile(start, end, row_size)}, rep * 4, warmup=2)["store"]["cpu"]
    rows.insert(2, Row("a. (same), back to back (hot caches)", "as above, nothing run in between", hot, "ms",
                       "pandas (as above, interleaved)", p, p / hot,
                       notes=["the interleaved figure above is the one for the target: pandas evicts the caches"]))
    return rows


def bench_profile(day, row_size, rep) -> list[Row]:
    """b: volume_profile over every trade against numpy bincount on the same trades."""
    start, end = int(day.time[0]), int(day.time[-1]) + 1
    r = interleaved({
        "vp": lambda: volume_profile(day, TICK, row_size),
        "bincount": lambda: numpy_profile(day, start, end, TICK, row_size),
    }, rep, warmup=2)
    v, b = r["vp"]["cpu"], r["bincount"]["cpu"]
    vol = r["bincount"]["result"][0]
    agree = np.allclose(r["vp"]["result"].volume, vol, rtol=1e-12)
    return [Row("b. volume_profile full recompute", "compute.profile.volume_profile(day, tick, row_size)", v, "ms",
                "numpy: slice + row + 3 bincounts", b, b / v, ">= 1.0x", b / v >= 1.0,
                notes=[f"{len(day):,} trades; min {r['vp']['min']:.1f} ms; rows agree with bincount: {agree}"])]


def bench_heatmap(day, rep) -> list[Row]:
    """c: the heat-map against raw datashader on a prebuilt frame, per aggregation."""
    t0, t1 = int(day.time[0]), int(day.time[-1])
    lo, hi = float(day.price.min()), float(day.price.max())
    cv = ds.Canvas(plot_width=1200, plot_height=600, x_range=(t0, t1), y_range=(lo, hi))
    frames = {
        "volume": pd.DataFrame({"time": day.time, "price": day.price, "qty": day.qty}),
        "delta": pd.DataFrame({"time": day.time, "price": day.price,
                               "qty": np.where(day.is_buyer_maker, -day.qty, day.qty)}),
        "count": pd.DataFrame({"time": day.time, "price": day.price}),
    }
    rows = []
    for agg, frame in frames.items():
        red = ds.count() if agg == "count" else ds.sum("qty")
        r = interleaved({
            "product": lambda agg=agg: heatmap(day, t0, t1, lo, hi, 1200, 600, agg=agg),
            "raw": lambda frame=frame, red=red: cv.points(frame, "time", "price", agg=red),
        }, rep, warmup=2)
        v, b = r["product"]["cpu"], r["raw"]["cpu"]
        same = np.allclose(np.nan_to_num(r["product"]["result"].values), np.nan_to_num(r["raw"]["result"].values),
                           rtol=1e-12, atol=1e-9)
        main = agg == "volume"
        rows.append(Row(f"c. heat-map 1200 x 600, {agg}", f"compute.heatmap.heatmap(day, ..., agg={agg!r})", v,
                        "ms", f"datashader Canvas.points + {'ds.count' if agg == 'count' else 'ds.sum'} on a "
                        "prebuilt frame", b, b / v, ">= 0.9x" if main else "(info)", (b / v >= 0.9) if main else None,
                        notes=[f"{len(day):,} trades; same grid values: {same}"]))
    return rows


def bench_footprint(day, df, start, end, rep) -> list[Row]:
    """d: the footprint of 24 h of 1-minute candles against a pandas groupby footprint (info)."""
    d24 = df[(df["time"] >= start) & (df["time"] < end)]
    r = interleaved({
        "fp": lambda: footprint(day, TICK, 1.0, start=start, end=end),
        "pandas": lambda: pandas_footprint(d24, TICK, 1.0, 60_000),
    }, max(3, rep // 3), warmup=1)
    v, b = r["fp"]["cpu"], r["pandas"]["cpu"]
    fp = r["fp"]["result"]
    return [Row("d. footprint, 24 h of 1-min candles", "compute.footprint.footprint(day, tick, 1.0, start, end)", v,
                "ms", "pandas groupby (candle, row, side) sums only", b, b / v,
                notes=[f"{fp.summary['trades']:,} trades, {len(fp.cells):,} cells; imbalances, zones, POC, CVD "
                       "included in flowlens, not in pandas"])]


def _scale_one(n_layers: int, rep: int) -> tuple[list[str], str]:
    """One line of the scaling table (see :func:`scaling`)."""
    day, _ = build_day(layers=n_layers)
    t0, end = int(day.time[0]), int(day.time[-1]) + 1
    start = end - DAY_MS
    rs = auto_row_size(float(day.price.min()), float(day.price.max()), TICK, 120)
    b = interleaved({
        "vp": lambda: volume_profile(day, TICK, rs),
        "bincount": lambda: numpy_profile(day, t0, end, TICK, rs),
    }, max(3, rep // 3), warmup=1)
    t = interleaved({"build": lambda: fill_store(minute_batches(day))}, 1, warmup=0)["build"]
    store = t["result"]
    df = day.to_frame()[["time", "price", "qty", "is_buyer_maker"]]
    s = interleaved({
        "store": lambda: store.profile(start, end, rs),
        "pandas": lambda: pandas_profile(df, start, end, TICK, rs),
    }, 3, warmup=1)
    sp = interleaved({"store": lambda: store.profile(start, end, rs)}, rep * 4, warmup=2)["store"]["cpu"]
    same = store.profile(start, end, rs).to_dict() == volume_profile(day, TICK, rs, start=start, end=end).to_dict()
    line = [f"{len(day) / 1e6:.2f} M", f"{b['vp']['cpu']:,.1f} ms", f"{b['bincount']['cpu']:,.1f} ms",
            f"{b['bincount']['cpu'] / b['vp']['cpu']:.2f}x", f"{sp:.3f} ms", f"{s['pandas']['cpu']:,.0f} ms",
            f"{s['pandas']['cpu'] / sp:,.0f}x", f"{t['cpu']:,.0f} ms"]
    return line, (f"{len(day):,} trades: build_day(layers={n_layers}), row size {rs:g}, store == volume_profile: "
                  f"{same}; load avg {load_avg()}")


def scaling(rep: int, layers=SCALING_LAYERS) -> tuple[list[list[str]], list[str]]:
    """e: volume_profile, bincount, the store's 24 h profile and pandas at ~1/3/10/30 M trades."""
    body = [["trades", "volume_profile", "numpy bincount", "ratio", "store 24 h profile (back to back)",
             "pandas same work", "ratio", "store build (1-min batches)"]]
    notes = []
    for n_layers in layers:
        line, note = _scale_one(n_layers, rep)
        body.append(line)
        notes.append(note)
        gc.collect()
    return body, notes


# -- main -----------------------------------------------------------------------------------
def run(quick: bool) -> tuple[list[Row], str, dict]:
    layers = 2 if quick else 22
    rep = 5 if quick else 15
    day, desc = build_day(layers=layers)
    df = day.to_frame()
    end = int(day.time[-1]) + 1
    start = end - DAY_MS
    prof_row = auto_row_size(float(day.price.min()), float(day.price.max()), TICK, 120)
    rows = bench_store(day, df, prof_row, start, end, rep)
    rows += bench_profile(day, prof_row, rep)
    rows += bench_heatmap(day, rep)
    rows += bench_footprint(day, df, start, end, rep)
    return rows, desc, {"trades": len(day), "profile_row_size": prof_row}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_compute", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run (2 layers, ~280 k trades, no scaling)")
    ap.add_argument("--no-scaling", action="store_true", help="skip the 1/3/10/30 M scaling table")
    ap.add_argument("--out", type=Path, default=None,
                    help="markdown file for the tables (default: benchmarks/results/latest.md on a full run)")
    args = ap.parse_args(argv)
    env_before = environment(f"numpy {np.__version__}, pandas {pd.__version__}, datashader {ds.__version__}")
    rows, desc, info = run(args.quick)
    body = table(rows)
    notes = [f"- {r.figure}: {'; '.join(r.notes)}" for r in rows if r.notes]
    header = (f"flowlens compute benchmarks{' (QUICK smoke run: targets are for the full run)' if args.quick else ''}\n"
              f"Input: {desc}.\nProfile row size {info['profile_row_size']:g} (auto, ~120 rows), tick {TICK}. "
              f"Times are CPU-time medians of interleaved runs (figure and baseline alternate).\n"
              f"Environment at start: {env_before}.")
    print(header, render_text(body), "\n".join(notes), sep="\n\n", flush=True)
    scale_md = ""
    if not (args.quick or args.no_scaling):
        sbody, snotes = scaling(15)
        print("\nScaling (CPU-time medians; the store profile is the last 24 h, timed back to back, i.e. hot caches; "
              "pandas does the same work):")
        print(render_text(sbody), "\n".join(snotes), sep="\n")
        scale_md = ("\n\n## Scaling, 1 / 3 / 10 / 30 M trades\n\n" + render_md(sbody) + "\n\n"
                    + "\n".join(f"- {n}" for n in snotes) + "\n")
    env_after = f"load avg at the end {load_avg()} (1/5/15 min)"
    print(env_after)
    out = args.out if args.out is not None else (None if args.quick else RESULTS / "latest.md")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = "python -m benchmarks.bench_compute" + (" --quick" if args.quick else "") + (
            " --no-scaling" if args.no_scaling else "")
        out.write_text(f"# flowlens compute benchmarks\n\nCommand: `{cmd}`\n\n" + header.replace("\n", "  \n")
                       + f"  \n{env_after}.\n\n" + render_md(body) + "\n\nNotes:\n\n" + "\n".join(notes) + "\n"
                       + scale_md)
        print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
