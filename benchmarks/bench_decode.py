"""Decode throughput of :class:`feeds.decode.FrameDecoder` on real Binance frames, one core.

Input: every real trade frame of the raw WebSocket recordings in
``../shared/data/binance/`` (hftbacktest USD-M BTCUSDT/ETHUSDT 2024 and 2023,
spot BTCUSDT, COIN-M BTCUSD_PERP; cryptofeed USD-M alts), the recorded
``trade`` frames re-encoded as combined-stream aggTrade frames with
``a = f = l = t`` and the real ``aggTrade`` frames verbatim
(:func:`feeds.readers.agg_trade_frames`).  The frames are fed one by one, as
a WebSocket client receives them, and flushed into columns every
``--flush-every`` frames (a live client flushes every 50 ms).

Run: ``.venv/bin/python -m benchmarks.bench_decode [--seconds 5] [--flush-every 2000] [--json OUT]``
Target (issue 4): >= 300,000 frames/s on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "binance"


def load_frames() -> list[bytes]:
    """All real trade frames as aggTrade frames (see the module docstring)."""
    from feeds.readers import agg_trade_frames

    frames: list[bytes] = []
    for p in sorted(SHARED.glob("ws-raw-*.gz")):
        frames.extend(agg_trade_frames(p))
    if not frames:
        raise SystemExit(f"no recordings found in {SHARED}")
    return frames


def run(frames: list[bytes], seconds: float, flush_every: int) -> dict:
    """Feed the frames repeatedly for about ``seconds``; return the measured figures."""
    from feeds.decode import FrameDecoder

    dec = FrameDecoder("bench")
    feed = dec.feed
    n = trades = 0
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    while time.perf_counter() - t0 < seconds:
        for i in range(0, len(frames), flush_every):
            for fr in frames[i : i + flush_every]:
                feed(fr)
            out = dec.flush()
            trades += sum(len(c) for c in out.trades.values())
        n += len(frames)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    assert trades == n, f"decoded {trades} trades from {n} frames"
    assert set(dec.counts) == {"aggTrade"}, dec.counts
    return {
        "frames": n, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        "frames_per_s_wall": round(n / wall), "frames_per_s_cpu": round(n / cpu),
        "flush_every": flush_every, "distinct_frames": len(frames),
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--flush-every", type=int, default=2000)
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    a = ap.parse_args(argv)
    frames = load_frames()
    res = run(frames, a.seconds, a.flush_every)
    print(f"decoded {res['frames']:,} real aggTrade frames ({res['distinct_frames']:,} distinct) in "
          f"{res['wall_s']} s: {res['frames_per_s_wall']:,} frames/s wall, {res['frames_per_s_cpu']:,} frames/s CPU "
          f"(one core, flush every {a.flush_every} frames)")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
