"""Anchored and session VWAP with standard-deviation bands.

Definitions (issue 17; the volume-weighted average price as exchanges and TradingView's *Anchored VWAP* define
it, the bands as its volume-weighted standard deviation):

* **anchored VWAP** from an anchor time ``a`` to ``t``: ``Σ p·q / Σ q`` over the trades with ``a ≤ time < t``
  (``p`` price in quote currency, ``q`` quantity in base asset);
* its **standard deviation** ``σ`` with ``σ² = Σ q·(p − VWAP)² / Σ q`` over the same trades, and its **bands**
  ``VWAP ± k·σ`` (default ``k`` = 1, 2, 3);
* the **session VWAP** is anchored at each session's start (:mod:`compute.sessions`): it starts afresh at
  every session boundary.

Sums are taken of prices shifted by a reference price of the range (its first trade's), ``x = p − p0``:
``Σq``, ``Σq·x`` and ``Σq·x²`` stay small, so ``σ² = Σq·x²/Σq − (Σq·x/Σq)²`` loses no precision to
cancellation. The series is sampled at each interval close: the value at ``t`` covers ``[anchor, t)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .result import as_batch, empty_range_error, time_bounds
from .sessions import session_bounds

__all__ = ["DEFAULT_BANDS", "VwapResult", "vwap"]

#: Default band multipliers (standard deviations).
DEFAULT_BANDS = (1.0, 2.0, 3.0)


@dataclass(frozen=True)
class VwapResult:
    """A VWAP series and its final values.

    ``time`` int64 (K,): sample times (UTC ms; each interval's close, the last one ``end``); ``vwap`` and ``sd``
    float64 (K,), quote currency, NaN before the first trade of the anchor's period; ``anchor`` int64 (K,): the
    anchor each sample is measured from (the range's start, or its session's start). ``final`` holds the last
    sample's ``vwap``, ``sd``, the ``bands`` ``{k: (lower, upper)}``, ``trades`` and ``volume`` (base asset) of
    the last anchor's period.
    """

    kind: str
    start: int
    end: int
    interval_ms: int
    bands: tuple
    session_length: str | None
    session_start: str
    time: np.ndarray
    anchor: np.ndarray
    vwap: np.ndarray
    sd: np.ndarray
    final: dict = field(default_factory=dict)

    def band(self, k: float) -> tuple[np.ndarray, np.ndarray]:
        """The ``k``-σ band series ``(lower, upper)``, float64 (K,) each."""
        return self.vwap - k * self.sd, self.vwap + k * self.sd

    def to_dict(self, series: bool = True) -> dict:
        """JSON-ready: ``vwap``, ``sd``, ``bands`` ``{"k": [lower, upper]}``, ``trades``, ``volume``, ``anchor``, the
        parameters and (with ``series``) the series ``time``, ``anchor``, ``vwap``, ``sd`` (NaN as None)."""
        def nan_none(a):
            return [float(v) if np.isfinite(v) else None for v in a]
        f = self.final
        out = {"kind": self.kind, "start": self.start, "end": self.end, "vwap": f["vwap"], "sd": f["sd"],
               "bands": {f"{k:g}": list(v) for k, v in f["bands"].items()}, "trades": f["trades"],
               "volume": f["volume"], "anchor": f["anchor"], "interval_ms": self.interval_ms,
               "session_length": self.session_length, "session_start": self.session_start}
        if series:
            out["series"] = {"time": self.time.tolist(), "anchor": self.anchor.tolist(),
                             "vwap": nan_none(self.vwap), "sd": nan_none(self.sd)}
        return out


def _sums(time: np.ndarray, x: np.ndarray, q: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per-interval ``Σq, Σq·x, Σq·x²``: float64 (3, len(edges) - 1) for the trades of ``[edges[i], edges[i+1])``.

    Every trade must lie in ``[edges[0], edges[-1])``. Each interval is summed on its own (no differences of
    running totals, which would lose the small sums' digits to the large ones)."""
    idx = np.searchsorted(time, edges)
    out = np.zeros((3, len(edges) - 1))
    full = idx[1:] > idx[:-1]
    if full.any():
        qx = q * x
        for r, v in enumerate((q, qx, qx * x)):
            out[r, full] = np.add.reduceat(v, idx[:-1][full])  # empty intervals skipped: segments end at the next
    return out


def vwap(trades, tick: float | None = None, start: int | None = None, end: int | None = None,
         bands=DEFAULT_BANDS, interval_ms: int = 60_000, session_length: str | None = None,
         session_start: str = "00:00") -> VwapResult:
    """The VWAP of ``[start, end)`` anchored at ``start`` (or at each session's start), with σ bands.

    Parameters
    ----------
    trades : TradeBatch or DataFrame
        N trades (time int64 UTC ms, price float64 quote currency, qty float64 base asset); any order.
    tick : float, optional
        Unused (a VWAP has no row grid); accepted so every kind is called alike.
    start, end : int or None
        The anchor (UTC ms) and the end (exclusive); defaults: the trades' range.
    bands : sequence of float
        Band multipliers ``k`` (each > 0).
    interval_ms : int
        Sampling interval of the series (ms, > 0); samples at the interval closes aligned on the epoch.
    session_length, session_start : str or None, str
        With a session length (``"1d"``, ...), the session VWAP: re-anchored at each session's start.

    Returns
    -------
    VwapResult

    Raises
    ------
    ValueError
        ``end <= start``, no trades in the range (``"no trades in range"``), a bad interval, band or session.
    """
    b = as_batch(trades)
    s, e = time_bounds(b.time, start, end)
    if e <= s:
        raise ValueError(f"'to' must be after 'from' (got {s} and {e})")
    interval_ms = int(interval_ms)
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be > 0, got {interval_ms}")
    ks = tuple(float(k) for k in bands)
    if any(not (np.isfinite(k) and k > 0) for k in ks):
        raise ValueError(f"bands must be positive numbers of standard deviations, got {list(bands)}")
    if len(b) and np.any(np.diff(b.time) < 0):
        b = b.take(np.argsort(b.time, kind="stable"))
    b = b.time_slice(s, e)
    if not len(b):
        raise empty_range_error(s, e)
    anchors = (np.array([s], dtype=np.int64) if session_length is None
               else np.maximum(session_bounds(s, e, session_length, session_start)[:, 0], s))
    closes = np.arange((s // interval_ms + 1) * interval_ms, e, interval_ms, dtype=np.int64)
    times = np.union1d(np.append(closes, e), anchors[1:])  # a sample at every close, session start and the end
    edges = np.concatenate([[s], times])
    x = b.price - float(b.price[0])
    per = _sums(b.time, x, b.qty, edges)  # sums of [edges[i], edges[i+1])
    which = np.searchsorted(anchors, times - 1, "right") - 1  # the anchor period of each sample
    out_v, out_sd = np.full(len(times), np.nan), np.full(len(times), np.nan)
    for a in range(len(anchors)):
        sel = np.flatnonzero(which == a)
        if not len(sel):
            continue
        cum = np.cumsum(per[:, sel], axis=1)  # from this period's anchor
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = cum[1] / cum[0]
            var = np.maximum(cum[2] / cum[0] - mean * mean, 0.0)
        out_v[sel] = float(b.price[0]) + mean
        out_sd[sel] = np.sqrt(var)
    last = anchors[which[-1]]
    tail = b.time_slice(int(last), e)
    v, sd = float(out_v[-1]), float(out_sd[-1])
    final = {"vwap": v, "sd": sd, "bands": {k: (v - k * sd, v + k * sd) for k in ks},
             "trades": len(tail), "volume": round(float(tail.qty.sum()), 8), "anchor": int(last)}
    return VwapResult("vwap", s, e, interval_ms, ks, session_length, session_start, times, anchors[which],
                      out_v, out_sd, final)
