"""A 7-day session query: from the incremental store against recomputing it from the trades.

    python -m benchmarks.bench_sessions [--layers 6] [--repeat 5]

Input: 7 days built from the bundled real recording (:func:`benchmarks.data.build_day` with ``--layers``, each
day shifted by 24 h and its ids renumbered), in a :class:`compute.incremental.ProfileStore` at tick 0.01.

Paths timed (CPU-time medians of interleaved runs, :func:`benchmarks.timing.interleaved`):

* figure: ``compute.sessions.sessions_from_store(store, start, end, trades, ...)``: 7 daily sessions (and the
  composite) from the store's sums; the range's trades only find the naked POCs' touches;
* baseline: ``compute.sessions.session_profiles(trades, ...)``, the same result recomputed from the trades.

Both give the same result (checked). Target (issue 17: "the cost of a 7-day session query from the store vs
recomputing it"): reported, no threshold; the store should be several times cheaper.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from benchmarks.data import DAY_MS, build_day
from benchmarks.timing import interleaved
from compute.batch import TradeBatch
from compute.incremental import ProfileStore
from compute.sessions import session_profiles, sessions_from_store

TICK, ROW = 0.01, 5.0


def week(layers: int) -> TradeBatch:
    """Seven consecutive days of :func:`build_day` (ids renumbered so that they run on without a gap)."""
    day, _ = build_day(layers)
    n = len(day)
    return TradeBatch(np.concatenate([day.time + k * DAY_MS for k in range(7)]), np.tile(day.price, 7),
                      np.tile(day.qty, 7), np.tile(day.is_buyer_maker, 7),
                      int(day.trade_id[0]) + np.arange(7 * n, dtype=np.int64), day.symbol)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=6, help="build_day layers per day (6: ~0.83 M trades a day)")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)
    trades = week(a.layers)
    store = ProfileStore(TICK, symbol="BTCUSDT")
    store.update(trades)
    s, e = int(trades.time[0]), int(trades.time[-1]) + 1
    kw = {"session_length": "1d", "session_start": "00:00"}
    want = session_profiles(trades, TICK, ROW, start=s, end=e, **kw)
    got = sessions_from_store(store, s, e, trades, ROW, **kw)
    assert got.to_dict() == want.to_dict(), "the store's sessions differ from the recomputed ones"
    med = interleaved({"store": lambda: sessions_from_store(store, s, e, trades, ROW, **kw),
                       "recompute": lambda: session_profiles(trades, TICK, ROW, start=s, end=e, **kw)}, a.repeat)
    load = os.getloadavg()
    print(f"7-day session query: {len(trades):,} trades, {len(want.sessions)} daily sessions + composite, row {ROW}; "
          f"load average {load[0]:.2f}")
    print("| figure | measured | baseline | baseline figure | ratio | target |")
    print("|---|---|---|---|---|---|")
    st, rc = med["store"]["cpu"], med["recompute"]["cpu"]
    print(f"| sessions_from_store (7 days), CPU median | {st:.1f} ms | session_profiles recomputed | {rc:.1f} ms | "
          f"{rc / st:.1f}x faster | (reported) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
