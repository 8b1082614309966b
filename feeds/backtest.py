"""An alert rule over recorded history: how often it would have fired, and what the price did after.

:func:`backtest_history` reads the trades (and liquidations) of a rule's symbol from any history
:func:`feeds.history.load_history` reads (recorder and backfill Parquet, data.binance.vision archives,
fsspec URLs), with Dask when the range is larger than memory allows for pandas, and runs the same engine
the server evaluates rules with (:func:`compute.alerts.backtest`).

The engine is sequential over trade ids (a cooldown, a session's developing level and a candle's stack
depend on everything before them in the data), so a Dask frame is read in parallel and filtered to the
range and the four columns the engine needs (time, price, qty, side: 25 bytes a trade, about 0.5 GB for a
week of BTCUSDT futures), then evaluated in one pass.
"""

from __future__ import annotations

import numpy as np

from compute import alerts as engine
from compute.batch import TradeBatch

from .history import load_history, load_liquidations


def backtest_history(source, rule, *, start=None, end=None, horizons_min=(1, 5, 15), dask: bool | None = None,
                     tick: float | None = None, rule_id: str = "") -> dict:
    """:func:`compute.alerts.backtest` of ``rule`` over the history under ``source``.

    Parameters
    ----------
    source : str, Path, fsspec URL or list of them
        As :func:`feeds.history.load_history`.
    rule : dict, JSON or parsed rule
        Its ``symbol`` and ``market`` choose the trades read.
    start, end : int (UTC ms), datetime or ISO string, optional
        The range (``start`` inclusive, ``end`` exclusive; default all).
    horizons_min : tuple of int
        Forward-return horizons (minutes).
    dask : bool or None
        As :func:`feeds.history.load_history` (None: Dask when pandas would not fit in memory).
    tick : float, optional
        Tick size (quote currency); default inferred from the prices.

    Returns
    -------
    dict
        That of :func:`compute.alerts.backtest` (``firings`` DataFrame with the forward returns, ``count``,
        ``horizons`` summaries), plus ``trades`` (the number evaluated) and ``range`` ``[first, last]`` trade
        time (UTC ms, None when there is no trade).

    Raises
    ------
    compute.alerts.RuleError
        An invalid rule. FileNotFoundError: no history file under ``source``.
    """
    parsed = engine.parse_rule(rule)
    spec = engine.rule_to_dict(parsed)
    df = load_history(source, spec.get("market", "usdm"), [spec["symbol"]], start, end, dask=dask, progress=False)
    if hasattr(df, "dask"):  # read and filtered in parallel; evaluated in one pass (see the module docstring)
        df = df[["time", "price", "qty", "is_buyer_maker", "trade_id"]].compute()
    trades = TradeBatch.from_frame(df, spec["symbol"]) if len(df) else TradeBatch.empty(spec["symbol"])
    trades = trades.take(np.argsort(trades.trade_id, kind="stable"))
    liquidations = None
    if spec["type"] == "liquidation":
        liquidations = load_liquidations(source, spec.get("market", "usdm"), [spec["symbol"]], start, end)
    out = engine.backtest(parsed, trades, liquidations, horizons_min, tick=tick, rule_id=rule_id)
    out["trades"] = len(trades)
    out["range"] = [int(trades.time[0]), int(trades.time[-1])] if len(trades) else [None, None]
    return out
