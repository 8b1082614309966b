"""Start flowlens: Redis (embedded unless one is given), the ingest service and the Panel server.

    python serve.py [--source replay[:PATH]] [--speed N] [--symbol S] [--port 5006]
                    [--address 127.0.0.1] [--redis-url URL] [--allow-websocket-origin HOST]

Data flows one way: source -> ingest service -> Redis -> per-process view ->
browser sessions. Ctrl-C (or SIGTERM) stops the server, the ingest service and
the embedded Redis, and leaves no process behind.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from service.gcpause import GcFreezer, watch_pauses

HERE = Path(__file__).resolve().parent
DEFAULT_RECORDING = HERE / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"

log = logging.getLogger("flowlens")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="serve.py", description="flowlens: live order-flow dashboard (VPVR, POC/VAH/VAL) on Binance trades.",
    )
    p.add_argument("--source", default="live",
                   help="live (default): Binance WebSocket streams; replay[:PATH]: replay a recording "
                        "(default: the bundled BTCUSDT 2020-02-22 trades).")
    p.add_argument("--market", default="usdm", choices=["usdm", "coinm", "spot"], help="live market (default usdm).")
    p.add_argument("--symbols", default=None, help="live symbols, comma separated (default BTCUSDT).")
    p.add_argument("--ws-base", default=os.environ.get("FLOWLENS_WS_BASE"),
                   help="WebSocket origin override (testnet, proxy, local server); the market's path is appended.")
    p.add_argument("--rest-base", default=os.environ.get("FLOWLENS_REST_BASE"), help="REST origin override.")
    p.add_argument("--no-fallback", action="store_true",
                   help="with --source live: keep retrying Binance instead of replaying the recording.")
    p.add_argument("--backfill-hours", type=float, default=0.0,
                   help="live: seed each symbol with the last N hours from data.binance.vision archives first.")
    p.add_argument("--backfill-dir", default=str(HERE / "data" / "backfill"),
                   help="folder of the backfilled archives (Parquet; resumed across runs).")
    p.add_argument("--vision-base", default=os.environ.get("FLOWLENS_VISION_BASE"),
                   help="data.binance.vision origin override (a mirror or the local server).")
    p.add_argument("--backfill-end", default=None, help=argparse.SUPPRESS)  # tests: end of the seeded hours (UTC ms)
    p.add_argument("--speed", type=float, default=10.0, help="replay speed factor (default 10x).")
    p.add_argument("--liquidations", default=None,
                   help="replay: also replay the forceOrder frames of this file (JSON lines) in step with the trades.")
    p.add_argument("--symbol", default=None, help="symbol to show/ingest (default: the recording's symbol).")
    p.add_argument("--tick", type=float, default=None, help="tick size (default: inferred from the recording).")
    p.add_argument("--port", type=int, default=5006, help="HTTP port (0 = any free port; default 5006).")
    p.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1).")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"),
                   help="external Redis (redis:// or rediss://); default $REDIS_URL, else an embedded Valkey.")
    p.add_argument("--allow-websocket-origin", action="append", default=[],
                   help="host[:port] allowed to open the page's websocket (repeatable; needed for embedding).")
    p.add_argument("--update-ms", type=int, default=250, help="per-session refresh period (ms, default 250).")
    p.add_argument("--num-procs", type=int, default=1,
                   help="server processes sharing the port (Tornado fork); all share Redis (default 1).")
    p.add_argument("--no-ingest", action="store_true",
                   help="serve pages and the API only; another process ingests into the same Redis.")
    p.add_argument("--lease-ttl-ms", type=int, default=6000,
                   help="ingest lease lifetime: another process takes over ingest this long after the holder dies.")
    p.add_argument("--gc-freeze-s", type=float, default=5.0,
                   help="freeze the objects alive this often, so the garbage collector's pauses stay short with many "
                        "sessions (service/gcpause.py; 0 turns it off; default 5).")
    p.add_argument("--gc-sweep-s", type=float, default=600.0,
                   help="full collection (one long pause) this often, freeing closed sessions' models (default 600).")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if args.speed <= 0:
        p.error("--speed must be > 0")
    if args.num_procs < 1:
        p.error("--num-procs must be >= 1")
    (f0, f1), (s0, s1) = GcFreezer.param.freeze_s.bounds, GcFreezer.param.sweep_s.bounds
    if args.gc_freeze_s and not (f0 <= args.gc_freeze_s <= f1 and s0 <= args.gc_sweep_s <= s1):
        p.error(f"--gc-freeze-s must be 0 or within {f0:g}-{f1:g}, --gc-sweep-s within {s0:g}-{s1:g}")
    if args.no_ingest and not args.redis_url:
        p.error("--no-ingest needs --redis-url (or REDIS_URL): the Redis another process ingests into")
    kind, _, path = args.source.partition(":")
    if kind not in ("live", "replay") or (kind == "live" and path):
        p.error(f"unknown --source {args.source!r}: use live or replay[:PATH]")
    args.live = kind == "live"
    raw = args.symbols or args.symbol or "BTCUSDT"
    args.live_symbols = [x.strip().upper() for x in raw.split(",") if x.strip()]
    if not args.live_symbols or any(not x.isalnum() or len(x) > 20 for x in args.live_symbols):
        p.error(f"bad --symbols {raw!r}: comma-separated exchange symbols like BTCUSDT,ETHUSDT")
    args.replay_path = Path(path) if path else DEFAULT_RECORDING
    if args.liquidations and not Path(args.liquidations).is_file():
        p.error(f"--liquidations file not found: {args.liquidations}")
    if not args.replay_path.exists():
        p.error(f"recording not found: {args.replay_path}")
    return args


#: A process leaves this long after Ctrl-C/SIGTERM even when its tasks have not all ended (s).
STOP_TIMEOUT_S = 10


def _forward_signals_to_workers(parent: int) -> None:
    """In the ``--num-procs`` parent: pass Ctrl-C/SIGTERM on to the worker processes.

    Tornado's parent only waits for its forked workers; a signal sent to the parent alone
    (``kill``, a supervisor, ``Popen.send_signal``) would end it and leave the workers
    running without it. The workers stop cleanly and exit 0, and Tornado's parent then exits 0.
    """
    import psutil

    def forward(signum, _frame):
        if os.getpid() != parent:  # a worker before it installed its own handlers
            raise SystemExit(0)
        for child in psutil.Process(parent).children():
            if "valkey" not in child.name():
                try:
                    child.send_signal(signum)
                except psutil.NoSuchProcess:
                    pass

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)


def _die_with_parent() -> None:
    """In a ``--num-procs`` worker: get SIGTERM when the parent dies, however it dies (Linux ``prctl``)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the forwarded signals still stop the workers
        pass


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # before prometheus_client is imported anywhere
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="flowlens-metrics-")

    import panel as pn

    from compute.grid import infer_tick
    from dashboard.app import DashboardSettings, create_page, warm_up
    from feeds.liquidations import LiquidationReplay, read_liquidations
    from feeds.replay import ReplaySource
    from service import api, ops
    from service.live import LiveSource, probe
    from service.runtime import Runtime
    from service.seed import SeededSource, load_history
    from store.embedded import free_port, start_embedded

    client_params = {"market": args.market, "ws_base": args.ws_base, "rest_base": args.rest_base}
    note = ""
    if args.live and not args.no_fallback:
        reason = asyncio.run(probe(args.live_symbols, **client_params))
        if reason is not None:
            note = f"Binance unreachable at start-up: {reason}"
            print(f"flowlens: {note} — replaying the bundled recording instead (--no-fallback keeps retrying)",
                  flush=True)
            args.live = False
            args.replay_path = DEFAULT_RECORDING
    if args.live:
        symbols, tick, recording = args.live_symbols, args.tick, None

        async def make_source(sym: str, resume_after_id: int | None):
            if resume_after_id is not None or not args.backfill_hours:
                return await LiveSource.open(sym, resume_after_id, **client_params)
            history, days = await load_history(args.market, sym, args.backfill_hours, args.backfill_dir,
                                               args.vision_base, int(args.backfill_end) if args.backfill_end else None)
            got = sum(d.status in ("done", "skipped") for d in days)
            note = f"seeded {len(history):,} trades ({args.backfill_hours:g} h, {got}/{len(days)} daily archives)"
            print(f"flowlens: {sym}: {note}", flush=True)
            last = int(history.trade_id[-1]) if len(history) else None
            return SeededSource(history, await LiveSource.open(sym, last, **client_params), note)
    else:
        recording = ReplaySource(args.replay_path, symbol=args.symbol, speed=args.speed)
        symbols = [(args.symbol or recording.symbol or "BTCUSDT").upper()]
        tick = args.tick or infer_tick(recording.recording.price)

        liquidations = read_liquidations(args.liquidations) if args.liquidations else None

        def make_source(sym: str, resume_after_id: int | None):
            src = ReplaySource(recording.recording, symbol=sym, speed=args.speed, name=recording.name)
            if resume_after_id is not None:
                src.resume_after_id(resume_after_id)
            return src if liquidations is None else LiquidationReplay(src, liquidations, sym)
    symbol = symbols[0]

    embedded = None
    redis_url = args.redis_url
    if not redis_url:
        embedded, redis_url = start_embedded()
        print(f"flowlens: embedded Valkey at {redis_url}", flush=True)

    rt = Runtime(symbols, make_source, redis_url=redis_url, ingest=not args.no_ingest, tick=tick,
                 source_note=note, update_ms=args.update_ms, lease_ttl_ms=args.lease_ttl_ms,
                 lease_renew_ms=max(100, args.lease_ttl_ms // 3))

    def app():
        settings = DashboardSettings(symbol=symbol, update_ms=args.update_ms)
        page, _ = create_page(rt.registry, settings)
        return page

    port = args.port or free_port(args.address)
    parent = os.getpid()
    if args.num_procs > 1:
        _forward_signals_to_workers(parent)
    server = pn.serve(
        {"/": app}, port=port, address=args.address, show=False, start=False, title="flowlens",
        websocket_origin=[f"{args.address}:{port}", f"localhost:{port}", *args.allow_websocket_origin],
        check_unused_sessions=5000, unused_session_lifetime=15000, num_procs=args.num_procs,
        extra_patterns=api.routes(rt) + ops.routes(rt),
    )
    # with --num-procs > 1 Tornado has forked by now: everything below runs once per process
    if os.getpid() != parent:
        _die_with_parent()
    rt.server = server
    rt.connect()
    loop = server.io_loop.asyncio_loop

    async def shutdown():
        try:
            await asyncio.wait_for(rt.stop(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("stopping took over %d s (Redis away?): leaving anyway", STOP_TIMEOUT_S)
        server.io_loop.stop()

    stopping = []

    def on_signal():
        if stopping:  # a second Ctrl-C: leave now
            os._exit(1)
        stopping.append(True)
        log.info("stopping flowlens (pid %d)", os.getpid())
        loop.create_task(shutdown())

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    server.start()
    if args.no_ingest:
        role = "pages + API only (--no-ingest)"
    elif args.live:
        role = f"LIVE {args.market} {','.join(symbols)}" + (f" via {args.ws_base}" if args.ws_base else "")
    else:
        role = f"{recording.describe()} · {symbol} tick {tick:g}"
    print(f"flowlens: {role} · http://{args.address}:{port}/ (pid {os.getpid()})", flush=True)
    server.io_loop.add_callback(rt.start)
    if args.gc_freeze_s:
        server.io_loop.add_callback(GcFreezer(freeze_s=args.gc_freeze_s, sweep_s=args.gc_sweep_s).start)
    else:
        watch_pauses()  # the pauses are still in /metrics

    async def warm():  # compile/load every computation once the first trades are in, off the first viewer's path
        for _ in range(600):
            if any(len(v.snapshot.trades) for v in rt.registry.views.values()):
                log.info("warm-up of the computations took %.1f s", await asyncio.to_thread(warm_up, rt.registry))
                return
            await asyncio.sleep(0.1)

    server.io_loop.add_callback(warm)
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
