"""REST API of the server-side alerts (:mod:`service.alerts`):

    POST   /api/v1/alerts                    a rule (JSON body, :func:`compute.alerts.parse_rule`) -> 201 {id, ...}
    GET    /api/v1/alerts[?symbol=]          the rules
    DELETE /api/v1/alerts/{id}               remove a rule
    GET    /api/v1/signals?symbol=[&from=][&to=][&rule=][&limit=]      kept signals, oldest first
    GET    /api/v1/signals/stream?symbol=    Server-Sent Events, one ``signal`` event per firing; resumes
                                             after the ``Last-Event-ID`` header (or ``last_event_id``)

Writing (POST, DELETE) needs ``Authorization: Bearer <token>``: the token of ``serve.py --api-token``
or ``$FLOWLENS_API_TOKEN``, else one generated at start and printed once on the console. Reading needs
none. Errors are JSON ``{"error", "parameter"}`` (the rule's field for an invalid rule), as in the rest
of the API, and the per-address rate limit applies.
"""

from __future__ import annotations

import time

import orjson
from tornado.iostream import StreamClosedError

from compute import alerts as rules_engine
from store.alert_store import AlertStore

from .limits import BadParameter

#: Largest rule document accepted (bytes of JSON).
MAX_BODY = 8192
#: Longest a signal stream waits for a signal before it sends a keep-alive comment (ms).
SSE_KEEPALIVE_MS = 15_000
PATHS = ("/api/v1/alerts", "/api/v1/signals", "/api/v1/signals/stream")


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    return header[7:].strip() if header and header.startswith("Bearer ") else None


def _mixin(base):
    class AlertsBase(base):
        def book(self):
            return self.runtime.alerts

        def store(self) -> AlertStore:
            return self.runtime.alerts.store

        def authorized(self) -> bool:
            try:
                self.book().check(bearer(self.request.headers.get("Authorization")))
                return True
            except PermissionError as e:
                self.set_header("WWW-Authenticate", 'Bearer realm="flowlens"')
                self.answer({"error": f"{e}: send 'Authorization: Bearer <token>'", "parameter": None}, 401)
                return False

        def rule_symbol(self, symbol: str) -> str:
            sym = symbol.upper()
            if sym not in self.runtime.symbols:
                raise BadParameter("symbol", f"unknown symbol {sym!r}; ingested: {', '.join(sorted(self.runtime.symbols))}")
            return sym
    return AlertsBase


def shown(doc: dict) -> dict:
    """A rule document as the API shows it (a webhook's secret is never shown)."""
    out = dict(doc)
    if out.get("webhook"):
        out["webhook"] = {k: v for k, v in out["webhook"].items() if k != "secret"} | {
            "secret": bool(out["webhook"].get("secret"))}
    return out


def make_handlers(api_handler) -> list[tuple[str, type]]:
    """The routes' handler classes, built on :class:`service.api.ApiHandler` (passed in: no import cycle)."""
    base = _mixin(api_handler)

    class AlertsHandler(base):
        """GET the rules (of ``symbol``), POST a new one."""

        PARAMS = {"symbol": 32}
        METHODS = ("GET", "POST")

        async def get(self):
            try:
                sym = self.rule_symbol(self.arg("symbol")) if self.arg("symbol") else None
            except BadParameter as e:
                return self.refuse(e)
            self.answer({"alerts": [shown(d) for d in await self.book().rules(sym)]})

        async def post(self):
            if not self.authorized():
                return
            body = self.request.body
            if len(body) > MAX_BODY:
                return self.refuse(BadParameter(None, f"rule of {len(body)} bytes; at most {MAX_BODY}"))
            try:
                doc = await self.book().arm(body, bearer(self.request.headers.get("Authorization")))
            except rules_engine.RuleError as e:
                return self.refuse(BadParameter(e.field or None, str(e)))
            self.answer(shown(doc), 201)

    class AlertHandler(base):
        """GET or DELETE one rule."""

        METHODS = ("GET", "DELETE")

        async def get(self, rule_id: str):
            doc = await self.book().find(rule_id)
            if doc is None:
                return self.answer({"error": f"no alert {rule_id!r}", "parameter": None}, 404)
            self.answer(shown(doc))

        async def delete(self, rule_id: str):
            if not self.authorized():
                return
            if not await self.book().remove(rule_id, bearer(self.request.headers.get("Authorization"))):
                return self.answer({"error": f"no alert {rule_id!r}", "parameter": None}, 404)
            self.answer({"deleted": rule_id})

    class SignalsHandler(base):
        """Kept signals of a symbol, oldest first, filtered by trade time and rule."""

        PARAMS = {"symbol": 32, "from": 20, "to": 20, "rule": 32, "limit": 6}

        async def respond(self):
            sym = self.rule_symbol(self.arg("symbol", required=True))
            frm = self.int_arg("from", 0, lo=0)
            to = self.int_arg("to", 2**62, lo=0)
            if to <= frm:
                raise BadParameter("to", f"'to' ({to}) must be after 'from' ({frm})")
            limit = self.int_arg("limit", 1000, lo=1, hi=10_000)
            rule = self.arg("rule")
            got = [s | {"id": i} for i, s in await self.store().signals(sym)
                   if frm <= s["time"] < to and (rule is None or s["rule_id"] == rule)]
            self.answer({"symbol": sym, "signals": got[:limit], "truncated": len(got) > limit})

    class SignalStreamHandler(base):
        """Server-Sent Events of new signals (``id:`` the stream entry id, ``event: signal``, ``data:`` JSON)."""

        PARAMS = {"symbol": 32, "last_event_id": 32}
        closed = False

        def on_connection_close(self):
            self.closed = True

        async def respond(self):
            sym = self.rule_symbol(self.arg("symbol", required=True))
            after = self.request.headers.get("Last-Event-ID") or self.arg("last_event_id") or "$"
            if after != "$" and not _is_entry_id(after):
                raise BadParameter("last_event_id", f"not a signal id: {after[:32]!r}")
            self.set_header("Content-Type", "text/event-stream")
            self.set_header("Cache-Control", "no-store")
            self.set_header("X-Accel-Buffering", "no")
            store = self.store()
            if after == "$":
                after = await store.last_signal_id(sym)
            self.write(": flowlens signals of " + sym + "\n\n")
            await self.flush()
            try:
                while not self.closed:
                    got = await store.wait_signals(sym, after, SSE_KEEPALIVE_MS)
                    for entry_id, s in got:
                        self.write(f"id: {entry_id}\nevent: signal\ndata: {orjson.dumps(s).decode()}\n\n")
                        after = entry_id
                    if not got:
                        self.write(f": keep-alive {int(time.time())}\n\n")
                    await self.flush()
            except StreamClosedError:
                pass
            self.finish()

    return [(r"/api/v1/alerts", AlertsHandler), (r"/api/v1/alerts/([0-9a-f]{1,32})", AlertHandler),
            (r"/api/v1/signals", SignalsHandler), (r"/api/v1/signals/stream", SignalStreamHandler)]


def _is_entry_id(text: str) -> bool:
    ms, _, seq = text.partition("-")
    return ms.isdigit() and seq.isdigit() and len(text) <= 32
