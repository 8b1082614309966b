"""Redis key names. Every key of one symbol carries the symbol as a hash tag.

``{BTCUSDT}`` in braces makes Redis Cluster place all of a symbol's keys in
one slot, so every multi-key operation (pipelines, MULTI/EXEC) stays on one
shard. The only key without a tag is :func:`symbols`, which is only ever used
on its own.
"""

from __future__ import annotations

PREFIX = "fl"


def _tag(symbol: str) -> str:
    return f"{PREFIX}:{{{symbol.upper()}}}"


def trades(symbol: str) -> str:
    """Stream of trade batches (one entry per batch, packed columnar bytes)."""
    return f"{_tag(symbol)}:trades"


def candles(symbol: str, interval_ms: int = 60_000) -> str:
    """Hash: candle open time (ms, decimal string) -> packed candle record."""
    return f"{_tag(symbol)}:candles:{int(interval_ms)}"


def liquidations(symbol: str) -> str:
    """Stream of liquidations (Binance forceOrder snapshots), one entry each, id = their time."""
    return f"{_tag(symbol)}:liquidations"


def meta(symbol: str) -> str:
    """Hash of ingest status: source, speed, tick, last trade time/id, trades/s, heartbeat."""
    return f"{_tag(symbol)}:meta"


def updated(symbol: str) -> str:
    """Pub/sub channel announcing new data for the symbol (message: last trade id)."""
    return f"{_tag(symbol)}:updated"


def symbols() -> str:
    """Set of symbols that an ingest service has written."""
    return f"{PREFIX}:symbols"


def results_prefix(symbol: str) -> str:
    """Prefix of cached computation results (see :mod:`store.cache`)."""
    return f"{_tag(symbol)}:res"


def results_channel(symbol: str) -> str:
    """Pub/sub channel announcing a newly cached result (message: its key)."""
    return f"{_tag(symbol)}:results"


def lease(symbol: str) -> str:
    """The ingest lease: which process writes this symbol's trades (value: owner id)."""
    return f"{_tag(symbol)}:lease"
