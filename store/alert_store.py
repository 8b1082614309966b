"""Alert rules, the evaluation's progress and the signals, in Redis (key names in :mod:`store.keys`).

Per market and symbol (one hash tag, so one Redis Cluster slot):

* ``…:alerts`` hash, rule id -> the rule's JSON document (the rule, its webhook, when and after which
  trade id it was armed);
* ``…:alerts:state`` hash, the evaluation's progress: ``last_id`` (the last trade id evaluated),
  ``liq_ms`` (the time of the last liquidation evaluated), ``fire:<rule id>`` (the rule's last firing,
  UTC ms, for its cooldown);
* ``…:signals`` stream, one entry per firing: ``e`` the event id (rule id + trade id, stable), ``j`` the
  signal as JSON. Kept: the last :data:`SIGNALS_MAXLEN` entries.

:meth:`AlertStore.commit` writes a batch's signals and the new progress in one Lua script, and only if
the caller still holds the evaluation lease and the progress is still the one it read: a process that
lost its lease (or a second evaluator) writes nothing, so every event is written once across
processes, restarts and failovers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from . import keys

#: Signals kept per symbol (approximate trim, ``XADD MAXLEN ~``).
SIGNALS_MAXLEN = 100_000

_COMMIT = """
local holder = redis.call('get', KEYS[1])
if holder ~= ARGV[1] then return 0 end
local last = redis.call('hget', KEYS[2], 'last_id')
if (last or '') ~= ARGV[2] then return -1 end
local n_fires = tonumber(ARGV[6])
local i = 7
for _ = 1, n_fires do
  redis.call('hset', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('xadd', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[i], 'j', ARGV[i + 1])
  i = i + 2
end
redis.call('hset', KEYS[2], 'last_id', ARGV[3])
if ARGV[4] ~= '' then redis.call('hset', KEYS[2], 'liq_ms', ARGV[4]) end
return 1
"""


@dataclass(frozen=True)
class Progress:
    """Where a symbol's alert evaluation stands: last trade id and liquidation time evaluated (None before the
    first evaluation) and each rule's last firing (rule id -> UTC ms)."""

    last_id: int | None = None
    liq_ms: int | None = None
    fires: dict[str, int] = field(default_factory=dict)


class AlertStore:
    """Rules, progress and signals of one market's symbols (see the module docstring).

    ``client`` is a ``redis.asyncio`` client (or cluster client) with ``decode_responses=False``.
    Redis errors (``redis.exceptions.RedisError``, ``OSError``) are raised to the caller.
    """

    def __init__(self, client, market: str = "usdm"):
        self.r = client
        self.market = market

    async def put_rule(self, symbol: str, rule_id: str, doc: dict) -> None:
        """Store (or replace) a rule's document."""
        await self.r.hset(keys.alerts(self.market, symbol), rule_id, orjson.dumps(doc))

    async def rules(self, symbol: str) -> dict[str, dict]:
        """Every rule of ``symbol``: rule id -> document."""
        raw = await self.r.hgetall(keys.alerts(self.market, symbol))
        return {k.decode(): orjson.loads(v) for k, v in raw.items()}

    async def delete_rule(self, symbol: str, rule_id: str) -> bool:
        """Remove a rule (and its cooldown state); False when there was none."""
        async with self.r.pipeline(transaction=False) as p:
            p.hdel(keys.alerts(self.market, symbol), rule_id)
            p.hdel(keys.alerts_state(self.market, symbol), f"fire:{rule_id}")
            removed, _ = await p.execute()
        return bool(removed)

    async def progress(self, symbol: str) -> Progress:
        """The evaluation's progress for ``symbol``."""
        raw = {k.decode(): v.decode() for k, v in (await self.r.hgetall(keys.alerts_state(self.market, symbol))).items()}
        fires = {k[5:]: int(v) for k, v in raw.items() if k.startswith("fire:")}
        last, liq = raw.get("last_id"), raw.get("liq_ms")
        return Progress(int(last) if last else None, int(liq) if liq else None, fires)

    async def commit(self, symbol: str, owner: str, read: Progress, last_id: int, liq_ms: int | None,
                     signals: list[dict], fires: dict[str, int]) -> int:
        """Append ``signals`` (dicts with an ``event_id``) and set the progress, atomically.

        Returns 1 when written, 0 when ``owner`` does not hold the evaluation lease, -1 when the
        progress is no longer ``read`` (another evaluator moved it): nothing is written then.
        """
        args: list = [owner, "" if read.last_id is None else str(read.last_id), str(int(last_id)),
                      "" if liq_ms is None else str(int(liq_ms)), str(SIGNALS_MAXLEN), str(len(fires))]
        for rule_id, ms in fires.items():
            args += [f"fire:{rule_id}", str(int(ms))]
        for s in signals:
            args += [s["event_id"], orjson.dumps(s, option=orjson.OPT_SERIALIZE_NUMPY)]
        k = (keys.alerts_lease(self.market, symbol), keys.alerts_state(self.market, symbol),
             keys.signals(self.market, symbol))
        return int(await self.r.eval(_COMMIT, 3, *k, *args))

    async def signals(self, symbol: str, after: str = "-", count: int = 10_000) -> list[tuple[str, dict]]:
        """Signals after stream entry ``after`` (exclusive; ``-`` = from the oldest kept), oldest first:
        ``(entry id, signal)``."""
        lo = after if after == "-" else f"({after}"
        entries = await self.r.xrange(keys.signals(self.market, symbol), lo, "+", count=count)
        return [(i.decode(), orjson.loads(f[b"j"])) for i, f in entries]

    async def latest_signals(self, symbol: str, n: int) -> list[tuple[str, dict]]:
        """The newest ``n`` signals, oldest first: ``(entry id, signal)``."""
        entries = await self.r.xrevrange(keys.signals(self.market, symbol), "+", "-", count=n)
        return [(i.decode(), orjson.loads(f[b"j"])) for i, f in reversed(entries)]

    async def wait_signals(self, symbol: str, after: str, block_ms: int) -> list[tuple[str, dict]]:
        """Signals after entry ``after`` (``$`` = only new ones), waiting up to ``block_ms`` for the first."""
        got = await self.r.xread({keys.signals(self.market, symbol): after}, block=block_ms, count=1000)
        entries = got[0][1] if got else []
        return [(i.decode(), orjson.loads(f[b"j"])) for i, f in entries]

    async def last_signal_id(self, symbol: str) -> str:
        """The id of the newest signal entry (``0-0`` when there is none)."""
        e = await self.r.xrevrange(keys.signals(self.market, symbol), "+", "-", count=1)
        return e[0][0].decode() if e else "0-0"
