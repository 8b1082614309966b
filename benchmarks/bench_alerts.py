"""The server's alert evaluation per batch: N rules on a 1,000-trade batch with the bundled recording as context.

    python -m benchmarks.bench_alerts [--repeat 7]

Input: the bundled real recording (12 h, 69,239 trades) as the view's trades; the last 1,000 are the new batch
(``after_id`` = the id before them); numeric ``price_cross`` rules at levels spread over the batch's price range,
directions up/down/any, cooldown 60 s.

Paths timed (CPU-time medians of interleaved runs, :func:`benchmarks.timing.interleaved`):

* figure: ``service.alerts.AlertEvaluator._evaluate(rules, snapshot, progress)``: what the lease holder runs
  on each new batch (the numeric price_cross rules in one :func:`compute.alerts.evaluate_many` call, the
  signal documents built), without the Redis round trips;
* baseline: plain numpy doing the crossing test of each rule over the batch, one vectorised comparison per rule
  (``(prev < L) & (price >= L)`` ...; no cooldown, no documents): the strongest plain alternative;
* per kind: one rule of each other kind through :func:`compute.alerts.evaluate` (reported).

Target (issue 18, "cost per batch is measured and stays small with hundreds of rules"): 1,000 rules in under
50 ms a batch (the view reads at most every 50 ms).
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.timing import Row, environment, interleaved, render_text, table
from compute.alerts import evaluate
from engine.view import Snapshot
from feeds.readers import read_trades
from service.alerts import AlertEvaluator
from store.alert_store import Progress
from store.redis_store import unpack_candles

RECORDING = "assets/recordings/BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"
OTHERS = {
    "price_cross poc (1d)": {"type": "price_cross", "symbol": "BTCUSDT", "level": {"ref": "poc"}, "direction": "any"},
    "price_cross vah (1d)": {"type": "price_cross", "symbol": "BTCUSDT", "level": {"ref": "vah"}, "direction": "any"},
    "price_cross vwap (1d)": {"type": "price_cross", "symbol": "BTCUSDT", "level": {"ref": "vwap"}, "direction": "any"},
    "price_cross naked_poc (1h)": {"type": "price_cross", "symbol": "BTCUSDT",
                                   "level": {"ref": "naked_poc", "session_length": "1h"}, "direction": "any"},
    "stacked_imbalance (1m)": {"type": "stacked_imbalance", "symbol": "BTCUSDT"},
    "delta (candle)": {"type": "delta", "symbol": "BTCUSDT", "threshold": 20, "window": "candle"},
    "delta (60 s)": {"type": "delta", "symbol": "BTCUSDT", "threshold": 20, "window_s": 60},
    "volume_spike": {"type": "volume_spike", "symbol": "BTCUSDT", "window_s": 10, "k": 3, "lookback": 20},
}


class _Bench(AlertEvaluator):
    """The evaluator's per-batch computation alone (no lease, no Redis)."""

    def __init__(self):  # noqa: D107 - nothing of the parent's I/O is needed
        self.symbol = "BTCUSDT"
        self._bad_rules = set()

        class _Store:
            market = "usdm"
        self.store = _Store()


def numpy_baseline(price: np.ndarray, first: int, levels: np.ndarray, dirs: list[str]) -> int:
    """Each rule's crossings over the batch, one vectorised comparison per rule (the plain alternative)."""
    prev, cur = price[first - 1:-1], price[first:]
    n = 0
    for lv, d in zip(levels, dirs, strict=True):
        up = (prev < lv) & (cur >= lv)
        down = (prev > lv) & (cur <= lv)
        n += len(np.flatnonzero(up if d == "up" else down if d == "down" else up | down))
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args(argv)
    trades = read_trades(RECORDING)
    first = len(trades) - 1000
    after = int(trades.trade_id[first - 1])
    snap = Snapshot("BTCUSDT", trades, unpack_candles([]), {"tick": "0.01"})
    prog = Progress(after, None, {})
    bench, rng, rows = _Bench(), np.random.default_rng(18), []
    batch = trades.price[first:]
    for n in (10, 100, 1000):
        levels = np.round(rng.uniform(batch.min(), batch.max(), n), 2)
        dirs = [("up", "down", "any")[i % 3] for i in range(n)]
        rules = {f"r{i}": {"id": f"r{i}", "armed_after_id": -1, "rule": {
            "type": "price_cross", "symbol": "BTCUSDT", "level": float(x), "direction": dirs[i], "cooldown_s": 60}}
            for i, x in enumerate(levels)}
        med = interleaved({"server": lambda rules=rules: bench._evaluate(rules, snap, prog),
                           "numpy": lambda levels=levels, dirs=dirs: numpy_baseline(trades.price, first, levels, dirs)},
                          a.repeat)
        fig, base = med["server"]["cpu"], med["numpy"]["cpu"]
        rows.append(Row(f"{n:,} numeric price_cross rules, one batch", "AlertEvaluator._evaluate", fig, "ms",
                        "numpy comparison per rule", base, base / fig if fig else None,
                        "< 50 ms" if n == 1000 else "(info)", fig < 50 if n == 1000 else None,
                        [f"{len(med['server']['result'][0])} signals"]))
    for name, rule in OTHERS.items():
        med = interleaved({"one": lambda rule=rule: evaluate(rule, trades, after_id=after, tick=0.01)}, a.repeat)
        rows.append(Row(f"one {name} rule, one batch", "compute.alerts.evaluate", med["one"]["cpu"], "ms"))
    print(f"alert evaluation per batch: 1,000 new trades, {len(trades):,}-trade context; {environment()}")
    print(render_text(table(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
