"""Start flowlens: Redis (embedded unless one is given), the ingest service and the Panel server.

    python serve.py [--source replay[:PATH]] [--speed N] [--symbol S] [--port 5006]
                    [--address 127.0.0.1] [--redis-url URL] [--allow-websocket-origin HOST]

Data flows one way: source -> ingest service -> Redis -> per-process view ->
browser sessions. Ctrl-C (or SIGTERM) stops the server, the ingest service and
the embedded Redis, and leaves no process behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_RECORDING = HERE / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"

log = logging.getLogger("flowlens")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="serve.py", description="flowlens: live order-flow dashboard (VPVR, POC/VAH/VAL) on Binance trades.",
    )
    p.add_argument("--source", default="replay",
                   help="replay[:PATH] replays a recording (default: the bundled BTCUSDT 2020-02-22 trades).")
    p.add_argument("--speed", type=float, default=10.0, help="replay speed factor (default 10x).")
    p.add_argument("--symbol", default=None, help="symbol to show/ingest (default: the recording's symbol).")
    p.add_argument("--tick", type=float, default=None, help="tick size (default: inferred from the recording).")
    p.add_argument("--port", type=int, default=5006, help="HTTP port (0 = any free port; default 5006).")
    p.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1).")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"),
                   help="external Redis (redis:// or rediss://); default $REDIS_URL, else an embedded Valkey.")
    p.add_argument("--allow-websocket-origin", action="append", default=[],
                   help="host[:port] allowed to open the page's websocket (repeatable; needed for embedding).")
    p.add_argument("--update-ms", type=int, default=250, help="per-session refresh period (ms, default 250).")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if args.speed <= 0:
        p.error("--speed must be > 0")
    kind, _, path = args.source.partition(":")
    if kind != "replay":
        p.error(f"unknown --source {args.source!r}: only replay[:PATH] is available in this version")
    args.replay_path = Path(path) if path else DEFAULT_RECORDING
    if not args.replay_path.exists():
        p.error(f"recording not found: {args.replay_path}")
    return args


def free_port(address: str) -> int:
    """A TCP port that is free on ``address`` right now."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import panel as pn

    from compute.grid import infer_tick
    from dashboard.app import DashboardSettings, create_page
    from feeds.replay import ReplaySource
    from store.embedded import start_embedded
    from store.ingest import IngestService
    from store.redis_store import RedisStore, connect
    from store.view import ViewRegistry

    source = ReplaySource(args.replay_path, symbol=args.symbol, speed=args.speed)
    symbol = (args.symbol or source.symbol or "BTCUSDT").upper()
    tick = args.tick or infer_tick(source.recording.price)

    embedded = None
    redis_url = args.redis_url
    if not redis_url:
        embedded, redis_url = start_embedded()
        print(f"flowlens: embedded Valkey at {redis_url}", flush=True)

    store = RedisStore(connect(redis_url))
    registry = ViewRegistry(store)
    ingest = IngestService(source, store, symbol=symbol, tick=tick)

    def app():
        settings = DashboardSettings(symbol=symbol, update_ms=args.update_ms)
        page, _ = create_page(registry, settings)
        return page

    port = args.port or free_port(args.address)
    server = pn.serve(
        {"/": app}, port=port, address=args.address, show=False, start=False, title="flowlens",
        websocket_origin=[f"{args.address}:{port}", f"localhost:{port}", *args.allow_websocket_origin],
        check_unused_sessions=5000, unused_session_lifetime=15000,
    )
    loop = server.io_loop.asyncio_loop

    async def startup():
        ingest.start()
        registry.get(symbol).start()

    async def shutdown():
        await ingest.stop()
        await registry.stop()
        try:
            await store.r.aclose()
        except Exception:  # noqa: BLE001 - closing a dead connection must not stop the shutdown
            pass
        server.io_loop.stop()

    def on_signal():
        log.info("stopping flowlens")
        loop.create_task(shutdown())

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    server.start()
    print(f"flowlens: {source.describe()} · {symbol} tick {tick:g} · http://{args.address}:{port}/", flush=True)
    server.io_loop.add_callback(startup)
    try:
        server.io_loop.start()
    finally:
        server.stop()
        if embedded is not None:
            embedded.stop()
    print("flowlens: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

