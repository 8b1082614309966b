"""Short garbage-collector pauses for a server process that holds many sessions' models.

CPython's cyclic collector walks every object of its oldest generation on each full
collection. A server process with a hundred open pages holds millions of such objects
(each page's Bokeh and Panel models), and the transient objects of its refreshes (futures,
queued messages) keep promoting into that generation, so a full collection comes every
10-20 s and stops the event loop for 400-850 ms: every page of the process gets that
update late (measured with ``benchmarks/bench_load.py`` at N = 200, ``--num-procs 2``).

:class:`GcFreezer` applies the remedy the Python documentation gives for long-lived
servers (``gc.freeze``: "move all the objects tracked by the garbage collector into a
permanent generation, i.e. ignore them in all the future collections"): every
``freeze_s`` it collects the young generations and freezes what is alive, so the
collections in between walk only what was allocated since. Cycles frozen while they were
still referenced and dropped later (a closed page's models) are not collected until a
**sweep** (unfreeze, one full collection, freeze again) every ``sweep_s``: one long pause
there instead of one every 10-20 s. Reference counting frees everything else as usual.

:data:`PAUSES` keeps the pause times (seconds) of the collections of generations 1 and 2
for ``/metrics`` (``flowlens_gc_pause_seconds``).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import time

import param

log = logging.getLogger(__name__)

#: (generation, pause in s) of the collections of generations 1 and 2 since ``/metrics`` last read them (bounded).
PAUSES: collections.deque = collections.deque(maxlen=10_000)
_started: list[float] = []


def _on_gc(phase: str, info: dict) -> None:
    if phase == "start":
        _started[:] = [time.perf_counter()]
    elif _started and info["generation"] > 0:  # generation 0: hundreds a second, each well under a millisecond
        PAUSES.append((info["generation"], time.perf_counter() - _started[0]))


def watch_pauses() -> None:
    """Record the pause of every collection of generation 1 or 2 in :data:`PAUSES` (once per process; later calls do nothing)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


class GcFreezer(param.Parameterized):
    """Freeze the objects alive every ``freeze_s`` and sweep everything every ``sweep_s`` (see the module doc)."""

    freeze_s = param.Number(default=5.0, bounds=(0.5, 600.0), doc="""
        Seconds between freezes: young generations collected, then every object alive moved
        out of the collector's generations (gc.freeze).""")

    sweep_s = param.Number(default=600.0, bounds=(10.0, 86_400.0), doc="""
        Seconds between sweeps: gc.unfreeze, one full collection, gc.freeze. Frees the cycles
        that were alive at a freeze and dropped afterwards; the one long pause it costs is
        counted in flowlens_gc_pause_seconds{generation="2"}.""")

    def __init__(self, **params):
        super().__init__(**params)
        self._task: asyncio.Task | None = None
        self.freezes = 0
        self.sweeps = 0

    def freeze(self) -> None:
        """Collect the young generations (0 and 1), then freeze every object alive."""
        gc.collect(1)
        gc.freeze()
        self.freezes += 1

    def sweep(self) -> float:
        """Unfreeze, run one full collection, freeze again; returns its duration in seconds."""
        t0 = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.sweeps += 1
        return time.perf_counter() - t0

    async def run(self) -> None:
        """Freeze every ``freeze_s`` and sweep every ``sweep_s`` until cancelled."""
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(self.freeze_s)
            if time.monotonic() - last_sweep >= self.sweep_s:
                last_sweep = time.monotonic()
                log.info("gc sweep: %.0f ms, %d objects frozen", self.sweep() * 1000, gc.get_freeze_count())
            else:
                self.freeze()

    def start(self) -> asyncio.Task:
        """Start :meth:`run` on the running event loop (and the pause watch); returns its task."""
        watch_pauses()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self.run())
        return self._task

    def stop(self) -> None:
        """Stop freezing and give every object back to the collector."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        gc.unfreeze()
