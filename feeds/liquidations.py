"""Liquidations (Binance ``forceOrder`` frames) from files, and their replay beside a trade replay.

Binance publishes no liquidation history, so a file of forceOrder frames is either the recorder's
output or, for tests and demos, frames placed at the prices and times of real recorded trades (their
file name says so). :class:`LiquidationReplay` hands them to the ingest service in step with a
:class:`feeds.replay.ReplaySource`, shifted like the trades on every loop.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from .decode import FrameDecoder


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
    """Wrap a :class:`feeds.replay.ReplaySource`: after each trade batch, the liquidations up to its last
    trade time are put on ``self.ingest.liquidations`` (the ingest service writes them with the batch).

    Times are shifted by ``k * source.period_ms`` on loop ``k``, like the trades.
    """

    def __init__(self, source, liquidations: pd.DataFrame, symbol: str):
        self.source = source
        self.ingest = None
        df = liquidations[liquidations["symbol"].str.upper() == symbol.upper()]
        self._liq = df.sort_values("time", kind="stable").reset_index(drop=True)
        self._t = self._liq["time"].to_numpy(np.int64)
        self._next = 0
        self._loop = 0

    def __getattr__(self, name):
        return getattr(self.source, name)

    def _release(self, batch) -> None:
        if self.ingest is None or not len(batch) or not len(self._t):
            return
        period = self.source.period_ms
        last = int(batch.time[-1])
        while True:
            shift = self._loop * period
            hi = int(np.searchsorted(self._t, last - shift, side="right"))
            if hi > self._next:
                part = self._liq.iloc[self._next:hi].copy()
                part["time"] += shift
                if "event_time" in part:
                    part["event_time"] += shift
                self.ingest.liquidations.append(part)
                self._next = hi
            if self._next < len(self._t) or last - shift < int(self._t[-1]):
                return
            self._loop, self._next = self._loop + 1, 0  # the trades moved to the next loop

    def __aiter__(self):
        return self

    async def __anext__(self):
        b = await self.source.__anext__()
        self._release(b)
        return b

    async def next_due(self):
        out = await self.source.next_due()
        if out:
            self._release(out[-1])
        return out

    def describe(self) -> str:
        return self.source.describe()
