"""What the live WebSocket client reports: per-symbol :class:`StreamStatus`, :class:`FeedEvent`, reconnect backoff.

Split out of :mod:`feeds.binance_ws` (which re-exports every name here).  Times are
UTC ms, ids Binance aggregate trade ids.
"""

from __future__ import annotations

import os
import random
import socket
from dataclasses import asdict, dataclass, field

import pandas as pd

from compute.batch import TradeBatch

from .decode import AggTrades
from .gapfill import Gap

__all__ = ["FeedEvent", "StreamStatus", "backoff_delay", "own_feed", "process_tag"]


def process_tag() -> str:
    """``host:pid`` of this process, read at call time (serve.py forks after importing)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def own_feed(feed_id) -> bool:
    """True when ``feed_id`` (:attr:`StreamStatus.feed_id`) belongs to a client of this process.

    Lets a process that reads statuses back from Redis count only its own feed's
    numbers (each client's ``feed_id`` is unique; its counts are cumulative).
    """
    return isinstance(feed_id, str) and feed_id.rsplit(":", 1)[0] == process_tag()


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0.5, 1] x min(maximum, initial * 2**(attempt-1)).

    ``attempt`` counts failures since the last healthy connection (1 = first retry).
    """
    if attempt <= 0:
        return 0.0
    cap = min(maximum, initial * 2 ** min(attempt - 1, 30))
    return cap * (rng or random).uniform(0.5, 1.0)


@dataclass
class StreamStatus:
    """State of one symbol's streams, for the status line.

    ``lag_ms`` = wall-clock now minus the last trade time ``T`` (UTC ms), set by
    :meth:`BinanceStreamClient.status`.  ``state``: ``connecting``, ``live``,
    ``filling`` (a REST gap fill runs), ``stalled`` (watchdog fired, reconnecting)
    or ``disconnected``.  ``rejected``: frames the decoder rejected since the
    client started, per reason (``feeds.decode.REJECT_REASONS``), counted over
    the connections carrying this symbol's streams (shared by the symbols of one
    connection group: a frame that could not be read has no symbol), including
    connections already closed.  ``feed_id`` (``host:pid:n``) names the client,
    so cumulative counts can be told apart from a later client's.
    """

    symbol: str
    stream: str
    connected: bool = False
    state: str = "connecting"
    lag_ms: int | None = None
    reconnects: int = 0
    gaps_filled: int = 0
    gaps_unfilled: int = 0
    trades_from_rest: int = 0
    duplicates: int = 0
    trades: int = 0
    last_trade_time: int | None = None
    last_trade_id: int | None = None
    stalls: int = 0
    liquidations: int = 0
    last_liquidation_time: int | None = None
    rejected: dict = field(default_factory=dict)
    feed_id: str = ""

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return asdict(self)


@dataclass
class FeedEvent:
    """One output item of :meth:`BinanceStreamClient.events`.

    ``kind == "trades"``: ``symbol`` and ``trades`` (:class:`~feeds.decode.AggTrades`,
    contiguous ids, id order; ``batch`` gives the :class:`TradeBatch`).
    ``kind == "liquidations"``: ``liquidations`` DataFrame
    (:data:`feeds.decode.LIQUIDATION_COLUMNS`), any symbols.
    ``kind == "gap"``: ``gap`` (:class:`~feeds.gapfill.Gap`), filled or not.
    """

    kind: str
    symbol: str = ""
    trades: AggTrades | None = None
    liquidations: pd.DataFrame | None = None
    gap: Gap | None = None

    @property
    def batch(self) -> TradeBatch | None:
        """The trades as one :class:`TradeBatch` (None for other kinds)."""
        return self.trades.batch() if self.trades is not None else None
