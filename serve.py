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
import atexit
import inspect
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from service.gcpause import GcFreezer, watch_pauses

HERE = Path(__file__).resolve().parent
DEFAULT_RECORDING = HERE / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"

log = logging.getLogger("flowlens")


def say(line: str) -> None:
    """Print one line of serve.py's own output in a single write, flushed.

    ``print`` writes the text and its newline apart; with ``--num-procs`` several processes share one stdout pipe,
    so two processes' lines could interleave ("flowlens: stoppedflowlens: stopped"). One write of a line under
    PIPE_BUF (4 KiB) bytes reaches the pipe whole.
    """
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def parse_args(argv=None) -> argparse.Namespace:
    """The options of ``serve.py`` (see ``--help``), checked; a bad one exits with a usage message."""
    p = _parser()
    args = p.parse_args(argv)
    _check(p, args)
    return args


def _parser() -> argparse.ArgumentParser:
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
    p.add_argument("--history", default=None, metavar="DIR",
                   help="seed each symbol with the trades and liquidations recorded under DIR (python -m feeds "
                        "record, or --backfill-dir) before its live or replayed stream; once: a restart resumes.")
    p.add_argument("--speed", type=float, default=10.0, help="replay speed factor (default 10x).")
    p.add_argument("--liquidations", default=None,
                   help="replay: also replay the forceOrder frames of this file (JSON lines) in step with the trades.")
    p.add_argument("--symbol", default=None, help="symbol to show/ingest (default: the recording's symbol).")
    p.add_argument("--tick", type=float, default=None, help="tick size (default: inferred from the recording).")
    p.add_argument("--port", type=int, default=5006, help="HTTP port (0 = any free port; default 5006).")
    p.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1).")
    p.add_argument("--api-token", default=os.environ.get("FLOWLENS_API_TOKEN"),
                   help="token the REST API's write endpoints (alerts) ask for (Authorization: Bearer); default "
                        "$FLOWLENS_API_TOKEN, else one generated at start and printed once.")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"),
                   help="external Redis (redis:// or rediss://; redis+cluster:// for a Redis Cluster); default $REDIS_URL, else an embedded Valkey.")
    p.add_argument("--allow-websocket-origin", action="append", default=[],
                   help="host[:port] allowed to open the page's websocket (repeatable; needed for embedding).")
    p.add_argument("--update-ms", type=int, default=250, help="per-session refresh period (ms, default 250).")
    p.add_argument("--num-procs", type=int, default=1,
                   help="page/API processes sharing the port (Tornado fork); all share Redis (default 1). With N > 1 "
                        "one more process ingests (feeds, lease, alerts), so that pages never delay the feed.")
    p.add_argument("--ingest-with-pages", action="store_true",
                   help="with --num-procs N > 1: no ingest process of its own; the page processes ingest (the lease "
                        "picks one of them).")
    p.add_argument("--no-ingest", action="store_true",
                   help="serve pages and the API only; another process ingests into the same Redis.")
    p.add_argument("--no-pages", action="store_true",
                   help="ingest only: the feeds, the ingest lease and the alerts' evaluation and webhooks, with "
                        "/health and /metrics on --port, no page and no API (run the pages with --no-ingest on the "
                        "same Redis).")
    p.add_argument("--retention-min", type=int, default=1440,
                   help="exchange time of trades, candles and liquidations kept in Redis and in memory, in minutes "
                        "(default 1440 = 24 h; at least 1).")
    p.add_argument("--lease-ttl-ms", type=int, default=6000,
                   help="ingest lease lifetime: another process takes over ingest this long after the holder dies.")
    p.add_argument("--gc-freeze-s", type=float, default=5.0,
                   help="freeze the objects alive this often, so the garbage collector's pauses stay short with many "
                        "sessions (service/gcpause.py; 0 turns it off; default 5).")
    p.add_argument("--gc-sweep-s", type=float, default=600.0,
                   help="full collection (one long pause) this often, freeing closed sessions' models (default 600).")
    from service.ratelimit import DEFAULT_BURST, DEFAULT_RATE

    p.add_argument("--api-rate", type=float, default=DEFAULT_RATE,
                   help=f"REST API requests/s per client address, per server process (token bucket; over it: 429 with "
                        f"Retry-After; /health and /metrics exempt; 0 = no limit; default {DEFAULT_RATE:g}).")
    p.add_argument("--api-burst", type=int, default=DEFAULT_BURST,
                   help=f"REST API burst per client address (requests; default {DEFAULT_BURST}).")
    p.add_argument("--log-level", default="INFO")
    return p


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse inconsistent options (``p.error``) and derive ``live``, ``live_symbols`` and ``replay_path``."""
    if args.speed <= 0:
        p.error("--speed must be > 0")
    if args.num_procs < 1:
        p.error("--num-procs must be >= 1")
    if not (0 <= args.api_rate < float("inf")) or args.api_burst < 1:
        p.error("--api-rate must be a number >= 0 (0 = no limit), --api-burst >= 1")
    if not 1 <= args.retention_min <= 30 * 1440:
        p.error("--retention-min must be within 1-43200 (30 days)")
    (f0, f1), (s0, s1) = GcFreezer.param.freeze_s.bounds, GcFreezer.param.sweep_s.bounds
    if args.gc_freeze_s and not (f0 <= args.gc_freeze_s <= f1 and s0 <= args.gc_sweep_s <= s1):
        p.error(f"--gc-freeze-s must be 0 or within {f0:g}-{f1:g}, --gc-sweep-s within {s0:g}-{s1:g}")
    if args.ingest_with_pages and args.num_procs < 2:
        p.error("--ingest-with-pages goes with --num-procs N > 1")
    if args.no_pages and (args.no_ingest or args.num_procs > 1):
        p.error("--no-pages runs ingest in one process: not with --no-ingest or --num-procs")
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
    if args.history and not Path(args.history).is_dir():
        p.error(f"--history folder not found: {args.history}")
    if not args.replay_path.exists():
        p.error(f"recording not found: {args.replay_path}")


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


async def _start_runtime(rt, args) -> None:
    """Start the runtime, then the GC freezer and the warm-up as tasks the runtime owns (stopped with it)."""
    await rt.start()
    watch_pauses()  # the pauses are in /metrics, frozen or not
    if args.gc_freeze_s:
        rt.spawn(GcFreezer(freeze_s=args.gc_freeze_s, sweep_s=args.gc_sweep_s).run(), "gc-freeze")
    rt.spawn(_warm(rt), "warm-up")


async def _warm(rt) -> None:
    """Compile/load every computation once the first trades are in, off the first viewer's path.

    The work runs in a daemon thread (:func:`store.tasks.in_daemon_thread`): a Ctrl-C during
    the warm-up cancels this task and the process leaves without waiting for the thread.
    """
    from dashboard.app import warm_up
    from store.tasks import in_daemon_thread

    while not any(len(v.snapshot.trades) for v in rt.registry.views.values()):
        await asyncio.sleep(0.1)
    log.info("warm-up of the computations took %.1f s", await in_daemon_thread(warm_up, rt.registry))


@dataclass
class Sources:
    """What to ingest: the symbols, their tick (None: inferred), the replayed recording (None when live),
    ``make(symbol, resume_after_id)`` giving a fresh source, and a note for the status bar."""

    symbols: list[str]
    tick: float | None
    recording: object | None
    make: Callable
    note: str = ""


def _sources(args) -> Sources:
    """Live Binance sources (seeded from the archives with --backfill-hours), or the replay when Binance
    is unreachable at start-up (unless --no-fallback) or --source replay."""
    from service.live import probe

    client_params = {"market": args.market, "ws_base": args.ws_base, "rest_base": args.rest_base}
    note = ""
    if args.live and not args.no_fallback:
        reason = asyncio.run(probe(args.live_symbols, **client_params))
        if reason is not None:
            note = f"Binance unreachable at start-up: {reason}"
            say(f"flowlens: {note} — replaying the bundled recording instead (--no-fallback keeps retrying)")
            args.live = False
            args.replay_path = DEFAULT_RECORDING
    src = _live_sources(args, client_params) if args.live else _replay_sources(args)
    src.note = note
    if args.history:
        src.make = _with_history(src.make, args)
    return src


def _with_history(make: Callable, args) -> Callable:
    """``make`` that first seeds a symbol with its history under ``--history`` (when nothing is in Redis yet)."""
    from service.seed import SeededSource, read_history

    async def seeded(sym: str, resume_after_id: int | None):
        if resume_after_id is not None:  # Redis holds the symbol already: resume, do not seed again
            src = make(sym, resume_after_id)
            return await src if inspect.isawaitable(src) else src
        history, liquidations = read_history(args.history, args.market, sym)
        last = int(history.trade_id[-1]) if len(history) else None
        src = make(sym, last)
        src = await src if inspect.isawaitable(src) else src
        note = f"seeded {len(history):,} trades and {len(liquidations):,} liquidations from {args.history}"
        say(f"flowlens: {sym}: {note}")
        return SeededSource(history, src, note, liquidations=liquidations)

    return seeded


def _live_sources(args, client_params: dict) -> Sources:
    from service.live import LiveSource
    from service.seed import SeededSource, load_history

    async def make(sym: str, resume_after_id: int | None):
        if resume_after_id is not None or not args.backfill_hours:
            return await LiveSource.open(sym, resume_after_id, **client_params)
        history, days = await load_history(args.market, sym, args.backfill_hours, args.backfill_dir,
                                           args.vision_base, int(args.backfill_end) if args.backfill_end else None)
        got = sum(d.status in ("done", "skipped") for d in days)
        note = f"seeded {len(history):,} trades ({args.backfill_hours:g} h, {got}/{len(days)} daily archives)"
        say(f"flowlens: {sym}: {note}")
        last = int(history.trade_id[-1]) if len(history) else None
        return SeededSource(history, await LiveSource.open(sym, last, **client_params), note)

    return Sources(args.live_symbols, args.tick, None, make)


def _replay_sources(args) -> Sources:
    from compute.grid import infer_tick
    from feeds.liquidations import LiquidationReplay, read_liquidations
    from feeds.replay import ReplaySource

    recording = ReplaySource(args.replay_path, symbol=args.symbol, speed=args.speed)
    liquidations = read_liquidations(args.liquidations) if args.liquidations else None

    def make(sym: str, resume_after_id: int | None):
        src = ReplaySource(recording.recording, symbol=sym, speed=args.speed, name=recording.name)
        if resume_after_id is not None:
            src.resume_after_id(resume_after_id)
        return src if liquidations is None else LiquidationReplay(src, liquidations, sym)

    symbols = [(args.symbol or recording.symbol or "BTCUSDT").upper()]
    return Sources(symbols, args.tick or infer_tick(recording.recording.price), recording, make)


def _redis(args):
    """``(embedded server or None, URL)``: --redis-url, else an embedded Valkey whose URL is announced."""
    from store.embedded import announce, start_embedded

    if args.redis_url:
        return None, args.redis_url
    embedded, url = start_embedded()
    line, url_file = announce(url)
    say(line)
    owner = os.getpid()  # with --num-procs the parent leaves through sys.exit, past main's finally
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(url_file.parent, ignore_errors=True))
    return embedded, url


def _server(rt, args, symbol: str, port: int):
    """The Panel server: the page at ``/``, the REST API and the operations routes (not started)."""
    import panel as pn

    from dashboard.app import DashboardSettings, create_page
    from service import api, ops

    def app():
        page, _ = create_page(rt.registry, DashboardSettings(symbol=symbol, update_ms=args.update_ms),
                              alerts=rt.alerts)
        return page

    return pn.serve(
        {"/": app}, port=port, address=args.address, show=False, start=False, title="flowlens",
        websocket_origin=[f"{args.address}:{port}", f"localhost:{port}", *args.allow_websocket_origin],
        check_unused_sessions=5000, unused_session_lifetime=15000, num_procs=args.num_procs,
        extra_patterns=api.routes(rt) + ops.routes(rt), **api.server_settings(),
    )


def _stop_on_signals(server, rt) -> None:
    """Ctrl-C/SIGTERM stop the runtime (at most :data:`STOP_TIMEOUT_S`) and the loop; a second one leaves now."""
    loop = server.io_loop.asyncio_loop
    stopping = []

    async def shutdown():
        try:
            await asyncio.wait_for(rt.stop(), STOP_TIMEOUT_S)
        except TimeoutError:
            pending = sorted(t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task())
            log.warning("stopping took over %d s (Redis away?): leaving anyway; still running: %s",
                        STOP_TIMEOUT_S, ", ".join(pending) or "nothing")
        except Exception:  # noqa: BLE001 - a failed stop must still end the process
            log.exception("stopping flowlens failed: leaving anyway")
        finally:
            server.io_loop.stop()

    def on_signal():
        if stopping:  # a second Ctrl-C: leave now
            os._exit(1)
        stopping.append(True)
        log.info("stopping flowlens (pid %d)", os.getpid())
        loop.create_task(shutdown())

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)


def _ingest_only(rt, args, src, port: int | None, embedded) -> int:
    """``--no-pages``: the runtime (feeds, ingest lease, alerts) and ``/health``, ``/metrics`` on ``port``; no Panel.

    ``port`` None (the ingest process of ``--num-procs``): no HTTP server; its metrics are in the page
    processes' ``/metrics`` (one multiprocess directory) and its heartbeat in their ``/health``.
    """
    import tornado.web
    from tornado.ioloop import IOLoop

    from service import api, ops

    http = None
    if port is not None:
        http = tornado.web.Application(ops.routes(rt), **api.server_settings()).listen(port, address=args.address)
    io_loop = IOLoop.current()
    server = SimpleNamespace(io_loop=io_loop)
    rt.connect()
    _stop_on_signals(server, rt)
    if http is not None:
        say(f"flowlens: {_role(args, src)} · ingest only (--no-pages): health and metrics at "
              f"http://{args.address}:{port}/ (pid {os.getpid()})")
    else:
        say(f"flowlens: {_role(args, src)} · the ingest process of --num-procs (pid {os.getpid()})")

    async def start():
        await rt.start()
        watch_pauses()

    io_loop.add_callback(start)
    try:
        io_loop.start()
    finally:
        if http is not None:
            http.stop()
        if embedded is not None:
            embedded.stop()
    say("flowlens: stopped")
    return 0


def _fork_ingest(rt, args, src) -> None:
    """``--num-procs N``: fork the process that ingests (``--no-pages`` without a port) before the page processes.

    Returns in the parent, which waits for the child when it leaves (the child releases its lease and writes
    its last batch before the embedded Valkey stops). The child runs until Ctrl-C/SIGTERM (forwarded by the
    parent, or sent when the parent dies) and leaves with ``os._exit``, past the parent's exit handlers.
    """
    with warnings.catch_warnings():  # the other threads are native pools (Arrow, BLAS) with fork handlers of their
        warnings.simplefilter("ignore", DeprecationWarning)  # own, as when Tornado forks the page processes next
        pid = os.fork()
    if pid:
        atexit.register(_reap, pid, STOP_TIMEOUT_S + 5)  # past the child's own deadline, even on a loaded machine
        return
    _die_with_parent()
    code = 1
    try:
        code = _ingest_only(rt, args, src, None, None)
    except Exception:  # noqa: BLE001 - os._exit below would leave without a word
        log.exception("the ingest process of --num-procs failed")
    finally:
        sys.stdout.flush()
        os._exit(code)


def _reap(pid: int, timeout_s: float) -> None:
    """Wait up to ``timeout_s`` for child ``pid`` to leave (it was sent the same signal), then kill it."""
    import psutil

    try:
        child = psutil.Process(pid)
        child.wait(timeout_s)
    except psutil.NoSuchProcess:  # gone, maybe reaped already (Tornado's parent waits for any child)
        return
    except psutil.TimeoutExpired:
        child.kill()


def _role(args, src: Sources) -> str:
    if args.no_ingest:
        return "pages + API only (--no-ingest)"
    if args.live:
        return f"LIVE {args.market} {','.join(src.symbols)}" + (f" via {args.ws_base}" if args.ws_base else "")
    return f"{src.recording.describe()} · {src.symbols[0]} tick {src.tick:g}"


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # before prometheus_client is imported anywhere
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="flowlens-metrics-")
    from service.runtime import Runtime
    from store.embedded import free_port

    src = _sources(args)
    embedded, redis_url = _redis(args)
    api_token = args.api_token
    if not api_token and not args.no_pages:
        api_token = secrets.token_urlsafe(24)
        say(f"flowlens: API token for the write endpoints (POST/DELETE /api/v1/alerts), this run only: {api_token}")
    rt = Runtime(src.symbols, src.make, redis_url=redis_url, api_token=api_token, ingest=not args.no_ingest, tick=src.tick,
                 market=args.market, source_note=src.note, update_ms=args.update_ms,
                 retention_ms=args.retention_min * 60_000, lease_ttl_ms=args.lease_ttl_ms,
                 lease_renew_ms=max(100, args.lease_ttl_ms // 3), api_rate=args.api_rate, api_burst=args.api_burst)
    port = args.port or free_port(args.address)
    if args.no_pages:
        return _ingest_only(rt, args, src, port, embedded)
    parent = os.getpid()
    if args.num_procs > 1:
        _forward_signals_to_workers(parent)
        if not (args.no_ingest or args.ingest_with_pages):
            _fork_ingest(rt, args, src)
            rt.ingest = False  # the page processes forked next
    server = _server(rt, args, src.symbols[0], port)
    # with --num-procs > 1 Tornado has forked by now: everything below runs once per process
    if os.getpid() != parent:
        _die_with_parent()
    rt.server = server
    rt.connect()
    _stop_on_signals(server, rt)
    server.start()
    say(f"flowlens: {_role(args, src)} · http://{args.address}:{port}/ (pid {os.getpid()})")
    server.io_loop.add_callback(_start_runtime, rt, args)
    try:
        server.io_loop.start()
    finally:
        server.stop()
        if embedded is not None and os.getpid() == parent:
            embedded.stop()
    say("flowlens: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
