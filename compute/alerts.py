"""Server-side alert rules (issue 18): when each rule fires, over any trades, as pure numpy/numba.

One engine for the server (each ingested batch), the CLI and notebooks (history): :func:`evaluate`.
Rules are validated JSON objects (:mod:`compute.alert_rules`: :func:`parse_rule`, :class:`RuleError`).
Units: prices quote currency, quantities base asset, times UTC ms; trades in trade-id order (a
:class:`~compute.batch.TradeBatch`, time non-decreasing, ids increasing). Sources: the issue 18 text, and
``shared/reference/orderflow-and-binance.md`` (b1 sides, b3/b4 POC and value area, b5 imbalances, b6 CVD,
b10 developing levels, b11 liquidations).

When a rule fires (trade t, in trade-id order; quantities as exact integers of 1e-8, :mod:`compute.result`):

* **price_cross**: ``up`` fires at t when ``price[t-1] < L(t) <= price[t]``, ``down`` when
  ``price[t-1] > L(t) >= price[t]``, ``any`` either. A number is its own ``L``. A reference's ``L(t)`` is its
  developing value *as of trade t-1*: of the session of t-1, computed from that session's trades up to and
  including t-1 (so a session's first trade compares with the previous session's final level; none before the
  data's first session): ``poc``/``vah``/``val`` of :func:`compute.profile.volume_profile` (rows of
  ``ticks_per_row`` ticks, single-row value area), ``vwap`` of :func:`compute.vwap.vwap` anchored at the session
  start, ``naked_poc`` the POC (row middle) of the most recent prior session not touched (a later trade in its
  row, :func:`compute.sessions.naked_pocs`) by the trades up to t-1. ``level`` = L, ``value`` = price.
* **liquidation** (reference b11): each forceOrder with notional ≥ ``min_notional``; notional =
  ``filled_qty × avg_price`` when both are > 0, else ``orig_qty × price`` (quote currency). Its "trade id" is
  the liquidation's time ``T`` (UTC ms; Binance pushes at most one per symbol per second, so it is unique and
  stable): ``after_id`` is compared with it. ``price`` = avg price (else order price), ``value`` = notional.
* **stacked_imbalance**: the first trade of a candle after which the candle's footprint (its trades so far,
  :func:`compute.footprint.footprint` with the rule's settings) holds a stack of ≥ ``min_stack`` rows of the
  ``side`` (``any``: either side); at most one firing per candle. ``value`` = the stack's rows.
* **delta** with ``"window": "candle"``: the first trade of a candle at which the candle's delta so far
  (taker buy − taker sell) is ≥ +threshold (``up``) / ≤ −threshold (``down``); at most one per sign and candle.
  With ``window_s`` W: D(t) = signed volume of the trades up to t with time > time[t] − W (the CVD change over
  the trailing W); ``up`` fires when ``D(t-1) < thr <= D(t)``, ``down`` when ``D(t-1) > -thr >= D(t)``.
  ``value`` = the delta (base asset), ``level`` = ±threshold.
* **volume_spike**: V(t) = volume of the trades up to t with time in (T − W, T] (T = time[t]); B(t) = volume
  with time in (T − (lookback+1)·W, T − W], the ``lookback`` previous windows; the condition is
  ``B > 0 and V·lookback >= k·B`` (V ≥ k × the windows' mean); fires when it turns true (false at t-1).
  ``value`` = V·lookback / B, ``level`` = k.

Windowed rules need their window inside the data: a trade is *warm* when ``time[t] − span >= time[0]`` (span W,
or (lookback+1)·W); t fires only if t and t-1 are warm. The first trade of the data never fires.
**Cooldown**: a firing less than ``cooldown_s`` after the previous firing (trade time) is dropped; dropped
candidates do not restart the cooldown.

**Calling over batches**: pass as ``trades`` the context in memory plus the new batch, ``after_id`` the last
trade id already evaluated and ``last_fire_ms`` the last firing's time; the firings equal those of one call over
the whole history, as long as the context holds the current session (all sessions since the oldest naked POC
wanted, for ``naked_poc``), the current candle, or the window span before the first new trade.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from . import alert_kernels as ak
from .alert_candidates import CANDIDATES, DIRECTIONS, liquidation_candidates
from .alert_rules import (
    RULE_TYPES,
    Delta,
    LevelRef,
    Liquidation,
    PriceCross,
    Rule,
    RuleError,
    StackedImbalance,
    VolumeSpike,
    parse_rule,
    rule_to_dict,
)
from .batch import TradeBatch

__all__ = ["FIRING_COLUMNS", "RULE_TYPES", "RuleError", "backtest", "evaluate", "evaluate_many", "event_ids",
           "parse_rule", "rule_to_dict"]

#: Columns of every firings DataFrame, in order.
FIRING_COLUMNS = ("event_id", "trade_id", "time", "price", "level", "value")


def event_ids(rule_id: str, trade_ids) -> np.ndarray:
    """``f"{rule_id}:{trade_id}"`` for each id (object array (K,)): stable across calls, so a firing seen twice
    (a re-evaluated batch) has one id."""
    return np.array([f"{rule_id}:{int(t)}" for t in np.asarray(trade_ids)], dtype=object)


def _frame(rule_id: str, ids, time, price, level, value) -> pd.DataFrame:
    ids = np.asarray(ids, np.int64)
    return pd.DataFrame({
        "event_id": event_ids(rule_id, ids), "trade_id": ids, "time": np.asarray(time, np.int64),
        "price": np.asarray(price, np.float64), "level": np.asarray(level, np.float64),
        "value": np.asarray(value, np.float64)}, columns=list(FIRING_COLUMNS))


def _check_trades(trades: TradeBatch, rule, after_id: int) -> int:
    """The index of the first trade with id > ``after_id``, after checking the symbol and the order of the trades
    from the one before it (the older ones were checked when they were new). Raises TypeError, ValueError."""
    if not isinstance(trades, TradeBatch):
        raise TypeError(f"trades must be a TradeBatch, got {type(trades).__name__}")
    if trades.symbol and rule is not None and trades.symbol != rule.symbol:
        raise ValueError(f"the rule is for {rule.symbol}, the trades are {trades.symbol}")
    first = int(np.searchsorted(trades.trade_id, after_id, side="right"))
    lo = max(first - 1, 0)
    ids, t = trades.trade_id[lo:], trades.time[lo:]
    if len(ids) > 1 and not (bool(np.all(ids[1:] > ids[:-1])) and bool(np.all(t[1:] >= t[:-1]))):
        raise ValueError("trades must be in trade-id order with increasing ids and non-decreasing times")
    return first


def evaluate(rule: Rule | dict | str, trades: TradeBatch, *, after_id: int = -1, last_fire_ms: int | None = None,
             liquidations: pd.DataFrame | None = None, tick: float | None = None, rule_id: str = "") -> pd.DataFrame:
    """The firings of ``rule`` with ``trade_id > after_id`` (definitions in the module docstring).

    Parameters
    ----------
    rule : Rule, dict or JSON
        Parsed with :func:`parse_rule` unless already a rule.
    trades : TradeBatch
        N trades of the rule's symbol in trade-id order: the context (e.g. the last 24 h) plus the new ones
        (unused, may be None, for a liquidation rule). Only the trades from the one with id ``after_id`` on are
        checked for order; the context's older part is trusted.
    after_id : int
        Only firings at trades with a larger id come back (for a liquidation rule: a larger time, UTC ms).
    last_fire_ms : int or None
        Time (UTC ms) of the rule's last firing before, to carry the cooldown across calls.
    liquidations : DataFrame or None
        For a liquidation rule: :func:`feeds.liquidations.read_liquidations` columns (time, side, price, avg_price,
        orig_qty, filled_qty; ``symbol`` optional), in time order.
    tick : float or None
        Tick size (quote currency) for the rules with rows; default :func:`compute.grid.infer_tick` of the prices.
    rule_id : str
        Prefix of ``event_id``.

    Returns
    -------
    DataFrame
        :data:`FIRING_COLUMNS`: ``event_id`` str ``f"{rule_id}:{trade_id}"``, ``trade_id`` int64, ``time`` int64
        UTC ms, ``price``, ``level``, ``value`` float64; in trade order.

    Raises
    ------
    RuleError
        An invalid rule. ValueError: trades out of order or of another symbol, a liquidation rule without
        liquidations, a bad tick. TypeError: ``trades`` not a TradeBatch.
    """
    rule = rule if isinstance(rule, PriceCross | Liquidation | StackedImbalance | Delta | VolumeSpike) \
        else parse_rule(rule)
    if isinstance(rule, Liquidation):
        ids, price, level, value = liquidation_candidates(rule, liquidations, after_id)
        time = ids
    else:
        first = _check_trades(trades, rule, after_id)
        if first >= len(trades):
            return _frame(rule_id, [], [], [], [], [])
        idx, level, value = CANDIDATES[type(rule)](rule, trades, first, tick)
        ids, time, price = trades.trade_id[idx], trades.time[idx], trades.price[idx]
    keep = _cooldown(time, last_fire_ms, rule.cooldown_s)
    return _frame(rule_id, ids[keep], time[keep], price[keep], np.asarray(level)[keep], np.asarray(value)[keep])


def _cooldown(time: np.ndarray, last_fire_ms, cooldown_s: float) -> np.ndarray:
    time = np.asarray(time, np.int64)
    if cooldown_s <= 0 or not len(time):
        return np.ones(len(time), bool)
    return ak.cooldown_keep(np.array([0, len(time)], np.int64), time,
                            np.array([0 if last_fire_ms is None else int(last_fire_ms)], np.int64),
                            np.array([last_fire_ms is not None]), np.array([cooldown_s * 1000.0]))


# -- many numeric price_cross rules in one call ---------------------------------------------
def evaluate_many(rules: Mapping[str, Rule | dict | str], trades: TradeBatch, after_id: int | Mapping[str, int] = -1,
                  last_fire_ms: Mapping[str, int | None] | None = None) -> pd.DataFrame:
    """:func:`evaluate` of many ``price_cross`` rules with numeric levels in one vectorised pass.

    Each pair of consecutive trades crosses up the levels in ``(price[i-1], price[i]]`` and down those in
    ``[price[i], price[i-1])``: two ``searchsorted`` per trade over the sorted levels, so the cost grows with the
    trades and the firings, not with trades × rules. Equal, rule by rule, to :func:`evaluate`. Measured on a
    1,000-trade batch with the 69,239-trade recording as context (``benchmarks/bench_alerts.py``): 1,000 rules
    take ~7 ms here against ~0.3-0.5 ms *per rule* with :func:`evaluate` — the server should use this for its
    numeric price_cross rules.

    Parameters
    ----------
    rules : mapping rule_id -> rule
        ``price_cross`` rules with a number as ``level``.
    trades : TradeBatch
        As :func:`evaluate`.
    after_id : int or mapping rule_id -> int
        The last evaluated trade id, for all rules or per rule (missing: -1).
    last_fire_ms : mapping rule_id -> int or None
        Each rule's last firing time (UTC ms), for the cooldown.

    Returns
    -------
    DataFrame
        ``rule_id`` then :data:`FIRING_COLUMNS`, by trade then by the rules' order in ``rules``.

    Raises
    ------
    RuleError, ValueError
        An invalid rule, one that is not a numeric price_cross (``field`` "level"), bad trades.
    """
    names = list(rules)
    parsed = [r if isinstance(r, PriceCross) else parse_rule(r) for r in rules.values()]
    for r in parsed:
        if not isinstance(r, PriceCross) or isinstance(r.level, LevelRef):
            raise RuleError("level", "evaluate_many takes price_cross rules with numeric levels only")
        if trades.symbol and r.symbol != trades.symbol:
            raise ValueError(f"the rule is for {r.symbol}, the trades are {trades.symbol}")
    after = [int(after_id.get(k, -1)) if isinstance(after_id, Mapping) else int(after_id) for k in names]
    _check_trades(trades, None, min(after, default=-1))
    firsts = np.searchsorted(trades.trade_id, np.asarray(after, np.int64), side="right")
    empty = pd.DataFrame({"rule_id": np.empty(0, object), **_frame("", [], [], [], [], [])})
    if not names or int(firsts.min()) >= len(trades):
        return empty
    levels = np.array([float(r.level) for r in parsed])
    lo = max(int(firsts.min()) - 1, 0)
    idx, rule = _level_crossings(trades.price[lo:], levels, np.array([DIRECTIONS[r.direction] for r in parsed]))
    idx += lo
    ok = idx >= firsts[rule]
    idx, rule = idx[ok], rule[ok]
    srt = np.lexsort((idx, rule))  # by rule, then trade: the cooldown runs per rule
    idx, rule = idx[srt], rule[srt]
    bounds = np.searchsorted(rule, np.arange(len(names) + 1)).astype(np.int64)
    lf = [None if last_fire_ms is None else last_fire_ms.get(k) for k in names]
    keep = ak.cooldown_keep(bounds, trades.time[idx], np.array([0 if x is None else int(x) for x in lf], np.int64),
                            np.array([x is not None for x in lf]), np.array([r.cooldown_s * 1000.0 for r in parsed]))
    idx, rule = idx[keep], rule[keep]
    srt = np.lexsort((rule, idx))
    idx, rule = idx[srt], rule[srt]
    ids = trades.trade_id[idx]
    rid = np.array(names, dtype=object)[rule] if len(rule) else np.empty(0, object)
    out = _frame("", ids, trades.time[idx], trades.price[idx], levels[rule], trades.price[idx])
    out["event_id"] = [f"{r}:{int(t)}" for r, t in zip(rid, ids, strict=True)]
    out.insert(0, "rule_id", rid)
    return out


def _level_crossings(price: np.ndarray, levels: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(trade, rule)`` int arrays (K,): trade i ≥ 1 of ``price`` crosses ``levels[rule]`` in a direction its
    ``dirs`` bit allows (1 up: ``price[i-1] < L <= price[i]``; 2 down: ``price[i-1] > L >= price[i]``)."""
    order = np.argsort(levels, kind="stable")
    sl = levels[order]
    prev, cur = price[:-1], price[1:]
    parts = []
    for bit, a, b in ((1, np.searchsorted(sl, prev, "right"), np.searchsorted(sl, cur, "right")),
                      (2, np.searchsorted(sl, cur, "left"), np.searchsorted(sl, prev, "left"))):
        cnt = np.maximum(b - a, 0)
        pair = np.repeat(np.arange(len(cnt)), cnt)
        pos = np.repeat(a, cnt) + np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        rule = order[pos]
        ok = (dirs[rule] & bit) > 0
        parts.append((1 + pair[ok], rule[ok]))
    return np.concatenate([x[0] for x in parts]), np.concatenate([x[1] for x in parts])


# -- backtest -----------------------------------------------------------------------------------
def backtest(rule: Rule | dict | str, trades: TradeBatch, liquidations: pd.DataFrame | None = None,
             horizons_min=(1, 5, 15), *, tick: float | None = None, rule_id: str = "") -> dict:
    """The rule's firings over ``trades`` and the forward returns after them.

    The return at horizon h (minutes) after a firing at time T and price P is ``price / P − 1`` with ``price`` the
    last trade at or before ``T + h·60 000`` ms; NaN when the data ends before that time (no sign flip for
    ``down`` rules). Pure numpy/pandas.

    Returns
    -------
    dict
        ``firings``: :func:`evaluate`'s DataFrame plus ``return_{h}m`` float64 columns; ``count``: int;
        ``horizons``: ``{"{h}m": {"count", "mean", "median", "share_positive"}}`` (over the finite returns; NaN
        when none).

    Raises
    ------
    RuleError, ValueError
        As :func:`evaluate`; a horizon that is not a positive number of minutes.
    """
    hs = tuple(float(h) for h in horizons_min)
    if any(not (math.isfinite(h) and h > 0) for h in hs):
        raise ValueError(f"horizons must be positive numbers of minutes, got {list(horizons_min)}")
    f = evaluate(rule, trades, liquidations=liquidations, tick=tick, rule_id=rule_id)
    t, p = trades.time, trades.price
    out = {"firings": f, "count": len(f), "horizons": {}}
    for h in hs:
        label = f"{h:g}m"
        target = f["time"].to_numpy() + round(h * 60_000)
        j = np.searchsorted(t, target, side="right") - 1
        ret = np.full(len(f), np.nan)
        ok = (j >= 0) & (len(t) > 0) & (target <= (t[-1] if len(t) else 0))
        ret[ok] = p[j[ok]] / f["price"].to_numpy()[ok] - 1.0
        f[f"return_{label}"] = ret
        fin = ret[np.isfinite(ret)]
        out["horizons"][label] = {
            "count": int(len(fin)), "mean": float(fin.mean()) if len(fin) else math.nan,
            "median": float(np.median(fin)) if len(fin) else math.nan,
            "share_positive": float((fin > 0).mean()) if len(fin) else math.nan}
    return out
