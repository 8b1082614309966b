"""Warming the shared computations once per process, off the first viewer's path."""

from __future__ import annotations

import logging
import threading
import time

from compute.grid import auto_row_size

log = logging.getLogger(__name__)

_WARMED = threading.Event()
_WARM_LOCK = threading.Lock()


def warm_up(registry=None, trades=None, tick: float = 0.01) -> float:
    """Run every shared computation once on a small slice of real trades; returns the seconds it took.

    The first use of datashader (heat-map) compiles numba code (~1.5 s) and the first
    profile/footprint/developing calls load their code paths; doing it once at start-up
    (in a thread) spares the first viewer that wait. Uses the last 5,000 trades of the
    first view of ``registry`` that has data, or ``trades`` (a TradeBatch). Results are
    not kept. Never raises (a failure is logged).
    """
    from compute.kinds import KINDS, ticks_for

    if _WARMED.is_set() or not _WARM_LOCK.acquire(blocking=False):
        return 0.0  # done, or under way in another thread (serve.py's and the first page's may meet)
    t0 = time.perf_counter()
    try:
        if trades is None and registry is not None:
            for v in list(getattr(registry, "views", {}).values()):
                snap = v.snapshot
                if len(snap.trades):
                    trades, tick = snap.trades, snap.tick
                    break
        if trades is None or not len(trades):
            return 0.0
        tr = trades.take(slice(max(len(trades) - 5000, 0), len(trades)))
        s, e = int(tr.time[0]), int(tr.time[-1]) + 1
        lo, hi = float(tr.price.min()), float(tr.price.max())
        rs = auto_row_size(lo, hi, tick, 60)
        given = {"ticks_per_row": ticks_for(rs, tick), "price_low": lo, "price_high": hi + tick, "width": 16,
                 "height": 16}
        for kind in KINDS.values():  # every kind of the registry, with its default parameters
            names = kind.params.names()
            kind.run(tr, tick, s, e, kind.validated(**{k: v for k, v in given.items() if k in names}))
        _WARMED.set()
    except Exception:  # noqa: BLE001 - warming is an optimisation only
        log.exception("warm-up failed")
    finally:
        _WARM_LOCK.release()
    return time.perf_counter() - t0


def warm_in_background(registry) -> None:
    """Start :func:`warm_up` in a daemon thread, once per process (nothing when done or under way)."""
    if not _WARMED.is_set() and not _WARM_LOCK.locked():
        threading.Thread(target=warm_up, args=(registry,), name="flowlens-warm-up", daemon=True).start()


__all__ = ["warm_in_background", "warm_up"]
