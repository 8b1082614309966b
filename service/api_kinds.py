"""The REST answers of the registry's kinds beyond the volume profile: session profiles and VWAP.

    GET /api/v1/sessions?symbol=&from=&to=[&session_length=1d][&session_start=00:00][&composite=1]
                         [&row_size=][&value_area=][&value_area_method=]
    GET /api/v1/vwap?symbol=&anchor=&to=[&bands=1,2,3][&interval=1m][&session_length=][&session_start=00:00]
    GET /api/v1/footprint?symbol=&from=&to=[&row_size=][&interval=1m][&imbalance_ratio=3][&stacked=3][&min_volume=0]
    GET /api/v1/developing?symbol=&from=&to=[&row_size=][&interval=1m][&value_area=][&value_area_method=]
    GET /api/v1/heatmap?symbol=&from=&to=[&width=600][&height=300][&agg=volume][&price_low=][&price_high=][&format=json]

Each function answers for a handler of :mod:`service.api` (its strict parsing, limits and errors): it builds
the kind's query (:mod:`compute.kinds`, one definition of the parameters) and gets the result through the view
and the shared Redis cache, as the page does. Times UTC ms, prices quote currency, quantities base asset.
"""

from __future__ import annotations

from compute.candles import INTERVALS
from compute.result import VA_METHODS
from compute.sessions import SESSION_LENGTHS

from .limits import BadParameter, strict_float

#: Paths answered here (for the API's 404 message).
PATHS = ("/api/v1/sessions", "/api/v1/vwap", "/api/v1/footprint", "/api/v1/developing", "/api/v1/heatmap")
#: Parameters (name -> longest value in characters) of the session and VWAP paths.
SESSION_PARAMS = {"session_length": 4, "session_start": 5, "composite": 5}
VWAP_PARAMS = {"bands": 64, "interval": 4, "session_length": 4, "session_start": 5}
FOOTPRINT_PARAMS = {"row_size": 32, "interval": 4, "imbalance_ratio": 32, "stacked": 4, "min_volume": 32}
DEVELOPING_PARAMS = {"row_size": 32, "interval": 4, "value_area": 32, "value_area_method": 16}
HEATMAP_PARAMS = {"width": 5, "height": 5, "agg": 8, "price_low": 32, "price_high": 32, "format": 8}
#: Most footprint candles one answer holds.
MAX_FOOTPRINT_CANDLES = 2000
#: Largest heat-map grid the API answers (cells): about 8 MB of JSON, 8 MB of Arrow.
MAX_HEATMAP_CELLS = 1_000_000
ARROW_STREAM = "application/vnd.apache.arrow.stream"
_YES_NO = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


async def _result(h, view, snap, kind: str, frm: int, to: int, params: dict, bad: str):
    """The kind's result through the view (shared cache); a refused parameter becomes BadParameter(``bad``)."""
    try:
        query = view.query(kind, frm, to, snap, **params)
        res = await view.result_async(query, snap)
    except ValueError as e:
        msg = str(e)
        name = next((n for n in ("session_start", "bands", "row_size") if n in msg), bad)
        raise BadParameter(name, msg) from None
    if res is None:
        raise BadParameter("from" if bad != "anchor" else "anchor", f"no trades in [{frm}, {to})")
    return res


def _coverage(view, snap, frm: int, to: int) -> dict:
    """The answer's ``coverage``: id range, count, gaps and hash of the trades of ``[frm, to)``."""
    return view.coverage(frm, to, snap).to_dict()


def _session_args(h) -> dict:
    length = h.choice_arg("session_length", tuple(SESSION_LENGTHS), "1d")
    return {"session_length": length, "session_start": h.arg("session_start", "00:00")}


async def sessions(h) -> None:
    """``/api/v1/sessions``: one entry per session holding trades (``start``, ``end``, ``poc``, ``vah``, ``val``,
    volumes, ``trades``, ``touched_at``, ``naked``, ``prior``) and the ``composite``."""
    sym, view = h.symbol_view()
    snap = view.snapshot
    frm, to = h.time_range(snap)
    va = h.float_arg("value_area", 0.7, 0.5, 0.95)
    method = h.choice_arg("value_area_method", VA_METHODS, "single")
    composite = h.arg("composite", "1").lower()
    if composite not in _YES_NO:
        raise BadParameter("composite", f"composite must be 1 or 0, got {composite[:8]!r}")
    row_size, tpr = h.row_size_arg(sym, snap, frm, to)
    params = {"ticks_per_row": tpr, "value_area": va, "value_area_method": method, "composite": _YES_NO[composite],
              **_session_args(h)}
    res = await _result(h, view, snap, "sessions", frm, to, params, "from")
    h.answer({**res.to_dict(), "symbol": sym, "row_size": row_size, "tick": snap.tick,
              "value_area": va, "value_area_method": method, "coverage": _coverage(view, snap, frm, to)})


async def vwap(h) -> None:
    """``/api/v1/vwap``: ``vwap``, ``sd``, ``bands`` ``{"k": [lower, upper]}``, ``trades``, ``volume`` for
    ``[anchor, to)`` (or the last session) and the ``series`` at each interval close."""
    sym, view = h.symbol_view()
    snap = view.snapshot
    frm, to = h.time_range(snap, start="anchor")
    interval = h.choice_arg("interval", tuple(INTERVALS), "1m")
    bands = h.arg("bands", "1,2,3")
    try:
        ks = [strict_float(x) for x in bands.split(",")]
    except ValueError:
        raise BadParameter("bands", f"bands must be numbers separated by commas, got {bands[:40]!r}") from None
    length = h.arg("session_length")
    if length is not None and length not in SESSION_LENGTHS:
        raise BadParameter("session_length", f"session_length must be one of {', '.join(SESSION_LENGTHS)}, "
                                             f"got {length[:8]!r}")
    params = {"bands": ks, "interval_ms": INTERVALS[interval], "session_length": length,
              "session_start": h.arg("session_start", "00:00")}
    res = await _result(h, view, snap, "vwap", frm, to, params, "anchor")
    h.answer({**res.to_dict(), "symbol": sym, "interval": interval, "coverage": _coverage(view, snap, frm, to)})


async def footprint(h) -> None:
    """``/api/v1/footprint``: candles, cells (bid/ask per row), stacked imbalances, levels and CVD."""
    sym, view = h.symbol_view()
    snap = view.snapshot
    frm, to = h.time_range(snap)
    interval = h.choice_arg("interval", tuple(INTERVALS), "1m")
    if (to - frm) // INTERVALS[interval] > MAX_FOOTPRINT_CANDLES:
        raise BadParameter("interval", f"{(to - frm) // INTERVALS[interval]} candles of {interval}; the limit is "
                                       f"{MAX_FOOTPRINT_CANDLES} (a longer interval or a shorter range)")
    row_size, tpr = h.row_size_arg(sym, snap, frm, to)
    params = {"ticks_per_row": tpr, "interval_ms": INTERVALS[interval],
              "imbalance_ratio": h.float_arg("imbalance_ratio", 3.0, 1.0, 1e6),
              "stacked_min": h.int_arg("stacked", 3, 1, 1000), "min_volume": h.float_arg("min_volume", 0.0, 0.0, 1e12)}
    res = await _result(h, view, snap, "footprint", frm, to, params, "from")
    h.answer({**res.to_dict(), "symbol": sym, "interval": interval, "start": frm, "end": to,
              "coverage": _coverage(view, snap, frm, to)})


async def developing(h) -> None:
    """``/api/v1/developing``: POC/VAH/VAL at each candle close of the range, and the range's profile."""
    sym, view = h.symbol_view()
    snap = view.snapshot
    frm, to = h.time_range(snap)
    interval = h.choice_arg("interval", tuple(INTERVALS), "1m")
    row_size, tpr = h.row_size_arg(sym, snap, frm, to)
    params = {"ticks_per_row": tpr, "candle_ms": INTERVALS[interval], "value_area": h.float_arg("value_area", 0.7, 0.5, 0.95),
              "value_area_method": h.choice_arg("value_area_method", VA_METHODS, "single")}
    res = await _result(h, view, snap, "developing", frm, to, params, "from")
    h.answer({**res.to_dict(), "symbol": sym, "interval": interval, "coverage": _coverage(view, snap, frm, to)})


async def heatmap(h) -> None:
    """``/api/v1/heatmap``: the aggregated grid (never a picture), as JSON arrays or an Arrow IPC stream.

    JSON: ``time`` (W,) and ``price`` (H,) bin centres, ``values`` (H lists of W; null = no trade). Arrow
    (``format=arrow`` or ``Accept: application/vnd.apache.arrow.stream``): one record batch, one row per cell
    with ``time``, ``price``, ``value`` (non-empty cells only)."""
    sym, view = h.symbol_view()
    snap = view.snapshot
    frm, to = h.time_range(snap)
    width, height = h.int_arg("width", 600, 1, 4096), h.int_arg("height", 300, 1, 4096)
    if width * height > MAX_HEATMAP_CELLS:
        raise BadParameter("width", f"a {width} x {height} grid has {width * height:,} cells; the limit is "
                                    f"{MAX_HEATMAP_CELLS:,}")
    agg = h.choice_arg("agg", ("volume", "delta", "count"), "volume")
    fmt = h.choice_arg("format", ("json", "arrow"), "arrow" if ARROW_STREAM in h.request.headers.get("Accept", "") else "json")
    trades = snap.trades.time_slice(frm, to)
    if not len(trades):
        raise BadParameter("from", f"no trades of {sym} in [{frm}, {to})")
    lo = h.float_arg("price_low", float(trades.price.min()), 0.0, 1e12)
    hi = h.float_arg("price_high", float(trades.price.max()) + snap.tick, 0.0, 1e12)
    if not lo < hi:
        raise BadParameter("price_high", f"price_high ({hi:g}) must be above price_low ({lo:g})")
    params = {"price_low": lo, "price_high": hi, "width": width, "height": height, "agg": agg}
    res = await _result(h, view, snap, "heatmap", frm, to - 1, params, "from")
    t, p, v = res.coords["time"].values, res.coords["price"].values, res.values
    if fmt == "arrow":
        import numpy as np
        import pyarrow as pa

        filled = np.isfinite(v) if v.dtype.kind == "f" else v > 0
        ii, jj = np.nonzero(filled)
        table = pa.table({"time": t[jj].astype("int64"), "price": p[ii], "value": v[ii, jj]})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        body = sink.getvalue().to_pybytes()
        if h.not_modified(body):
            return
        h.set_header("Content-Type", ARROW_STREAM)
        h.finish(body)
        return
    values = [[None if x != x else x for x in row] for row in v.tolist()]  # NaN (no trade) as null
    h.answer({"symbol": sym, "agg": agg, "start": frm, "end": to, "width": width, "height": height,
              "price_low": lo, "price_high": hi, "time": t.astype("int64").tolist(), "price": p.tolist(),
              "values": values, "coverage": _coverage(view, snap, frm, to)})
