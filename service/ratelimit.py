"""A per-client token bucket for the REST API (``/api/``): ``rate`` requests/s, bursts of ``burst``.

Each client address has a bucket of at most ``burst`` tokens, refilled at ``rate``
tokens per second; a request takes one token, or is refused (HTTP 429) with the
seconds until a token is back. The table of buckets is bounded (``max_clients``):
a bucket that has refilled to full carries no state (a new one would be the same)
and is dropped first; when the table is still full the least recently used bucket
goes (that client starts again with a full burst, a bounded leniency).

The limiter lives in one server process: with ``--num-procs N`` each process has
its own table, so a client spread over N processes by the kernel may get up to N
times the rate.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

#: Default sustained rate per client address (requests/s); ``serve.py --api-rate``.
DEFAULT_RATE = 20.0
#: Default burst per client address (requests); ``serve.py --api-burst``.
DEFAULT_BURST = 40
#: Default most client addresses tracked at once.
DEFAULT_MAX_CLIENTS = 10_000


class TokenBucketLimiter:
    """Token buckets keyed by client address.

    Parameters
    ----------
    rate : float
        Tokens added per second to each bucket (requests/s); 0 turns the limiter off.
    burst : int
        Capacity of a bucket (requests a client may send at once after being idle), >= 1.
    max_clients : int
        Most buckets held (memory bound), >= 1.
    clock : callable, optional
        Monotonic time in seconds (default :func:`time.monotonic`; tests pass their own).

    Raises
    ------
    ValueError
        A negative or non-finite rate, a burst or ``max_clients`` below 1.
    """

    def __init__(self, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST,
                 max_clients: int = DEFAULT_MAX_CLIENTS, clock: Callable[[], float] = time.monotonic):
        if not (rate >= 0 and rate != float("inf")):
            raise ValueError(f"rate must be a finite number >= 0 (requests/s), got {rate!r}")
        if int(burst) < 1 or int(max_clients) < 1:
            raise ValueError(f"burst and max_clients must be >= 1, got {burst!r}, {max_clients!r}")
        self.rate = float(rate)
        self.burst = int(burst)
        self.max_clients = int(max_clients)
        self.clock = clock
        #: address -> [tokens, time of the last update (s)], least recently used first
        self._buckets: collections.OrderedDict[str, list[float]] = collections.OrderedDict()

    @property
    def enabled(self) -> bool:
        """False when ``rate`` is 0 (every request passes)."""
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str) -> float:
        """Take one token from ``key``'s bucket.

        Returns 0.0 when the request may go ahead, else the seconds (> 0) until
        the bucket holds a token again (nothing is taken then).
        """
        if not self.enabled:
            return 0.0
        now = self.clock()
        b = self._buckets.get(key)
        if b is None:
            self._make_room(now)
            b = self._buckets[key] = [float(self.burst), now]
        else:
            b[0] = min(float(self.burst), b[0] + (now - b[1]) * self.rate)
            b[1] = now
            self._buckets.move_to_end(key)
        if b[0] >= 1.0:
            b[0] -= 1.0
            return 0.0
        return (1.0 - b[0]) / self.rate

    def _full(self, b: list[float], now: float) -> bool:
        return b[0] + (now - b[1]) * self.rate >= self.burst

    def _make_room(self, now: float) -> None:
        """Before adding a bucket: drop the oldest buckets that refilled (a few per call), then the LRU if full."""
        for _ in range(4):
            if not self._buckets:
                return
            key, b = next(iter(self._buckets.items()))
            if not self._full(b, now):
                break
            del self._buckets[key]
        while len(self._buckets) >= self.max_clients:
            self._buckets.popitem(last=False)
