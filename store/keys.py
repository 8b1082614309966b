"""Redis key names. Every key of one stream carries its market and symbol as a hash tag.

``{usdm:BTCUSDT}`` in braces makes Redis Cluster place all of one market's
symbol keys in one slot, so every multi-key operation (pipelines, MULTI/EXEC)
stays on one shard, and the same symbol of two markets (spot and USD-M
``BTCUSDT``) never shares a key. The only key without a tag is
:func:`symbols`, which is only ever used on its own.
"""

from __future__ import annotations

PREFIX = "fl"

#: Binance markets a key may name (see :mod:`feeds.markets`).
MARKETS = ("usdm", "coinm", "spot")


def stream_name(market: str, symbol: str) -> str:
    """``market:SYMBOL`` (``usdm:BTCUSDT``): the name one market's symbol goes by in Redis.

    Raises
    ------
    ValueError
        If ``market`` is not one of :data:`MARKETS` or ``symbol`` is empty.
    """
    if market not in MARKETS:
        raise ValueError(f"unknown market {market!r}; one of {', '.join(MARKETS)}")
    if not symbol:
        raise ValueError("empty symbol")
    return f"{market}:{symbol.upper()}"


def _tag(market: str, symbol: str) -> str:
    return f"{PREFIX}:{{{stream_name(market, symbol)}}}"


def trades(market: str, symbol: str) -> str:
    """Stream of trade batches (one entry per batch, packed columnar bytes)."""
    return f"{_tag(market, symbol)}:trades"


def candles(market: str, symbol: str, interval_ms: int = 60_000) -> str:
    """Hash: candle open time (ms, decimal string) -> packed candle record."""
    return f"{_tag(market, symbol)}:candles:{int(interval_ms)}"


def liquidations(market: str, symbol: str) -> str:
    """Stream of liquidations (Binance forceOrder snapshots), one entry each, id = their time."""
    return f"{_tag(market, symbol)}:liquidations"


def meta(market: str, symbol: str) -> str:
    """Hash of ingest status: source, speed, tick, last trade time/id, trades/s, heartbeat."""
    return f"{_tag(market, symbol)}:meta"


def symbols() -> str:
    """Set of ``market:SYMBOL`` names (:func:`stream_name`) that an ingest service has written."""
    return f"{PREFIX}:symbols"


def results_prefix(market: str, symbol: str) -> str:
    """Prefix of cached computation results (see :mod:`engine.cache`)."""
    return f"{_tag(market, symbol)}:res"


def lease(market: str, symbol: str) -> str:
    """The ingest lease: which process writes this symbol's trades (value: owner id)."""
    return f"{_tag(market, symbol)}:lease"


def alerts(market: str, symbol: str) -> str:
    """Hash of alert rules: rule id -> the rule's JSON (:mod:`store.alert_store`)."""
    return f"{_tag(market, symbol)}:alerts"


def alerts_state(market: str, symbol: str) -> str:
    """Hash of the alert evaluation's progress: ``last_id`` (last evaluated trade id), ``liq_ms`` (time of the
    last evaluated liquidation), ``fire:<rule id>`` (time of the rule's last firing, UTC ms)."""
    return f"{_tag(market, symbol)}:alerts:state"


def alerts_lease(market: str, symbol: str) -> str:
    """The alert evaluation's lease: which process evaluates this symbol's rules (value: owner id)."""
    return f"{_tag(market, symbol)}:alerts:lease"


def signals(market: str, symbol: str) -> str:
    """Stream of signals (alert firings), one entry each, in the order they were evaluated."""
    return f"{_tag(market, symbol)}:signals"
