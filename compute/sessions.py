"""Session and composite volume profiles, prior-session levels and naked POCs.

Definitions (issue 17; as TradingView's *Session Volume Profile*, Sierra Chart's *Volume by Price* per
session and Dalton's *Markets in Profile* use them):

* **session**: a half-open UTC interval ``[start, start + length)``; sessions are aligned so that one starts at
  ``session_start`` (``"HH:MM"`` UTC, default ``"00:00"``) every day; ``length`` is one of
  :data:`SESSION_LENGTHS` (``1h`` ... ``1d``, ``1w``; every one but ``1w`` divides a day); weekly sessions
  start on Monday at ``session_start``.
* **session profile**: exactly :func:`compute.profile.volume_profile` of the trades of that interval (same row
  grid, value area and tie rules). A session of the asked range that holds no trade has no profile.
* **composite profile**: the profile of the union of consecutive sessions, equal to the volume profile of
  their whole range.
* **prior-session levels**: the previous session's POC, VAH and VAL, drawn across the current session.
* **naked POC**: a session's POC row that no later trade has traded in yet. It is extended to the right until
  the first later trade (in time order, at or after the session's end) whose row index equals the POC's row;
  that trade's time is ``touched_at`` (None while naked, as far as the given trades go).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from . import grid
from .frames import DAY_MS
from .profile import volume_profile
from .result import DEFAULT_PERCENTILES, ProfileResult, as_batch, empty_range_error, time_bounds

__all__ = ["SESSION_LENGTHS", "Session", "SessionsResult", "naked_pocs", "parse_session_start", "session_bounds",
           "session_profiles", "sessions_from_store"]

HOUR_MS = 3_600_000
WEEK_MS = 7 * DAY_MS
#: Session lengths by name, in ms.
SESSION_LENGTHS = {"1h": HOUR_MS, "2h": 2 * HOUR_MS, "4h": 4 * HOUR_MS, "6h": 6 * HOUR_MS, "8h": 8 * HOUR_MS,
                   "12h": 12 * HOUR_MS, "1d": DAY_MS, "1w": WEEK_MS}
#: 1970-01-05, the first Monday after the epoch (a Thursday), in ms: weekly sessions are aligned on it.
_MONDAY_MS = 4 * DAY_MS
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_session_start(text: str) -> int:
    """``"HH:MM"`` (UTC) as ms after midnight. Raises ValueError for anything else."""
    m = _HHMM.match(str(text))
    if not m:
        raise ValueError(f"session_start must be HH:MM (UTC, 00:00-23:59), got {text!r}")
    return (int(m.group(1)) * 60 + int(m.group(2))) * 60_000


def session_bounds(start: int, end: int, session_length: str = "1d", session_start: str = "00:00") -> np.ndarray:
    """The sessions that meet ``[start, end)`` (UTC ms): an int64 array of shape (S, 2), rows ``[s, s + length)``.

    The first session is the one holding ``start`` (it may begin before it), the last the one holding
    ``end - 1``. Raises ValueError for an unknown length, a bad ``session_start`` or ``end <= start``.
    """
    if session_length not in SESSION_LENGTHS:
        raise ValueError(f"session_length must be one of {', '.join(SESSION_LENGTHS)}, got {session_length!r}")
    start, end = int(start), int(end)
    if end <= start:
        raise ValueError(f"'to' must be after 'from' (got {start} and {end})")
    length = SESSION_LENGTHS[session_length]
    anchor = parse_session_start(session_start) + (_MONDAY_MS if length == WEEK_MS else 0)
    first = anchor + (start - anchor) // length * length
    starts = np.arange(first, end, length, dtype=np.int64)
    return np.column_stack([starts, starts + length])


@dataclass(frozen=True)
class Session:
    """One session: its interval (UTC ms, ``end`` exclusive, aligned as the module docstring says), its volume
    profile (whose ``start``/``end`` are the interval cut to the asked range) and its POC's fate.

    ``poc_row`` is the POC's absolute row index (``floor(round(price / tick) / ticks_per_row)``);
    ``touched_at`` the time (UTC ms) of the first later trade in that row, None while the POC is naked.
    """

    start: int
    end: int
    profile: ProfileResult
    poc_row: int
    touched_at: int | None = None

    @property
    def naked(self) -> bool:
        return self.touched_at is None

    def to_dict(self) -> dict:
        """The session's summary (no per-row arrays): start, end, poc, vah, val, volumes, trades, touched_at."""
        p = self.profile
        return {"start": self.start, "end": self.end, "poc": p.poc, "vah": p.vah, "val": p.val,
                "total_volume": p.total_volume, "buy_volume": p.buy_volume, "sell_volume": p.sell_volume,
                "trades": p.trades, "rows": p.rows, "touched_at": self.touched_at, "naked": self.naked}


@dataclass(frozen=True)
class SessionsResult:
    """Session profiles of a range (:func:`session_profiles`).

    ``sessions`` in time order (only those holding trades); ``composite`` the profile of the whole range;
    ``start``/``end`` the asked range (UTC ms). :meth:`prior_levels` gives each session's prior-session
    POC/VAH/VAL.
    """

    kind: str
    tick: float
    row_size: float
    session_length: str
    session_start: str
    start: int
    end: int
    sessions: list = field(default_factory=list)
    composite: ProfileResult | None = None

    @property
    def trades(self) -> int:
        return sum(s.profile.trades for s in self.sessions)

    def prior_levels(self) -> list[dict | None]:
        """For each session, the previous session's ``{"poc", "vah", "val", "start"}`` (None for the first)."""
        out: list[dict | None] = [None]
        for prev in self.sessions[:-1]:
            p = prev.profile
            out.append({"start": prev.start, "poc": p.poc, "vah": p.vah, "val": p.val})
        return out[: len(self.sessions)]

    def to_dict(self) -> dict:
        """JSON-ready summary: the parameters and one :meth:`Session.to_dict` per session (with prior levels)."""
        prior = self.prior_levels()
        return {"kind": self.kind, "tick": self.tick, "row_size": self.row_size,
                "session_length": self.session_length, "session_start": self.session_start,
                "start": self.start, "end": self.end, "trades": self.trades,
                "sessions": [{**s.to_dict(), "prior": p} for s, p in zip(self.sessions, prior, strict=True)],
                "composite": None if self.composite is None else {
                    "poc": self.composite.poc, "vah": self.composite.vah, "val": self.composite.val,
                    "total_volume": self.composite.total_volume, "trades": self.composite.trades}}


def naked_pocs(time: np.ndarray, rows: np.ndarray, session_ends: np.ndarray, poc_rows: np.ndarray) -> list[int | None]:
    """For each session, the time of the first trade at or after its end in its POC's row (None: still naked).

    ``time`` int64 (N,) UTC ms sorted ascending, ``rows`` int64 (N,) the trades' row indices, ``session_ends``
    and ``poc_rows`` int64 (S,). One pass over the trades in POC rows, then a binary search per session.
    """
    poc_rows = np.asarray(poc_rows, dtype=np.int64)
    if not len(poc_rows):
        return []
    pos = np.flatnonzero(np.isin(rows, np.unique(poc_rows)))  # trades in some session's POC row, in time order
    by_row = pos[np.argsort(rows[pos], kind="stable")]  # grouped by row, each group still in time order
    keys = rows[by_row]
    out: list[int | None] = []
    for end, r in zip(np.asarray(session_ends, dtype=np.int64), poc_rows, strict=True):
        lo, hi = np.searchsorted(keys, r, "left"), np.searchsorted(keys, r, "right")
        group = by_row[lo:hi]
        k = np.searchsorted(time[group], end, "left")  # the group's times ascend with its positions
        out.append(int(time[group[k]]) if k < len(group) else None)
    return out


def session_profiles(
    trades, tick: float, row_size: float, start: int | None = None, end: int | None = None,
    session_length: str = "1d", session_start: str = "00:00", value_area: float = 0.7,
    value_area_method: str = "single", percentiles=DEFAULT_PERCENTILES, composite: bool = True,
) -> SessionsResult:
    """The volume profile of each session meeting ``[start, end)``, naked-POC state and the composite.

    Parameters
    ----------
    trades : TradeBatch or DataFrame
        N trades (time int64 UTC ms, price float64 quote currency, qty float64 base asset, is_buyer_maker
        bool); any order.
    tick, row_size : float
        Tick size and row size (quote currency); ``row_size`` a whole number of ticks.
    start, end : int or None
        The range (UTC ms, ``end`` exclusive; defaults: the trades' range). The first and last sessions are
        cut to it; a naked POC is looked for up to ``end``.
    session_length, session_start : str
        See the module docstring (``"1d"``, ``"00:00"`` by default).
    value_area, value_area_method, percentiles
        As :func:`compute.profile.volume_profile`.
    composite : bool
        Also compute the profile of the whole range.

    Returns
    -------
    SessionsResult
        ``kind="sessions"``; sessions without trades are left out.

    Raises
    ------
    ValueError
        As :func:`compute.profile.volume_profile` and :func:`session_bounds`; ``"no trades in range"`` when
        the range holds none.
    """
    batch, s, e = _sorted_range(trades, start, end)
    kw = {"value_area": value_area, "value_area_method": value_area_method, "percentiles": percentiles}

    def profile(a: int, b: int, i: int, j: int):
        return volume_profile(batch.take(slice(i, j)), tick, row_size, start=a, end=b, **kw)
    return _assemble(batch, s, e, tick, row_size, session_length, session_start, profile, composite)


def sessions_from_store(store, start: int, end: int, trades, row_size: float, session_length: str = "1d",
                        session_start: str = "00:00", value_area: float = 0.7, value_area_method: str = "single",
                        percentiles=DEFAULT_PERCENTILES, composite: bool = True) -> SessionsResult:
    """:func:`session_profiles` with every profile taken from a :class:`compute.incremental.ProfileStore`'s sums
    (identical to recomputing them); ``trades`` (those of ``[start, end)``) only find the naked POCs' touches.

    Raises ValueError as :func:`session_profiles`.
    """
    batch, s, e = _sorted_range(trades, start, end)
    kw = {"row_size": row_size, "value_area": value_area, "value_area_method": value_area_method,
          "percentiles": percentiles}

    def profile(a: int, b: int, i: int, j: int):
        return store.volume_profile(a, b, **kw)
    return _assemble(batch, s, e, store.tick, row_size, session_length, session_start, profile, composite)


def _sorted_range(trades, start, end):
    """The trades of ``[start, end)`` in time order, and the range resolved (defaults: the trades' own)."""
    batch = as_batch(trades)
    s, e = time_bounds(batch.time, start, end)
    if len(batch) and np.any(np.diff(batch.time) < 0):
        batch = batch.take(np.argsort(batch.time, kind="stable"))
    return batch.time_slice(s, e), s, e


def _assemble(batch, s: int, e: int, tick: float, row_size: float, session_length: str, session_start: str,
              profile, composite: bool) -> SessionsResult:
    """Sessions of ``[s, e)`` with ``profile(cut_start, cut_end, first, last)`` giving each one's profile."""
    tpr = grid.ticks_per_row(row_size, tick)
    bounds = session_bounds(s, e, session_length, session_start)
    if not len(batch):
        raise empty_range_error(s, e)
    cut = np.clip(bounds, s, e)  # the first and last sessions' profiles cover only the range
    idx = np.searchsorted(batch.time, cut)
    profiles = [(int(a), int(b), profile(int(c0), int(c1), int(i), int(j)))
                for (a, b), (c0, c1), (i, j) in zip(bounds, cut, idx, strict=True) if j > i]
    whole = profile(s, e, 0, len(batch)) if composite else None
    rows = grid.row_index(batch.price, tick, tpr)
    poc_rows = np.array([p.first_row + p.poc_idx for _, _, p in profiles], dtype=np.int64)
    touched = naked_pocs(batch.time, rows, np.array([b for _, b, _ in profiles], dtype=np.int64), poc_rows)
    sessions = [Session(a, b, p, int(r), t) for (a, b, p), r, t in zip(profiles, poc_rows, touched, strict=True)]
    return SessionsResult("sessions", float(tick), float(row_size), session_length, session_start, s, e,
                          sessions, whole)

