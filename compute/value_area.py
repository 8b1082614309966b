"""POC, value area and percentile rows of a profile on its dense row grid: pure integer numpy.

Definitions (sources: ``shared/reference/orderflow-and-binance.md`` b3 POC, b4 value area,
b9 percentile lines; restated in :mod:`compute.result`): the POC is the row of the largest
measure (ties: nearest the middle of the grid, then the lower row); the value area grows
from the POC one row (``single``, CBOT) or two rows (``dual``, Dalton) at a time until it
holds ``fraction`` of the total; a percentile row is the first from the bottom whose
cumulative volume reaches ``p`` of the total. Every comparison is exact (integers, or
fractions for the target).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

__all__ = ["VA_METHODS", "percentile_indices", "poc_index", "value_area_bounds"]

#: Value-area expansion methods.
VA_METHODS = ("single", "dual")


def poc_index(volume: np.ndarray) -> int:
    """Index of the POC row in a dense row array.

    ``volume``: shape (R,), R >= 1, any real dtype (volume, weighted volume or TPO counts).
    The largest value wins; ties go to the row nearest the middle of the grid
    (index ``(R - 1) / 2``), then to the lower row (reference b3, thinkorswim rule).

    Raises ValueError if ``volume`` is empty.
    """
    v = np.asarray(volume)
    if v.ndim != 1 or not len(v):
        raise ValueError("poc_index needs a non-empty 1-D array")
    idx = np.flatnonzero(v == v.max())
    if len(idx) == 1:
        return int(idx[0])
    dist = np.abs(2 * idx - (len(v) - 1))
    return int(idx[np.argmin(dist)])  # argmin takes the first (lower) of equal distances


def _float_at_least(q: Fraction) -> float:
    """The smallest float64 >= the rational ``q``."""
    f = float(q)
    if Fraction(f) < q:
        f = float(np.nextafter(f, np.inf))
    return f


@functools.lru_cache(maxsize=256)
def _decimal(x: float) -> Fraction:
    """The decimal a float prints as, exactly (0.7 -> 7/10)."""
    return Fraction(repr(x))


def _target_reached(acc: np.ndarray, total, fraction: float) -> int:
    """First index i with ``acc[i] >= fraction * total`` (acc non-decreasing).

    Exact: ``fraction`` is taken as the decimal it prints as (0.7 is 7/10) and the
    product is compared without rounding, for integer and float arrays alike.
    """
    return int(np.searchsorted(acc, _target(acc.dtype, total, fraction), side="left"))


def _pairs(a: np.ndarray) -> np.ndarray:
    """Sums of consecutive pairs (a lone last element stays alone)."""
    if len(a) % 2:
        a = np.append(a, a.dtype.type(0))
    return a[0::2] + a[1::2]


def value_area_bounds(volume: np.ndarray, poc_idx: int, fraction: float = 0.7, method: str = "single") -> tuple[int, int]:
    """Inclusive row indices ``(lo, hi)`` of the value area around ``poc_idx``.

    ``volume``: shape (R,), non-negative, int or float. The accumulated sum is compared
    exactly against ``fraction * total``, ``fraction`` taken as the decimal it prints as
    (0.7 is 7/10, not the binary float just below it).
    The expansion (reference b4) is described in the module docstring; it stops at
    the first step where the accumulated value reaches the target. Vectorised:
    the greedy "larger head first" walk equals a stable merge (ties to above) of the
    running minima of the two sides, so the whole walk is a merge plus a cumsum.

    Raises ValueError for an unknown ``method`` or an out-of-range ``poc_idx``.
    """
    v = np.asarray(volume)
    n = len(v)
    if not 0 <= poc_idx < n:
        raise ValueError(f"poc_idx {poc_idx} outside 0..{n - 1}")
    if method not in VA_METHODS:
        raise ValueError(f"value_area_method must be one of {VA_METHODS}, got {method!r}")
    total = v.sum()
    if n <= _VA_LOOP_MAX:
        return _va_loop(v.tolist(), poc_idx, _target(v.dtype, total, fraction), method == "dual")
    return _va_vectorized(v, poc_idx, total, fraction, method)


#: Up to this many rows the plain walk is faster than the vectorised merge (same answer).
_VA_LOOP_MAX = 384


def _target(dtype, total, fraction: float):
    """The value the accumulated sum must reach: an int for integer arrays, the smallest float >= it otherwise."""
    f = _decimal(float(fraction))
    if np.issubdtype(dtype, np.integer):
        return -(-f.numerator * int(total) // f.denominator)  # ceil(f * total), in integers
    return _float_at_least(f * Fraction(float(total)))


def _va_loop(vals: list, p: int, target, dual: bool) -> tuple[int, int]:
    """The value-area walk, literally (acc and pair sums in the same order as the vectorised path)."""
    n = len(vals)
    lo = hi = p
    acc = vals[p]
    while acc < target:
        has_up, has_dn = hi + 1 < n, lo > 0
        if not (has_up or has_dn):
            break
        if dual:
            su = (vals[hi + 1] + (vals[hi + 2] if hi + 2 < n else 0)) if has_up else None
            sd = (vals[lo - 1] + (vals[lo - 2] if lo >= 2 else 0)) if has_dn else None
            ku, kd = min(2, n - 1 - hi), min(2, lo)
        else:
            su = vals[hi + 1] if has_up else None
            sd = vals[lo - 1] if has_dn else None
            ku = kd = 1
        if has_up and (not has_dn or su >= sd):
            acc += su
            hi += ku
        else:
            acc += sd
            lo -= kd
    return lo, hi


def _va_vectorized(v: np.ndarray, poc_idx: int, total, fraction: float, method: str) -> tuple[int, int]:
    """The value-area walk as a merge of running minima plus one cumsum (see value_area_bounds)."""
    if _target_reached(np.asarray([v[poc_idx]]), total, fraction) == 0:
        return poc_idx, poc_idx
    above, below = v[poc_idx + 1 :], v[:poc_idx][::-1]
    if method == "dual":
        a, b = _pairs(above), _pairs(below)
    else:
        a, b = above, below
    am, bm = np.minimum.accumulate(a) if len(a) else a, np.minimum.accumulate(b) if len(b) else b
    # merged position of each step: above element i goes after the below elements strictly larger.
    pos_a = np.arange(len(a)) + np.searchsorted(-bm, -am, side="left")
    pos_b = np.arange(len(b)) + np.searchsorted(-am, -bm, side="right")
    steps = np.empty(len(a) + len(b) + 1, dtype=v.dtype)
    steps[0] = v[poc_idx]
    steps[1 + pos_a], steps[1 + pos_b] = a, b
    acc = np.cumsum(steps)[1:]  # summed from the POC on, in walk order
    k = _target_reached(acc, total, fraction)
    k = min(k, len(acc) - 1)  # float rounding can leave the sum a hair short: everything is in.
    n_a = int(np.searchsorted(pos_a, k, side="right"))
    n_b = int(np.searchsorted(pos_b, k, side="right"))
    if method == "dual":
        n_a, n_b = min(2 * n_a, len(above)), min(2 * n_b, len(below))
    return poc_idx - n_b, poc_idx + n_a


def percentile_indices(volume: np.ndarray, percentiles) -> list[int]:
    """For each p, the index of the first row whose cumulative volume reaches ``p * total`` (exact for ints)."""
    v = np.asarray(volume)
    acc = np.cumsum(v)
    total = acc[-1] if len(acc) else 0
    return [min(_target_reached(acc, total, p), len(v) - 1) for p in percentiles]


# -- the result ---------------------------------------------------------------------------
