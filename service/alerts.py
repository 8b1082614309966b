"""Alerts evaluated on the server: one evaluator per symbol, in the one process that holds its lease.

Every server process runs an :class:`AlertEvaluator` per symbol; the one holding
``fl:{market:SYMBOL}:alerts:lease`` (an :class:`service.lease.IngestLease` on that key) evaluates,
the others try to take the lease every ``renew_ms``. On each new snapshot of the symbol's view
(whether or not a page is open) the holder reads the rules and the progress from Redis
(:class:`store.alert_store.AlertStore`), runs each rule's engine (:func:`compute.alerts.evaluate`,
the same function the CLI backtest and the notebooks use) over the view's trades with
``after_id`` = the last evaluated trade id, and commits the firings and the new progress in one
script that checks the lease and the progress it read. A new holder resumes right after the last
committed trade id: every event is written once, across processes, restarts and failover.

A rule is armed after the trade id that was the last one when it was created: it never fires on
the history that was there before it (the backtest shows that history instead).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid

import orjson
import param

from compute import alerts as rules_engine
from store.alert_store import AlertStore, Progress
from store.ingest import REDIS_ERRORS
from store.tasks import TaskOwner

from .lease import IngestLease
from .webhooks import check_webhook

log = logging.getLogger(__name__)


def signals_of(docs: dict, firings, symbol: str, market: str, rule_id: str | None = None) -> list[dict]:
    """The signal documents of ``firings`` (the DataFrame :func:`compute.alerts.evaluate` returns, or that of
    :func:`compute.alerts.evaluate_many` with its ``rule_id`` column; else every row is ``rule_id``'s).

    ``docs`` maps rule id -> the rule's document. Each signal: ``event_id`` (``<rule id>:<trade id>``, stable),
    ``rule_id``, ``rule`` (its type), ``name``, ``symbol``, ``market``, ``trade_id``, ``time`` (UTC ms),
    ``price`` (quote currency), ``level`` and ``value`` (the level or threshold crossed and the measured value,
    in the rule's units; None when not finite). One pass over plain lists: thousands of firings cost a few ms.
    """
    n = len(firings)
    ids = firings["rule_id"].tolist() if "rule_id" in firings else [rule_id] * n
    cols = [firings[c].to_numpy().tolist() for c in ("trade_id", "time", "price", "level", "value")]
    out = []
    for rid, tid, t, price, level, value in zip(ids, *cols, strict=True):
        rule = docs[rid]["rule"]
        out.append({"event_id": f"{rid}:{tid}", "rule_id": rid, "rule": rule["type"], "name": rule.get("name") or "",
                    "symbol": symbol, "market": market, "trade_id": tid, "time": t, "price": price,
                    "level": level if math.isfinite(level) else None,
                    "value": value if math.isfinite(value) else None})
    return out


def liquidations_of(snap):
    """The snapshot's liquidations, or an empty frame (a liquidation rule needs a frame)."""
    import pandas as pd

    liq = snap.liquidations
    if liq is None or not len(liq):
        return pd.DataFrame({c: [] for c in ("time", "side", "price", "avg_price", "orig_qty", "filled_qty")})
    return liq


class AlertEvaluator(TaskOwner, param.Parameterized):
    """Evaluate one symbol's rules on each new snapshot of its view while this process holds the lease."""

    renew_ms = param.Integer(default=2000, bounds=(100, 60_000), doc="Lease renewal / takeover period (ms).")
    idle_ms = param.Integer(default=500, bounds=(10, 10_000),
                            doc="Longest wait between two evaluations when no new data is announced (ms).")
    holding = param.Boolean(default=False, constant=True, doc="Whether this process evaluates the symbol now.")

    def __init__(self, store: AlertStore, view, lease: IngestLease, metrics=None, **params):
        super().__init__(**params)
        self.store = store
        self.view = view
        self.symbol = view.symbol
        self.lease = lease
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._bad_rules: set[str] = set()
        view.on_new_data(self._on_new_data)

    def _on_new_data(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        next_renew = 0.0
        while True:
            try:
                now = time.monotonic()
                if now >= next_renew:
                    await self._hold()
                    next_renew = now + self.renew_ms / 1000
                if self.holding:
                    await self.evaluate_once()
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as e:
                log.debug("alert evaluation of %s skipped: %s", self.symbol, type(e).__name__)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.idle_ms / 1000)
            except TimeoutError:
                pass

    async def _hold(self) -> None:
        held = await self.lease.renew() or await self.lease.acquire()
        if held != self.holding:
            log.info("%s the alert lease of %s", "took" if held else "lost", self.symbol)
            with param.edit_constant(self):
                self.holding = held

    async def stop(self) -> None:
        await self.stop_task()
        try:
            await self.lease.release()
        except REDIS_ERRORS:
            pass

    async def evaluate_once(self) -> int:
        """Evaluate the trades and liquidations the view gained since the last commit; returns the signals written
        (0 when nothing was new, or when the commit was refused because the lease or the progress moved)."""
        snap = self.view.snapshot
        if not len(snap.trades):
            return 0
        prog = await self.store.progress(self.symbol)
        last_id = int(snap.trades.trade_id[-1])
        liq = snap.liquidations
        liq_ms = int(liq["time"].max()) if liq is not None and len(liq) else None
        if prog.last_id is None:  # the first evaluation ever: from the earliest rule's arming, else the live edge
            rules = await self.store.rules(self.symbol)
            start = min((int(d.get("armed_after_id", last_id)) for d in rules.values()), default=last_id)
            ok = await self.store.commit(self.symbol, self.lease.owner, prog, min(start, last_id), None, [], {})
            return await self.evaluate_once() if ok == 1 and start < last_id else 0
        if last_id <= prog.last_id and (liq_ms is None or (prog.liq_ms or 0) >= liq_ms):
            return 0
        if int(snap.trades.trade_id[0]) > prog.last_id + 1:
            log.warning("alerts of %s: trades %d..%d are no longer held; evaluating from %d", self.symbol,
                        prog.last_id + 1, int(snap.trades.trade_id[0]) - 1, int(snap.trades.trade_id[0]))
        rules = await self.store.rules(self.symbol)  # read only when there is something new to evaluate
        t0 = time.perf_counter()
        signals, fires = self._evaluate(rules, snap, prog)
        if self.metrics is not None:
            self.metrics.alert_evaluation.observe(time.perf_counter() - t0)
        return await self._commit(prog, max(last_id, prog.last_id), liq_ms, signals, fires)

    def _evaluate(self, rules: dict, snap, prog: Progress) -> tuple[list[dict], dict[str, int]]:
        """Every rule's firings since ``prog``: the numeric price_cross rules in one vectorised call
        (:func:`compute.alerts.evaluate_many`), each other rule on its own."""
        signals, fires = [], {}
        tick = float(snap.meta["tick"]) if snap.meta.get("tick") else None
        numeric = {i: d for i, d in rules.items()
                   if d["rule"]["type"] == "price_cross" and not isinstance(d["rule"]["level"], dict)}
        if numeric:
            try:
                got = rules_engine.evaluate_many(
                    {i: d["rule"] for i, d in numeric.items()}, snap.trades,
                    {i: max(prog.last_id, int(d.get("armed_after_id", -1))) for i, d in numeric.items()},
                    {i: prog.fires.get(i) for i in numeric})
            except Exception:  # noqa: BLE001 - then each on its own, where a bad one is skipped alone
                numeric = {}
            else:
                new = signals_of(numeric, got, self.symbol, self.store.market)
                signals += new
                for sig in new:  # in time order: the last one per rule is its last firing
                    fires[sig["rule_id"]] = sig["time"]
        for rule_id, doc in rules.items():
            if rule_id in numeric:
                continue
            try:
                got = self._one(rule_id, doc, snap, prog, tick)
            except Exception:  # noqa: BLE001 - one bad rule must not stop the others
                if rule_id not in self._bad_rules:
                    log.exception("alert rule %s of %s cannot be evaluated; skipped", rule_id, self.symbol)
                    self._bad_rules.add(rule_id)
                continue
            if len(got):
                signals += signals_of(rules, got, self.symbol, self.store.market, rule_id)
                fires[rule_id] = int(got["time"].max())
        signals.sort(key=lambda s: (s["time"], s["trade_id"], s["rule_id"]))
        return signals, fires

    @staticmethod
    def _one(rule_id: str, doc: dict, snap, prog: Progress, tick):
        rule = rules_engine.parse_rule(doc["rule"])
        if doc["rule"]["type"] == "liquidation":  # its events are keyed by the liquidation's time
            after = max(prog.liq_ms or -1, int(doc.get("armed_after_liq_ms", -1)))
        else:
            after = max(prog.last_id, int(doc.get("armed_after_id", -1)))
        return rules_engine.evaluate(rule, snap.trades, after_id=after, last_fire_ms=prog.fires.get(rule_id),
                                     liquidations=liquidations_of(snap), tick=tick, rule_id=rule_id)

    async def _commit(self, prog: Progress, last_id: int, liq_ms: int | None, signals: list, fires: dict) -> int:
        done = await self.store.commit(self.symbol, self.lease.owner, prog, last_id, liq_ms, signals, fires)
        if done != 1:
            log.info("alert commit of %s refused (%s)", self.symbol, "lease lost" if done == 0 else "progress moved")
            return 0
        if signals and self.metrics is not None:
            self.metrics.signals.labels(self.symbol).inc(len(signals))
        return len(signals)


class AlertBook:
    """The rules of a process's symbols, as the REST API and the page manage them (one place for both).

    ``store`` an :class:`AlertStore`, ``registry`` the process's :class:`engine.view.ViewRegistry`,
    ``symbols`` the symbols it ingests, ``token`` the write token (None: writing is off). Every write takes
    the token the caller was given and raises :class:`PermissionError` when it is not the right one.
    """

    def __init__(self, store: AlertStore, registry, market: str, symbols, token: str | None):
        self.store = store
        self.registry = registry
        self.market = market
        self.symbols = {s.upper() for s in symbols}
        self._token = token

    def check(self, token: str | None) -> None:
        """Raise PermissionError unless ``token`` is the write token (compared in constant time)."""
        import hmac

        if not self._token:
            raise PermissionError("writing is turned off: the server has no API token")
        if not token:
            raise PermissionError("this needs the API token")
        if not hmac.compare_digest(token.encode(), self._token.encode()):
            raise PermissionError("wrong API token")

    async def arm(self, body, token: str | None) -> dict:
        """Validate a rule (a dict or JSON), backtest it on the history held, store it armed after the last trade.

        ``body`` may carry ``"webhook": {"url", "secret"}`` beside the rule's fields
        (:func:`service.webhooks.check_webhook`). Returns the stored document: ``id``, ``symbol``, ``market``,
        ``rule``, ``created_ms``, ``armed_after_id``, ``armed_after_liq_ms``, ``backtest``
        ``{"would_have_fired", "hours"}``, and ``webhook`` when given.

        Raises
        ------
        PermissionError
            A wrong or missing token.
        compute.alerts.RuleError
            An invalid rule (``field`` names the field), an unknown symbol or market, a row size the tick
            cannot express.
        """
        self.check(token)
        hook = None
        if not isinstance(body, dict):
            try:
                body = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                raise rules_engine.RuleError("", f"not JSON: {e}") from None
        if isinstance(body, dict) and "webhook" in body:
            body = dict(body)
            try:
                hook = check_webhook(body.pop("webhook"))
            except ValueError as e:
                field, _, msg = str(e).partition(": ")
                raise rules_engine.RuleError(field, msg) from None
        rule = rules_engine.parse_rule(body)
        spec = rules_engine.rule_to_dict(rule)
        if spec["symbol"] not in self.symbols:
            raise rules_engine.RuleError("symbol", f"unknown symbol {spec['symbol']!r}; ingested: "
                                                   f"{', '.join(sorted(self.symbols))}")
        if spec.get("market", self.market) != self.market:
            raise rules_engine.RuleError("market", f"this server ingests the {self.market} market")
        snap = self.registry.get(spec["symbol"]).snapshot
        liq = liquidations_of(snap)
        tick = float(snap.meta["tick"]) if snap.meta.get("tick") else None
        try:
            fired = await asyncio.to_thread(rules_engine.evaluate, rule, snap.trades, liquidations=liq,
                                            tick=tick) if len(snap.trades) else ()
        except ValueError as e:  # e.g. a row size the symbol's tick cannot express
            raise rules_engine.RuleError("", str(e)) from None
        hours = (int(snap.trades.time[-1]) - int(snap.trades.time[0])) / 3.6e6 if len(snap.trades) else 0.0
        doc = {"id": uuid.uuid4().hex[:12], "symbol": spec["symbol"], "market": self.market, "rule": spec,
               "created_ms": int(time.time() * 1000),
               "armed_after_id": int(snap.trades.trade_id[-1]) if len(snap.trades) else -1,
               "armed_after_liq_ms": int(liq["time"].max()) if len(liq) else -1,
               "backtest": {"would_have_fired": len(fired), "hours": round(hours, 2)}}
        if hook is not None:
            doc["webhook"] = hook
        await self.store.put_rule(doc["symbol"], doc["id"], doc)
        return doc

    async def rules(self, symbol: str | None = None) -> list[dict]:
        """The rules (of ``symbol``, else of every symbol), oldest first."""
        out = []
        for sym in [symbol.upper()] if symbol else sorted(self.symbols):
            out += list((await self.store.rules(sym)).values())
        return sorted(out, key=lambda d: d["created_ms"])

    async def find(self, rule_id: str) -> dict | None:
        """One rule's document, or None."""
        return next((d for d in await self.rules() if d["id"] == rule_id), None)

    async def remove(self, rule_id: str, token: str | None) -> bool:
        """Delete a rule; False when there is none. PermissionError: a wrong or missing token."""
        self.check(token)
        doc = await self.find(rule_id)
        return doc is not None and await self.store.delete_rule(doc["symbol"], rule_id)
