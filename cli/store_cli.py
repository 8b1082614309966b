"""Command line: ``python -m store load FILE --redis-url URL [--market M] [--symbol S]``.

Loads a trade recording or archive (any format :func:`feeds.readers.read_trades` reads) into Redis
through the product's own ingest path (:class:`store.ingest.IngestService` writing with
:meth:`store.redis_store.RedisStore.append_many`: exactly-once trade ids, 1-minute candles, meta), as
fast as it goes: an operator's way to seed history. Trades whose id is not after the last id already in
Redis for that market and symbol are skipped (loading twice writes nothing twice), and the open candle
in Redis is continued. Prints one line with the trades written and trades/s.

A bad argument, an unreadable file or an unreachable Redis prints one line ``error: ...`` on stderr
(no traceback) and exits with code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np

from compute.batch import TradeBatch
from feeds.source import BatchList, cut_by_time

#: The plain-text help.
DESCRIPTION = """Load trades into flowlens's Redis layout.

load FILE --redis-url URL [--market usdm|coinm|spot] [--symbol S] [--batch-ms 60000] [--retention-min 1440]
  reads FILE (Binance trades/aggTrades dump, tardis CSV, WebSocket recording, Parquet archive)
  and writes it through the ingest path (exactly-once ids, candles, meta) at full speed."""


class _CliError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (raised, printed by :func:`main`)."""

    def error(self, message):  # noqa: D401 - argparse API
        raise _CliError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m store`` parser (one subcommand, ``load``)."""
    p = _Parser(prog="python -m store", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ld = sub.add_parser("load", help="load a trade file into Redis through the ingest path",
                        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    ld.add_argument("file", help="trade file (any format feeds.readers reads)")
    ld.add_argument("--redis-url", required=True, help="redis:// or rediss:// URL (with password if any)")
    ld.add_argument("--market", default="usdm", choices=("usdm", "coinm", "spot"),
                    help="Binance market the trades belong to (part of every key; default usdm)")
    ld.add_argument("--symbol", default=None, help="symbol to take from a multi-symbol file (default: the file's)")
    ld.add_argument("--batch-ms", type=int, default=60_000,
                    help="exchange time per batch handed to the ingest (ms, default 60000)")
    ld.add_argument("--retention-min", type=int, default=1440,
                    help="minutes of exchange time kept behind the newest trade (default 1440, as serve.py)")
    ld.add_argument("--tick", type=float, default=None, help="tick size (quote currency; default: inferred)")
    return p


def _read(path: str, symbol: str | None) -> TradeBatch:
    from feeds.readers import read_trades

    b = read_trades(path, symbol)
    if not len(b):
        raise _CliError(f"{path}: no trades")
    order = np.lexsort((b.trade_id, b.time))
    return b if np.array_equal(order, np.arange(len(b))) else b.take(order)


async def load(args) -> dict:
    """Run ``load``; returns the figures printed. Raises _CliError for an unreachable Redis."""
    import redis.exceptions

    from store.ingest import IngestService
    from store.redis_store import RedisStore, connect, mask_url

    batch = _read(args.file, args.symbol)
    client = connect(args.redis_url)
    store = RedisStore(client, retention_ms=args.retention_min * 60_000, market=args.market)
    try:
        try:
            await store.ping()
            meta = await store.meta(batch.symbol)
        except (redis.exceptions.RedisError, OSError) as e:
            raise _CliError(f"cannot use Redis at {mask_url(args.redis_url)}: {e}") from None
        svc = IngestService(BatchList(cut_by_time(batch, args.batch_ms), f"LOAD {args.file}"), store,
                            symbol=batch.symbol, tick=args.tick)
        if meta.get("last_trade_id"):
            svc.skip_through_id = int(meta["last_trade_id"])
            t = int(meta["last_trade_time"]) // 60_000 * 60_000
            open_candle = await store.candles_at(batch.symbol, [t], 60_000)
            if len(open_candle):
                svc.seed_candle(open_candle)
        c, w = time.process_time(), time.perf_counter()
        await svc.run()
        c, w = time.process_time() - c, time.perf_counter() - w
        if svc.buffered_trades or not svc.redis_ok:
            raise _CliError(f"Redis at {mask_url(args.redis_url)} stopped answering; "
                            f"{svc.trades_written:,} trades were written, {svc.buffered_trades:,} not")
    finally:
        await client.aclose()
    return {"symbol": batch.symbol, "market": args.market, "read": len(batch), "written": svc.trades_written,
            "skipped": len(batch) - svc.trades_written, "wall_s": w, "cpu_s": c}


def main(argv=None) -> int:
    """Entry point of ``python -m store``; returns the exit code (0, or 2 after one ``error:`` line)."""
    try:
        args = build_parser().parse_args(argv)
        if args.batch_ms < 1000 or args.retention_min < 1:
            raise _CliError("--batch-ms must be >= 1000 and --retention-min >= 1")
        out = asyncio.run(load(args))
    except (_CliError, ValueError, OSError, KeyError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    rate = out["written"] / out["wall_s"] if out["wall_s"] > 0 else 0.0
    print(f"loaded {out['written']:,} of {out['read']:,} trades of {out['market']}:{out['symbol']} "
          f"({out['skipped']:,} already in Redis) in {out['wall_s']:.2f} s: {rate:,.0f} trades/s "
          f"({out['written'] / max(out['cpu_s'], 1e-9):,.0f} per CPU second)")
    return 0
