"""The emulator's WebSocket streams (reference d1/d2), mixed into :class:`LocalBinance`.

Paths: ``/market/stream?streams=a/b`` and ``/market/ws/a/b`` (routed USD-M paths),
``/stream?streams=`` and ``/ws/<stream>`` (COIN-M / spot layout). Combined mode
wraps payloads as ``{"stream":"btcusdt@aggTrade","data":{...}}``.
``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``/``SET_PROPERTY``/
``GET_PROPERTY`` answer ``{"result":...,"id":N}``. In ``usdm`` mode the **unrouted
legacy** paths ``/stream`` and ``/ws`` (and ``/public``) acknowledge subscriptions
but deliver no aggTrade or forceOrder (the silent failure since 2026-04-23).
Streams: ``<sym>@aggTrade``, ``<sym>@forceOrder``, ``!forceOrder@arr``. ``/_usdm``,
``/_coinm`` and ``/_spot`` prefixes select another market's layout on the same port.

The server pings every ``ping_interval``, closes on a pong timeout, on more than
``max_incoming_per_s`` incoming messages and after ``faults.max_lifetime``; the
:class:`~feeds.emulator.faults.Faults` knobs drop, garble, truncate, duplicate,
reorder, skip or silence frames.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson
from aiohttp import WSMsgType, web

from .clock import Frame, SymbolFeed

if TYPE_CHECKING:
    from .server import LocalBinance


_GARBAGE = (
    "not json at all",
    '{"stream":"%s","data":',
    '{"stream":"%s","data":null}',
    '{"stream":"%s","data":{"e":"aggTrade","E":"x","a":"not-a-number","s":7,"p":null,"q":[],"m":"maybe"}}',
    '{"stream":"%s","data":{"e":"unknownEvent","E":1}}',
    "[1,2,3]",
    b"\x00\xffbinary-garbage",
    "",
)


class Connection:
    """One WebSocket connection's state (exposed for tests through ``srv.connections``)."""

    def __init__(self, srv: LocalBinance, ws: web.WebSocketResponse, request: web.Request, market: str,
                 combined: bool, routed: bool):
        self.srv, self.ws, self.request = srv, ws, request
        self.market, self.combined, self.routed = market, combined, routed
        self.path = request.path_qs
        self.streams: dict[str, str] = {}  # lower-case key -> canonical name
        self.data: deque[Frame] = deque()
        self.control: deque = deque()
        self.wake = asyncio.Event()
        self.opened = time.monotonic()
        self.frames_sent = 0
        self.sent_ids: dict[str, list[int]] = {}  # symbol -> aggregate ids sent, in send order
        self.extra_sent = 0  # garbage + truncated + duplicates
        self.ping_outstanding: float | None = None
        self.pings_sent = 0
        self.pongs_received = 0
        self.incoming: deque[float] = deque()
        self.closed_reason: str | None = None
        self._counter = 0
        self._held: Frame | None = None
        self._held_at = 0.0
        self._gi = 0

    def __repr__(self) -> str:
        return f"<Connection {self.path} sent={self.frames_sent} reason={self.closed_reason}>"

    def enqueue(self, fr: Frame) -> None:
        """Queue a data frame for the sender."""
        self.data.append(fr)
        self.wake.set()

    def send_control(self, obj) -> None:
        """Queue a control answer (dict or text), sent before queued data."""
        self.control.append(obj)
        self.wake.set()

    def _skipped(self, fr: Frame) -> bool:
        if fr.agg_id < 0:
            return False
        for r in self.srv.faults.skip_ids:
            if len(r) == 3:
                if str(r[0]).upper() == fr.symbol and int(r[1]) <= fr.agg_id <= int(r[2]):
                    return True
            elif int(r[0]) <= fr.agg_id <= int(r[1]):
                return True
        return False

    async def _send_data(self, fr: Frame) -> None:
        await self.ws.send_str(fr.text(self.combined))
        if self.srv.on_send is not None:
            self.srv.on_send(fr)
        self.frames_sent += 1
        self.srv.stats["frames_sent"] += 1
        if fr.agg_id >= 0:
            self.sent_ids.setdefault(fr.symbol, []).append(fr.agg_id)

    async def sender(self) -> None:
        """Send queued frames, applying the fault knobs, until the socket closes."""
        try:
            await self._sender()
        except (ConnectionError, RuntimeError) as e:  # peer gone mid-send
            if self.closed_reason is None:
                self.closed_reason = f"send_failed: {e.__class__.__name__}"

    async def _sender(self) -> None:
        ws = self.ws
        while not ws.closed:
            if self.control:
                msg = self.control.popleft()
                await ws.send_str(msg if isinstance(msg, str) else orjson.dumps(msg).decode())
                continue
            if self._held is not None and (not self.data and time.monotonic() - self._held_at > 0.3):
                fr, self._held = self._held, None
                await self._send_data(fr)
                continue
            if not self.data:
                await self._wait_for_work()
                continue
            fr = self.data.popleft()
            if self._skipped(fr):
                continue
            if not await self._send_with_faults(fr):
                return

    async def _wait_for_work(self) -> None:
        """Sleep until something is queued (at most 0.1 s while a reordered frame is held back)."""
        self.wake.clear()
        timeout = 0.1 if self._held is not None else None
        try:
            await asyncio.wait_for(self.wake.wait(), timeout)
        except TimeoutError:
            pass

    async def _send_with_faults(self, fr: Frame) -> bool:
        """Send one data frame through the fault knobs (truncate, reorder, extras, drop); False once dropped."""
        fl = self.srv.faults
        self._counter += 1
        c = self._counter
        if fl.truncate_every and c % fl.truncate_every == 0:
            txt = fr.text(self.combined)
            await self.ws.send_str(txt[: max(1, len(txt) // 2)])
            self.extra_sent += 1
        if fl.reorder_every and c % fl.reorder_every == 0 and self._held is None:
            self._held, self._held_at = fr, time.monotonic()
            return True
        await self._send_data(fr)
        if self._held is not None:
            held, self._held = self._held, None
            await self._send_data(held)
        await self._send_extras(fr, c)
        if fl.drop_after_frames is not None and self.frames_sent >= fl.drop_after_frames:
            await self.drop(fl.drop_mode, "drop_after_frames")
            return False
        return True

    async def _send_extras(self, fr: Frame, c: int) -> None:
        """After the ``c``-th data frame: a duplicate, a garbage frame, an injected frame, as the knobs say."""
        fl, ws = self.srv.faults, self.ws
        if fl.duplicate_every and c % fl.duplicate_every == 0:
            await ws.send_str(fr.text(self.combined))
            self.extra_sent += 1
        if fl.garbage_every and c % fl.garbage_every == 0:
            g = _GARBAGE[self._gi % len(_GARBAGE)]
            self._gi += 1
            if isinstance(g, bytes):
                await ws.send_bytes(g)
            else:
                await ws.send_str(g % fr.stream if "%s" in g else g)
            self.extra_sent += 1
        if fl.inject_frames and c in fl.inject_frames:
            extra = fl.inject_frames[c]
            await (ws.send_bytes(extra) if isinstance(extra, bytes) else ws.send_str(extra))
            self.extra_sent += 1

    async def drop(self, mode: str = "abort", reason: str = "dropped") -> None:
        """Drop the connection: ``abort`` cuts TCP, ``close`` sends close code 1011."""
        self.closed_reason = reason
        self.srv.stats["drops"] += 1
        if mode == "abort":
            tr = self.request.transport
            if tr is not None:
                tr.abort()
        else:
            await self.ws.close(code=1011, message=reason.encode())

    async def monitor(self) -> None:
        """Server pings, pong timeout and the maximum connection lifetime."""
        srv = self.srv
        last_ping = time.monotonic()
        while not self.ws.closed:
            step = max(0.005, min(srv.ping_interval, srv.pong_timeout, srv.faults.max_lifetime, 1.0) / 5)
            await asyncio.sleep(step)
            now = time.monotonic()
            if now - self.opened >= srv.faults.max_lifetime:
                self.closed_reason = "max_lifetime"
                srv.stats["lifetime_cuts"] += 1
                await self.ws.close(code=1001, message=b"max connection lifetime")
                return
            if self.ping_outstanding is not None and now - self.ping_outstanding > srv.pong_timeout:
                self.closed_reason = "pong_timeout"
                srv.stats["pong_timeouts"] += 1
                await self.ws.close(code=1008, message=b"pong timeout")
                return
            if srv.faults.send_pings and now - last_ping >= srv.ping_interval:
                last_ping = now
                try:
                    await self.ws.ping(str(int(time.time() * 1000)).encode())
                except (ConnectionError, RuntimeError):
                    return
                self.pings_sent += 1
                srv.stats["pings_sent"] += 1
                if self.ping_outstanding is None:
                    self.ping_outstanding = now


class WebSocketStreams:
    """WebSocket delivery, subscriptions and the connection handler of :class:`LocalBinance`.

    A mixin: it uses the server's ``feeds``, ``faults``, ``stats``, ``connections``,
    ``_subs`` and parameters (``market``, ``max_streams``, ``max_backlog``,
    ``max_incoming_per_s``).
    """

    # -- delivery -------------------------------------------------------------------
    def _silent(self, stream: str) -> bool:
        s = self.faults.silent_streams
        return bool(s) and ("*" in s or stream.lower() in {x.lower() for x in s})

    def _deliver(self, market: str, stream: str, fr: Frame) -> None:
        conns = self._subs.get((market, stream.lower()))
        if not conns or self._silent(stream):
            return
        for c in list(conns):
            if c.ws.closed:
                continue
            if len(c.data) > self.max_backlog:
                c.closed_reason = "slow_consumer"
                if c.request.transport is not None:
                    c.request.transport.abort()
                continue
            c.enqueue(fr)

    def _listeners(self, feed: SymbolFeed) -> list[Connection]:
        out = []
        mk = feed.t.market
        for key in (feed.agg_stream.lower(), feed.liq_stream.lower(), "!forceorder@arr"):
            out.extend(c for c in self._subs.get((mk, key), ()) if not c.ws.closed)
        return out

    def _has_listeners(self, feed: SymbolFeed) -> bool:
        return bool(self._listeners(feed))

    def _max_backlog(self, feed: SymbolFeed) -> int:
        return max((len(c.data) for c in self._listeners(feed)), default=0)

    @staticmethod
    def _canonical(stream: str) -> str:
        """Canonical stream name: lower-case symbol, Binance's event spelling (``btcusdt@aggTrade``)."""
        s = stream.strip()
        if s.lower() == "!forceorder@arr":
            return "!forceOrder@arr"
        if "@" not in s:
            return s.lower()
        sym, ev = s.split("@", 1)
        canon = {"aggtrade": "aggTrade", "forceorder": "forceOrder", "trade": "trade", "bookticker": "bookTicker",
                 "markprice": "markPrice"}.get(ev.lower(), ev)
        return f"{sym.lower()}@{canon}"

    def _subscribe(self, conn: Connection, streams: Iterable[str]) -> None:
        for s in streams:
            name = self._canonical(s)
            key = name.lower()
            conn.streams[key] = name
            self.stats["subscriptions"] += 1
            if not conn.routed:
                continue
            self._subs.setdefault((conn.market, key), set()).add(conn)
            if key == "!forceorder@arr":
                feeds = [f for f in self.feeds.values() if f.t.market == conn.market]
            else:
                f = self.feeds.get((conn.market, key.split("@", 1)[0].upper()))
                feeds = [f] if f is not None and key in (f.agg_stream.lower(), f.liq_stream.lower()) else []
            for f in feeds:
                f.start()
                f.changed.set()

    def _unsubscribe(self, conn: Connection, streams: Iterable[str]) -> None:
        for s in streams:
            key = self._canonical(s).lower()
            conn.streams.pop(key, None)
            self._subs.get((conn.market, key), set()).discard(conn)

    # -- WebSocket ------------------------------------------------------------------
    def _classify(self, path: str) -> tuple[str, bool, bool, list[str]] | None:
        """path -> (market, combined, routed, streams in the path) or None for 404."""
        market = self.market
        m = re.match(r"^/_(usdm|coinm|spot)(/.*)$", path)
        if m:
            market, path = m.group(1), m.group(2)
        parts = [p for p in path.split("/") if p]
        if not parts:
            return None
        prefix = None
        if parts[0] in ("market", "public", "private"):
            prefix, parts = parts[0], parts[1:]
            if market != "usdm" or not parts:
                return None
        if parts[0] == "stream" and len(parts) == 1:
            combined, in_path = True, []
        elif parts[0] == "ws":
            combined, in_path = False, parts[1:]
        else:
            return None
        routed = (prefix == "market") if market == "usdm" else True
        return market, combined, routed, in_path

    async def _ws_entry(self, request: web.Request) -> web.StreamResponse:
        cls = self._classify(request.path)
        if cls is None or request.headers.get("Upgrade", "").lower() != "websocket":
            self._log(request, 404)
            raise web.HTTPNotFound(text="Not Found")
        market, combined, routed, in_path = cls
        streams = list(in_path)
        if combined and request.query.get("streams"):
            streams += [s for s in request.query["streams"].split("/") if s]
        if len(streams) > self.max_streams:
            self._log(request, 400)
            raise web.HTTPBadRequest(text="too many streams")
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        self._log(request, 101)
        conn = Connection(self, ws, request, market, combined, routed)
        self.connections.append(conn)
        self.stats["connections"] += 1
        self._subscribe(conn, streams)
        tasks = [asyncio.create_task(conn.sender()), asyncio.create_task(conn.monitor())]
        try:
            await self._ws_reader(conn)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass
            for key in list(conn.streams):
                self._subs.get((conn.market, key), set()).discard(conn)
            if conn.closed_reason is None:
                conn.closed_reason = "client_closed"
        return ws

    async def _ws_reader(self, conn: Connection) -> None:
        ws = conn.ws
        while not ws.closed:
            msg = await ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            now = time.monotonic()
            conn.incoming.append(now)
            while conn.incoming and now - conn.incoming[0] > 1.0:
                conn.incoming.popleft()
            if self.max_incoming_per_s and len(conn.incoming) > self.max_incoming_per_s:
                conn.closed_reason = "too_many_messages"
                self.stats["rate_limit_cuts"] += 1
                await ws.close(code=1008, message=b"Too many requests")
                return
            if msg.type == WSMsgType.PING:
                if self.faults.answer_pings:
                    await ws.pong(msg.data)
            elif msg.type == WSMsgType.PONG:
                conn.ping_outstanding = None
                conn.pongs_received += 1
                self.stats["pongs_received"] += 1
            elif msg.type == WSMsgType.TEXT:
                self._handle_method(conn, msg.data)
            elif msg.type == WSMsgType.BINARY:
                conn.send_control({"error": {"code": 3, "msg": "Invalid JSON: binary frame"}, "id": None})

    def _handle_method(self, conn: Connection, text: str) -> None:
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            conn.send_control({"error": {"code": 3, "msg": f"Invalid JSON: {e}"}, "id": None})
            return
        if not isinstance(req, dict):
            conn.send_control({"error": {"code": 3, "msg": "Invalid JSON: expected an object"}, "id": None})
            return
        rid = req.get("id")
        method = req.get("method")
        params = req.get("params", [])
        if rid is not None and not isinstance(rid, (int, str)):
            conn.send_control({"error": {"code": 1, "msg": "Invalid value type: id"}, "id": None})
            return
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                conn.send_control({"error": {"code": 1, "msg": "Invalid value type: params"}, "id": rid})
                return
            if method == "SUBSCRIBE":
                if len(set(conn.streams) | {self._canonical(p).lower() for p in params}) > self.max_streams:
                    conn.send_control({"error": {"code": 2, "msg": "Invalid request: too many streams"}, "id": rid})
                    return
                conn.send_control({"result": None, "id": rid})
                self._subscribe(conn, params)
            else:
                conn.send_control({"result": None, "id": rid})
                self._unsubscribe(conn, params)
        elif method == "LIST_SUBSCRIPTIONS":
            conn.send_control({"result": list(conn.streams.values()), "id": rid})
        elif method == "SET_PROPERTY":
            conn.send_control({"result": None, "id": rid})
        elif method == "GET_PROPERTY":
            conn.send_control({"result": conn.combined, "id": rid})
        else:
            conn.send_control({"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": rid})

