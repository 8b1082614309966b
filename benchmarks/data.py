"""Benchmark input: about 3 million real trades over 24 h built from the bundled recording.

The bundled recording holds 69,239 real Binance USD-M BTCUSDT trades over 12 h
(2020-02-22 00:00-12:00 UTC).  A 24 h day with BTC-2024-like activity needs
about 3 million trades, so the recording is **repeated with shifted times**:
laid end to end twice (12 h + 12 h = 24 h), and that day stacked ``layers``
times, layer ``k`` shifted by ``k * LAYER_SHIFT_MS``.  The layers are merged in
time order and the trade ids renumbered consecutively in that order (so the
id sequence has no gaps).  Prices, quantities and sides are the real ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compute.batch import TradeBatch

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"
HALF_DAY_MS = 12 * 3600 * 1000
DAY_MS = 2 * HALF_DAY_MS
#: Shift between stacked layers (an odd number of ms so layers do not align on candle edges).
LAYER_SHIFT_MS = 1_637


def load_recording() -> TradeBatch:
    """The bundled real recording, read with :func:`feeds.readers.read_trades`."""
    from feeds.readers import read_trades

    return read_trades(RECORDING)


def build_day(layers: int = 22, base: TradeBatch | None = None) -> tuple[TradeBatch, str]:
    """Return ``(batch, description)``: ``2 * layers`` copies of the recording over 24 h, time-sorted.

    ``layers=22`` gives 22 * 2 * 69,239 = 3,046,516 trades.
    """
    b = load_recording() if base is None else base
    t0 = int(b.time[0]) // HALF_DAY_MS * HALF_DAY_MS
    shifts = [h * HALF_DAY_MS + k * LAYER_SHIFT_MS for k in range(layers) for h in (0, 1)]
    time = np.concatenate([b.time + s for s in shifts])
    order = np.argsort(time, kind="stable")
    n = len(b)
    reps = len(shifts)
    day = TradeBatch(
        time[order],
        np.tile(b.price, reps)[order],
        np.tile(b.qty, reps)[order],
        np.tile(b.is_buyer_maker, reps)[order],
        int(b.trade_id[0]) + np.arange(n * reps, dtype=np.int64),
        b.symbol,
    )
    desc = (
        f"{len(day):,} trades over 24 h = the real {n:,}-trade 12 h recording {RECORDING.name} "
        f"repeated with shifted times (2 halves x {layers} layers, layer k shifted by k*{LAYER_SHIFT_MS} ms, "
        f"ids renumbered in time order); day starts {t0}"
    )
    return day, desc
