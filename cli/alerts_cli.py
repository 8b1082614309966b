"""``python -m compute alerts FILE --rule JSON [--from MS] [--to MS] [--summary]``: a rule's firings over a file.

Prints one JSON line per firing (``trade_id``, ``time`` UTC ms, ``price``, ``level``, ``value``; the file's trade
ids; for a liquidation rule ``trade_id`` is the liquidation's time) or, with ``--summary``, the backtest summary
(:func:`compute.alerts.backtest`: ``count`` and per horizon ``count``, ``mean``, ``median``, ``share_positive``)
as one JSON object. ``--tick`` defaults to the tick inferred from the prices; ``--liquidations`` is the forceOrder
file a liquidation rule reads. The rule is evaluated on the trades of ``[--from, --to)`` (UTC ms). A bad rule (its
field named), bad JSON or range is one ``error:`` line on stderr and exit code 2 (:mod:`cli.compute_cli`).
"""

from __future__ import annotations

import argparse
import math


class JsonLines(list):
    """A run result printed as one JSON line per item (instead of one JSON document)."""


def _horizons(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"horizons must be minutes separated by commas, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``alerts`` subcommand's arguments."""
    p.add_argument("file", help="trade file (Binance trades/aggTrades dump, tardis CSV, WebSocket recording)")
    p.add_argument("--rule", required=True, help='the rule as JSON, e.g. {"type": "price_cross", ...}')
    p.add_argument("--tick", type=float, default=None, help="tick size (default: inferred from the prices)")
    p.add_argument("--liquidations", default=None, help="forceOrder file (JSON lines) for a liquidation rule")
    p.add_argument("--from", dest="start", type=int, default=None, help="range start, UTC ms, inclusive")
    p.add_argument("--to", dest="end", type=int, default=None, help="range end, UTC ms, exclusive")
    p.add_argument("--summary", action="store_true", help="print the backtest summary instead of the firings")
    p.add_argument("--horizons", type=_horizons, default=(1.0, 5.0, 15.0),
                   help="forward-return horizons in minutes for --summary (default 1,5,15)")


def _finite(x: float):
    return x if math.isfinite(x) else None


def run(args):
    """The firings as :class:`JsonLines`, or the summary dict with ``--summary``. Raises ValueError (RuleError)."""
    from compute.alerts import backtest, parse_rule, rule_to_dict
    from feeds.readers import read_trades

    rule = parse_rule(args.rule)
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise ValueError("'to' must be after 'from'")
    liq = None
    if type(rule).__name__ == "Liquidation":
        if args.liquidations is None:
            raise ValueError("a liquidation rule needs --liquidations FILE")
        from feeds.liquidations import read_liquidations

        liq = read_liquidations(args.liquidations)
        t = liq["time"].to_numpy()
        liq = liq[(t >= (args.start if args.start is not None else t.min(initial=0)))
                  & (t < (args.end if args.end is not None else t.max(initial=0) + 1))]
    trades = read_trades(args.file).time_slice(args.start, args.end)
    if not len(trades) and liq is None:
        raise ValueError(f"no trades in range [{args.start}, {args.end}) (UTC ms)")
    res = backtest(rule, trades, liq, args.horizons, tick=args.tick)
    if args.summary:
        return {"rule": rule_to_dict(rule), "count": res["count"],
                "horizons": {k: {n: (_finite(v) if isinstance(v, float) else v) for n, v in h.items()}
                             for k, h in res["horizons"].items()}}
    f = res["firings"]
    cols = [f[c].to_numpy() for c in ("trade_id", "time", "price", "level", "value")]
    return JsonLines({"trade_id": int(a), "time": int(b), "price": float(c), "level": float(d), "value": float(e)}
                     for a, b, c, d, e in zip(*cols, strict=True))
