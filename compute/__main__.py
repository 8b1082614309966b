"""Command line: ``python -m compute profile|footprint FILE --tick 0.01 --row-size 5 [...]`` prints JSON.

``footprint FILE --tick T --row-size R [--candle 1m] [--imbalance-ratio 3] [--stacked 3] [--min-volume V]
[--keep-zeros] [--from MS] [--to MS]`` prints the footprint (candles, cells, stacked imbalances, levels).

``profile FILE --tick T --row-size R [--value-area 0.7] [--value-area-method single|dual]
[--from MS] [--to MS] [--kind volume|recency|tpo|split] [--half-life S] [--tpo-block MS]
[--percentiles 0.25,0.5,0.75]`` prints ``rows, total_volume, buy_volume, sell_volume, trades,
poc, vah, val, percentiles, levels`` (plus each kind's own keys; ``split`` adds ``first``
and ``second`` with ``poc, vah, val``). ``--from`` is inclusive, ``--to`` exclusive (UTC ms).

Subcommands are registered in :data:`COMMANDS` (name -> (help, add_arguments, run));
``run(args)`` returns the JSON-able result: adding one is one entry there. Any bad argument, unreadable file or
empty range prints one line ``error: ...`` on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys

import orjson


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit code 2."""

    def error(self, message):  # noqa: D401 - argparse API
        raise _CliError(f"{self.prog}: {message}")


class _CliError(Exception):
    pass


def _read(path: str):
    """Read a trade file into a TradeBatch (any format feeds.readers knows)."""
    from feeds.readers import read_trades

    return read_trades(path)


def _ms(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time in UTC ms: {text!r}") from None


def _percentiles(text: str) -> tuple[float, ...]:
    try:
        ps = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not ps or any(not 0 <= p <= 1 for p in ps):
        raise argparse.ArgumentTypeError(f"percentiles must be numbers in [0, 1]: {text!r}")
    return ps


# -- profile ------------------------------------------------------------------------------
def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="trade file (Binance trades/aggTrades dump, tardis CSV, WebSocket recording)")
    p.add_argument("--tick", type=float, required=True, help="tick size (quote currency)")
    p.add_argument("--row-size", type=float, required=True, help="row size, a whole number of ticks")
    p.add_argument("--value-area", type=float, default=0.7, help="value-area fraction 0.5..0.95 (default 0.7)")
    p.add_argument("--value-area-method", choices=("single", "dual"), default="single",
                   help="value-area expansion: single row (default) or dual row (Dalton)")
    p.add_argument("--from", dest="start", type=_ms, default=None, help="range start, UTC ms, inclusive")
    p.add_argument("--to", dest="end", type=_ms, default=None, help="range end, UTC ms, exclusive")
    p.add_argument("--percentiles", type=_percentiles, default=(0.25, 0.5, 0.75),
                   help="comma-separated percentile levels (default 0.25,0.5,0.75)")
    p.add_argument("--kind", choices=("volume", "recency", "tpo", "split"), default="volume",
                   help="profile kind: volume (VPVR), recency (recency-weighted volume), tpo (TPO counts), "
                        "split (first half vs second half)")
    p.add_argument("--half-life", type=float, default=None, metavar="S",
                   help="recency half-life in seconds (default: a quarter of the range)")
    p.add_argument("--tpo-block", type=int, default=None, metavar="MS",
                   help="TPO block in ms (default: automatic, 30-60 blocks in the range)")


def _profile_run(args) -> dict:
    from .profile import volume_profile
    from .split import split_profile
    from .timeweighted import recency_profile, tpo_profile

    if args.half_life is not None and args.kind != "recency":
        raise ValueError("--half-life applies to --kind recency only")
    if args.tpo_block is not None and args.kind != "tpo":
        raise ValueError("--tpo-block applies to --kind tpo only")
    trades = _read(args.file)
    kw = dict(value_area=args.value_area, start=args.start, end=args.end,
              value_area_method=args.value_area_method, percentiles=args.percentiles)
    if args.kind == "recency":
        res = recency_profile(trades, args.tick, args.row_size, half_life_s=args.half_life, **kw)
    elif args.kind == "tpo":
        res = tpo_profile(trades, args.tick, args.row_size, block_ms=args.tpo_block, **kw)
    elif args.kind == "split":
        res = split_profile(trades, args.tick, args.row_size, **kw)
    else:
        res = volume_profile(trades, args.tick, args.row_size, **kw)
    return res.to_dict()


# -- footprint ----------------------------------------------------------------------------
_CANDLES = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000,
            "4h": 14_400_000, "1d": 86_400_000}


def _candle(text: str) -> int:
    if text in _CANDLES:
        return _CANDLES[text]
    raise argparse.ArgumentTypeError(f"candle must be one of {', '.join(_CANDLES)}, got {text!r}")


def _footprint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="trade file (Binance trades/aggTrades dump, tardis CSV, WebSocket recording)")
    p.add_argument("--tick", type=float, required=True, help="tick size (quote currency)")
    p.add_argument("--row-size", type=float, required=True, help="row size, a whole number of ticks")
    p.add_argument("--candle", type=_candle, default=60_000, help="candle interval: 1m (default), 5m, 15m, 1h ...")
    p.add_argument("--imbalance-ratio", type=float, default=3.0, help="diagonal imbalance ratio (default 3.0)")
    p.add_argument("--stacked", type=int, default=3, help="rows in a stacked imbalance (default 3)")
    p.add_argument("--min-volume", type=float, default=0.0, help="smallest imbalanced cell volume (base asset)")
    p.add_argument("--keep-zeros", action="store_true", help="let a zero cell create an imbalance")
    p.add_argument("--from", dest="start", type=_ms, default=None, help="range start, UTC ms, inclusive")
    p.add_argument("--to", dest="end", type=_ms, default=None, help="range end, UTC ms, exclusive")


def _footprint_run(args) -> dict:
    from .footprint import footprint

    res = footprint(_read(args.file), args.tick, args.row_size, interval_ms=args.candle,
                    imbalance_ratio=args.imbalance_ratio, ignore_zeros=not args.keep_zeros,
                    min_volume=args.min_volume, stacked_min=args.stacked, start=args.start, end=args.end)
    return res.to_dict()


#: name -> (help, add_arguments(parser), run(args) -> JSON-able)
COMMANDS = {
    "profile": ("volume profile of a trade file as JSON", _profile_args, _profile_run),
    "footprint": ("footprint candles (bid x ask per row, imbalances, CVD) of a trade file as JSON",
                  _footprint_args, _footprint_run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m compute", description="flowlens order-flow analytics on recorded trades")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_, add, _run) in COMMANDS.items():
        add(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        out = COMMANDS[args.command][2](args)
    except (_CliError, ValueError, OSError, KeyError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS))
    sys.stdout.buffer.write(b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
