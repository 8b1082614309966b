"""Liquidations (Binance ``forceOrder`` frames) from files, and their replay beside a trade replay.

Binance publishes no liquidation history, so a file of forceOrder frames is either the recorder's
output or, for tests and demos, frames placed at the prices and times of real recorded trades (their
file name says so). :class:`LiquidationReplay` yields them in-band, in step with the trade batches of a
:class:`feeds.replay.ReplaySource` and shifted like the trades on every loop (:mod:`feeds.source`).
"""

from __future__ import annotations

import collections
import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from .decode import FrameDecoder
from .source import LiquidationBatch


def read_liquidations(path) -> pd.DataFrame:
    """Liquidations of a file of forceOrder frames (JSON lines, optionally ``<receive time> <frame>``, .gz ok).

    Returns a DataFrame with :data:`feeds.decode.LIQUIDATION_COLUMNS`, sorted by ``time`` (UTC ms).
    Lines that are not forceOrder frames are counted by the decoder and skipped.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    dec = FrameDecoder(name=path.name)
    with opener(path, "rt") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if not line.startswith("{"):
                line = line.partition(" ")[2]
            dec.feed(line)
    df = dec.flush().liquidations_df()
    return df.sort_values("time", kind="stable").reset_index(drop=True)


class LiquidationReplay:
    """Wrap a :class:`feeds.replay.ReplaySource`: after each trade batch, yield the liquidations up to its
    last trade time as a :class:`~feeds.source.LiquidationBatch` (in-band, see :mod:`feeds.source`).

    ``liquidations`` is a DataFrame of :data:`feeds.decode.LIQUIDATION_COLUMNS` (e.g. from
    :func:`read_liquidations`); only the rows of ``symbol`` are replayed. Their times
    (UTC ms) are shifted by ``k * source.period_ms`` on loop ``k``, like the trades.
    """

    def __init__(self, source, liquidations: pd.DataFrame, symbol: str):
        self.source = source
        self.symbol = symbol.upper()
        df = liquidations[liquidations["symbol"].str.upper() == self.symbol]
        self._liq = df.sort_values("time", kind="stable").reset_index(drop=True)
        self._t = self._liq["time"].to_numpy(np.int64)
        self._next = 0
        self._loop = 0
        self._pending: collections.deque[LiquidationBatch] = collections.deque()

    def _release(self, batch) -> list[LiquidationBatch]:
        """The liquidations not yet released with times up to ``batch``'s last trade time, one batch per loop."""
        out: list[LiquidationBatch] = []
        if not len(batch) or not len(self._t):
            return out
        period = self.source.period_ms
        last = int(batch.time[-1])
        while True:
            shift = self._loop * period
            hi = int(np.searchsorted(self._t, last - shift, side="right"))
            if hi > self._next:
                out.append(LiquidationBatch(self.symbol, self._liq.iloc[self._next:hi]).shifted(shift))
                self._next = hi
            if self._next < len(self._t) or last - shift < int(self._t[-1]):
                return out
            self._loop, self._next = self._loop + 1, 0  # the trades moved to the next loop

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._pending:
            return self._pending.popleft()
        b = await self.source.__anext__()
        self._pending.extend(self._release(b))
        return b

    async def next_due(self) -> list:
        """The replay's due trade batches followed by the liquidations up to the last of them.

        Raises
        ------
        StopAsyncIteration
            When the replay is finished (``loop`` false).
        """
        if self._pending:
            out = list(self._pending)
            self._pending.clear()
            return out
        out = await self.source.next_due()
        if out:
            out.extend(self._release(out[-1]))
        return out

    def describe(self) -> str:
        """The replay's description."""
        return self.source.describe()

    def status(self) -> dict:
        """The replay's counters (:meth:`feeds.replay.ReplaySource.status`)."""
        return self.source.status()
