"""numba kernels of the hot paths: one fused pass instead of a chain of full-size numpy temporaries.

Each kernel computes exactly what the numpy reference it replaces computes (same IEEE
float64 operations in the same order per element, integer sums), so results are identical
to the digit; the numpy code stays the reference and the error path (a kernel never raises:
it reports a problem and the caller re-runs the reference, which raises the documented
error).

* :func:`qty_check` + :func:`bin_fused` — :func:`compute.profile.volume_profile`'s
  ``qty_to_int`` + ``grid.row_index`` + ``result.bin_rows``: a vectorised check pass over the
  quantities and one scatter pass (the row span comes from the lowest and highest price: the
  row is monotonic in the price);
  :func:`is_sorted` decides slice or mask.
* :func:`scatter_sums` / :func:`scatter_raw` — adding sparse per-tick sums and raw
  (tick, signed qty) trades into dense per-tick arrays (the incremental store's combine).

Compiled on first use with ``cache=True`` (the machine code is kept in ``__pycache__``, so
a new process loads it instead of compiling again). Pure: no I/O.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def is_sorted(time):  # pragma: no cover - compiled
    """True when ``time`` (int64, (N,)) is ascending (a vectorised count of descents, no early exit)."""
    down = 0
    for i in range(1, len(time)):
        down += np.int64(time[i] < time[i - 1])
    return down == 0


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def qty_check(qty, scale):  # pragma: no cover - compiled
    """The checks of :func:`compute.result.qty_to_int` in one vectorised pass over ``qty`` (float64 (N,), base asset).

    Returns ``(bad, total)``: how many quantities are negative, not finite, at least 4.6e18
    units or have more decimals than ``scale`` holds (off by more than 1e-3 of a unit), and
    the total of the good ``rint(qty * scale)`` as a float (summed in any order: it is only
    compared with a guard below 2**62).
    """
    fs = np.float64(scale)
    bad = 0
    total = 0.0
    for i in range(len(qty)):
        x = qty[i] * fs
        r = np.rint(x)
        good = (abs(x - r) <= 1e-3) & (r >= 0.0) & (r < 4.6e18)  # NaN fails every comparison
        bad += np.int64(not good)
        total += r if good else 0.0
    return bad, total


@numba.njit(cache=True, nogil=True, inline="always")
def _add(vol, buy, cnt, k, q, ibm):  # pragma: no cover - compiled
    vol[k] += q
    cnt[k] += 1
    buy[k] += q & (np.int64(ibm) - 1)  # q when a taker buy (ibm 0), else 0: no branch


@numba.njit(cache=True, nogil=True)
def bin_fused(price, qty, ibm, tick, tpr, scale, r0, size, lanes):  # pragma: no cover - compiled
    """One scatter pass: exact quantity and row of each trade, summed per row.

    ``price`` float64 (N,) quote currency, finite; ``qty`` float64 (N,) base asset, passed by
    :func:`qty_check`; ``ibm`` uint8 (N,) (0 = taker buy). Row = ``floor(rint(price / tick) / tpr)``
    (:func:`compute.grid.row_index`), which must lie in ``[r0, r0 + size)``; quantity =
    ``rint(qty * scale)`` (:func:`compute.result.qty_to_int`). ``lanes`` (a power of 2)
    interleaved copies of each row's sums break the store-to-load chains of runs of trades at
    one row.

    Returns ``(volume, buy, trades)``: int64 arrays of shape (size * lanes,), row-major by row
    then lane (sum over the lanes for the per-row sums).
    """
    fs = np.float64(scale)
    m = size * lanes
    vol, buy, cnt = np.zeros(m, np.int64), np.zeros(m, np.int64), np.zeros(m, np.int64)
    b0 = r0 * tpr
    mask = lanes - 1
    if size * tpr < 2**31:  # tick offsets fit uint32: the cheaper division
        utpr = np.uint32(tpr)
        for i in range(len(price)):
            off = np.int64(np.rint(price[i] / tick)) - b0
            k = np.int64(np.uint32(off) // utpr) * lanes + (i & mask)
            _add(vol, buy, cnt, k, np.int64(np.rint(qty[i] * fs)), ibm[i])
    else:
        for i in range(len(price)):
            off = np.int64(np.rint(price[i] / tick)) - b0
            k = (off // tpr) * lanes + (i & mask)
            _add(vol, buy, cnt, k, np.int64(np.rint(qty[i] * fs)), ibm[i])
    return vol, buy, cnt


@numba.njit(cache=True, nogil=True)
def scatter_sums(vol, buy, cnt, idx, v, b, c):  # pragma: no cover - compiled
    """``vol[idx] += v``, ``buy[idx] += b``, ``cnt[idx] += c`` for repeated indices too (``np.add.at``).

    All int64 except ``c`` (int32 or int64); ``idx`` (K,) indexes the dense (S,) arrays.
    """
    for k in range(len(idx)):
        j = idx[k]
        vol[j] += v[k]
        buy[j] += b[k]
        cnt[j] += c[k]


@numba.njit(cache=True, nogil=True)
def scatter_raw(vol, buy, cnt, tick, sq, base):  # pragma: no cover - compiled
    """Add raw trades: per trade ``vol += |sq|``, ``buy += sq`` if ``sq > 0`` (taker buy), ``cnt += 1``.

    ``tick`` int64 (K,) tick index, ``sq`` int64 (K,) signed exact quantity; slot ``tick - base``.
    """
    for k in range(len(tick)):
        j = tick[k] - base
        q = sq[k]
        if q > 0:
            vol[j] += q
            buy[j] += q
        else:
            vol[j] -= q
        cnt[j] += 1


def divider(tpr: int) -> tuple[int, int]:
    """Multiplier and shift with ``(n * m) >> s == n // tpr`` for every ``0 <= n < 2**31`` (``tpr`` >= 1).

    Granlund & Montgomery (1994), theorem 4.2 with N = 31: ``l = ceil(log2 tpr)``,
    ``m = ceil(2**(31 + l) / tpr)`` (< 2**32, so ``n * m`` < 2**63 fits int64), ``s = 31 + l``.
    """
    tpr = int(tpr)
    if tpr < 1:
        raise ValueError(f"tpr must be >= 1, got {tpr}")
    lg = (tpr - 1).bit_length()
    s = 31 + lg
    return -(-(1 << s) // tpr), s


@numba.njit(cache=True, nogil=True)
def scatter_raw_rows(vol, buy, cnt, tick, sq, base, m, s):  # pragma: no cover - compiled
    """Add raw trades into dense per-row arrays: row slot ``(tick - base) // tpr`` as ``((tick - base) * m) >> s``.

    ``(m, s)`` from :func:`divider`; ``0 <= tick - base < 2**31``. Per trade ``vol += |sq|``,
    ``buy += sq`` if ``sq > 0`` (taker buy), ``cnt += 1``; ``tick``, ``sq`` int64 (K,).
    """
    for k in range(len(tick)):
        j = ((tick[k] - base) * m) >> s
        q = sq[k]
        vol[j] += abs(q)
        buy[j] += q & ~(q >> 63)  # q when positive, else 0 (no branch)
        cnt[j] += 1


@numba.njit(cache=True, nogil=True)
def fold_dense(lo, vol, buy, cnt, tpr):  # pragma: no cover - compiled
    """Per-tick dense sums starting at tick ``lo`` (int64/int32 (S,)) summed into rows of ``tpr`` ticks.

    Row = ``floor(tick / tpr)``. Returns ``(first_row, vol, buy, cnt)``, int64 arrays (R,).
    """
    r0 = lo // tpr
    k = lo - r0 * tpr  # position of the first tick inside its row
    n_rows = (lo + len(vol) - 1) // tpr - r0 + 1
    ov, ob, oc = np.zeros(n_rows, np.int64), np.zeros(n_rows, np.int64), np.zeros(n_rows, np.int64)
    r = 0
    for i in range(len(vol)):
        ov[r] += vol[i]
        ob[r] += buy[i]
        oc[r] += cnt[i]
        k += 1
        if k == tpr:
            k = 0
            r += 1
    return r0, ov, ob, oc


@numba.njit(cache=True, nogil=True)
def fold_sparse(ticks, vol, buy, cnt, tpr):  # pragma: no cover - compiled
    """Sparse per-tick sums (ticks ascending, int64 (K,)) summed into sparse rows of ``tpr`` ticks.

    Returns ``(rows, vol, buy, cnt)``: ascending row indices and their int64 sums, each (K',).
    """
    n = len(ticks)
    rows = np.empty(n, np.int64)
    ov, ob, oc = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    j = -1
    last = np.int64(0)
    for i in range(n):
        r = ticks[i] // tpr
        if j < 0 or r != last:
            j += 1
            rows[j] = r
            last = r
        ov[j] += vol[i]
        ob[j] += buy[i]
        oc[j] += cnt[i]
    return rows[: j + 1].copy(), ov[: j + 1].copy(), ob[: j + 1].copy(), oc[: j + 1].copy()


@numba.njit(cache=True, nogil=True, inline="always")
def _ceil_frac(total, num, den):  # pragma: no cover - compiled
    """``ceil(num * total / den)`` for int64 ``total >= 0`` and small ``num``/``den``, without overflow."""
    return (total // den) * num + -(-((total % den) * num) // den)


@numba.njit(cache=True, nogil=True)
def profile_levels(vol, va_num, va_den, dual, p_num, p_den):  # pragma: no cover - compiled
    """POC, value area and percentile rows of an exact int64 volume array (R,), R >= 1, in one call.

    The same rules as :func:`compute.value_area.poc_index`, ``value_area_bounds`` (the
    literal walk, single or ``dual``) and ``percentile_indices``; the fractions are given as
    the decimals they print as, ``num / den`` (0.7 = 7/10), so the targets are exact integer
    ceilings. Returns ``(poc, va_lo, va_hi, pct)`` with ``pct`` int64 (P,).
    """
    n = len(vol)
    best = vol[0]
    for i in range(1, n):
        best = max(best, vol[i])
    poc, dist = -1, 0
    for i in range(n):
        if vol[i] == best:
            d = abs(2 * i - (n - 1))
            if poc < 0 or d < dist:
                poc, dist = i, d
    total = np.int64(0)
    for i in range(n):
        total += vol[i]
    target = _ceil_frac(total, va_num, va_den)
    lo = hi = poc
    acc = vol[poc]
    while acc < target:
        has_up, has_dn = hi + 1 < n, lo > 0
        if not (has_up or has_dn):
            break
        su = sd = np.int64(0)
        ku = kd = 1
        if has_up:
            su = vol[hi + 1] + (vol[hi + 2] if dual and hi + 2 < n else 0)
            ku = min(2, n - 1 - hi) if dual else 1
        if has_dn:
            sd = vol[lo - 1] + (vol[lo - 2] if dual and lo >= 2 else 0)
            kd = min(2, lo) if dual else 1
        if has_up and (not has_dn or su >= sd):
            acc += su
            hi += ku
        else:
            acc += sd
            lo -= kd
    pct = np.empty(len(p_num), np.int64)
    for k in range(len(p_num)):
        t = _ceil_frac(total, p_num[k], p_den[k])
        c = np.int64(0)
        j = n - 1
        for i in range(n):
            c += vol[i]
            if c >= t:
                j = i
                break
        pct[k] = j
    return poc, lo, hi, pct


@numba.njit(cache=True, nogil=True)
def add_dense(vol, buy, cnt, base, lo, v, b, c, sign):  # pragma: no cover - compiled
    """Add (``sign`` 1) or subtract (-1) dense sums starting at slot ``lo`` into arrays starting at ``base``.

    Only the overlap of ``[lo, lo + len(v))`` with ``[base, base + len(vol))`` is touched.
    """
    a, z = max(lo, base), min(lo + len(v), base + len(vol))
    for i in range(a, z):
        vol[i - base] += sign * v[i - lo]
        buy[i - base] += sign * b[i - lo]
        cnt[i - base] += sign * c[i - lo]
