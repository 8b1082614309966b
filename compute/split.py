"""The split profile (``kind="split"``): the first half of a range against the second.

Definition (issue 3 item 2; reference b8): the range ``[start, end)`` is cut at its
time midpoint ``(start + end) / 2``; trades strictly before it form the first half,
the others the second. Both halves share the whole range's row grid. Each half has
its own POC/VAH/VAL (exactly the volume profile of that half's trades, on that
half's own grid); per row the change ``second - first`` (base asset) is given. The
halves add up to the whole: per-row volumes, buys, sells and trade counts sum exactly.
The split result's own POC/VAH/VAL are those of the whole range.
"""

from __future__ import annotations

import numpy as np

from .profile import volume_profile
from .result import DEFAULT_PERCENTILES, QTY_DECIMALS, ProfileResult, as_batch, empty_range_error, time_bounds


def split_time(start: int, end: int) -> int:
    """First ms of the second half: trades with ``time < (start + end) / 2`` are in the first half."""
    return -((-(int(start) + int(end))) // 2)


def _on_grid(whole: ProfileResult, part: ProfileResult | None, attr: str) -> np.ndarray:
    out = np.zeros(whole.rows, dtype=np.int64)
    if part is not None:
        off = part.first_row - whole.first_row
        out[off : off + part.rows] = getattr(part, attr)
    return out


def _summary(part: ProfileResult | None) -> dict:
    if part is None:
        return {"poc": None, "vah": None, "val": None, "total_volume": 0.0, "buy_volume": 0.0,
                "sell_volume": 0.0, "trades": 0}
    return {"poc": part.poc, "vah": part.vah, "val": part.val, "total_volume": part.total_volume,
            "buy_volume": part.buy_volume, "sell_volume": part.sell_volume, "trades": part.trades,
            "start": part.start, "end": part.end}


def combine_split(whole: ProfileResult, first: ProfileResult | None, second: ProfileResult | None, mid: int) -> ProfileResult:
    """Build the split result from the whole range's and each half's volume profiles (None = empty half).

    Returns a :class:`ProfileResult` with ``kind="split"``, attributes ``first`` and
    ``second`` (the halves' ProfileResults or None), ``levels`` columns ``first_volume``,
    ``second_volume``, ``first_delta``, ``second_delta``, ``change`` (all float64 base asset),
    ``first_trades``, ``second_trades`` (int64), and ``to_dict()`` keys ``split_time``,
    ``first`` and ``second`` (each ``poc, vah, val, total_volume, buy_volume, sell_volume, trades``).
    """
    scale = float(10**whole.qty_decimals)
    fv, sv = _on_grid(whole, first, "volume_int"), _on_grid(whole, second, "volume_int")
    fb, sb = _on_grid(whole, first, "buy_int"), _on_grid(whole, second, "buy_int")
    ft, st = _on_grid(whole, first, "trades_per_row"), _on_grid(whole, second, "trades_per_row")
    if not (np.array_equal(fv + sv, whole.volume_int) and np.array_equal(fb + sb, whole.buy_int)
            and np.array_equal(ft + st, whole.trades_per_row)):
        raise AssertionError("split halves do not add up to the whole range")  # impossible with exact sums
    whole.kind = "split"
    whole.columns.update({
        "first_volume": fv / scale, "second_volume": sv / scale,
        "first_delta": (2 * fb - fv) / scale, "second_delta": (2 * sb - sv) / scale,
        "change": (sv - fv) / scale, "first_trades": ft, "second_trades": st,
    })
    whole.extra.update({"split_time": int(mid), "first": _summary(first), "second": _summary(second)})
    whole.first, whole.second = first, second
    return whole


def split_profile(
    trades, tick: float, row_size: float, value_area: float = 0.7, start: int | None = None,
    end: int | None = None, value_area_method: str = "single", percentiles=DEFAULT_PERCENTILES,
    qty_decimals: int = QTY_DECIMALS,
) -> ProfileResult:
    """Split profile (``kind="split"``) of the trades in ``[start, end)``; see the module docstring.

    Parameters are those of :func:`compute.profile.volume_profile` (trades: TradeBatch or
    DataFrame; times UTC ms; prices quote currency; quantities base asset).

    Raises
    ------
    ValueError
        As :func:`compute.profile.volume_profile` (no trades in the whole range).
    """
    batch = as_batch(trades)
    s, e = time_bounds(batch.time, start, end)
    kw = dict(value_area=value_area, value_area_method=value_area_method, percentiles=percentiles,
              qty_decimals=qty_decimals)
    whole = volume_profile(batch, tick, row_size, start=s, end=e, **kw)
    mid = split_time(s, e)
    return combine_split(whole, _half(batch, tick, row_size, s, mid, kw), _half(batch, tick, row_size, mid, e, kw), mid)


def _half(batch, tick, row_size, s, e, kw):
    try:
        return volume_profile(batch, tick, row_size, start=s, end=e, **kw)
    except ValueError as err:
        if str(err) == str(empty_range_error(s, e)):
            return None
        raise
