"""The profile's rows as column data: a pure transform of a profile result into the sources' columns.

:func:`profile_columns` turns a :class:`compute.result.ProfileResult` into the
column dict of the profile ColumnDataSource for one mode (and the split mode's
POC marks); it is a pure function of the (shared) result and a few settings, so
the page memoises it per process (:func:`dashboard.data.shared`).
:func:`tooltips` gives the hover rows that read those columns. The layer that
draws them is :class:`dashboard.profile_layer.ProfileLayer`.

Each row has two bars in the ``vp`` x range (0-1, the right edge of the figure):
bar ``a`` (``a0..a1``, colour ``ca``) and bar ``b`` (``b0..b1``, colour ``cb``).
One step per kind of drawing computes them: :func:`_buysell_bars` (buys and
sells stacked), :func:`_split_bars` (first half mirrored left of a centre line,
second half right) and :func:`_single_bars` (one bar per row, whose length and
colour come from :func:`_measure_and_colour`: delta, heat-map, recency, TPO);
:func:`_profile_dict` then adds what every mode shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fmt
from .sources import empty
from .theme import HEAT, THEMES, colours, delta_palette, recency_palette

PROFILE_COLUMNS = (
    "y", "h", "price_low", "price_high", "volume", "buy", "sell", "delta", "trades", "buy_pct", "sell_pct",
    "a0", "a1", "b0", "b1", "ca", "cb", "alpha", "a1_buy", "a1_sell", "b1_buy", "b1_sell", "m1", "m2",
    "letters",
)
SPLIT_COLUMNS = ("x0", "x1", "y", "colour", "text", "tx")
PERCENTILE_COLUMNS = ("y", "text", "tx", "sx0")
BUY_HATCH, SELL_HATCH = "/", "\\"


def _side_hatch(delta: np.ndarray) -> list[str]:
    return np.where(delta > 0, BUY_HATCH, np.where(delta < 0, SELL_HATCH, " ")).tolist()


def signed_strength(delta: np.ndarray, max_abs: float) -> np.ndarray:
    """Delta intensity in [-1, 1]: ``sign(d) * sqrt(|d| / max|d|)`` (square root so moderate rows still show colour)."""
    d = np.asarray(delta, dtype=np.float64)
    if not max_abs > 0:
        return np.zeros_like(d)
    return np.sign(d) * np.sqrt(np.abs(d) / max_abs)


@dataclass(frozen=True)
class _Rows:
    """The per-row volumes of a result (float64): total, taker buy, taker sell, and buy - sell."""

    vol: np.ndarray
    buy: np.ndarray
    sell: np.ndarray
    delta: np.ndarray

    @classmethod
    def of(cls, res) -> _Rows:
        buy = np.asarray(res.buy, dtype=np.float64)
        sell = np.asarray(res.sell, dtype=np.float64)
        return cls(np.asarray(res.volume, dtype=np.float64), buy, sell, buy - sell)

    @property
    def n(self) -> int:
        return len(self.vol)


@dataclass(frozen=True)
class _Bars:
    """Both bars of every row for one mode: extents, colours, hatch patterns (``/``, ``\\`` or blank).

    ``m1``/``m2``: the mode's own numbers for the tooltip (None: zeros); ``split``: the
    split-POC marks (None: no marks).
    """

    a0: np.ndarray
    a1: np.ndarray
    b0: np.ndarray
    b1: np.ndarray
    ca: list
    cb: list
    ha: list
    hb: list
    m1: np.ndarray | None = None
    m2: np.ndarray | None = None
    split: dict | None = None


def _scale(measure: np.ndarray, width: float) -> float:
    """Bar length per unit of ``measure``, so that the longest bar is ``width`` long (0 when all are 0)."""
    mx = float(np.max(measure)) if len(measure) else 0.0
    return width / mx if mx > 0 else 0.0


def _buysell_bars(r: _Rows, width: float, th: dict) -> _Bars:
    """Bar a: the buys from the row's left end; bar b: the sells, ending at the right edge."""
    n = r.n
    s = _scale(r.vol, width)
    sells_start = 1 - r.sell * s
    return _Bars(a0=1 - r.vol * s, a1=sells_start, b0=sells_start, b1=np.ones(n),
                 ca=[th["buy"]] * n, cb=[th["sell"]] * n, ha=[BUY_HATCH] * n, hb=[SELL_HATCH] * n)


def _split_bars(res, n: int, width: float, th: dict) -> _Bars:
    """Bar a: the first half's volume left of the centre line; bar b: the second half's, right of it."""
    cols = res.columns
    fv, sv = np.asarray(cols["first_volume"]), np.asarray(cols["second_volume"])
    half = width / 2
    c = 1 - half
    mx = max(float(fv.max()) if n else 0.0, float(sv.max()) if n else 0.0)
    s = half / mx if mx > 0 else 0.0
    return _Bars(a0=c - fv * s, a1=np.full(n, c), b0=np.full(n, c), b1=c + sv * s,
                 ca=[th["first"]] * n, cb=[th["second"]] * n,
                 ha=_side_hatch(np.asarray(cols["first_delta"])), hb=_side_hatch(np.asarray(cols["second_delta"])),
                 m1=fv, m2=sv, split=_split_marks(res, c, half, th))


def _split_marks(res, centre: float, half: float, th: dict) -> dict:
    """Each half's POC: a segment over its side of the centre line, labelled ``1st POC …`` / ``2nd POC …``."""
    marks = empty(SPLIT_COLUMNS)
    for part, lo_x, hi_x, name, colour in ((res.first, centre - half, centre, "1st", th["first"]),
                                           (res.second, centre, centre + half, "2nd", th["second"])):
        if part is None:
            continue
        marks["x0"].append(lo_x)
        marks["x1"].append(hi_x)
        marks["y"].append(float(part.poc))
        marks["colour"].append(colour)
        marks["text"].append(f"{name} POC {fmt.price(part.poc, res.tick)}")
        marks["tx"].append(lo_x + 0.004 if name == "2nd" else hi_x - 0.004)
    return marks


def _measure_and_colour(res, r: _Rows, mode: str, theme: str) -> tuple[np.ndarray, list, np.ndarray | None]:
    """For a one-bar mode: what the bar's length measures, each row's colour, and the tooltip number ``m1``."""
    n = r.n
    if mode == "recency":
        measure = np.asarray(res.columns["weighted_volume"], dtype=np.float64)
        mt = np.asarray(res.columns["mean_time"], dtype=np.float64)
        span = max(float(res.end - res.start), 1.0)
        return measure, colours(recency_palette(theme), (mt - res.start) / span), measure
    if mode == "tpo":
        measure = np.asarray(res.columns["tpo"], dtype=np.float64)
        return measure, [THEMES[theme]["tpo"]] * n, measure
    if mode == "delta":
        mx = float(np.abs(r.delta).max()) if n else 0.0
        return r.vol, colours(delta_palette(theme), 0.5 + 0.5 * signed_strength(r.delta, mx)), None
    if mode == "heatmap":
        mx = float(r.vol.max()) if n else 0.0
        return r.vol, colours(HEAT, r.vol / mx if mx > 0 else r.vol * 0), None
    raise ValueError(f"unknown profile mode {mode!r}")


def _single_bars(res, r: _Rows, mode: str, width: float, theme: str) -> _Bars:
    """Bar a: one bar per row ending at the right edge, hatched by the row's dominant side; bar b: none."""
    measure, ca, m1 = _measure_and_colour(res, r, mode, theme)
    right = np.ones(r.n)
    return _Bars(a0=1 - measure * _scale(measure, width), a1=right, b0=right, b1=right, ca=ca, cb=ca,
                 ha=_side_hatch(r.delta), hb=[" "] * r.n, m1=m1)


def _profile_dict(res, r: _Rows, bars: _Bars) -> dict:
    """The profile source's columns (:data:`PROFILE_COLUMNS`) from the rows and the mode's bars."""
    n = r.n
    a0, a1, b0, b1 = (np.asarray(v, dtype=np.float64) for v in (bars.a0, bars.a1, bars.b0, bars.b1))
    ha, hb = np.asarray(bars.ha), np.asarray(bars.hb)
    low = np.asarray(res.price_low, dtype=np.float64)
    rs = float(res.row_size)
    idx = np.arange(n)
    in_va = (idx >= res.va_lo) & (idx <= res.va_hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        buy_pct = np.where(r.vol > 0, r.buy / r.vol * 100, 0.0)
    m1 = np.zeros(n) if bars.m1 is None else bars.m1
    m2 = np.zeros(n) if bars.m2 is None else bars.m2
    return {
        "a1_buy": np.where(ha == BUY_HATCH, a1, a0), "a1_sell": np.where(ha == SELL_HATCH, a1, a0),
        "b1_buy": np.where(hb == BUY_HATCH, b1, b0), "b1_sell": np.where(hb == SELL_HATCH, b1, b0),
        "y": low + rs / 2, "h": np.full(n, rs * 0.9), "price_low": low, "price_high": low + rs,
        "volume": r.vol, "buy": r.buy, "sell": r.sell, "delta": r.delta,
        "trades": np.asarray(res.trades_per_row, dtype=np.int64), "buy_pct": buy_pct, "sell_pct": 100.0 - buy_pct,
        "a0": a0, "a1": a1, "b0": b0, "b1": b1,
        "ca": list(bars.ca), "cb": list(bars.cb), "alpha": np.where(in_va, 0.9, 0.45),
        "m1": np.asarray(m1, dtype=np.float64), "m2": np.asarray(m2, dtype=np.float64),
        "letters": [""] * n,  # a TPO profile's period letters per row (:func:`tpo_letters`, added by the planner)
    }


def profile_columns(res, mode: str, width: float, theme: str) -> tuple[dict, dict]:
    """Columns of the profile source (:data:`PROFILE_COLUMNS`) and of the split-POC source.

    ``res``: a ProfileResult of kind ``volume`` (modes buysell/delta/heatmap), ``recency``,
    ``tpo`` or ``split``. ``width``: the profile area's share of the plot width (0-1).
    Bar extents ``a0..a1`` and ``b0..b1`` are in the ``vp`` range (0-1). Colours are
    ``#rrggbb`` strings; ``alpha`` is 0.9 inside the value area and 0.45 outside.
    ``m1``/``m2`` are the mode's own numbers for the tooltip (TPO count, weighted volume,
    first/second-half volume). Hatching (drawn by overlays when it is on) is given as right
    edges per pattern: ``a1_buy`` is ``a1`` where bar a is hatched ``/`` (buy) and ``a0`` (no
    width) elsewhere; likewise ``a1_sell`` (``\\``), ``b1_buy``, ``b1_sell``. Returns ``(profile, split)``.
    """
    th = THEMES[theme]
    r = _Rows.of(res)
    if mode == "buysell":
        bars = _buysell_bars(r, width, th)
    elif mode == "split":
        bars = _split_bars(res, r.n, width, th)
    else:
        bars = _single_bars(res, r, mode, width, theme)
    return _profile_dict(res, r, bars), (empty(SPLIT_COLUMNS) if bars.split is None else bars.split)


def tooltips(mode: str, decimals: int) -> list[tuple[str, str]]:
    """Hover rows for a profile bar: price range, total, buy (%), sell (%), delta, trades (+ the mode's own)."""
    p = "0,0." + "0" * decimals if decimals else "0,0"
    rows = [
        ("price", f"@price_low{{{p}}} – @price_high{{{p}}}"),
        ("total", "@volume{0,0.[000]}"),
        ("buy", "@buy{0,0.[000]} (@buy_pct{0.0} %)"),
        ("sell", "@sell{0,0.[000]} (@sell_pct{0.0} %)"),
        ("delta", "@delta{+0,0.[000]}"),
        ("trades", "@trades{0,0}"),
    ]
    if mode == "tpo":
        rows.append(("TPO count", "@m1{0,0}"))
    elif mode == "recency":
        rows.append(("weighted vol", "@m1{0,0.[000]}"))
    elif mode == "split":
        rows += [("1st half", "@m1{0,0.[000]}"), ("2nd half", "@m2{0,0.[000]}")]
    return rows


#: Market Profile period letters: A-Z, then a-z, then digits (a range holds at most 60 TPO blocks).
TPO_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def tpo_letters(res, trades) -> list[str]:
    """Each row's TPO period letters (A for the range's first block, B for the next...) from the trades.

    ``res``: a ``tpo`` ProfileResult (``extra["tpo_block_ms"]``); ``trades``: the TradeBatch of its
    range ``[res.start, res.end)``. A row gets a block's letter when a trade of that block lies in the
    row (as its TPO count counts it), so ``len(letters[i]) == tpo[i]``. Letters past the 62nd wrap.
    """
    n = len(res.volume)
    block = int(res.extra.get("tpo_block_ms", 0) or 0)
    if not n or block <= 0 or not len(trades):
        return [""] * n
    ticks = np.rint(np.asarray(trades.price, dtype=np.float64) / float(res.tick)).astype(np.int64)
    rows = np.floor_divide(ticks, res.ticks_per_row) - int(res.first_row)
    blocks = np.asarray(trades.time, dtype=np.int64) // block - int(res.start) // block
    ok = (rows >= 0) & (rows < n) & (blocks >= 0)
    rows, blocks = rows[ok], blocks[ok]
    nb = int(blocks.max()) + 1 if len(blocks) else 0
    seen = np.zeros((n, max(nb, 1)), dtype=bool)
    seen[rows, blocks] = True
    return ["".join(TPO_LETTERS[b % len(TPO_LETTERS)] for b in np.flatnonzero(r)) for r in seen]
