"""Live Binance sources for the server: one WebSocket client per ingested symbol, and the start-up probe.

:class:`LiveSource` wraps a :class:`feeds.binance_ws.BinanceStreamClient` for one
symbol so the ingest service can read it like a replay (``next_due``,
``describe``, ``status``) and close it (``aclose``) when the ingest lease moves
to another process. It yields the symbol's trade batches and, in-band, its
liquidations from the ``forceOrder`` stream (:mod:`feeds.source`). Resuming after
a failover passes ``start_ids`` so the client fetches the missing ids from REST.
"""

from __future__ import annotations

import asyncio
import logging

from feeds.binance_ws import BinanceStreamClient

log = logging.getLogger(__name__)


class LiveSource:
    """One symbol of a started :class:`BinanceStreamClient` as an ingest source.

    An async iterator of :class:`compute.batch.TradeBatch` and
    :class:`feeds.source.LiquidationBatch` items of ``symbol`` (see :mod:`feeds.source`).
    """

    def __init__(self, client: BinanceStreamClient, symbol: str):
        self.client = client
        self.symbol = symbol.upper()
        self._src = client.source(self.symbol, liquidations=True)

    @classmethod
    async def open(cls, symbol: str, resume_after_id: int | None = None, **client_params) -> LiveSource:
        """Start a client for ``symbol`` (resuming after ``resume_after_id`` when given).

        ``client_params`` go to :class:`BinanceStreamClient` (market, ws_base, rest_base, …).
        """
        start_ids = {symbol.upper(): int(resume_after_id) + 1} if resume_after_id is not None else {}
        client = BinanceStreamClient(symbols=[symbol.upper()], start_ids=start_ids, **client_params)
        self = cls(client, symbol)
        await client.start()
        return self

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self._src.__anext__()

    async def next_due(self):
        return await self._src.next_due()

    def describe(self) -> str:
        """E.g. ``LIVE usdm BTCUSDT (reconnecting)``."""
        return self._src.describe()

    def status(self):
        """The symbol's :class:`feeds.binance_ws.StreamStatus`."""
        return self._src.status()

    async def aclose(self) -> None:
        """Unsubscribe and stop the client."""
        self._src.close()
        await self.client.stop()


async def probe(symbols: list[str], timeout_s: float = 8.0, **client_params) -> str | None:
    """Try to connect to Binance (``client_params``: market, ws_base, rest_base); None when it works, else why."""
    client = BinanceStreamClient(symbols=[s.upper() for s in symbols], liquidations=False,
                                 reconnect_max=1.0, **client_params)
    try:
        await client.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:  # the first failed attempt is enough to say why
            if await client.wait_connected(0.1):
                return None
            if client.last_error:
                return client.last_error
        return f"no connection within {timeout_s:g} s"
    except Exception as e:  # noqa: BLE001 - any failure is a reason to fall back, said in one line
        return f"{type(e).__name__}: {e}"
    finally:
        await client.stop()
