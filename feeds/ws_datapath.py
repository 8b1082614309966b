"""Data path of the live WebSocket client: decoders -> id sequencers -> REST gap fill -> subscribers.

Split out of :mod:`feeds.binance_ws`: :class:`DataPathMixin` holds the
:class:`~feeds.binance_ws.BinanceStreamClient` methods that flush each connection's
:class:`~feeds.decode.FrameDecoder` every ``flush_interval`` into the per-symbol
:class:`~feeds.gapfill.IdSequencer`, release contiguous runs, ask REST for holes
(:class:`~feeds.gapfill.GapFiller`), record unfillable ones as
:class:`~feeds.gapfill.Gap`, drop duplicate liquidations and hand everything to
the subscribers and callbacks.  Trade times UTC ms; wall times ``time.monotonic()``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pandas as pd

from .decode import liquidations_frame
from .gapfill import Gap
from .source import LiquidationBatch
from .ws_connections import Conn, Slot
from .ws_status import FeedEvent

log = logging.getLogger(__name__)

__all__ = ["DataPathMixin"]


class DataPathMixin:
    """The client's data-path methods (mixed into :class:`~feeds.binance_ws.BinanceStreamClient`).

    A failure of one connection, one symbol or one consumer is logged and counted
    (``counts["flush_errors"]``) and never stops the others.
    """

    async def _flusher(self) -> None:
        while self._running:
            await asyncio.sleep(self.flush_interval)
            try:
                self._flush_all()
            except Exception:  # noqa: BLE001 - keep flushing whatever happens
                log.exception("flush failed")

    def _flush_all(self) -> None:
        """Flush every connection's decoder into the sequencers, then release and check holes per symbol.

        Each connection and each symbol is guarded on its own: a failure is
        logged (with its traceback, the first times) and counted in
        ``counts["flush_errors"]``, and the others go on.
        """
        now = time.monotonic()
        liq = []
        for slot in self._slots:
            for conn in list(slot.conns):
                try:
                    self._flush_conn(conn, now, liq)  # the decoder is empty afterwards, even if this fails
                    if conn.closed.is_set() and not conn.decoder.pending:
                        self._forget(slot, conn)
                except Exception:  # noqa: BLE001 - one connection's failure must not stop the others
                    self._flush_error(f"flushing connection {conn.id}")
            self._set_connected(slot)
        for sym, seq in self._seq.items():
            try:
                if not seq.started:
                    first = self._first_seen.get(sym)
                    if first is None or now - first < self.reorder_grace:
                        continue
                    seq.start()
                self._release(sym)
                self._check_hole(sym, now)
            except Exception:  # noqa: BLE001 - one symbol's failure must not stop the others
                self._flush_error(f"releasing {sym}")
        if liq:
            try:
                self._emit_liquidations(liq)
            except Exception:  # noqa: BLE001
                self._flush_error("emitting liquidations")

    def _flush_conn(self, conn: Conn, now: float, liq: list) -> None:
        dec = conn.decoder
        if not dec.pending:
            return
        out = dec.flush()  # never raises, always empties the decoder
        for sym, cols in out.trades.items():
            if sym not in self._seq:
                self.counts["unexpected_symbol"] += len(cols)
                continue
            conn.last_agg[sym] = now
            conn.got_trade = True
            prev = self._arrival.get(sym)
            if prev is not None and now > prev:
                iv = self._interval.get(sym)
                self._interval[sym] = (now - prev) if iv is None else 0.9 * iv + 0.1 * (now - prev)
            self._arrival[sym] = now
            self._seq[sym].add(cols)
            self._first_seen.setdefault(sym, now)
        liq.extend(out.liquidations)

    def _flush_error(self, what: str) -> None:
        self.counts["flush_errors"] += 1
        if self.counts["flush_errors"] <= 10:
            log.exception("%s failed", what)

    def _forget(self, slot: Slot, conn: Conn) -> None:
        slot.retired_counts.update(conn.decoder.counts)
        slot.conns.remove(conn)

    def _release(self, sym: str) -> None:
        out = self._seq[sym].release()
        if not len(out):
            return
        st = self._status[sym]
        st.trades += len(out)
        st.last_trade_time = int(out.time[-1])
        st.last_trade_id = int(out.agg_id[-1])
        self._emit(FeedEvent("trades", sym, trades=out))

    def _check_hole(self, sym: str, now: float) -> None:
        seq = self._seq[sym]
        if sym in self._fill_tasks or not self._running:
            return
        hole = seq.hole()
        if hole is None and sym not in self._need_catchup:
            self._hole_since.pop(sym, None)
            return
        if hole is not None:
            since = self._hole_since.setdefault(sym, now)
            if now - since < self.reorder_grace:
                return
        if hole is None and not seq.started:
            return
        if hole is None:
            self._need_catchup.discard(sym)  # a bounded fill keeps it: the catch-up follows it
        self._fill_tasks[sym] = asyncio.create_task(self._fill(sym, hole, self._hole_since.get(sym, now)))

    async def _fill(self, sym: str, hole: tuple[int, int] | None, since: float) -> None:
        """Fill ``hole`` (or, after a reconnect, everything after the last id) from REST; skip it if REST fails."""
        seq = self._seq[sym]
        st = self._status[sym]
        st.state = "filling"
        try:
            if hole is None:  # after a reconnect: what happened while we were away
                from_id, to_id = seq.last_id + 1, None
            else:
                from_id, to_id = hole
            budget = max(0.05, self.gap_fill_timeout - (time.monotonic() - since))
            res = await self._filler.fill(sym, from_id, to_id, budget)
            st.trades_from_rest += len(res.trades)
            seq.add(res.trades)
            self._release(sym)
            if hole is None:
                if not res.complete:
                    log.warning("catch-up of %s from id %d after reconnect incomplete: %s", sym, from_id, res.reason)
                    if not res.reason.startswith("http 4"):  # transient: try again on a later flush
                        self._need_catchup.add(sym)
                return
            h = seq.hole()
            if h is None or h[0] > hole[1]:
                st.gaps_filled += 1
                self._record_gap(Gap(sym, hole[0], hole[1], int(time.time() * 1000), None, None, True,
                                     len(res.trades), "filled"))
                return
            skipped = seq.skip_hole()
            before = seq._held.time[0] if seq.held else None
            st.gaps_unfilled += 1
            self._record_gap(Gap(sym, skipped[0], skipped[1], int(time.time() * 1000), seq.last_time,
                                 int(before) if before is not None else None, False, len(res.trades), res.reason))
            log.warning("gap %s ids %d..%d not fillable (%s): recorded and skipped", sym, skipped[0], skipped[1],
                        res.reason)
            self._release(sym)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("gap fill of %s failed", sym)
        finally:
            self._fill_tasks.pop(sym, None)
            self._hole_since.pop(sym, None)
            if st.state == "filling":
                st.state = "live" if st.connected else "disconnected"

    def _record_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)
        self._emit(FeedEvent("gap", gap.symbol, gap=gap))

    def _emit_liquidations(self, msgs: list) -> None:
        fresh = []
        for m in msgs:
            o = m.o
            key = (o.s, o.T, o.S, o.z, o.ap, o.X, m.E)
            if key in self._liq_seen:
                self.counts["liquidation_duplicates"] += 1
                continue
            self._liq_seen[key] = None
            if len(self._liq_seen) > 4096:
                self._liq_seen.popitem(last=False)
            fresh.append(m)
            st = self._status.get(o.s.upper())
            if st is not None:
                st.liquidations += 1
                st.last_liquidation_time = max(st.last_liquidation_time or 0, o.T)
        if fresh:
            self._emit(FeedEvent("liquidations", liquidations=liquidations_frame(fresh)))

    def _emit(self, ev: FeedEvent) -> None:
        for q in self._subscribers:
            q.put_nowait(ev)
        try:
            if ev.kind == "trades":
                batch = None
                for q in self._sources.get(ev.symbol, ()):
                    if batch is None:
                        batch = ev.batch
                    q.put_nowait(batch)
                if self.on_trades is not None:
                    self.on_trades(ev.symbol, ev.trades)
            elif ev.kind == "liquidations":
                self._route_liquidations(ev.liquidations)
                if self.on_liquidations is not None:
                    self.on_liquidations(ev.liquidations)
            elif ev.kind == "gap" and self.on_gap is not None:
                self.on_gap(ev.gap)
        except Exception:  # a consumer's bug must not stop the feed
            log.exception("%s callback failed", ev.kind)

    def _route_liquidations(self, df: pd.DataFrame) -> None:
        """Each symbol's rows of ``df`` to the sources of that symbol that take liquidations."""
        for sym, qs in self._liq_sources.items():
            if not qs:
                continue
            part = LiquidationBatch.of(df, sym)
            if len(part):
                for q in qs:
                    q.put_nowait(part)
