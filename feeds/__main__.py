"""``python -m feeds <command>``: local-server, record, backfill.

``local-server``
    Run :class:`feeds.emulator.LocalBinance` (Binance's protocol on loopback,
    real recorded data) and print its base URLs, one ``name url`` per line.
``record``
    :mod:`feeds.recorder`: raw frames + normalized Parquet, crash-safe.
``backfill``
    :mod:`feeds.backfill`: data.binance.vision daily aggTrades into the same Parquet layout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

#: The plain-text help (the module docstring is Sphinx markup).
DESCRIPTION = """Binance trade feeds on the command line.

commands:
  local-server  serve Binance's protocol (WebSocket streams, REST, data.binance.vision archives) on
                loopback from real recorded data, and print the base URLs, one "name url" per line
  record        record live aggTrade/forceOrder streams: raw frames plus normalized Parquet, crash-safe
  backfill      download data.binance.vision daily aggTrades into the same Parquet layout

Run "python -m feeds COMMAND --help" for a command's options."""


def _symbols(s: str) -> list[str]:
    out = [x.strip().upper() for x in s.split(",") if x.strip()]
    if not out:
        raise argparse.ArgumentTypeError("at least one symbol")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m feeds", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("local-server", help="serve Binance's protocol on loopback from real recorded data")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0, help="TCP port (0 = any free port)")
    s.add_argument("--data", action="append", default=None, metavar="FILE",
                   help="recording to serve (repeatable; default: the bundled BTCUSDT recording)")
    s.add_argument("--data-market", choices=["usdm", "coinm", "spot"], default=None,
                   help="force the market of the --data files (default: from the file name/content)")
    s.add_argument("--market", choices=["usdm", "coinm", "spot"], default="usdm",
                   help="WebSocket path layout of the root (usdm: routed /market paths)")
    s.add_argument("--speed", type=float, default=1.0, help="replay speed vs exchange time; 0 = as fast as possible")
    s.add_argument("--loop", action="store_true", help="replay forever (ids and times keep increasing)")
    s.add_argument("--retime", action="store_true", help="shift times so the replay starts now")
    s.add_argument("--clock-start", choices=["subscribe", "now"], default="subscribe")
    s.add_argument("--ping-interval", type=float, default=180.0)
    s.add_argument("--pong-timeout", type=float, default=600.0)
    s.add_argument("--max-lifetime", type=float, default=24 * 3600.0, help="seconds before the server cuts a connection")
    s.add_argument("--liquidations", choices=["synthetic_liquidations_at_real_trades", "none"],
                   default="synthetic_liquidations_at_real_trades")

    r = sub.add_parser("record", help="record aggTrade/forceOrder streams to raw frames + Parquet")
    r.add_argument("--market", choices=["usdm", "coinm", "spot"], default="usdm")
    r.add_argument("--symbols", type=_symbols, required=True, help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: until Ctrl-C)")
    r.add_argument("--ws-base", default=None, help="WebSocket origin override (testnet, proxy, local server)")
    r.add_argument("--rest-base", default=None, help="REST origin override")
    r.add_argument("--flush-interval", type=float, default=2.0, help="seconds between flushes (default 2)")
    r.add_argument("--flush-rows", type=int, default=50_000, help="flush early at this many buffered rows")
    r.add_argument("--no-liquidations", action="store_true", help="do not record <symbol>@forceOrder")
    r.add_argument("--fsync", action="store_true", help="fsync every flush (power-loss safety)")
    r.add_argument("--heartbeat", type=float, default=None, help="client ping/pong liveness period (s)")

    b = sub.add_parser("backfill", help="download data.binance.vision daily aggTrades into Parquet")
    b.add_argument("--market", choices=["usdm", "coinm", "spot"], default="usdm")
    b.add_argument("--symbol", required=True)
    b.add_argument("--start", required=True, help="first UTC day, YYYY-MM-DD")
    b.add_argument("--end", required=True, help="last UTC day (inclusive), YYYY-MM-DD")
    b.add_argument("--out", required=True)
    b.add_argument("--vision-base", default=None, help="default https://data.binance.vision")
    b.add_argument("--concurrency", type=int, default=4)
    b.add_argument("--retries", type=int, default=3)
    b.add_argument("--keep-zips", action="store_true", help="keep the verified zips under OUT/vision/")
    b.add_argument("--no-progress", action="store_true")
    return p


def _local_server(args) -> int:
    from .emulator import LocalBinance, serve_forever

    srv = LocalBinance(args.data, data_market=args.data_market, market=args.market, host=args.host, port=args.port,
                       speed=args.speed, loop=args.loop, retime=args.retime, clock_start=args.clock_start,
                       ping_interval=args.ping_interval, pong_timeout=args.pong_timeout,
                       liquidations=args.liquidations)
    srv.faults.max_lifetime = args.max_lifetime

    def ready(s):
        for k, v in s.urls().items():
            print(f"{k} {v}", flush=True)
        syms = ", ".join(f"{mk}:{sym}({len(t)})" for (mk, sym), t in sorted(s.tables.items()))
        print(f"serving {syms}", flush=True)

    try:
        asyncio.run(serve_forever(srv, ready))
    except KeyboardInterrupt:
        pass
    return 0


def _record(args) -> int:
    from .recorder import record_main

    client_params = {}
    if args.heartbeat is not None:
        client_params["heartbeat"] = args.heartbeat
    summary = asyncio.run(record_main(
        args.market, args.symbols, args.out, duration=args.duration, ws_base=args.ws_base, rest_base=args.rest_base,
        flush_interval=args.flush_interval, flush_rows=args.flush_rows, liquidations=not args.no_liquidations,
        fsync=args.fsync, client_params=client_params))
    print(f"recorded {summary['trades']} trades, {summary['liquidations']} liquidations, "
          f"{summary['raw_frames']} raw frames, {summary['gaps']} gaps into {summary['out']}", flush=True)
    return 0


def _backfill(args) -> int:
    from .backfill import backfill, exit_code, summarize

    res = asyncio.run(backfill(args.market, args.symbol, args.start, args.end, args.out, args.vision_base,
                               concurrency=args.concurrency, keep_zips=args.keep_zips, retries=args.retries,
                               progress=not args.no_progress))
    print(summarize(res), flush=True)
    return exit_code(res)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    return {"local-server": _local_server, "record": _record, "backfill": _backfill}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
