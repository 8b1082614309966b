"""The VPVR drawn on the right edge of a price figure: bars, POC/VAH/VAL, percentiles, highlight.

The profile lives in its own x range ``"vp"`` fixed to ``[0, 1]`` laid over the
price figure, so the bars stay anchored to the right edge whatever the time
axis shows: the profile area is ``[1 - W, 1]`` where ``W`` is the max bar
width (a share of the plot width).

:func:`profile_columns` turns a :class:`compute.result.ProfileResult` into the
column dict of the profile ColumnDataSource for one mode; it is a pure
function of the (shared) result and a few settings, so the page memoises it
per process (:func:`dashboard.data.shared`). :class:`ProfileLayer` owns the
ColumnDataSources (one set per session) and attaches renderers to one or
more figures (the candle chart and the footprint), all fed by the same sources.

Modes (issue 6 item 2): ``buysell`` (stacked buy/sell), ``delta`` (one bar per
row coloured by a red-neutral-green gradient of the delta's strength, :func:`signed_strength`),
``heatmap`` (rows coloured by volume / max volume, #1a1a3a -> #ff8c00 -> #ff0000),
``recency`` (bars = recency-weighted volume, colour = the row's volume-weighted
mean trade time, old rows faded, recent bright), ``tpo`` (bars = TPO counts) and
``split`` (first half of the range mirrored to the left of the profile's
centre line, second half to the right, each with its own POC). Rows inside
the value area are drawn stronger than rows outside. With ``hatch`` the bars
carry hatch patterns: buys ``/`` (↗), sells ``\\`` (↘); single-bar modes hatch by
the row's dominant side, so colour is never needed to tell them apart.
"""

from __future__ import annotations

import numpy as np
from bokeh.models import ColumnDataSource, HoverTool, Label, Range1d, Span

from . import fmt
from .theme import HEAT, THEMES, colours, delta_palette, recency_palette

PROFILE_COLUMNS = (
    "y", "h", "price_low", "price_high", "volume", "buy", "sell", "delta", "trades", "buy_pct", "sell_pct",
    "a0", "a1", "b0", "b1", "ca", "cb", "alpha", "a1_buy", "a1_sell", "b1_buy", "b1_sell", "m1", "m2",
)
SPLIT_COLUMNS = ("x0", "x1", "y", "colour", "text", "tx")
PERCENTILE_COLUMNS = ("y", "text", "tx")
BUY_HATCH, SELL_HATCH = "/", "\\"


def _empty(cols) -> dict:
    return {c: [] for c in cols}


def _side_hatch(delta: np.ndarray) -> list[str]:
    return np.where(delta > 0, BUY_HATCH, np.where(delta < 0, SELL_HATCH, " ")).tolist()


def signed_strength(delta: np.ndarray, max_abs: float) -> np.ndarray:
    """Delta intensity in [-1, 1]: ``sign(d) * sqrt(|d| / max|d|)`` (square root so moderate rows still show colour)."""
    d = np.asarray(delta, dtype=np.float64)
    if not max_abs > 0:
        return np.zeros_like(d)
    return np.sign(d) * np.sqrt(np.abs(d) / max_abs)


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
    vol = np.asarray(res.volume, dtype=np.float64)
    buy = np.asarray(res.buy, dtype=np.float64)
    sell = np.asarray(res.sell, dtype=np.float64)
    delta = buy - sell
    low = np.asarray(res.price_low, dtype=np.float64)
    rs = float(res.row_size)
    n = len(vol)
    right = np.ones(n)
    idx = np.arange(n)
    in_va = (idx >= res.va_lo) & (idx <= res.va_hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        buy_pct = np.where(vol > 0, buy / vol * 100, 0.0)
    m1 = np.zeros(n)
    m2 = np.zeros(n)
    split = _empty(SPLIT_COLUMNS)
    side_hatch = _side_hatch(delta)
    blank = [" "] * n

    def scale(measure):
        mx = float(np.max(measure)) if n else 0.0
        return width / mx if mx > 0 else 0.0

    if mode == "buysell":
        s = scale(vol)
        a0, a1 = 1 - vol * s, 1 - sell * s
        b0, b1 = a1, right
        ca, cb = [th["buy"]] * n, [th["sell"]] * n
        ha, hb = [BUY_HATCH] * n, [SELL_HATCH] * n
    elif mode == "split":
        cols = res.columns
        fv, sv = np.asarray(cols["first_volume"]), np.asarray(cols["second_volume"])
        m1, m2 = fv, sv
        half = width / 2
        c = 1 - half
        mx = max(float(fv.max()) if n else 0.0, float(sv.max()) if n else 0.0)
        s = half / mx if mx > 0 else 0.0
        a0, a1 = c - fv * s, np.full(n, c)
        b0, b1 = np.full(n, c), c + sv * s
        ca, cb = [th["first"]] * n, [th["second"]] * n
        ha = _side_hatch(np.asarray(cols["first_delta"]))
        hb = _side_hatch(np.asarray(cols["second_delta"]))
        x0s, x1s, ys, texts, cs, txs = [], [], [], [], [], []
        for part, lo_x, hi_x, name, colour in ((res.first, c - half, c, "1st", th["first"]),
                                               (res.second, c, c + half, "2nd", th["second"])):
            if part is None:
                continue
            x0s.append(lo_x)
            x1s.append(hi_x)
            ys.append(float(part.poc))
            cs.append(colour)
            texts.append(f"{name} POC {fmt.price(part.poc, res.tick)}")
            txs.append(lo_x + 0.004 if name == "2nd" else hi_x - 0.004)
        split = {"x0": x0s, "x1": x1s, "y": ys, "colour": cs, "text": texts, "tx": txs}
    else:
        if mode == "recency":
            measure = np.asarray(res.columns["weighted_volume"], dtype=np.float64)
            mt = np.asarray(res.columns["mean_time"], dtype=np.float64)
            span = max(float(res.end - res.start), 1.0)
            ca = colours(recency_palette(theme), (mt - res.start) / span)
            m1 = measure
        elif mode == "tpo":
            measure = np.asarray(res.columns["tpo"], dtype=np.float64)
            ca = [th["tpo"]] * n
            m1 = measure
        elif mode == "delta":
            measure = vol
            mx = float(np.abs(delta).max()) if n else 0.0
            ca = colours(delta_palette(theme), 0.5 + 0.5 * signed_strength(delta, mx))
        elif mode == "heatmap":
            measure = vol
            mx = float(vol.max()) if n else 0.0
            ca = colours(HEAT, vol / mx if mx > 0 else vol * 0)
        else:
            raise ValueError(f"unknown profile mode {mode!r}")
        s = scale(measure)
        a0, a1 = 1 - measure * s, right
        b0 = b1 = right
        cb = ca
        ha, hb = side_hatch, blank
    a0, a1, b0, b1 = (np.asarray(v, dtype=np.float64) for v in (a0, a1, b0, b1))
    ha, hb = np.asarray(ha), np.asarray(hb)
    prof = {
        "a1_buy": np.where(ha == BUY_HATCH, a1, a0), "a1_sell": np.where(ha == SELL_HATCH, a1, a0),
        "b1_buy": np.where(hb == BUY_HATCH, b1, b0), "b1_sell": np.where(hb == SELL_HATCH, b1, b0),
        "y": low + rs / 2, "h": np.full(n, rs * 0.9), "price_low": low, "price_high": low + rs,
        "volume": vol, "buy": buy, "sell": sell, "delta": delta,
        "trades": np.asarray(res.trades_per_row, dtype=np.int64), "buy_pct": buy_pct, "sell_pct": 100.0 - buy_pct,
        "a0": np.asarray(a0, dtype=np.float64), "a1": np.asarray(a1, dtype=np.float64),
        "b0": np.asarray(b0, dtype=np.float64), "b1": np.asarray(b1, dtype=np.float64),
        "ca": list(ca), "cb": list(cb), "alpha": np.where(in_va, 0.9, 0.45),
        "m1": np.asarray(m1, dtype=np.float64), "m2": np.asarray(m2, dtype=np.float64),
    }
    return prof, split


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


class ProfileLayer:
    """The sources of one session's profile, and the renderers it adds to price figures.

    Sources (Bokeh names in parentheses): ``source`` (``profile``) the rows,
    ``split_source`` the halves' POC marks, ``percentile_source`` the percentile
    lines, ``highlight`` (``highlight``) the clicked price band ``y0``/``y1``
    (empty = none).
    """

    def __init__(self, theme: str = "dark"):
        self.theme_name = theme
        self.theme = THEMES[theme]
        self.width = 0.25
        self.source = ColumnDataSource(_empty(PROFILE_COLUMNS), name="profile")
        self.split_source = ColumnDataSource(_empty(SPLIT_COLUMNS), name="split_poc")
        self.percentile_source = ColumnDataSource(_empty(PERCENTILE_COLUMNS), name="percentiles")
        self.highlight = ColumnDataSource({"y0": [], "y1": []}, name="highlight")
        self.figures: list[dict] = []

    def attach(self, fig, prefix: str = "") -> dict:
        """Add the profile renderers and annotations to ``fig``; model names get ``prefix``."""
        th = self.theme
        fig.extra_x_ranges = {**fig.extra_x_ranges, "vp": Range1d(0, 1, name=f"{prefix}vp_range")}
        strip = fig.hstrip(y0="y0", y1="y1", source=self.highlight, fill_color=th["highlight"], fill_alpha=0.3,
                           line_color=th["highlight"], line_alpha=0.7, line_width=1, name=f"{prefix}highlight_band")
        kw = dict(source=self.source, y="y", height="h", x_range_name="vp", line_color=None)
        bars_a = fig.hbar(left="a0", right="a1", fill_color="ca", fill_alpha="alpha", name=f"{prefix}profile_a", **kw)
        bars_b = fig.hbar(left="b0", right="b1", fill_color="cb", fill_alpha="alpha", name=f"{prefix}profile_b", **kw)
        # Hatching: one overlay per (bar, pattern) with a constant pattern over columns whose rows
        # are zero-width where that pattern does not apply (a per-row hatch *field* makes BokehJS
        # rebuild patterns on every render, far too slow; a filtered CDSView goes stale when the
        # row count changes).
        hatches = []
        for left, bar in (("a0", "a1"), ("b0", "b1")):
            for pattern, side in ((BUY_HATCH, "buy"), (SELL_HATCH, "sell")):
                hatches.append(fig.hbar(
                    left=left, right=f"{bar}_{side}", fill_color=None, hatch_pattern=pattern,
                    hatch_color=th["hatch"], hatch_alpha=0.5, hatch_scale=8, hatch_weight=1.2, visible=False,
                    name=f"{prefix}hatch_{bar}_{side}", **kw))
        hover = HoverTool(renderers=[bars_a, bars_b], tooltips=tooltips("buysell", 2), point_policy="follow_mouse",
                          name=f"{prefix}profile_hover")
        fig.add_tools(hover)
        fig.segment(x0="x0", x1="x1", y0="y", y1="y", source=self.split_source, x_range_name="vp",
                    line_color="colour", line_width=2)
        fig.text(x="tx", y="y", text="text", source=self.split_source, x_range_name="vp", text_font_size="10px",
                 text_color=th["poc"], text_baseline="bottom", text_align="right")
        fig.hspan(y="y", source=self.percentile_source, line_color=th["pct"], line_dash="dotted", line_width=1,
                  line_alpha=0.8)
        fig.text(x="tx", y="y", text="text", source=self.percentile_source, x_range_name="vp", text_font_size="10px",
                 text_color=th["pct"], text_baseline="bottom", text_align="left")
        spans = {
            "poc": Span(location=None, dimension="width", line_color=th["poc"], line_width=2, name=f"{prefix}poc_line"),
            "vah": Span(location=None, dimension="width", line_color=th["va"], line_width=1, line_dash="dashed",
                        name=f"{prefix}vah_line"),
            "val": Span(location=None, dimension="width", line_color=th["va"], line_width=1, line_dash="dashed",
                        name=f"{prefix}val_line"),
        }
        baselines = {"poc": "middle", "vah": "bottom", "val": "top"}
        labels = {
            k: Label(x=0, y=0, x_range_name="vp", text="", text_font_size="11px", text_align="right",
                     text_baseline=baselines[k], text_color=s.line_color, background_fill_color=th["bg"],
                     background_fill_alpha=0.75, visible=False, name=f"{prefix}{k}_label", padding=2)
            for k, s in spans.items()
        }
        va = Label(x=8, y=8, x_units="screen", y_units="screen", text="", text_font_size="11px",
                   text_color=th["va"], background_fill_color=th["bg"], background_fill_alpha=0.75, visible=False,
                   name=f"{prefix}va_label", padding=3)
        for k in spans:
            fig.add_layout(spans[k])
            fig.add_layout(labels[k])
        fig.add_layout(va)
        entry = {"fig": fig, "bars": (bars_a, bars_b), "hatches": hatches, "hover": hover, "spans": spans, "labels": labels, "va": va,
                 "strip": strip}
        self.figures.append(entry)
        return entry

    # -- updates ----------------------------------------------------------------------
    def set_mode_style(self, mode: str, decimals: int) -> None:
        for f in self.figures:
            tips = tooltips(mode, decimals)
            if f["hover"].tooltips != tips:
                f["hover"].tooltips = tips

    def set_visible(self, show: bool, hatch: bool) -> None:
        """Show or hide the bars, and their hatch overlays."""
        for f in self.figures:
            for r in f["bars"]:
                if r.visible != show:
                    r.visible = show
            for r in f["hatches"]:
                if r.visible != (show and hatch):
                    r.visible = show and hatch

    def clear(self) -> None:
        if len(self.source.data["y"]):
            self.source.data = _empty(PROFILE_COLUMNS)
        if len(self.split_source.data["y"]):
            self.split_source.data = _empty(SPLIT_COLUMNS)
        if len(self.percentile_source.data["y"]):
            self.percentile_source.data = _empty(PERCENTILE_COLUMNS)
        for f in self.figures:
            for k in f["spans"]:
                f["spans"][k].location = None
                f["labels"][k].visible = False
            f["va"].visible = False

    def set_columns(self, prof: dict, split: dict) -> None:
        """Replace the rows; when the row count is unchanged only changed columns are sent."""
        _update_source(self.source, prof)
        _update_source(self.split_source, split)

    def set_levels(self, res, tick: float, y_span: float) -> dict:
        """POC/VAH/VAL lines and labels, the VA summary and the percentile lines; returns the label texts."""
        idx = res.poc_idx
        vol = res.volume
        delta = res.delta
        texts = {
            "poc": fmt.poc_label(res.poc, float(vol[idx]), float(delta[idx]), tick),
            "vah": fmt.va_edge_label("VAH", res.vah, res.value_area, tick),
            "val": fmt.va_edge_label("VAL", res.val, res.value_area, tick),
        }
        va_vol = float(np.sum(vol[res.va_lo : res.va_hi + 1]))
        va_text = fmt.va_summary(res.vah, res.val, va_vol, tick)
        x_lab = 1 - self.width - 0.004
        sep = 0.028 * y_span
        poc_base = "middle"
        if res.vah - res.poc < sep:
            poc_base = "top"
        elif res.poc - res.val < sep:
            poc_base = "bottom"
        for f in self.figures:
            for k, text in texts.items():
                y = float(getattr(res, k))
                f["spans"][k].location = y
                f["labels"][k].update(x=x_lab, y=y, text=text, visible=True,
                                      **({"text_baseline": poc_base} if k == "poc" else {}))
            f["va"].update(text=va_text, visible=True)
        ps = sorted(res.percentiles.items())
        _update_source(self.percentile_source, {
            "y": [float(v) for _, v in ps],
            "text": [fmt.percentile_label(p, v, tick) for p, v in ps],
            "tx": [0.003] * len(ps),
        })
        return {**texts, "va": va_text}

    def set_highlight(self, band: tuple[float, float] | None) -> None:
        self.highlight.data = {"y0": [band[0]], "y1": [band[1]]} if band else {"y0": [], "y1": []}


def _changed_rows(old, new) -> np.ndarray:
    """Indices of the rows that differ between two equal-length columns (NaN equals NaN)."""
    a, b = np.asarray(old), np.asarray(new)
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        same = (a == b) | (np.isnan(a) & np.isnan(b))
    elif a.dtype.kind in "iub" and b.dtype.kind in "iub":
        same = a == b
    else:
        same = np.asarray(a, dtype=object) == np.asarray(b, dtype=object)
    return np.flatnonzero(~same)


def _own(v):
    """A copy the session's source owns (the given columns may be shared between sessions)."""
    return np.array(v) if isinstance(v, np.ndarray) else list(v)


def _update_source(src: ColumnDataSource, data: dict) -> None:
    """Give ``src`` the columns ``data`` as a new dict of its own copies, or send nothing when nothing changed.

    Never a partial update or a row patch: Bokeh serializes a data change when it writes
    the message, from the source's columns *at that time*, so a later in-place change
    (``patch``, ``data.update``) can reach the browser inside an earlier message and leave
    its columns with different lengths (BokehJS "Size mismatch", DataView errors). A dict
    that is replaced whole and never mutated cannot be torn.
    """
    old = src.data
    n_new = len(next(iter(data.values()))) if data else 0
    n_old = len(next(iter(old.values()))) if old else 0
    if n_new == n_old and set(old) == set(data) and not any(len(_changed_rows(old[k], v)) for k, v in data.items()):
        return
    src.data = {k: _own(v) for k, v in data.items()}
