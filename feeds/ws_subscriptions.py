"""Readers of the live WebSocket client: :class:`EventStream` and :class:`SymbolSource` (async iterators over queues).

Split out of :mod:`feeds.binance_ws` (which re-exports both).  Each subscription is
a queue the client puts items into; it unsubscribes on ``close()`` or when dropped
(garbage collection).  ``None`` in a queue ends the iteration.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import TYPE_CHECKING

from compute.batch import TradeBatch

from .source import LiquidationBatch
from .ws_status import StreamStatus

if TYPE_CHECKING:
    from .binance_ws import BinanceStreamClient

__all__ = ["EventStream", "SymbolSource"]


class _Subscription:
    """An async iterator fed by the client through a queue; unsubscribes on close() or garbage collection."""

    def __init__(self, registry: list, queue: asyncio.Queue):
        self._q = queue
        self._registry = registry
        registry.append(queue)
        self._finalizer = weakref.finalize(self, _unsubscribe, registry, queue)

    def __aiter__(self):
        return self

    async def __anext__(self):
        item = await self._q.get()
        if item is None:
            self.close()
            raise StopAsyncIteration
        return item

    def pending(self) -> int:
        """Items waiting to be read."""
        return self._q.qsize()

    def close(self) -> None:
        """Stop receiving (pending items can still be read)."""
        self._finalizer()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()


def _unsubscribe(registry: list, queue: asyncio.Queue) -> None:
    with contextlib.suppress(ValueError):
        registry.remove(queue)


class EventStream(_Subscription):
    """Async iterator of :class:`FeedEvent` from :meth:`BinanceStreamClient.events`; ``close()`` to stop."""


class SymbolSource(_Subscription):
    """One symbol's trades as an async iterator of :class:`TradeBatch` (id order, each id once).

    With ``liq_registry`` (``client.source(symbol, liquidations=True)``) the symbol's
    liquidations come on the same path, as :class:`~feeds.source.LiquidationBatch`
    items in arrival order between the trade batches (see :mod:`feeds.source`).
    Has ``describe()`` and ``status()`` so it can stand in for a replay source;
    ``close()`` (or dropping it) unsubscribes.
    """

    def __init__(self, client: BinanceStreamClient, symbol: str, registry: list, liq_registry: list | None = None):
        super().__init__(registry, asyncio.Queue())
        self.client = client
        self.symbol = symbol
        self.name = f"{client.market} {symbol}"
        self._liq_finalizer = None
        if liq_registry is not None:
            liq_registry.append(self._q)
            self._liq_finalizer = weakref.finalize(self, _unsubscribe, liq_registry, self._q)

    def close(self) -> None:
        """Stop receiving trades and liquidations (pending items can still be read)."""
        super().close()
        if self._liq_finalizer is not None:
            self._liq_finalizer()

    def status(self) -> StreamStatus:
        """The symbol's :class:`StreamStatus` now (``lag_ms`` computed at the call)."""
        return self.client.status()[self.symbol]

    async def next_due(self) -> list[TradeBatch | LiquidationBatch]:
        """Wait for the next item, then return it with every item already queued (arrival order; trades in id order).

        Raises
        ------
        StopAsyncIteration
            When the client has stopped.
        """
        out = [await self.__anext__()]
        while not self._q.empty():
            item = self._q.get_nowait()
            if item is None:
                self._q.put_nowait(None)  # end the iteration on the next call
                break
            out.append(item)
        return out

    def describe(self) -> str:
        """E.g. ``LIVE usdm BTCUSDT`` or ``LIVE usdm BTCUSDT (reconnecting)``."""
        st = self.client.status()[self.symbol]
        extra = [] if st.connected else ["reconnecting"]
        if st.gaps_unfilled:
            extra.append(f"{st.gaps_unfilled} gaps unfilled")
        return f"LIVE {self.name}" + (f" ({', '.join(extra)})" if extra else "")
