"""Connections of the live WebSocket client: open, read, supervise (reconnect, rotate), watchdog.

Split out of :mod:`feeds.binance_ws`: :class:`ConnectionsMixin` holds the
:class:`~feeds.binance_ws.BinanceStreamClient` methods that keep each group of
streams (a :class:`Slot`) connected; it reads the client's parameters and state
(``self.heartbeat``, ``self._status``, ...).  Times here are ``time.monotonic()``
seconds.  See the :mod:`feeds.binance_ws` docstring for the reconnect, overlap
and watchdog rules.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from .decode import MAX_FRAME_BYTES, FrameDecoder
from .markets import ws_stream_url
from .ws_status import backoff_delay

log = logging.getLogger(__name__)

__all__ = ["Conn", "ConnectionsMixin", "Slot"]


class Conn:
    """One WebSocket connection of a slot."""

    _ids = itertools.count(1)

    def __init__(self, slot: Slot, url: str, max_frame_bytes: int = MAX_FRAME_BYTES):
        self.id = next(self._ids)
        self.slot = slot
        self.url = url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.decoder = FrameDecoder(f"conn{self.id}", slot.logged, max_frame_bytes=max_frame_bytes)
        self.opened = time.monotonic()
        self.last_agg: dict[str, float] = {}
        self.got_trade = False
        self.closed = asyncio.Event()
        self.reader: asyncio.Task | None = None
        self.close_reason = ""


class Slot:
    """A group of streams served by one connection (two while overlapping)."""

    def __init__(self, idx: int, symbols: list[str], streams: list[str]):
        self.idx = idx
        self.symbols = symbols
        self.streams = streams
        self.conns: list[Conn] = []
        self.current: Conn | None = None
        self.logged: set = set()  # frame kinds already logged (log once per kind)
        self.retired_counts: collections.Counter = collections.Counter()  # frame counts of closed connections
        self.task: asyncio.Task | None = None


class ConnectionsMixin:
    """The client's connection methods (mixed into :class:`~feeds.binance_ws.BinanceStreamClient`).

    Every method reports through the client's ``_status``, ``counts`` and
    ``last_error``; none raises out of the client (failures end only one connection).
    """

    async def _connect(self, slot: Slot) -> Conn:
        async with self._connect_lock:
            wait = self._last_connect + self.connect_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_connect = time.monotonic()
        url = ws_stream_url(self._market, slot.streams if self.subscribe_mode == "url" else (), self.ws_base)
        conn = Conn(slot, url, self.max_frame_bytes)
        conn.ws = await asyncio.wait_for(
            self._session.ws_connect(url, autoping=True, heartbeat=self.heartbeat,
                                     max_msg_size=4 * self.max_frame_bytes),
            self.connect_timeout)
        conn.opened = time.monotonic()
        conn.reader = asyncio.create_task(self._read(conn), name=f"binance-ws-read{conn.id}")
        if self.subscribe_mode == "message":
            for i in range(0, len(slot.streams), self.subscribe_chunk):
                if i:
                    await asyncio.sleep(self.subscribe_interval)
                await conn.ws.send_json({"method": "SUBSCRIBE", "params": slot.streams[i : i + self.subscribe_chunk],
                                         "id": conn.id * 10_000 + i})
        return conn

    async def _read(self, conn: Conn) -> None:
        ws = conn.ws
        feed = conn.decoder.feed
        raw_cb = self.on_frame
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT or msg.type is aiohttp.WSMsgType.BINARY:
                    if raw_cb is not None:
                        try:
                            raw_cb(msg.data)
                        except Exception:  # noqa: BLE001 - a consumer's bug must not cut the stream
                            log.exception("on_frame callback failed")
                    feed(msg.data)
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    err = msg.data if isinstance(msg.data, BaseException) else ws.exception()
                    if getattr(err, "code", None) == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
                        conn.decoder.counts["too_large"] += 1  # a frame beyond the reader's limit ends the connection
                    conn.close_reason = f"error: {err!r}"
                    break
            if not conn.close_reason:
                conn.close_reason = f"closed by server (code {ws.close_code})"
        except asyncio.CancelledError:
            conn.close_reason = conn.close_reason or "cancelled"
            raise
        except Exception as e:  # noqa: BLE001 - any failure ends only this connection
            conn.close_reason = f"{type(e).__name__}: {e}"
        finally:
            conn.closed.set()
            with contextlib.suppress(Exception):
                await ws.close()

    def _set_connected(self, slot: Slot) -> None:
        live = any(not c.closed.is_set() for c in slot.conns)
        for s in slot.symbols:
            st = self._status[s]
            st.connected = live
            if not live:
                st.state = "disconnected"
            elif st.state in ("connecting", "disconnected", "stalled"):
                st.state = "live"

    async def _supervise(self, slot: Slot) -> None:
        """Keep the slot connected: reconnect with backoff, rotate before the 24 h cut, react to stalls."""
        attempt = 0
        first = True
        reason = ""
        while self._running:
            got = await self._connect_with_backoff(slot, attempt)
            if got is None:
                return
            conn, attempt = got
            log.info("slot %d: connection %d open (%s)", slot.idx, conn.id, conn.url)
            self.last_error = None
            self.counts["connections"] += 1
            old = [c for c in slot.conns if not c.closed.is_set()]
            slot.conns.append(conn)
            slot.current = conn
            if not first:
                for s in slot.symbols:
                    self._status[s].reconnects += 1
                    if not old or reason == "stall":  # nothing (useful) overlapped: ask REST what we missed
                        self._need_catchup.add(s)
            first = False
            for c in old:
                asyncio.create_task(self._retire(c, conn))
            self._set_connected(slot)
            try:
                reason = await self._watch(slot, conn)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("slot %d: watch failed", slot.idx)
                reason = "error"
            if reason == "closed":
                log.warning("slot %d: connection %d ended: %s", slot.idx, conn.id, conn.close_reason)
                self._set_connected(slot)
                attempt = 0 if conn.got_trade else attempt + 1
                await asyncio.sleep(backoff_delay(max(attempt, 1), self.reconnect_initial, self.reconnect_max))
            else:
                self.counts[f"rotations_{reason}"] += 1
                log.info("slot %d: replacing connection %d (%s) with overlap", slot.idx, conn.id, reason)
                if reason == "stall":
                    attempt = 0 if conn.got_trade else attempt + 1
                    await asyncio.sleep(backoff_delay(attempt, self.reconnect_initial, self.reconnect_max))

    async def _connect_with_backoff(self, slot: Slot, failures: int) -> tuple[Conn, int] | None:
        """Open a connection for ``slot``, retrying every failure (tenacity) until the client stops.

        Every failure counts ``connect_failures`` and sets :attr:`last_error`; the n-th
        in a row is logged and waits ``backoff_delay(failures + n, reconnect_initial,
        reconnect_max)`` (``failures``: those already counted since the last connection
        that delivered a trade). Returns the connection and the failures counted so far,
        or None if the client was stopped meanwhile. Cancellation is not retried.
        """

        def wait(rs: RetryCallState) -> float:
            return backoff_delay(failures + rs.attempt_number, self.reconnect_initial, self.reconnect_max)

        def failed(rs: RetryCallState) -> None:
            e = rs.outcome.exception()
            self.counts["connect_failures"] += 1
            self.last_error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__

        def retry_log(rs: RetryCallState) -> None:
            e = rs.outcome.exception()
            log.warning("slot %d: connect failed (%s: %s); retry %d in %.2f s", slot.idx, type(e).__name__, e,
                        failures + rs.attempt_number, rs.upcoming_sleep)

        retrying = AsyncRetrying(retry=retry_if_exception_type(Exception), wait=wait, after=failed,
                                 before_sleep=retry_log, stop=lambda rs: not self._running,
                                 retry_error_callback=lambda rs: None)
        conn = await retrying(self._connect, slot)
        if conn is None:
            return None
        return conn, failures + retrying.statistics["attempt_number"] - 1

    async def _retire(self, old: Conn, new: Conn) -> None:
        """Close ``old`` once ``new`` delivers (or after ``overlap_wait``), ``overlap`` seconds later."""
        try:
            t0 = time.monotonic()
            while not new.got_trade and not new.closed.is_set() and time.monotonic() - t0 < self.overlap_wait:
                await asyncio.sleep(min(0.05, self.overlap_wait))
            if not new.closed.is_set():
                await asyncio.sleep(self.overlap)
            old.close_reason = old.close_reason or "retired after overlap"
            if old.ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(old.ws.close(), 2.0)
            if old.reader is not None:
                await asyncio.wait([old.reader], timeout=2.0)  # raises only our own cancellation
                old.reader.cancel()  # still reading after 2 s: it stops here
                await asyncio.gather(old.reader, return_exceptions=True)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("retiring connection %d failed", old.id)

    async def _watch(self, slot: Slot, conn: Conn) -> str:
        """Return ``closed``, ``age`` (rotate before the 24 h cut) or ``stall`` (watchdog)."""
        step = max(0.01, min(0.5, self.stall_timeout / 5, self.max_connection_age / 10))
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.closed.wait(), step)
            if conn.closed.is_set():
                return "closed"
            now = time.monotonic()
            if now - conn.opened >= self.max_connection_age:
                return "age"
            for s in slot.symbols:
                last = conn.last_agg.get(s, conn.opened)
                usual = self._interval.get(s)
                limit = max(self.stall_timeout, self.stall_factor * usual) if usual else self.stall_timeout
                if now - last > limit:
                    st = self._status[s]
                    st.stalls += 1
                    st.state = "stalled"
                    self.counts["stalls"] += 1
                    log.warning("watchdog: %s@aggTrade silent for %.1f s on connection %d (subscribed, no data): "
                                "reconnecting", s.lower(), now - last, conn.id)
                    return "stall"
