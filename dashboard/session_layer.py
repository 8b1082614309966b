"""Session profiles, naked POCs, prior-session levels and VWAP bands drawn on the price chart.

:class:`SessionLayer` turns a :class:`compute.sessions.SessionsResult` and a :class:`compute.vwap.VwapResult`
into columns of a few ColumnDataSources on the chart's figure (data space: x = time in UTC ms, y = price):

* each session's histogram inside its own time span (TradingView's *Session Volume Profile*): a bar per row
  from the session's start, its length a share of the session's width proportional to the row's volume; rows
  of the value area stronger than the rest;
* each session's POC across its span (solid), VAH and VAL (dashed); the previous session's POC/VAH/VAL across
  the current one (dotted, "prior-session levels");
* naked POCs: a session's POC extended from the session's end until the first later trade in its row
  (``touched_at``) or to the window's end while still naked, labelled with the session's start;
* the VWAP and its 1σ and 2σ bands as lines, broken at each session's start when it resets;
* fixed-range profiles (TradingView's *Fixed Range Volume Profile*): a range dragged across the chart gets its
  own histogram, box and POC inside itself; and an anchored VWAP (±1σ) from a double-clicked time.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import param
from bokeh.models import ColumnDataSource

from .sources import empty, update_source
from .theme import THEMES

BAR_COLUMNS = ("left", "right", "bottom", "top", "alpha")
LEVEL_COLUMNS = ("x0", "x1", "y", "kind")
NAKED_COLUMNS = ("x0", "x1", "y", "text")
VWAP_COLUMNS = ("t", "vwap", "u1", "l1", "u2", "l2")
#: Share of a session's width its longest bar takes.
BAR_SHARE = 0.85


def session_columns(res, window_end: int) -> tuple[dict, dict, dict]:
    """``(bars, levels, naked)`` columns of a :class:`~compute.sessions.SessionsResult` (None: all empty).

    ``window_end`` (UTC ms) is where a naked POC's line stops and where the last session's span is cut.
    """
    if res is None or not res.sessions:
        return empty(BAR_COLUMNS), empty(LEVEL_COLUMNS), empty(NAKED_COLUMNS)
    bars = {c: [] for c in BAR_COLUMNS}
    levels = {c: [] for c in LEVEL_COLUMNS}
    naked = {c: [] for c in NAKED_COLUMNS}
    prior = res.prior_levels()
    for sess, prev in zip(res.sessions, prior, strict=True):
        p = sess.profile
        span_end = min(sess.end, window_end)
        width = (span_end - sess.start) * BAR_SHARE
        vol = np.asarray(p.volume, dtype=np.float64)
        mx = float(vol.max()) if len(vol) else 0.0
        if mx > 0:
            idx = np.arange(p.rows)
            bars["left"].extend([float(sess.start)] * p.rows)
            bars["right"].extend((sess.start + width * vol / mx).tolist())
            bars["bottom"].extend(p.price_low.tolist())
            bars["top"].extend(p.price_high.tolist())
            bars["alpha"].extend(np.where((idx >= p.va_lo) & (idx <= p.va_hi), 0.45, 0.2).tolist())
        for kind, y in (("poc", p.poc), ("vah", p.vah), ("val", p.val)):
            levels["x0"].append(float(sess.start))
            levels["x1"].append(float(span_end))
            levels["y"].append(float(y))
            levels["kind"].append(kind)
        if prev is not None:
            for kind in ("poc", "vah", "val"):
                levels["x0"].append(float(sess.start))
                levels["x1"].append(float(span_end))
                levels["y"].append(float(prev[kind]))
                levels["kind"].append(f"prior_{kind}")
        if sess.end < window_end:  # a POC can only be naked (or touched) after its session
            naked["x0"].append(float(sess.end))
            naked["x1"].append(float(sess.touched_at if sess.touched_at is not None else window_end))
            naked["y"].append(float(p.poc))
            when = dt.datetime.fromtimestamp(sess.start / 1000, dt.UTC).strftime("%m-%d %H:%M")
            naked["text"].append(f"{'nPOC' if sess.naked else 'POC'} {when}")
    return bars, levels, naked


def vwap_columns(res) -> dict:
    """Columns of the VWAP line and its 1σ/2σ bands, with a NaN row before each new anchor (a break)."""
    if res is None or not len(res.time):
        return empty(VWAP_COLUMNS)
    t = res.time.astype(np.float64)
    v, sd = res.vwap, res.sd
    cols = {"t": t, "vwap": v, "u1": v + sd, "l1": v - sd, "u2": v + 2 * sd, "l2": v - 2 * sd}
    breaks = np.flatnonzero(np.diff(res.anchor) != 0) + 1
    if len(breaks):  # a NaN row at the new anchor (the session's start) breaks each line there
        anchors = res.anchor[breaks].astype(np.float64)
        cols = {k: np.insert(a, breaks, anchors if k == "t" else np.nan) for k, a in cols.items()}
    return cols


FIXED_BOX_COLUMNS = ("left", "right", "bottom", "top", "poc", "text")


def fixed_columns(fixed) -> tuple[dict, dict]:
    """``(bars, boxes)`` of fixed-range profiles ``((start, end), ProfileResult or None)``: each range's bars
    drawn from its start inside it (longest = :data:`BAR_SHARE` of its width), and its box with POC and label."""
    bars = {c: [] for c in BAR_COLUMNS}
    boxes = {c: [] for c in FIXED_BOX_COLUMNS}
    for (a, b), p in fixed:
        if p is None:
            continue
        vol = np.asarray(p.volume, dtype=np.float64)
        mx = float(vol.max()) if len(vol) else 0.0
        if mx <= 0:
            continue
        idx = np.arange(p.rows)
        bars["left"].extend([float(a)] * p.rows)
        bars["right"].extend((a + (b - a) * BAR_SHARE * vol / mx).tolist())
        bars["bottom"].extend(p.price_low.tolist())
        bars["top"].extend(p.price_high.tolist())
        bars["alpha"].extend(np.where((idx >= p.va_lo) & (idx <= p.va_hi), 0.5, 0.22).tolist())
        fmt = "%m-%d %H:%M"
        span = (f"{dt.datetime.fromtimestamp(a / 1000, dt.UTC).strftime(fmt)}→"
                f"{dt.datetime.fromtimestamp(b / 1000, dt.UTC).strftime('%H:%M')}")
        for k, v in (("left", float(a)), ("right", float(b)), ("bottom", float(p.price_low[0])),
                     ("top", float(p.price_high[-1])), ("poc", float(p.poc)), ("text", f"{span} POC {p.poc:g}")):
            boxes[k].append(v)
    return bars, boxes


class SessionLayer(param.Parameterized):
    """Session histograms, session levels, naked POCs and VWAP bands on one Bokeh figure."""

    theme = param.Selector(default="dark", objects=list(THEMES), doc="Colour theme.")
    show_sessions = param.Boolean(default=False, doc="Draw the session profiles and levels.")
    show_naked = param.Boolean(default=True, doc="Draw naked POCs (with the sessions).")
    show_vwap = param.Boolean(default=False, doc="Draw the VWAP and its bands.")

    def __init__(self, fig, **params):
        super().__init__(**params)
        th = THEMES[self.theme]
        self.bars = ColumnDataSource(empty(BAR_COLUMNS), name="session_bars")
        self.levels = ColumnDataSource(empty(LEVEL_COLUMNS), name="session_levels")
        self.naked = ColumnDataSource(empty(NAKED_COLUMNS), name="naked_pocs")
        self.vwap = ColumnDataSource(empty(VWAP_COLUMNS), name="vwap")
        self.renderers = {
            "bars": [fig.quad(left="left", right="right", bottom="bottom", top="top", source=self.bars,
                              fill_color=th["va"], fill_alpha="alpha", line_alpha=0, name="session_hist")],
            "levels": [self._levels(fig, kind, th) for kind in
                       ("poc", "vah", "val", "prior_poc", "prior_vah", "prior_val")],
            "naked": [fig.segment(x0="x0", x1="x1", y0="y", y1="y", source=self.naked, line_color=th["warn"],
                                  line_width=1.2, line_dash="dashed", name="naked_poc_lines"),
                      fig.text(x="x1", y="y", text="text", source=self.naked, text_font_size="9px",
                               text_color=th["warn"], text_baseline="bottom", text_align="right",
                               name="naked_poc_labels")],
            "vwap": [fig.line(x="t", y="vwap", source=self.vwap, line_color=th["pct"], line_width=1.6, name="vwap_line"),
                     *(fig.line(x="t", y=c, source=self.vwap, line_color=th["pct"], line_width=1,
                                line_alpha=0.7 if c.endswith("1") else 0.45, line_dash="dashed", name=f"vwap_{c}")
                       for c in ("u1", "l1", "u2", "l2"))],
        }
        self.fixed_bars = ColumnDataSource(empty(BAR_COLUMNS), name="fixed_bars")
        self.fixed_boxes = ColumnDataSource(empty(FIXED_BOX_COLUMNS), name="fixed_ranges")
        self.anchored = ColumnDataSource(empty(VWAP_COLUMNS), name="anchored_vwap")
        fig.quad(left="left", right="right", bottom="bottom", top="top", source=self.fixed_bars,
                 fill_color=th["recent"], fill_alpha="alpha", line_alpha=0, name="fixed_hist")
        fig.quad(left="left", right="right", bottom="bottom", top="top", source=self.fixed_boxes, fill_alpha=0,
                 line_color=th["recent"], line_dash="dotted", line_width=1, name="fixed_boxes")
        fig.segment(x0="left", x1="right", y0="poc", y1="poc", source=self.fixed_boxes, line_color=th["poc"],
                    line_width=1.4, name="fixed_pocs")
        fig.text(x="left", y="top", text="text", source=self.fixed_boxes, text_font_size="9px",
                 text_color=th["recent"], text_baseline="bottom", name="fixed_labels")
        fig.line(x="t", y="vwap", source=self.anchored, line_color=th["warn"], line_width=1.6, name="anchored_vwap_line")
        for c in ("u1", "l1"):
            fig.line(x="t", y=c, source=self.anchored, line_color=th["warn"], line_width=1, line_alpha=0.6,
                     line_dash="dashed", name=f"anchored_vwap_{c}")
        self._visible()

    def update_anchored(self, fixed, anchored) -> None:
        """Show the fixed-range profiles ``((start, end), result)`` and the anchored VWAP (None: none)."""
        bars, boxes = fixed_columns(fixed)
        update_source(self.fixed_bars, bars)
        update_source(self.fixed_boxes, boxes)
        update_source(self.anchored, vwap_columns(anchored))

    def _levels(self, fig, kind: str, th: dict):
        from bokeh.models import CDSView, GroupFilter

        prior = kind.startswith("prior_")
        colour = th["poc"] if kind.endswith("poc") else th["va"]
        return fig.segment(x0="x0", x1="x1", y0="y", y1="y", source=self.levels,
                           view=CDSView(filter=GroupFilter(column_name="kind", group=kind)),
                           line_color=colour, line_width=1 if prior else 1.4,
                           line_dash="dotted" if prior else ("solid" if kind == "poc" else "dashed"),
                           line_alpha=0.6 if prior else 0.9, name=f"session_{kind}")

    @param.depends("show_sessions", "show_naked", "show_vwap", watch=True)
    def _visible(self) -> None:
        for name, rs in self.renderers.items():
            on = {"bars": self.show_sessions, "levels": self.show_sessions,
                  "naked": self.show_sessions and self.show_naked, "vwap": self.show_vwap}[name]
            for r in rs:
                r.visible = on

    def update(self, sessions, vwap, window_end: int) -> None:
        """Show ``sessions`` (a SessionsResult or None) and ``vwap`` (a VwapResult or None) up to ``window_end``."""
        bars, levels, naked = session_columns(sessions if self.show_sessions else None, window_end)
        for src, cols in ((self.bars, bars), (self.levels, levels), (self.naked, naked),
                          (self.vwap, vwap_columns(vwap if self.show_vwap else None))):
            update_source(src, cols)
