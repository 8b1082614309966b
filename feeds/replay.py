"""Replay a recorded trade file as a live-looking source of :class:`~compute.batch.TradeBatch`.

:class:`ReplaySource` is an async iterator.  It yields the recording's trades
in exchange-time order (time ``T``, then trade id), in batches that each cover
at most ``max_batch_ms`` of exchange time (aligned windows
``[k * max_batch_ms, (k + 1) * max_batch_ms)`` in UTC ms; empty windows are not
emitted), paced so that wall time = exchange time / ``speed``.

Pacing is anchored to absolute times: a batch is due when the wall clock
reaches the exchange time of its window's end, scaled by ``speed``.  A batch
that is late is emitted at once (the source never falls behind); one due in
less than ``min_sleep`` seconds is emitted at once too, so at very high speeds
several windows go out per event-loop turn and no sleep is shorter than
``min_sleep``.  The schedule therefore stays accurate in aggregate (within
``min_sleep``) at any speed.

At the end of the file the replay loops: loop ``k`` shifts times by
``k * period_ms`` and trade ids by ``k * id_span`` (see :func:`loop_shift`), so
time and ids keep increasing and 1-minute candles stay aligned.  The gap
between the last trade of a loop and the first of the next is not waited out.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path

import numpy as np
import param

from compute.batch import TradeBatch

from .readers import read_trades

__all__ = ["ReplaySource", "loop_period_ms", "loop_id_span", "loop_shift"]

MINUTE_MS = 60_000


def loop_period_ms(batch: TradeBatch) -> int:
    """Time shift per loop in ms: the recording's span rounded up to whole minutes, plus one minute.

    ``span = time[-1] - time[0]`` of the batch sorted by time (max - min here).
    A whole number of minutes keeps 1-minute candles aligned; the extra minute
    keeps time increasing across the loop seam.

    Raises
    ------
    ValueError
        If the batch is empty.
    """
    if not len(batch):
        raise ValueError("cannot loop an empty recording")
    span = int(batch.time.max()) - int(batch.time.min())
    return (math.ceil(span / MINUTE_MS) + 1) * MINUTE_MS


def loop_id_span(batch: TradeBatch) -> int:
    """Trade-id shift per loop: ``max(trade_id) - min(trade_id) + 1``.

    Raises
    ------
    ValueError
        If the batch is empty.
    """
    if not len(batch):
        raise ValueError("cannot loop an empty recording")
    return int(batch.trade_id.max()) - int(batch.trade_id.min()) + 1


def loop_shift(batch: TradeBatch, k: int, period_ms: int | None = None, id_span: int | None = None) -> TradeBatch:
    """Return ``batch`` as it is replayed in loop ``k`` (k = 0 is the recording itself).

    ``time + k * period_ms`` (UTC ms) and ``trade_id + k * id_span``; price, qty
    and side unchanged.  ``period_ms`` and ``id_span`` default to
    :func:`loop_period_ms` and :func:`loop_id_span` of ``batch`` itself; pass the
    whole recording's values when shifting a part of it.
    """
    if k == 0:
        return batch
    period_ms = loop_period_ms(batch) if period_ms is None else int(period_ms)
    id_span = loop_id_span(batch) if id_span is None else int(id_span)
    return TradeBatch(
        batch.time + np.int64(k * period_ms), batch.price, batch.qty, batch.is_buyer_maker,
        batch.trade_id + np.int64(k * id_span), batch.symbol,
    )


class ReplaySource(param.Parameterized):
    """Async iterator of :class:`TradeBatch` replaying a recording at ``speed`` x real time.

    Parameters
    ----------
    source : str | Path | TradeBatch
        A file any reader of :mod:`feeds.readers` understands, or a batch.
    symbol : str, optional
        Symbol to take from a multi-symbol file (required there); otherwise the
        file's own.
    speed, max_batch_ms, loop, start_at, min_sleep : see the parameters.

    Usage::

        src = ReplaySource("assets/recordings/BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz", speed=10)
        async for batch in src:          # one window (<= 100 ms exchange time) per batch
            ...
        batches = await src.next_due()   # or: every batch due now, as a list (>= 1)
        src.speed = 100                  # takes effect from the next batch

    Raises
    ------
    ValueError
        If the recording holds no trades, or ``start_at`` is after its end.
    """

    speed = param.Number(default=1.0, bounds=(0, 1e6), inclusive_bounds=(False, True),
                         doc="Replay speed: wall time = exchange time / speed. Changeable while running.")
    max_batch_ms = param.Integer(default=100, bounds=(1, 3_600_000), constant=True,
                                 doc="Exchange-time width (ms) of the aligned window one batch covers at most.")
    loop = param.Boolean(default=True, doc="Start over (shifted in time and ids) at the end of the file.")
    start_at = param.Integer(default=None, allow_None=True, constant=True,
                             doc="Exchange time (UTC ms) to start from in the first pass; None = the start.")
    min_sleep = param.Number(default=0.005, bounds=(0, 1),
                             doc="Batches due within this many seconds are emitted at once instead of sleeping.")
    max_group = param.Integer(default=10_000, bounds=(1, None), doc="Most batches next_due() returns at once.")

    def __init__(self, source, symbol: str | None = None, speed: float = 1.0, max_batch_ms: int = 100,
                 loop: bool = True, start_at: int | None = None, name: str | None = None, **params):
        if isinstance(source, TradeBatch):
            batch = source if symbol is None else TradeBatch(source.time, source.price, source.qty,
                                                              source.is_buyer_maker, source.trade_id, symbol)
            label = name or f"{batch.symbol or 'batch'} ({len(batch)} trades)"
        else:
            batch = read_trades(Path(source), symbol)
            label = name or os.path.basename(str(source))
        if not len(batch):
            raise ValueError(f"{label}: recording holds no trades")
        super().__init__(name=label, speed=speed, max_batch_ms=max_batch_ms, loop=loop, start_at=start_at,
                         **params)
        order = np.lexsort((batch.trade_id, batch.time))
        if not np.array_equal(order, np.arange(len(batch))):
            batch = batch.take(order)
        self._batch = batch
        self.symbol = batch.symbol
        self.period_ms = loop_period_ms(batch)
        self.id_span = loop_id_span(batch)
        keys = batch.time // self.max_batch_ms
        cuts = np.flatnonzero(np.diff(keys)) + 1
        self._starts = np.concatenate([[0], cuts]).astype(np.int64)
        self._ends = np.concatenate([cuts, [len(batch)]]).astype(np.int64)
        self._win_start = keys[self._starts] * self.max_batch_ms  # exchange ms of each window's start
        self._k = 0
        self._w = 0
        self._first_index = 0
        if start_at is not None:
            i0 = int(np.searchsorted(batch.time, start_at, side="left"))
            if i0 >= len(batch):
                raise ValueError(f"{label}: start_at={start_at} is after the last trade ({int(batch.time[-1])})")
            self._first_index = i0
            self._w = int(np.searchsorted(self._starts, i0, side="right")) - 1
        self._w0 = self._w
        self._k0 = 0
        self._anchor_wall: float | None = None
        self._anchor_ex = 0
        self._pos_ex = 0  # exchange time (shifted) of the end of the last emitted window
        self._last_due = 0.0
        self.batches_emitted = 0
        self.trades_emitted = 0
        self.last_trade_time: int | None = None

    def resume_after_id(self, trade_id: int) -> None:
        """Continue right after trade ``trade_id`` (an id as emitted, i.e. shifted for its loop).

        Used when another process takes over ingest and must go on from the last id
        in Redis: the next batch starts with the trade that follows ``trade_id``
        (in the same loop, or the first trade of the next loop). Call before iterating.
        """
        ids = self._batch.trade_id
        k = max(0, (int(trade_id) - int(ids[0])) // self.id_span)
        base = int(trade_id) - k * self.id_span
        i = int(np.searchsorted(ids, base, side="right")) if np.all(np.diff(ids) > 0) else int(np.sum(ids <= base))
        if i >= len(ids):
            k, i = k + 1, 0
        self._k = self._k0 = k
        self._first_index = i
        self._w = self._w0 = int(np.searchsorted(self._starts, i, side="right")) - 1
        self._anchor_wall = None

    # -- description -----------------------------------------------------------------
    @property
    def loops(self) -> int:
        """Completed passes over the recording."""
        return self._k

    @property
    def recording(self) -> TradeBatch:
        """The whole recording (loop 0), sorted by exchange time."""
        return self._batch

    def describe(self) -> str:
        """Status text, e.g. ``REPLAY BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz at 10x``."""
        s = self.speed
        return f"REPLAY {self.name} at {int(s) if s == int(s) else f'{s:g}'}x"

    def status(self) -> dict:
        """Counters: speed, loops, batches/trades emitted, last trade time (UTC ms), position (UTC ms)."""
        return {
            "source": self.describe(), "symbol": self.symbol, "speed": self.speed, "loops": self._k,
            "batches_emitted": self.batches_emitted, "trades_emitted": self.trades_emitted,
            "last_trade_time": self.last_trade_time, "position_ms": self._pos_ex,
        }

    @param.depends("speed", watch=True)
    def _reanchor(self):
        """Keep the current position when the speed changes; the new speed applies from here on.

        Not dead code: param calls it on every change of ``speed`` (``watch=True``).
        """
        if self._anchor_wall is not None:
            self._anchor_wall = max(self._now(), self._last_due)
            self._anchor_ex = self._pos_ex

    # -- iteration -------------------------------------------------------------------
    @staticmethod
    def _now() -> float:
        return time.monotonic()  # the clock asyncio's default loop uses

    def _exhausted(self) -> bool:
        return self._w >= len(self._starts)

    def _due(self) -> float:
        """Wall time (loop clock) at which the next window is due."""
        shift = self._k * self.period_ms
        end_ex = int(self._win_start[self._w]) + self.max_batch_ms + shift
        if self._anchor_wall is None:
            self._anchor_wall = self._now()
            self._anchor_ex = int(self._win_start[self._w]) + shift
            self._pos_ex = self._anchor_ex
        return self._anchor_wall + (end_ex - self._anchor_ex) / (1000.0 * self.speed)

    def _take(self, due: float) -> TradeBatch:
        """Cut the next window, advance, handle the loop seam."""
        w, k = self._w, self._k
        lo = int(self._starts[w])
        if k == self._k0 and w == self._w0:
            lo = max(lo, self._first_index)
        b = self._batch.take(slice(lo, int(self._ends[w])))
        b = loop_shift(b, k, self.period_ms, self.id_span)
        self._pos_ex = int(self._win_start[w]) + self.max_batch_ms + k * self.period_ms
        self._last_due = due
        self._w += 1
        if self._exhausted() and self.loop:
            self._k += 1
            self._w = 0
            # do not wait out the gap between loops: the next pass starts right after this batch
            self._anchor_wall = due
            self._anchor_ex = int(self._win_start[0]) + self._k * self.period_ms
            self._pos_ex = self._anchor_ex
        self.batches_emitted += 1
        self.trades_emitted += len(b)
        self.last_trade_time = int(b.time[-1])
        return b

    def __aiter__(self):
        return self

    async def __anext__(self) -> TradeBatch:
        if self._exhausted():
            raise StopAsyncIteration
        due = self._due()
        delay = due - self._now()
        if delay >= self.min_sleep:
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)  # let others run even when catching up
        return self._take(due)

    async def next_due(self) -> list[TradeBatch]:
        """Wait for the next batch, then return it together with every further batch already due.

        Returns
        -------
        list[TradeBatch], length 1 .. ``max_group``, in exchange-time order.

        Raises
        ------
        StopAsyncIteration
            When the recording is finished and ``loop`` is false.
        """
        out = [await self.__anext__()]
        while len(out) < self.max_group and not self._exhausted():
            due = self._due()
            if due - self._now() >= self.min_sleep:
                break
            out.append(self._take(due))
        return out
