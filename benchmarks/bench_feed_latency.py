"""End-to-end delay of the live path: WebSocket frame arrival -> its trade acknowledged by Redis.

    python -m benchmarks.bench_feed_latency [--seconds 30] [--speed 1]

The local Binance server (feeds.emulator) plays the real 2024-08-08 USD-M BTCUSDT recording
(re-encoded as aggTrade frames) at ``--speed`` x real time. The real client (feeds.binance_ws, via
service.live.LiveSource) decodes the frames, the ingest service batches them and appends them to a real
Valkey server. Each frame's arrival is stamped by the client's ``on_frame`` hook; each batch's
acknowledgement by Redis is stamped when its write (one script) returns. The delay of a trade is the second stamp
minus the first (same process, same monotonic clock). The baseline row is the same measurement with the
ingest service writing to a no-op store (client + decode + batching only), so the Redis share is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import orjson

from feeds.emulator import LocalBinance
from service.live import LiveSource
from store.embedded import start_embedded
from store.ingest import IngestService
from store.redis_store import RedisStore, connect

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT.parent / "shared/data/binance/ws-raw-usdm-btcusdt-2024-08-08.hftbacktest.txt.gz"


class StampingStore(RedisStore):
    """A RedisStore that notes when each batch's write was acknowledged (or a no-op store when client is None)."""

    def __init__(self, client, acks: dict):
        super().__init__(client) if client is not None else None
        self.r = client
        self.acks = acks

    async def register_symbol(self, symbol):
        if self.r is not None:
            await super().register_symbol(symbol)

    async def append_many(self, batches, candles=None, meta=None, interval_ms=60_000):
        if self.r is not None:
            await super().append_many(batches, candles, meta, interval_ms)
        now = time.perf_counter()
        for batch in batches:
            for i in batch.trade_id.tolist():
                self.acks[i] = now

    async def append_liquidations(self, symbol, df):
        return 0 if self.r is None else await super().append_liquidations(symbol, df)


async def run(seconds: float, speed: float, redis_url: str | None) -> np.ndarray:
    arrivals: dict[int, float] = {}
    acks: dict[int, float] = {}

    def on_frame(frame):
        t = time.perf_counter()
        try:
            d = orjson.loads(frame)["data"]
            if d.get("e") == "aggTrade":
                arrivals[int(d["a"])] = t
        except Exception:  # noqa: BLE001 - non-trade frames are not timed
            pass

    async with LocalBinance(data=[str(RECORDING)], speed=speed, liquidations="none") as srv:
        src = await LiveSource.open("BTCUSDT", None, ws_base=srv.ws_base, rest_base=srv.rest_base,
                                    liquidations=False, on_frame=on_frame)
        client = connect(redis_url) if redis_url else None
        store = StampingStore(client, acks)
        ing = IngestService(src, store, symbol="BTCUSDT", tick=0.1)
        task = ing.start()
        await asyncio.sleep(seconds)
        await ing.stop()
        task.cancel()
        if client is not None:
            await client.aclose()
    common = sorted(set(arrivals) & set(acks))
    return np.array([acks[i] - arrivals[i] for i in common]) * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--speed", type=float, default=1.0)
    a = ap.parse_args(argv)
    if not RECORDING.exists():
        print(f"needs {RECORDING}")
        return 2
    server, url = start_embedded()
    try:
        print(f"frame arrival -> trade acknowledged by Redis; real BTCUSDT 2024-08-08 frames at {a.speed:g}x, "
              f"{a.seconds:g} s per row")
        print(f"{'path':<34} | {'trades':>7} | {'p50 ms':>7} | {'p90 ms':>7} | {'p99 ms':>7} | {'max ms':>7}")
        rows = {}
        for name, u in (("client+decode+batching (no Redis)", None), ("... + Valkey write", url)):
            d = asyncio.run(run(a.seconds, a.speed, u))
            rows[name] = d
            print(f"{name:<34} | {len(d):>7} | {np.percentile(d, 50):>7.2f} | {np.percentile(d, 90):>7.2f} | "
                  f"{np.percentile(d, 99):>7.2f} | {d.max():>7.2f}")
        base, full = rows.values()
        print(f"Redis adds {np.percentile(full, 50) - np.percentile(base, 50):.2f} ms at p50, "
              f"{np.percentile(full, 99) - np.percentile(base, 99):.2f} ms at p99")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
