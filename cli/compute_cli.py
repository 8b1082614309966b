"""Command line: ``python -m compute profile|footprint|sessions|vwap|alerts FILE [...]`` prints JSON.

``--tick`` defaults to the tick inferred from the file's prices (the coarsest power of ten every
price is a multiple of, as the server does for a replayed file); ``--row-size`` to the page's
automatic row size for the range (about 120 rows, on the 1-2-2.5-5 ladder; 28 rows for the
footprint, as the footprint view). Both are printed back in the JSON (``tick``, ``row_size``).

``footprint FILE [--tick T] [--row-size R] [--candle 1m] [--imbalance-ratio 3] [--stacked 3] [--min-volume V]
[--keep-zeros] [--from MS] [--to MS]`` prints the footprint (candles, cells, stacked imbalances, levels).

``profile FILE [--tick T] [--row-size R] [--value-area 0.7] [--value-area-method single|dual]
[--from MS] [--to MS] [--kind volume|recency|tpo|split] [--half-life S] [--tpo-block MS]
[--percentiles 0.25,0.5,0.75]`` prints ``rows, total_volume, buy_volume, sell_volume, trades,
poc, vah, val, percentiles, levels`` (plus each kind's own keys; ``split`` adds ``first``
and ``second`` with ``poc, vah, val``). ``--from`` is inclusive, ``--to`` exclusive (UTC ms);
``--to`` must be after ``--from`` (the REST API's rule and wording).

``sessions FILE [--tick T] [--row-size R] [--value-area 0.7] [--session-length 1d] [--session-start 00:00]
[--from MS] [--to MS]`` prints a JSON list of sessions (``start``, ``end``, ``poc``, ``vah``, ``val``,
``total_volume``, ``trades``, ``touched_at``...). ``vwap FILE [--anchor MS] [--to MS] [--bands 1,2,3]
[--interval 1m] [--session-length L] [--series]`` prints ``{"vwap", "sd", "bands": {"k": [lower, upper]},
"trades", ...}`` for ``[anchor, to)``. ``alerts FILE --rule JSON [--from MS] [--to MS] [--summary]`` prints one JSON
line per firing of an alert rule (:mod:`cli.alerts_cli`).

The profile kinds and their own options come from the registry (:mod:`compute.kinds`): an
option that a kind's parameters do not hold is refused for it. Subcommands are registered in :data:`COMMANDS` (name -> (help, add_arguments, run));
``run(args)`` returns the JSON-able result: adding one is one entry there. Any bad argument, unreadable file or
empty range prints one line ``error: ...`` on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from cli import alerts_cli
from compute.candles import INTERVALS
from compute.grid import auto_row_size, infer_tick
from compute.kinds import PROFILE_KINDS, kind, ticks_for
from compute.sessions import SESSION_LENGTHS

#: Rows aimed at by the automatic row size: the page's chart view and footprint view.
AUTO_ROWS_PROFILE, AUTO_ROWS_FOOTPRINT = 120, 28


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
def _grid_args(p: argparse.ArgumentParser, rows: int) -> None:
    p.add_argument("file", help="trade file (Binance trades/aggTrades dump, tardis CSV, WebSocket recording)")
    p.add_argument("--tick", type=float, default=None,
                   help="tick size (quote currency; default: inferred from the prices)")
    p.add_argument("--row-size", type=float, default=None,
                   help=f"row size, a whole number of ticks (default: automatic, about {rows} rows)")
    p.add_argument("--from", dest="start", type=_ms, default=None, help="range start, UTC ms, inclusive")
    p.add_argument("--to", dest="end", type=_ms, default=None, help="range end, UTC ms, exclusive")


def _grid(args, rows: int):
    """``(trades, tick, row size)``: the file's trades, the given or inferred tick, the given or automatic
    row size over the trades of ``[--from, --to)``. Raises ValueError like the REST API for a reversed range."""
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise ValueError("'to' must be after 'from'")
    trades = _read(args.file)
    tick = args.tick if args.tick is not None else infer_tick(trades.price)
    row_size = args.row_size
    if row_size is None:
        sel = trades.time_slice(args.start, args.end)
        if not len(sel):
            raise ValueError(f"no trades in range [{args.start}, {args.end}) (UTC ms)")
        row_size = auto_row_size(float(sel.price.min()), float(sel.price.max()), tick, rows)
    return trades, tick, row_size


def _profile_args(p: argparse.ArgumentParser) -> None:
    _grid_args(p, AUTO_ROWS_PROFILE)
    p.add_argument("--value-area", type=float, default=0.7, help="value-area fraction 0.5..0.95 (default 0.7)")
    p.add_argument("--value-area-method", choices=("single", "dual"), default="single",
                   help="value-area expansion: single row (default) or dual row (Dalton)")
    p.add_argument("--percentiles", type=_percentiles, default=(0.25, 0.5, 0.75),
                   help="comma-separated percentile levels (default 0.25,0.5,0.75)")
    p.add_argument("--kind", choices=PROFILE_KINDS, default="volume",
                   help="profile kind: " + "; ".join(f"{k}: {kind(k).doc}" for k in PROFILE_KINDS))
    p.add_argument("--half-life", type=float, default=None, metavar="S",
                   help="recency half-life in seconds (default: a quarter of the range)")
    p.add_argument("--tpo-block", type=int, default=None, metavar="MS",
                   help="TPO block in ms (default: automatic, 30-60 blocks in the range)")


#: Kind-specific options: CLI name -> the registry parameter it sets.
_KIND_OPTIONS = {"half_life": ("--half-life", "half_life_s"), "tpo_block": ("--tpo-block", "block_ms")}


def _profile_run(args) -> dict:
    spec = kind(args.kind)
    trades, tick, row_size = _grid(args, AUTO_ROWS_PROFILE)
    values = {"ticks_per_row": ticks_for(row_size, tick), "value_area": args.value_area,
              "value_area_method": args.value_area_method, "percentiles": args.percentiles}
    for attr, (flag, name) in _KIND_OPTIONS.items():
        given = getattr(args, attr)
        if given is None:
            continue
        if name not in spec.params.names():
            takers = [k for k in PROFILE_KINDS if name in kind(k).params.names()]
            raise ValueError(f"{flag} applies to --kind {' or '.join(takers)} only")
        values[name] = given
    values = spec.validated(**values)
    return _answer(spec.compute(trades, tick, args.start, args.end, **spec.engine_params(values, tick)), tick,
                   trades, args.start, args.end)


def _answer(result, tick: float, trades=None, start=None, end=None) -> dict:
    """The result's JSON with the tick and row size used (given, inferred or automatic) and the ``coverage`` of
    the trades of ``[start, end)`` it was computed from (:mod:`compute.coverage`)."""
    out = result.to_dict()
    out.setdefault("tick", tick)
    out.setdefault("row_size", result.row_size)
    if trades is not None:
        out["coverage"] = _coverage(trades, start, end)
    return out


def _coverage(trades, start, end) -> dict:
    from compute.coverage import coverage
    from compute.profile import select_range

    return coverage(select_range(trades, start, end)[0]).to_dict()


# -- footprint ----------------------------------------------------------------------------
def _candle(text: str) -> int:
    if text in INTERVALS:
        return INTERVALS[text]
    raise argparse.ArgumentTypeError(f"candle must be one of {', '.join(INTERVALS)}, got {text!r}")


def _footprint_args(p: argparse.ArgumentParser) -> None:
    _grid_args(p, AUTO_ROWS_FOOTPRINT)
    p.add_argument("--candle", type=_candle, default=60_000, help="candle interval: 1m (default), 5m, 15m, 1h ...")
    p.add_argument("--imbalance-ratio", type=float, default=3.0, help="diagonal imbalance ratio (default 3.0)")
    p.add_argument("--stacked", type=int, default=3, help="rows in a stacked imbalance (default 3)")
    p.add_argument("--min-volume", type=float, default=0.0, help="smallest imbalanced cell volume (base asset)")
    p.add_argument("--keep-zeros", action="store_true", help="let a zero cell create an imbalance")


def _footprint_run(args) -> dict:
    spec = kind("footprint")
    trades, tick, row_size = _grid(args, AUTO_ROWS_FOOTPRINT)
    values = spec.validated(ticks_per_row=ticks_for(row_size, tick), interval_ms=args.candle,
                            imbalance_ratio=args.imbalance_ratio, ignore_zeros=not args.keep_zeros,
                            min_volume=args.min_volume, stacked_min=args.stacked)
    return _answer(spec.compute(trades, tick, args.start, args.end, **spec.engine_params(values, tick)), tick,
                   trades, args.start, args.end)


# -- sessions and VWAP -----------------------------------------------------------------------
def _session_opts(p: argparse.ArgumentParser, default_length: str | None) -> None:
    p.add_argument("--session-length", choices=tuple(SESSION_LENGTHS), default=default_length,
                   help=f"session length (default {default_length or 'none: one anchored VWAP'}; weeks start on Monday)")
    p.add_argument("--session-start", default="00:00", help="time of day (HH:MM UTC) a session starts (default 00:00)")


def _sessions_args(p: argparse.ArgumentParser) -> None:
    _grid_args(p, AUTO_ROWS_PROFILE)
    p.add_argument("--value-area", type=float, default=0.7, help="value-area fraction 0.5..0.95 (default 0.7)")
    _session_opts(p, "1d")


def _sessions_run(args) -> list:
    spec = kind("sessions")
    trades, tick, row_size = _grid(args, AUTO_ROWS_PROFILE)
    values = spec.validated(ticks_per_row=ticks_for(row_size, tick), value_area=args.value_area,
                            session_length=args.session_length, session_start=args.session_start, composite=False)
    res = spec.compute(trades, tick, args.start, args.end, **spec.engine_params(values, tick))
    return [{**s, "tick": tick, "row_size": row_size} for s in res.to_dict()["sessions"]]


def _bands(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bands must be numbers separated by commas, got {text!r}") from None


def _vwap_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="trade file (Binance trades/aggTrades dump, tardis CSV, WebSocket recording)")
    p.add_argument("--anchor", dest="start", type=_ms, default=None, help="anchor, UTC ms (default: the first trade)")
    p.add_argument("--to", dest="end", type=_ms, default=None, help="end, UTC ms, exclusive (default: after the last trade)")
    p.add_argument("--bands", type=_bands, default=(1.0, 2.0, 3.0), help="band multipliers in σ (default 1,2,3)")
    p.add_argument("--interval", type=_candle, default=60_000, help="series sampling interval: 1m (default) ... 1d")
    p.add_argument("--series", action="store_true", help="also print the series at each interval close")
    _session_opts(p, None)


def _vwap_run(args) -> dict:
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise ValueError("'to' must be after 'anchor'")
    spec = kind("vwap")
    values = spec.validated(bands=list(args.bands), interval_ms=args.interval, session_length=args.session_length,
                            session_start=args.session_start)
    trades = _read(args.file)
    res = spec.compute(trades, None, args.start, args.end, **spec.engine_params(values, 0.0))
    return {**res.to_dict(series=args.series), "coverage": _coverage(trades, args.start, args.end)}


#: name -> (help, add_arguments(parser), run(args) -> JSON-able)
COMMANDS = {
    "profile": ("volume profile of a trade file as JSON", _profile_args, _profile_run),
    "footprint": ("footprint candles (bid x ask per row, imbalances, CVD) of a trade file as JSON",
                  _footprint_args, _footprint_run),
    "sessions": ("session volume profiles (POC, VAH, VAL, volume, naked-POC touched_at) of a trade file as a "
                 "JSON list", _sessions_args, _sessions_run),
    "vwap": ("anchored or session VWAP with standard-deviation bands of a trade file as JSON", _vwap_args, _vwap_run),
    "alerts": ("an alert rule's firings over a trade file, one JSON line each (or the backtest --summary)",
               alerts_cli.add_arguments, alerts_cli.run),
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
    opt = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    for item in (out if isinstance(out, alerts_cli.JsonLines) else [out]):
        sys.stdout.buffer.write(orjson.dumps(item, option=opt))
        sys.stdout.buffer.write(b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
