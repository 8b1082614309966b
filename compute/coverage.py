"""What a result was computed from: the trade-id range, the trade count, the gaps inside it and a hash.

Binance numbers the aggregate trades of a symbol consecutively (aggTrade ``a``; the REST ``aggTrades`` and the
data.binance.vision archives use the same ids; ``shared/reference/orderflow-and-binance.md``), so the trades of
a range are complete exactly when their ids run from the first to the last without a hole. A hole is a
**gap**: ids that the feed never delivered and gap filling could not fetch. :func:`coverage` states this for any
set of trades, from the trades themselves, and fingerprints them (SHA-256 over the trades' columns in id order),
so two results computed from the same trades carry the same hash, and a notebook can check it recomputed the
page's numbers from the very same trades.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .result import as_batch

__all__ = ["Coverage", "MAX_GAPS_LISTED", "coverage", "rows_over_gaps"]

#: Gaps listed one by one (the count and the missing ids always cover all of them).
MAX_GAPS_LISTED = 20


@dataclass(frozen=True)
class Coverage:
    """Completeness of a set of trades.

    ``first_id``/``last_id``: the smallest and largest trade id (None without trades); ``trades``: how many;
    ``missing``: ids absent between them; ``gaps``: the first :data:`MAX_GAPS_LISTED` holes as
    ``(first missing id, last missing id, time before, time after)`` (UTC ms of the trades around the hole);
    ``gap_count``: all holes; ``sha256``: hex digest of the trades (see :func:`coverage`).
    """

    first_id: int | None
    last_id: int | None
    trades: int
    missing: int
    gap_count: int
    sha256: str
    gaps: list = field(default_factory=list)
    #: Prices of the trades around each listed gap (low, high): the price band the missing trades crossed.
    gap_prices: list = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.missing == 0

    def to_dict(self) -> dict:
        """JSON-ready: every field, ``complete`` included."""
        return {"first_id": self.first_id, "last_id": self.last_id, "trades": self.trades, "missing": self.missing,
                "gap_count": self.gap_count, "complete": self.complete, "sha256": self.sha256,
                "gaps": [{"first_missing_id": a, "last_missing_id": b, "time_before": t0, "time_after": t1}
                         for a, b, t0, t1 in self.gaps]}

    def summary(self) -> str:
        """One line for a footer: ``ids 1..69,239 · complete`` or ``ids ... · 2 gaps, 57 ids missing``."""
        if self.trades == 0:
            return "no trades"
        state = "complete" if self.complete else f"{self.gap_count} gap{'s' if self.gap_count > 1 else ''}, " \
                                                 f"{self.missing:,} ids missing"
        return f"ids {self.first_id:,}..{self.last_id:,} · {state}" + (f" · {self.sha256[:12]}" if self.sha256 else "")


def coverage(trades, digest: bool = True) -> Coverage:
    """The :class:`Coverage` of ``trades`` (TradeBatch or DataFrame: trade_id int64, time int64 UTC ms, price,
    qty float64, is_buyer_maker bool; any order).

    The hash is SHA-256 over, in trade-id order, the bytes of the int64 ids, int64 times, float64 prices,
    float64 quantities and the bool sides (little-endian, one column after the other); ``digest=False`` leaves
    it out (``sha256`` is ``""``: the id range and gaps alone cost one pass over the ids).
    """
    b = as_batch(trades)
    n = len(b)
    if n == 0:
        return Coverage(None, None, 0, 0, 0, hashlib.sha256().hexdigest())
    ids = np.asarray(b.trade_id, dtype=np.int64)
    order = None if np.all(ids[1:] > ids[:-1]) else np.argsort(ids, kind="stable")
    cols = [np.asarray(c) for c in (ids, b.time, b.price, b.qty, b.is_buyer_maker)]
    if order is not None:
        cols = [c[order] for c in cols]
    ids = cols[0]
    h = hashlib.sha256()
    if digest:
        for c, dt in zip(cols, ("<i8", "<i8", "<f8", "<f8", "?"), strict=True):
            h.update(np.ascontiguousarray(c, dtype=dt).tobytes())
    step = np.diff(ids)
    holes = np.flatnonzero(step > 1)
    missing = int((step[holes] - 1).sum()) if len(holes) else 0
    listed = holes[:MAX_GAPS_LISTED]
    gaps = [(int(ids[i] + 1), int(ids[i + 1] - 1), int(cols[1][i]), int(cols[1][i + 1])) for i in listed]
    prices = [(float(min(cols[2][i], cols[2][i + 1])), float(max(cols[2][i], cols[2][i + 1]))) for i in listed]
    return Coverage(int(ids[0]), int(ids[-1]), n, missing, len(holes), h.hexdigest() if digest else "", gaps, prices)


def rows_over_gaps(price_low: np.ndarray, price_high: np.ndarray, cov: Coverage) -> np.ndarray:
    """Which profile rows may miss volume: bool (R,) for rows ``[price_low, price_high)`` (float64 (R,), quote
    currency) that meet the price band of a listed gap of ``cov``.

    The missing trades of a gap are unknown, but the market went from the price of the trade before the gap to
    the price of the trade after it, so they traded somewhere in between (at least at those two prices'
    rows): every row meeting ``[low, high]`` of that pair may be short of volume.
    """
    lo, hi = np.asarray(price_low, dtype=np.float64), np.asarray(price_high, dtype=np.float64)
    out = np.zeros(len(lo), dtype=bool)
    for a, b in cov.gap_prices:
        out |= (hi > a) & (lo <= b)
    return out
