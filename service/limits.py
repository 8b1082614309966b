"""What one request may ask for, and strict readers of query values: shared by the REST API and the page.

The REST API (:mod:`service.api`) and the page's URL parsing
(:func:`dashboard.settings.parse_query`) both import these, so the page never
shows a range the API refuses. Values are read strictly: decimal ASCII digits
only (no ``_``, ``+``, whitespace or other scripts' digits), finite numbers,
no control characters.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time

#: Earliest time accepted (UTC ms): 2017-01-01, before Binance's first trade.
EARLIEST_MS = 1_483_228_800_000
#: Latest time accepted: now plus this (UTC ms; one day).
FUTURE_SLACK_MS = 86_400_000
#: Longest range one request or page may ask for (ms; 7 days).
MAX_RANGE_MS = 7 * 24 * 3600_000
#: Range when ``from`` is not given (the last hour, ms).
DEFAULT_RANGE_MS = 3600_000
#: Most profile rows one API answer may hold.
MAX_ROWS = 5000
#: Most trades one API answer may hold.
MAX_TRADES = 10_000
#: Longest query string an API request may have (characters, after the ``?``).
MAX_QUERY_CHARS = 2048
#: Most query parameters an API request may have (the widest endpoint takes 9).
MAX_QUERY_PARAMS = 16

_INT_RE = re.compile(r"-?[0-9]{1,18}", re.ASCII)
_NUM_RE = re.compile(r"-?(?:[0-9]{1,18}(?:\.[0-9]{0,18})?|\.[0-9]{1,18})(?:[eE][-+]?[0-9]{1,3})?", re.ASCII)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class BadParameter(ValueError):
    """A query parameter that cannot be used; ``parameter`` names it (None: the query as a whole)."""

    def __init__(self, parameter: str | None, message: str):
        super().__init__(message)
        self.parameter = parameter


class RangeError(ValueError):
    """A time range outside the limits; ``parameter`` is ``"from"`` or ``"to"``, the one to change."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


def strict_int(text: str) -> int:
    """An integer written as optional ``-`` and 1-18 ASCII decimal digits, nothing else.

    Raises ValueError otherwise (``1_000``, `` 5``, ``+5``, ``٥``, ``1e3``, ``0x10``).
    """
    if not _INT_RE.fullmatch(text):
        raise ValueError("not a whole number (ASCII decimal digits only)")
    return int(text)


def strict_float(text: str) -> float:
    """A finite number written in plain decimal (``0.7``, ``-2``, ``.5``, ``1e-05``), nothing else.

    Raises ValueError otherwise (``nan``, ``inf``, ``1_0``, `` 1``, ``+1``, ``1e999``, ``0x1p3``).
    """
    if not _NUM_RE.fullmatch(text):
        raise ValueError("not a decimal number")
    v = float(text)
    if not math.isfinite(v):
        raise ValueError("not a finite number")
    return v


def has_control(text: str) -> bool:
    """True when ``text`` holds a control character (C0, DEL or C1; NUL included)."""
    return _CONTROL_RE.search(text) is not None


def now_ms() -> int:
    """Wall-clock time (UTC ms)."""
    return int(time.time() * 1000)


def _date(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def bounds_text(now: int | None = None) -> str:
    """The accepted time bounds in words, for messages."""
    latest = (now_ms() if now is None else now) + FUTURE_SLACK_MS
    return (f"times are UTC ms from {EARLIEST_MS} ({_date(EARLIEST_MS)}) to now + 1 day "
            f"({latest}, {_date(latest)})")


def check_time(name: str, t: int, now: int | None = None) -> None:
    """Raise :class:`RangeError` naming ``name`` unless EARLIEST_MS <= ``t`` <= now + FUTURE_SLACK_MS (UTC ms)."""
    now = now_ms() if now is None else now
    if not EARLIEST_MS <= t <= now + FUTURE_SLACK_MS:
        raise RangeError(name, f"'{name}' ({t}) is out of bounds: {bounds_text(now)}")


def check_range(start: int, end: int, now: int | None = None) -> None:
    """Check a range [start, end) (UTC ms) against the limits; raise :class:`RangeError` naming what to change.

    In order: ``end`` must be after ``start`` (names ``to``), each within
    :func:`check_time`'s bounds (``from``, then ``to``), and the range at most
    :data:`MAX_RANGE_MS` (names ``from``).
    """
    if end <= start:
        raise RangeError("to", f"'from' ({start}) must be before 'to' ({end})")
    check_time("from", start, now)
    check_time("to", end, now)
    if end - start > MAX_RANGE_MS:
        raise RangeError("from", f"range of {(end - start) / 3600_000:.1f} h exceeds the limit of "
                                 f"{MAX_RANGE_MS // 3600_000} h")
