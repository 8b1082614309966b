"""The one path from a feed to the ingest service: a source yields trade batches and liquidation batches.

A *source* (the live WebSocket client's :class:`~feeds.binance_ws.SymbolSource`,
a :class:`~feeds.replay.ReplaySource`, a :class:`~feeds.liquidations.LiquidationReplay`
or a seeded live source) is an async iterator of :data:`FeedItem`: a
:class:`~compute.batch.TradeBatch` (exchange-time / id order) or a
:class:`~compute.batch.LiquidationBatch` of the same symbol, in the order they happened. It has
``describe()`` (the status text) and may have ``next_due()`` (every item already
due, as a list, in order), ``status()`` and ``aclose()``.
:class:`store.ingest.IngestService` reads one and writes both kinds.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from compute.batch import LiquidationBatch, TradeBatch

__all__ = ["FeedItem", "LiquidationBatch", "Source"]


#: What a source yields.
FeedItem = TradeBatch | LiquidationBatch


@runtime_checkable
class Source(Protocol):
    """What :class:`store.ingest.IngestService` reads (``next_due``, ``status``, ``aclose`` are optional)."""

    def __aiter__(self) -> Source: ...

    async def __anext__(self) -> FeedItem: ...

    def describe(self) -> str: ...
