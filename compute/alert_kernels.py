"""numba kernels of :mod:`compute.alerts`: per-trade developing session levels, the first stacked imbalance
of each candle per trade prefix, and the cooldown filter. One pass each, no per-trade Python.

Quantities are the exact integers of :func:`compute.result.qty_to_int` (units of ``10**-8`` base asset);
rows are :func:`compute.grid.row_index`. Compiled on first use with ``cache=True``. Pure: no I/O.
"""

from __future__ import annotations

import numba
import numpy as np

from .kernels import _ceil_frac

#: Marks "no value" in the int64 outputs.
NO_ROW = np.iinfo(np.int64).min


@numba.njit(cache=True, nogil=True)
def _poc_scan(vol, glo, ghi, best):  # pragma: no cover - compiled
    """The POC among rows ``glo..ghi`` of ``vol`` holding ``best``: nearest the middle, then the lower
    (:func:`compute.value_area.poc_index`)."""
    p, dist = -1, 0
    for i in range(glo, ghi + 1):
        if vol[i] == best:
            d = abs(2 * (i - glo) - (ghi - glo))
            if p < 0 or d < dist:
                p, dist = i, d
    return p


@numba.njit(cache=True, nogil=True)
def _va_walk(vol, glo, ghi, p, total, va_num, va_den):  # pragma: no cover - compiled
    """Single-row value-area walk from ``p`` within ``glo..ghi`` (:func:`compute.kernels.profile_levels`)."""
    target = _ceil_frac(total, va_num, va_den)
    lo = hi = p
    acc = vol[p]
    while acc < target:
        has_up, has_dn = hi < ghi, lo > glo
        if not (has_up or has_dn):
            break
        if has_up and (not has_dn or vol[hi + 1] >= vol[lo - 1]):
            hi += 1
            acc += vol[hi]
        else:
            lo -= 1
            acc += vol[lo]
    return lo, hi


@numba.njit(cache=True, nogil=True)
def developing_rows(rows, qint, bounds, want, with_va, va_num, va_den):  # pragma: no cover - compiled
    """Developing POC and value-area rows after each wanted trade, per session.

    ``rows``/``qint`` int64 (N,): the trades' rows and exact quantities in trade order; ``bounds`` int64 (S+1,):
    session ``s`` holds trades ``bounds[s]:bounds[s+1]``; ``want`` bool (N,): the trades after which the levels
    are needed. Returns ``(poc, va_lo, va_hi)`` int64 (N,): absolute rows of :func:`compute.profile.volume_profile`
    of the session's trades up to and including trade j (dense grid from the lowest to the highest row traded so
    far), :data:`NO_ROW` where not wanted (``va_*`` only with ``with_va``).
    """
    n = len(rows)
    poc = np.full(n, NO_ROW, np.int64)
    va_lo = np.full(n, NO_ROW, np.int64)
    va_hi = np.full(n, NO_ROW, np.int64)
    for s in range(len(bounds) - 1):
        a, b = bounds[s], bounds[s + 1]
        if a == b:
            continue
        rmin, rmax = rows[a], rows[a]
        for j in range(a, b):
            rmin, rmax = min(rmin, rows[j]), max(rmax, rows[j])
        vol = np.zeros(rmax - rmin + 1, np.int64)
        glo = ghi = rows[a] - rmin
        best, cnt, p, total = np.int64(-1), 0, -1, np.int64(0)
        for j in range(a, b):
            r, q = rows[j] - rmin, qint[j]
            if r < glo:
                cnt += (glo - r) if best == 0 else 0  # new empty rows tie with an all-zero maximum
                glo = r
            elif r > ghi:
                cnt += (r - ghi) if best == 0 else 0
                ghi = r
            v = vol[r] + q
            vol[r] = v
            total += q
            if v > best:
                best, cnt, p = v, 1, r
            elif v == best and q > 0:
                cnt += 1
            if want[j]:
                if cnt > 1:
                    p = _poc_scan(vol, glo, ghi, best)
                poc[j] = p + rmin
                if with_va:
                    lo, hi = _va_walk(vol, glo, ghi, p, total, va_num, va_den)
                    va_lo[j], va_hi[j] = lo + rmin, hi + rmin
    return poc, va_lo, va_hi


@numba.njit(cache=True, nogil=True)
def developing_vwap(price, qty, bounds, want):  # pragma: no cover - compiled
    """Session VWAP after each wanted trade: ``p0 + Σq·(p − p0) / Σq`` over the session's trades up to and
    including j, ``p0`` the session's first price (:mod:`compute.vwap`). float64 (N,), NaN where not wanted."""
    out = np.full(len(price), np.nan)
    for s in range(len(bounds) - 1):
        a, b = bounds[s], bounds[s + 1]
        if a == b:
            continue
        p0, sq, sqx = price[a], 0.0, 0.0
        for j in range(a, b):
            sq += qty[j]
            sqx += qty[j] * (price[j] - p0)
            if want[j]:
                out[j] = p0 + sqx / sq
    return out


@numba.njit(cache=True, nogil=True)
def naked_levels(rows, bounds, poc_rows, first):  # pragma: no cover - compiled
    """For trades ``first..N-1``: the row of the most recent prior session's POC untouched by the trades before.

    ``bounds`` int64 (S+1,) sessions; ``poc_rows`` int64 (S,) each session's final POC row. A POC is touched by
    the first trade at or after its session's end whose row equals it (:func:`compute.sessions.naked_pocs`).
    Returns int64 (N,), :data:`NO_ROW` where none (or before ``first``).
    """
    n, ns = len(rows), len(poc_rows)
    touch = np.full(ns, n, np.int64)
    for k in range(ns):
        for j in range(bounds[k + 1], n):
            if rows[j] == poc_rows[k]:
                touch[k] = j
                break
    out = np.full(n, NO_ROW, np.int64)
    s = 0
    for i in range(first, n):
        while bounds[s + 1] <= i:
            s += 1
        for k in range(s - 1, -1, -1):
            if touch[k] >= i:  # not touched by trades 0..i-1
                out[i] = poc_rows[k]
                break
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _pair_flags(ask, bid, fb, fs, p, num, den, minv, ignore_zeros):  # pragma: no cover - compiled
    """Flags of the row pair (p, p + 1): buy at p + 1, sell at p (:func:`compute.cells.imbalances`)."""
    au, bd = ask[p + 1], bid[p]
    fb[p + 1] = au > 0 and au >= minv and au * den >= bd * num and (not ignore_zeros or bd > 0)
    fs[p] = bd > 0 and bd >= minv and bd * den >= au * num and (not ignore_zeros or au > 0)


@numba.njit(cache=True, nogil=True)
def _run_through(flag, lo, hi, glo, ghi):  # pragma: no cover - compiled
    """The longest run of flagged rows (within ``glo..ghi``) that meets rows ``lo..hi``."""
    best = 0
    for x in range(max(lo, glo), min(hi, ghi) + 1):
        if flag[x]:
            a = x
            while a > glo and flag[a - 1]:
                a -= 1
            b = x
            while b < ghi and flag[b + 1]:
                b += 1
            best = max(best, b - a + 1)
    return best


@numba.njit(cache=True, nogil=True)
def first_stacks(rows, ask, bid, bounds, first, num, den, minv, ignore_zeros, min_stack, mode):  # pragma: no cover
    """For each candle, the first trade after which its footprint holds a stack of ≥ ``min_stack`` rows.

    ``rows`` int64 (N,); ``ask``/``bid`` int64 (N,): each trade's exact taker-buy / taker-sell quantity;
    ``bounds`` int64 (C+1,) candles. The footprint of the candle's trades up to j (:func:`compute.cells.imbalances`
    and ``stacked_zones`` on its dense grid) is kept incrementally: a trade changes its row's two pairs, a grid
    extension adds pairs. ``mode`` 1 buy, 2 sell, 3 either. Returns ``(index, length)`` int64 (K,) for the
    candidates at ``j >= first``.
    """
    out_i = np.empty(len(bounds), np.int64)
    out_v = np.empty(len(bounds), np.int64)
    k = 0
    for c in range(len(bounds) - 1):
        a, b = bounds[c], bounds[c + 1]
        rmin, rmax = rows[a], rows[a]
        for j in range(a, b):
            rmin, rmax = min(rmin, rows[j]), max(rmax, rows[j])
        m = rmax - rmin + 1
        av, bv = np.zeros(m, np.int64), np.zeros(m, np.int64)
        fb, fs = np.zeros(m, np.bool_), np.zeros(m, np.bool_)
        glo = ghi = rows[a] - rmin
        for j in range(a, b):
            r = rows[j] - rmin
            av[r] += ask[j]
            bv[r] += bid[j]
            pa, pb = r - 1, r
            if r < glo:
                pb, glo = glo - 1, r
            elif r > ghi:
                pa, ghi = ghi, r
            for p in range(max(pa, glo), min(pb, ghi - 1) + 1):
                _pair_flags(av, bv, fb, fs, p, num, den, minv, ignore_zeros)
            best = 0
            if mode & 1:
                best = _run_through(fb, pa, pb + 1, glo, ghi)
            if mode & 2:
                best = max(best, _run_through(fs, pa, pb + 1, glo, ghi))
            if best >= min_stack:
                if j >= first:
                    out_i[k], out_v[k] = j, best
                    k += 1
                break
    return out_i[:k], out_v[:k]


@numba.njit(cache=True, nogil=True)
def cooldown_keep(starts, times, last, has_last, cooldown_ms):  # pragma: no cover - compiled
    """Greedy cooldown per group: keep a candidate unless it comes less than ``cooldown_ms`` after the last kept
    one (or the group's ``last`` firing, when ``has_last``; never when ``cooldown_ms`` <= 0). ``starts`` int64
    (G+1,) group bounds over ``times`` int64 (K,) ascending per group; ``last`` int64 (G,), ``has_last`` bool (G,), ``cooldown_ms`` float64 (G,).
    Returns bool (K,)."""
    keep = np.zeros(len(times), np.bool_)
    for g in range(len(starts) - 1):
        lf, have, cd = last[g], has_last[g], cooldown_ms[g]
        for i in range(starts[g], starts[g + 1]):
            if have and cd > 0 and times[i] - lf < cd:
                continue
            keep[i] = True
            lf, have = times[i], True
    return keep
