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

import numpy as np

from compute.batch import LiquidationBatch, TradeBatch

__all__ = ["BatchList", "FeedItem", "LiquidationBatch", "Source", "cut_by_time"]


#: What a source yields.
FeedItem = TradeBatch | LiquidationBatch


@runtime_checkable
class Source(Protocol):
    """What :class:`store.ingest.IngestService` reads (``next_due``, ``status``, ``aclose`` are optional)."""

    def __aiter__(self) -> Source: ...

    async def __anext__(self) -> FeedItem: ...

    def describe(self) -> str: ...


class BatchList:
    """The simplest source: pre-cut batches, one per ``__anext__``, handed over as fast as the ingest takes them
    (no pacing, no ``next_due``); ``label`` is its ``describe()`` text."""

    def __init__(self, batches: list[FeedItem], label: str = "pre-cut batches"):
        self._it, self._label = iter(batches), label

    def describe(self) -> str:
        return self._label

    def __aiter__(self):
        return self

    async def __anext__(self) -> FeedItem:
        try:
            return next(self._it)
        except StopIteration:
            raise StopAsyncIteration from None


def cut_by_time(b: TradeBatch, ms: int) -> list[TradeBatch]:
    """``b`` (sorted by time) cut at multiples of ``ms`` of exchange time (UTC ms); no empty batches."""
    cuts = np.flatnonzero(np.diff(b.time // ms)) + 1
    bounds = [0, *cuts.tolist(), len(b)]
    return [b.take(slice(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]
