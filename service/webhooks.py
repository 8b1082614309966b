"""Webhook delivery of alert signals: one POST per signal of a rule that has a webhook.

The process that evaluates a symbol's alerts (the holder of its alert lease, :mod:`service.alerts`)
also delivers them: it reads the signals stream after a cursor kept in Redis
(``…:alerts:webhook_cursor``), POSTs each signal whose rule has a webhook as JSON with

* ``X-Flowlens-Event-Id``: the signal's ``event_id`` (``<rule id>:<trade id>``, stable),
* ``X-Flowlens-Signature``: ``sha256=`` + hex HMAC-SHA256 of the exact body with the rule's secret,

retries with exponential backoff (tenacity; :attr:`WebhookDispatcher.attempts` tries, ``timeout_s``
each), and moves the cursor past the signal (a script that checks the lease, so a process that lost
it moves nothing). A delivery that fails every try is counted (``flowlens_webhook_failures_total``)
and kept for inspection (``…:alerts:webhook_failures``, the newest 1,000; no secret in them).

Delivery is at least once: a process killed between a POST and the cursor's move makes the next
holder send that one signal again, with the same ``X-Flowlens-Event-Id``; a receiver that keeps the
ids it has seen gets every event exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time

import orjson
import param
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from store import keys
from store.alert_store import AlertStore
from store.ingest import REDIS_ERRORS
from store.tasks import TaskOwner

log = logging.getLogger(__name__)

_MOVE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('set', KEYS[2], ARGV[2])
return 1
"""
#: Failed deliveries kept per symbol.
FAILURES_KEPT = 1000


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``body`` with ``secret`` (the ``X-Flowlens-Signature`` header)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def cursor_key(market: str, symbol: str) -> str:
    """The stream id of the last signal the webhooks have handled."""
    return keys.alerts_state(market, symbol) + ":webhook_cursor"


def failures_key(market: str, symbol: str) -> str:
    """List of failed deliveries (JSON: event id, rule id, URL, error, time), newest first."""
    return keys.alerts_state(market, symbol) + ":webhook_failures"


def shown_url(url: str) -> str:
    """``url`` without its user info and query (either may hold a credential), for logs and the failure list."""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(url)
    host = u.hostname or ""
    return urlunsplit((u.scheme, host + (f":{u.port}" if u.port else ""), u.path, "", ""))


def check_webhook(hook) -> dict:
    """A rule's webhook as given: ``{"url": http(s) URL, "secret": 16-256 characters}``.

    Raises
    ------
    ValueError
        Naming the field (``webhook.url``, ``webhook.secret``) in its first word.
    """
    from urllib.parse import urlsplit

    if not isinstance(hook, dict) or set(hook) - {"url", "secret"}:
        raise ValueError("webhook: an object with 'url' and 'secret' only")
    url, secret = hook.get("url"), hook.get("secret")
    if not isinstance(url, str) or len(url) > 2048 or any(c.isspace() for c in url) or \
            urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise ValueError("webhook.url: an http:// or https:// URL of at most 2,048 characters")
    if not isinstance(secret, str) or not 16 <= len(secret) <= 256:
        raise ValueError("webhook.secret: a string of 16 to 256 characters (the HMAC key of X-Flowlens-Signature)")
    return {"url": url, "secret": secret}


class DeliveryError(Exception):
    """A webhook answered outside 2xx (retried like a connection error)."""


class WebhookDispatcher(TaskOwner, param.Parameterized):
    """Deliver one symbol's signals to their rules' webhooks while ``evaluator`` holds the alert lease."""

    timeout_s = param.Number(default=5.0, bounds=(0.1, 60), doc="Timeout of one POST (s).")
    attempts = param.Integer(default=4, bounds=(1, 20), doc="Tries per signal before it counts as failed.")
    backoff_s = param.Number(default=0.5, bounds=(0.01, 60), doc="First wait between tries (s); doubles each time.")
    block_ms = param.Integer(default=1000, bounds=(10, 60_000), doc="Longest wait for a new signal (ms).")

    def __init__(self, store: AlertStore, evaluator, metrics=None, **params):
        super().__init__(**params)
        self.store = store
        self.evaluator = evaluator
        self.symbol = evaluator.symbol
        self.metrics = metrics
        self.delivered = 0

    async def run(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as http:
            while True:
                try:
                    if self.evaluator.holding:
                        await self.deliver_pending(http)
                    else:
                        await asyncio.sleep(self.block_ms / 1000)
                except asyncio.CancelledError:
                    raise
                except REDIS_ERRORS as e:
                    log.debug("webhook delivery of %s paused: %s", self.symbol, type(e).__name__)
                    await asyncio.sleep(self.block_ms / 1000)

    async def deliver_pending(self, http) -> int:
        """Deliver the signals after the cursor (waiting up to ``block_ms`` for one); returns how many were handled."""
        r, market = self.store.r, self.store.market
        cursor = (await r.get(cursor_key(market, self.symbol)) or b"0-0").decode()
        got = await self.store.wait_signals(self.symbol, cursor, self.block_ms)
        if not got:
            return 0
        rules = await self.store.rules(self.symbol)
        for i, (entry_id, signal) in enumerate(got):
            hook = (rules.get(signal["rule_id"]) or {}).get("webhook")
            if hook:
                await self._deliver(http, hook, signal)
            # the cursor moves past each delivery, and once past a run of signals without a webhook
            if (hook or i == len(got) - 1) and not await r.eval(
                    _MOVE, 2, keys.alerts_lease(market, self.symbol), cursor_key(market, self.symbol),
                    self.evaluator.lease.owner, entry_id):
                return 0  # the lease went to another process: it delivers from here on
        return len(got)

    async def _deliver(self, http, hook: dict, signal: dict) -> None:
        body = orjson.dumps(signal)
        headers = {"Content-Type": "application/json", "X-Flowlens-Event-Id": signal["event_id"],
                   "X-Flowlens-Signature": sign(hook.get("secret", ""), body), "User-Agent": "flowlens-webhook"}

        async def post():
            async with http.post(hook["url"], data=body, headers=headers) as resp:
                if not 200 <= resp.status < 300:
                    raise DeliveryError(f"HTTP {resp.status}")

        try:
            async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.attempts), reraise=True,
                    wait=wait_exponential(multiplier=self.backoff_s, max=30),
                    retry=retry_if_exception_type((DeliveryError, OSError, asyncio.TimeoutError, _client_errors()))):
                with attempt:
                    await post()
            self.delivered += 1
        except Exception as e:  # noqa: BLE001 - counted and kept; the next signal goes on
            await self._failed(hook, signal, f"{type(e).__name__}: {e}"[:300])

    async def _failed(self, hook: dict, signal: dict, error: str) -> None:
        log.warning("webhook of rule %s failed for %s: %s", signal["rule_id"], signal["event_id"], error)
        if self.metrics is not None:
            self.metrics.webhook_failures.labels(self.symbol).inc()
        k = failures_key(self.store.market, self.symbol)
        entry = orjson.dumps({"event_id": signal["event_id"], "rule_id": signal["rule_id"], "url": shown_url(hook["url"]),
                              "error": error, "time": int(time.time() * 1000)})
        async with self.store.r.pipeline(transaction=False) as p:
            p.lpush(k, entry)
            p.ltrim(k, 0, FAILURES_KEPT - 1)
            await p.execute()


def _client_errors():
    import aiohttp

    return aiohttp.ClientError
