"""The emulator's per-symbol exchange clock: plays one trade table as a live exchange.

Each symbol is an "exchange" that starts playing its trades when the first
connection subscribes to one of its streams (or at start-up with
``clock_start="now"``). Trades "happen" at ``speed`` times exchange time
(``speed=0``: as fast as the subscribers read). REST only returns trades that have
already happened, so a client that misses frames can fill them from REST. With
``loop`` the table plays again with ids shifted by the id span and times by the
time span.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import orjson

from .recording import LIQUIDATION_MODE, TradeTable, synthetic_liquidations_at_real_trades

if TYPE_CHECKING:
    from .server import LocalBinance

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Frame:
    """One frame to send: a stream's payload text and, for aggTrade frames, its aggregate id (-1 otherwise)."""

    stream: str  # canonical stream name, e.g. "btcusdt@aggTrade"
    payload: str  # raw payload text
    agg_id: int  # aggregate id, -1 for non-trade frames
    symbol: str
    _combined: str | None = None

    def text(self, combined: bool) -> str:
        """The payload, wrapped as ``{"stream":..,"data":..}`` when ``combined``."""
        if not combined:
            return self.payload
        if self._combined is None:
            self._combined = '{"stream":"' + self.stream + '","data":' + self.payload + "}"
        return self._combined


class SymbolFeed:
    """Plays one TradeTable as a live exchange (see the module docstring)."""

    LOOP_GAP_MS = 1000
    MAX_GAP_MS = 60_000

    def __init__(self, server: LocalBinance, table: TradeTable):
        self.srv = server
        self.t = table
        self.sym_l = table.symbol.lower()
        self.agg_stream = f"{self.sym_l}@aggTrade"
        self.liq_stream = f"{self.sym_l}@forceOrder"
        n = len(table)
        self.n = n
        # liquidation events: (E, T, payload fields) ordered after the trade they follow
        liq_after, self.liq_fields = self._liquidations(table)
        kinds = np.r_[np.zeros(n, np.int8), np.ones(len(liq_after), np.int8)]
        idx = np.r_[np.arange(n), np.arange(len(liq_after))]
        pos = np.r_[np.arange(n) * 2.0, liq_after * 2.0 + 1.0]
        order = np.argsort(pos, kind="stable")
        self.ev_kind, self.ev_idx = kinds[order], idx[order]
        ev_e = np.r_[table.E, np.array([x["E"] for x in self.liq_fields], np.int64)][order] if len(order) else np.empty(0)
        d = np.diff(ev_e.astype(np.int64), prepend=ev_e[:1].astype(np.int64)) if len(ev_e) else np.empty(0, np.int64)
        d = np.clip(d, 0, self.MAX_GAP_MS)
        self.ev_sched = np.cumsum(d).astype(np.float64)  # ms from first event
        self.ev_trades_before = np.r_[0, np.cumsum(self.ev_kind == 0)].astype(np.int64)
        self.ne = len(self.ev_kind)
        self.span_sched = (self.ev_sched[-1] if self.ne else 0.0) + self.LOOP_GAP_MS
        self.span_a = int(table.a[-1] - table.a[0] + 1) if n else 1
        self.span_id = int(max(table.l.max(), table.a.max()) - min(table.f.min(), table.a.min()) + 1) if n else 1
        self.span_t = int(table.T[-1] - table.T[0] + self.LOOP_GAP_MS) if n else self.LOOP_GAP_MS
        self.v = 0  # next event (virtual index, wraps when looping)
        self.published = 0  # trades that have happened (virtual count)
        self.off_ms = 0  # retime offset
        self.started = False
        self.finished = asyncio.Event()
        self.changed = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.wall0 = 0.0
        self.sched0 = 0.0

    # -- liquidations ---------------------------------------------------------------
    def _liquidations(self, t: TradeTable):
        fields = []
        if t.liq:  # real forceOrder frames: keep them verbatim
            liq_e = np.array([x["E"] for x in t.liq], np.int64)
            after = np.searchsorted(t.E, liq_e, side="right") - 1
            for x in t.liq:
                fields.append({"E": x["E"], "o": dict(x["o"]), "raw": x["raw"]})
            return np.asarray(after, np.float64), fields
        if self.srv.liquidations != LIQUIDATION_MODE or t.market == "spot" or not len(t):
            return np.empty(0), []
        idx = synthetic_liquidations_at_real_trades(t, self.srv.liquidation_every_s)
        for i in idx:
            o = {"s": t.symbol}
            if t.market == "coinm":
                o["ps"] = t.symbol.split("_")[0]
            side = "SELL" if t.m[i] else "BUY"
            o.update({"S": side, "o": "LIMIT", "f": "IOC", "q": t.q[i], "p": t.p[i], "ap": t.p[i], "X": "FILLED",
                      "l": t.q[i], "z": t.q[i], "T": int(t.T[i])})
            fields.append({"E": int(t.E[i]), "o": o, "raw": None})
        return idx.astype(np.float64), fields

    # -- encoding -------------------------------------------------------------------
    def agg_payload(self, i: int, k: int) -> str:
        """aggTrade payload text of trade ``i`` in loop round ``k`` (verbatim when recorded so and unshifted)."""
        t = self.t
        off = self.off_ms + k * self.span_t
        if t.raw is not None and k == 0 and off == 0 and t.raw[i] is not None:
            return t.raw[i]
        ida = k * self.span_a
        idf = k * self.span_id
        s = (f'{{"e":"aggTrade","E":{int(t.E[i]) + off},"a":{int(t.a[i]) + ida},"s":"{t.symbol}",'
             f'"p":"{t.p[i]}","q":"{t.q[i]}","f":{int(t.f[i]) + idf},"l":{int(t.l[i]) + idf},'
             f'"T":{int(t.T[i]) + off},"m":{"true" if t.m[i] else "false"}')
        if t.M is not None:
            s += f',"M":{"true" if t.M[i] else "false"}'
        return s + "}"

    def liq_payload(self, j: int, k: int) -> str:
        """forceOrder payload text of liquidation ``j`` in loop round ``k``."""
        x = self.liq_fields[j]
        off = self.off_ms + k * self.span_t
        if x["raw"] is not None and off == 0:
            return x["raw"]
        o = dict(x["o"])
        o["T"] = int(o["T"]) + off
        return orjson.dumps({"e": "forceOrder", "E": int(x["E"]) + off, "o": o}).decode()

    def rest_rows(self, v0: int, v1: int) -> list[bytes]:
        """JSON objects of trades with virtual trade indices v0..v1-1 (REST layout)."""
        t = self.t
        out = []
        for v in range(v0, v1):
            k, i = divmod(v, self.n)
            off = self.off_ms + k * self.span_t
            idf = k * self.span_id
            s = (f'{{"a":{int(t.a[i]) + k * self.span_a},"p":"{t.p[i]}","q":"{t.q[i]}","f":{int(t.f[i]) + idf},'
                 f'"l":{int(t.l[i]) + idf},"T":{int(t.T[i]) + off},"m":{"true" if t.m[i] else "false"}')
            if t.M is not None:
                s += f',"M":{"true" if t.M[i] else "false"}'
            out.append((s + "}").encode())
        return out

    def trade_id_at(self, v: int) -> int:
        """Aggregate trade id of virtual trade index ``v``."""
        k, i = divmod(v, self.n)
        return int(self.t.a[i]) + k * self.span_a

    def trade_time_at(self, v: int) -> int:
        """Trade time ``T`` (UTC ms, retimed and loop-shifted) of virtual trade index ``v``."""
        k, i = divmod(v, self.n)
        return int(self.t.T[i]) + self.off_ms + k * self.span_t

    def vindex_of_id(self, agg_id: int) -> int:
        """Virtual trade index of the first trade with id >= agg_id."""
        a = self.t.a
        if not self.n:
            return 0
        k = 0
        if self.srv.loop and agg_id > a[-1]:
            k = (agg_id - int(a[0])) // self.span_a
        i = int(np.searchsorted(a, agg_id - k * self.span_a, side="left"))
        return k * self.n + i

    def vindex_of_time(self, t_ms: int) -> int:
        """Virtual trade index of the first trade with T >= t_ms."""
        T = self.t.T
        if not self.n:
            return 0
        t0 = t_ms - self.off_ms
        k = 0
        if self.srv.loop and t0 > T[-1]:
            k = (t0 - int(T[0])) // self.span_t
        i = int(np.searchsorted(T, t0 - k * self.span_t, side="left"))
        return k * self.n + i

    # -- clock ----------------------------------------------------------------------
    def sched_of(self, v: int) -> float:
        """Schedule time (ms of exchange time from the first event) of virtual event ``v``."""
        k, j = divmod(v, self.ne)
        return k * self.span_sched + float(self.ev_sched[j])

    def sched_now(self) -> float:
        """Exchange time reached now (ms on the schedule; inf with speed 0)."""
        sp = self.srv.speed
        if sp <= 0:
            return math.inf
        return self.sched0 + (time.monotonic() - self.wall0) * 1000.0 * sp

    def rebase(self, old_speed: float) -> None:
        """Keep the schedule position when ``speed`` changes from ``old_speed``."""
        now = time.monotonic()
        if old_speed <= 0:
            self.sched0 = self.sched_of(self.v) if self.ne else 0.0
        else:
            self.sched0 = self.sched0 + (now - self.wall0) * 1000.0 * old_speed
        self.wall0 = now
        self.changed.set()

    def start(self) -> None:
        """Start playing (idempotent); with ``retime`` the first trade happens now."""
        if self.started:
            return
        self.started = True
        if self.srv.retime and self.n:
            self.off_ms = int(time.time() * 1000) - int(self.t.T[0])
        self.wall0 = time.monotonic()
        self.sched0 = self.sched_of(self.v) if self.ne else 0.0
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"emulator-{self.t.market}-{self.sym_l}")

    def preplay(self, n_trades: int | None) -> None:
        """Let the first n trades (all if None) happen at once, unseen on the WebSocket."""
        target = self.n if n_trades is None else int(n_trades)
        while self.v < (self.ne if not self.srv.loop else math.inf) and self.published < target:
            k, j = divmod(self.v, self.ne)
            if self.ev_kind[j] == 0:
                self.published += 1
            self.v += 1
        self.sched0 = self.sched_of(self.v) if self.ne else 0.0
        self.wall0 = time.monotonic()
        self.changed.set()

    def _done(self) -> bool:
        return not self.srv.loop and self.v >= self.ne

    async def _run(self) -> None:
        srv = self.srv
        try:
            while not self._done():
                if not self.ne:
                    break
                fast = srv.speed <= 0
                pause = srv.pause_when_idle if srv.pause_when_idle is not None else fast
                if pause and not srv._has_listeners(self):
                    self.changed.clear()
                    try:
                        await asyncio.wait_for(self.changed.wait(), 0.05)
                    except TimeoutError:
                        pass
                    continue
                now = self.sched_now()
                sent = 0
                chunk = min(512, srv.fast_backlog) if fast else 512
                while not self._done() and sent < chunk and self.sched_of(self.v) <= now:
                    self._publish_event(self.v)
                    self.v += 1
                    sent += 1
                if fast:
                    while srv._max_backlog(self) > srv.fast_backlog and srv.speed <= 0:
                        await asyncio.sleep(0.002)
                    await asyncio.sleep(0)
                    continue
                if sent:
                    await asyncio.sleep(0)
                    continue
                wait_ms = (self.sched_of(self.v) - now) / max(srv.speed, 1e-9) if not self._done() else 0
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), min(max(wait_ms / 1000.0, 0.0005), 0.05))
                except TimeoutError:
                    pass
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - a bug here must be visible, not fatal
            log.exception("emulator feed %s crashed", self.agg_stream)
        self.finished.set()

    def _publish_event(self, v: int) -> None:
        k, j = divmod(v, self.ne)
        i = int(self.ev_idx[j])
        if self.ev_kind[j] == 0:
            fr = Frame(self.agg_stream, self.agg_payload(i, k), self.trade_id_at(k * self.n + i), self.t.symbol)
            self.published += 1
            self.srv._deliver(self.t.market, self.agg_stream, fr)
        else:
            fr = Frame(self.liq_stream, self.liq_payload(i, k), -1, self.t.symbol)
            self.srv._deliver(self.t.market, self.liq_stream, fr)
            self.srv._deliver(self.t.market, "!forceOrder@arr", Frame("!forceOrder@arr", fr.payload, -1, self.t.symbol))

