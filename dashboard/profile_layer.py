"""The VPVR drawn on the right edge of a price figure: bars, POC/VAH/VAL, percentiles, highlight.

The profile lives in its own x range ``"vp"`` pinned to ``[0, 1]`` across the plot
frame, in screen space: the pan, wheel-zoom and reset tools move every x range of
a frame (BokehJS ``PanToolView._update``, ``WheelZoomToolView.zoom``), and
``bounds=(0, 1)`` with ``min_interval = max_interval = 1`` would freeze the wheel
zoom of the time axis too (BokehJS applies one shared weight to all ranges while
zooming), so a browser-side callback puts ``vp`` back at ``[0, 1]`` whenever a tool
moved it (:data:`PIN_JS`, before the next paint). The profile area is the right
strip ``[1 - W, 1]`` where ``W`` is the max bar width (a share of the plot width);
the bars lie over the candles (which the page may dim).

The level labels (POC, VAH, VAL, the percentiles, the developing POC/VAH/VAL, the
split halves' POCs) are :class:`~bokeh.models.Label` annotations in one column at
the frame's right edge. Where they would collide they are nudged apart vertically
in the browser (:data:`LAYOUT_JS`: clusters of overlapping labels are centred on their
prices and kept inside the frame, with a minimum gap of :data:`LABEL_GAP_PX`), from
the y range and the frame's height at every repaint; the hook that runs it is the
price axis's tick formatter, which BokehJS calls on every repaint (first render,
range changes, resizes). Those browser-side values are never sent back to the server
(``syncable=False``).

:func:`profile_columns` (in :mod:`dashboard.profile_bars`, importable from
here) turns a :class:`compute.result.ProfileResult` into the column dict of the
profile ColumnDataSource for one mode; it is a pure function of the (shared)
result and a few settings, so the page memoises it per process
(:func:`dashboard.data.shared`). :class:`ProfileLayer` owns the
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
import param
from bokeh.core.properties import value
from bokeh.models import ColumnDataSource, CustomJS, CustomJSTickFormatter, HoverTool, Label, Range1d, Span, Title

from . import fmt
from .profile_bars import (
    BUY_HATCH,
    PERCENTILE_COLUMNS,
    PROFILE_COLUMNS,
    SELL_HATCH,
    SPLIT_COLUMNS,
    profile_columns,
    signed_strength,
    tooltips,
)
from .sources import empty, update_source
from .theme import THEMES

#: What callers import from here (the columns transform moved to :mod:`dashboard.profile_bars`).
__all__ = [
    "BUY_HATCH", "PERCENTILE_COLUMNS", "PROFILE_COLUMNS", "SELL_HATCH", "SPLIT_COLUMNS", "ProfileLayer",
    "profile_columns", "signed_strength", "tooltips",
]


#: Label box height (px) at the labels' 11 px font with 2 px padding, and the least gap between two boxes.
LABEL_HEIGHT_PX, LABEL_GAP_PX = 17, 3
#: Percentile labels kept per figure (the settings allow at most 9 percentile lines).
MAX_PERCENTILE_LABELS = 9
#: Distance (px) of the label column from the frame's right edge.
LABEL_INSET_PX = 4

#: Puts an x range back at [0, 1] whenever a tool moved it (args: none; the range is ``cb_obj``).
PIN_JS = "if (cb_obj.start !== 0 || cb_obj.end !== 1) { cb_obj.setv({start: 0, end: 1}); }"

#: The price axis's tick formatter: formats a price with ``decimals`` and, once per repaint, schedules the
#: screen-space layout of the figure's labels, TPO letters and legend (see the module docstring).
LAYOUT_JS = """
const out = tick.toLocaleString('en-US', {minimumFractionDigits: decimals, maximumFractionDigits: decimals});
if (fig.__fl_schedule == null) {
const run = () => {
  const view = (window.Bokeh && Bokeh.index) ? Bokeh.index.find_one(fig) : null;
  if (view == null) return;
  const frame = view.frame, box = frame.bbox, ys = frame.y_scale;
  // 1. the label column: sorted by price, overlapping boxes merged into clusters centred on their prices
  const top = box.top + 1, bottom = box.bottom - 1;
  const items = [];
  let H = label_h;  // the tallest drawn label box (measured by its view once it has been drawn)
  for (const lab of labels) {
    if (!lab.visible || lab.y == null || !isFinite(lab.y) || !lab.text) continue;
    items.push({lab: lab, want: ys.compute(lab.y)});
    const lv = Bokeh.index.find_one(lab);
    if (lv != null && lv._rect != null) H = Math.max(H, Math.ceil(lv._rect.height));
  }
  const step = H + gap;
  items.sort((a, b) => a.want - b.want);
  let cl = items.map((it) => ({items: [it], top: it.want - H / 2}));
  const fit = (c) => {
    const n = c.items.length;
    const mean = c.items.reduce((s, it) => s + it.want, 0) / n;
    c.top = mean - (n * step - gap) / 2;
    c.top = Math.max(top, Math.min(c.top, bottom - (n * step - gap)));
  };
  cl.forEach(fit);
  for (let merged = true; merged;) {
    merged = false;
    for (let i = 1; i < cl.length; i++) {
      const a = cl[i - 1], b = cl[i];
      if (b.top < a.top + a.items.length * step) {
        const c = {items: a.items.concat(b.items), top: 0};
        fit(c);
        cl.splice(i - 1, 2, c);
        merged = true;
        break;
      }
    }
  }
  for (const c of cl) {
    c.items.forEach((it, k) => {
      const at = c.top + k * step + H / 2;
      const off = Math.round((it.want - at) * 10) / 10;
      if (Math.abs(it.lab.y_offset - off) > 0.05) it.lab.y_offset = off;
    });
  }
  // 2. TPO letters: shown where a row is tall enough and each letter has room in its bar
  if (letters != null) {
    const d = letters.data_source.data;
    const txt = d.letters || [];
    let show = false;
    if (txt.length && txt.some((t) => t)) {
      const rowpx = Math.abs(ys.compute(d.y[0] + d.h[0] / 0.9) - ys.compute(d.y[0]));
      let perletter = Infinity;
      for (let i = 0; i < txt.length; i++) {
        if (txt[i]) perletter = Math.min(perletter, (d.a1[i] - d.a0[i]) * box.width / txt[i].length);
      }
      show = rowpx >= 9 && perletter >= 5.5;
    }
    if (letters.visible !== show) letters.visible = show;
  }
  // 3. legend marks placed in pixels from the frame's top left (x in the pinned "vp" range, y in "frac")
  if (legend != null) {
    const d = legend.data;
    const n = (d.px || []).length;
    const x = new Array(n), y = new Array(n);
    for (let i = 0; i < n; i++) { x[i] = d.px[i] / box.width; y[i] = 1 - d.py[i] / box.height; }
    const same = (a, b) => a != null && a.length === b.length && Array.from(a).every((v, i) => Math.abs(v - b[i]) < 1e-9);
    if (!same(d.x, x) || !same(d.y, y)) legend.data = Object.assign({}, d, {x: x, y: y});
  }
};
fig.__fl_run = run;  // (also called by the browser tests, to read a laid-out state at once)
// at most one layout per animation frame, after any change of what it depends on
fig.__fl_schedule = () => {
  if (fig.__fl_pending) return;
  fig.__fl_pending = true;
  requestAnimationFrame(() => { fig.__fl_pending = false; run(); });
};
for (const m of [...labels, fig.y_range, letters, letters && letters.data_source, legend]) {
  if (m != null) m.change.connect(fig.__fl_schedule);
}
}
if (index === 0) fig.__fl_schedule();  // every repaint of the axis (first render, ranges, resizes)
return out;
"""


def pinned_range(name: str) -> Range1d:
    """An x range fixed to ``[0, 1]`` across the frame (the pan, zoom and reset tools cannot move it)."""
    r = Range1d(0, 1, name=name, syncable=False)
    cb = CustomJS(code=PIN_JS)
    r.js_on_change("start", cb)
    r.js_on_change("end", cb)
    return r


class ProfileLayer(param.Parameterized):
    """The sources of one session's profile, and the renderers it adds to price figures.

    Made as before with ``ProfileLayer(theme)``. Sources (Bokeh names in parentheses):
    ``source`` (``profile``) the rows, ``split_source`` the halves' POC marks,
    ``percentile_source`` the percentile lines, ``highlight`` (``highlight``) the
    clicked price band ``y0``/``y1`` (empty = none). :attr:`theme` is the colour dict of
    :data:`dashboard.theme.THEMES` for :attr:`theme_name`.
    """

    theme_name = param.Selector(default="dark", objects=list(THEMES), constant=True,
                                doc="Colour theme of the renderers (the constructor's ``theme``), fixed once built.")
    width = param.Number(default=0.25, doc="The longest bar's share of the plot width (the page's max_width): "
                                           "the right strip the profile fills; the columns are computed with the "
                                           "same width.")

    def __init__(self, theme: str = "dark", **params):
        colours = THEMES[theme]
        super().__init__(theme_name=theme, **params)
        self.theme = colours
        self.source = ColumnDataSource(empty(PROFILE_COLUMNS), name="profile")
        self.split_source = ColumnDataSource(empty(SPLIT_COLUMNS), name="split_poc")
        self.percentile_source = ColumnDataSource(empty(PERCENTILE_COLUMNS), name="percentiles")
        self.highlight = ColumnDataSource({"y0": [], "y1": []}, name="highlight")
        self.figures: list[dict] = []
        self._decimals = 2

    def attach(self, fig, prefix: str = "", percentile_spans: bool = True) -> dict:
        """Add the profile renderers and annotations to ``fig``; model names get ``prefix``.

        ``percentile_spans``: the percentile lines cross the whole plot (else only the
        profile's strip, so they are not drawn over a footprint's cells). The figure's
        price axis gets the formatter that also lays the labels out (:data:`LAYOUT_JS`).

        Returns the figure's parts (also kept in :attr:`figures`): ``fig``, ``bars`` (a, b),
        ``hatches``, ``hover``, ``spans`` / ``labels`` (``poc``, ``vah``, ``val``), ``dev_labels``
        (``dpoc``, ``dvah``, ``dval``), ``pct_labels`` and ``split_labels`` (lists), ``letters``
        (the TPO letters' renderer), ``va``, ``strip`` and ``formatter``.
        """
        fig.extra_x_ranges = {**fig.extra_x_ranges, "vp": pinned_range(f"{prefix}vp_range")}
        th = self.theme
        strip = fig.hstrip(y0="y0", y1="y1", source=self.highlight, fill_color=th["highlight"], fill_alpha=0.3,
                           line_color=th["highlight"], line_alpha=0.7, line_width=1, name=f"{prefix}highlight_band")
        bars, hatches, hover = self._add_bars(fig, prefix)
        letters = fig.text(x="a0", y="y", text="letters", source=self.source, x_range_name="vp",
                           text_font=value("monospace"), text_font_size="9px", text_color=th["text"], text_alpha=0.85,
                           text_align="left", text_baseline="middle", x_offset=1, visible=False, syncable=False,
                           name=f"{prefix}tpo_letters")
        self._add_marks(fig, percentile_spans)
        spans, labels, va = self._add_levels(fig, prefix)
        dev_labels = {k: self._label(f"{prefix}{k}_label", th["dev_poc" if k == "dpoc" else f"dev_{k[1:]}"])
                      for k in ("dpoc", "dvah", "dval")}
        pct_labels = [self._label(f"{prefix}pct_label_{i}", th["pct"]) for i in range(MAX_PERCENTILE_LABELS)]
        split_labels = [self._label(f"{prefix}split_label_{i}", th["first" if i == 0 else "second"])
                        for i in range(2)]
        for lab in (*dev_labels.values(), *pct_labels, *split_labels):
            fig.add_layout(lab)
        column = [*labels.values(), *dev_labels.values(), *pct_labels, *split_labels]
        formatter = CustomJSTickFormatter(code=LAYOUT_JS, args=dict(
            fig=fig, labels=column, letters=letters, legend=None, decimals=self._decimals, label_h=LABEL_HEIGHT_PX,
            gap=LABEL_GAP_PX))
        fig.yaxis.formatter = formatter
        entry = {"fig": fig, "bars": bars, "hatches": hatches, "hover": hover, "spans": spans, "labels": labels,
                 "dev_labels": dev_labels, "pct_labels": pct_labels, "split_labels": split_labels,
                 "letters": letters, "va": va, "strip": strip, "formatter": formatter}
        self.figures.append(entry)
        return entry

    def _label(self, name: str, colour: str, visible: bool = False) -> Label:
        """One label of the right-hand column (its ``y_offset`` belongs to the browser's layout)."""
        return Label(x=1, y=0, x_range_name="vp", x_offset=-LABEL_INSET_PX, text="", text_font_size="11px",
                     text_align="right", text_baseline="middle", text_color=colour,
                     background_fill_color=self.theme["bg"], background_fill_alpha=0.8, border_line_color=colour,
                     border_line_alpha=0.6, padding=2, visible=visible, name=name, syncable=False)

    def _add_bars(self, fig, prefix: str) -> tuple[tuple, list, HoverTool]:
        """Bars a and b of every row, their hatch overlays (hidden) and their hover tool."""
        th = self.theme
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
        return (bars_a, bars_b), hatches, hover

    def _add_marks(self, fig, percentile_spans: bool) -> None:
        """The split halves' POC marks and the percentile lines (their labels are in the column)."""
        th = self.theme
        fig.segment(x0="x0", x1="x1", y0="y", y1="y", source=self.split_source, x_range_name="vp",
                    line_color="colour", line_width=2)
        if percentile_spans:
            fig.hspan(y="y", source=self.percentile_source, line_color=th["pct"], line_dash="dotted", line_width=1,
                      line_alpha=0.8)
        else:  # over the profile's strip only
            fig.segment(x0="sx0", x1=1, y0="y", y1="y", source=self.percentile_source, x_range_name="vp",
                        line_color=th["pct"], line_dash="dotted", line_width=1, line_alpha=0.8)

    def _add_levels(self, fig, prefix: str) -> tuple[dict, dict, Title]:
        """The POC/VAH/VAL lines and labels (hidden until :meth:`set_levels`) and the value-area summary.

        The summary is the figure's title, above the frame's top left corner (beside the toolbar),
        where it covers neither candles nor footprint cells.
        """
        th = self.theme
        spans = {
            "poc": Span(location=None, dimension="width", line_color=th["poc"], line_width=2, name=f"{prefix}poc_line"),
            "vah": Span(location=None, dimension="width", line_color=th["va"], line_width=1, line_dash="dashed",
                        name=f"{prefix}vah_line"),
            "val": Span(location=None, dimension="width", line_color=th["va"], line_width=1, line_dash="dashed",
                        name=f"{prefix}val_line"),
        }
        labels = {k: self._label(f"{prefix}{k}_label", s.line_color) for k, s in spans.items()}
        # the figure's title, which Bokeh draws beside the toolbar (annotations are clipped to the frame)
        va = Title(text="", text_font_size="11px", text_font_style="normal", text_color=th["va"], align="left",
                   standoff=2, visible=False, name=f"{prefix}va_label")
        for k in spans:
            fig.add_layout(spans[k])
            fig.add_layout(labels[k])
        fig.title = va
        return spans, labels, va

    # -- updates ----------------------------------------------------------------------
    def set_mode_style(self, mode: str, decimals: int) -> None:
        for f in self.figures:
            tips = tooltips(mode, decimals)
            if f["hover"].tooltips != tips:
                f["hover"].tooltips = tips

    def set_decimals(self, decimals: int) -> None:
        """Prices on the figures' axes with the symbol's decimals."""
        self._decimals = int(decimals)
        for f in self.figures:
            if f["formatter"].args.get("decimals") != decimals:
                f["formatter"].args = {**f["formatter"].args, "decimals": int(decimals)}

    def set_legend(self, fig, source: ColumnDataSource) -> None:
        """Marks whose ``px``/``py`` (pixels from the frame's top left) the browser turns into ``x``/``y``
        (the pinned ``vp`` range and a fixed ``[0, 1]`` y range) at every repaint."""
        for f in self.figures:
            if f["fig"] is fig:
                f["formatter"].args = {**f["formatter"].args, "legend": source}

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
            self.source.data = empty(PROFILE_COLUMNS)
        if len(self.split_source.data["y"]):
            self.split_source.data = empty(SPLIT_COLUMNS)
        if len(self.percentile_source.data["y"]):
            self.percentile_source.data = empty(PERCENTILE_COLUMNS)
        for f in self.figures:
            for k in f["spans"]:
                f["spans"][k].location = None
                f["labels"][k].visible = False
            for lab in (*f["pct_labels"], *f["split_labels"]):
                if lab.visible:
                    lab.visible = False
            f["va"].visible = False

    def set_columns(self, prof: dict, split: dict) -> None:
        """Replace the rows; when the row count is unchanged only changed columns are sent."""
        update_source(self.source, prof)
        update_source(self.split_source, split)
        for f in self.figures:
            for i, lab in enumerate(f["split_labels"]):
                if i < len(split["y"]):
                    lab.update(y=float(split["y"][i]), text=split["text"][i], visible=True)
                elif lab.visible:
                    lab.visible = False

    def set_levels(self, res, tick: float, y_span: float | None = None) -> dict:
        """POC/VAH/VAL lines and labels, the VA summary and the percentile lines; returns the label texts.

        The POC label names the POC row's own measure (:func:`poc_text`: ``TPO n`` for a TPO
        profile). ``y_span`` is no longer used: the browser keeps the labels apart.
        """
        texts = {
            "poc": poc_text(res, tick),
            "vah": fmt.va_edge_label("VAH", res.vah, res.value_area, tick),
            "val": fmt.va_edge_label("VAL", res.val, res.value_area, tick),
        }
        va_vol = float(np.sum(res.volume[res.va_lo : res.va_hi + 1]))
        va_text = fmt.va_summary(res.vah, res.val, va_vol, tick)
        if res.kind == "tpo":
            tpo = np.asarray(res.columns["tpo"])
            va_text += f" | TPO {int(tpo[res.va_lo : res.va_hi + 1].sum())} of {int(tpo.sum())}"
        ps = sorted(res.percentiles.items())
        pct_texts = [fmt.percentile_label(p, v, tick) for p, v in ps]
        for f in self.figures:
            for k, text in texts.items():
                y = float(getattr(res, k))
                f["spans"][k].location = y
                f["labels"][k].update(y=y, text=text, visible=True)
            f["va"].update(text=va_text, visible=True)
            for i, lab in enumerate(f["pct_labels"]):
                if i < len(ps):
                    lab.update(y=float(ps[i][1]), text=pct_texts[i], visible=True)
                elif lab.visible:
                    lab.visible = False
        update_source(self.percentile_source, {
            "y": [float(v) for _, v in ps], "text": pct_texts, "tx": [1.0] * len(ps),
            "sx0": [1.0 - float(self.width)] * len(ps),
        })
        return {**texts, "va": va_text}

    def set_developing(self, last: dict | None, tick: float) -> None:
        """Labels of the developing POC/VAH/VAL at their latest values (``{"poc", "vah", "val"}``; None hides)."""
        for f in self.figures:
            for k, lab in f["dev_labels"].items():
                if last is None or not np.isfinite(last.get(k[1:], np.nan)) or f["fig"].name != "price_chart":
                    if lab.visible:
                        lab.visible = False
                    continue
                y = float(last[k[1:]])
                lab.update(y=y, text=f"d{k[1:].upper()} {fmt.price(y, tick)}", visible=True)

    def set_highlight(self, band: tuple[float, float] | None) -> None:
        self.highlight.data = {"y0": [band[0]], "y1": [band[1]]} if band else {"y0": [], "y1": []}


def poc_text(res, tick: float) -> str:
    """The POC label: ``POC 45,135.00 | TPO 14`` for a TPO profile (its POC row's TPO count),
    ``POC 45,135.00 | wVol 640K | Vol 1.2M`` for a recency profile (the POC row's time-weighted volume, which
    chose it, then its plain volume), else ``POC 45,135.00 | Vol 1.2M | Δ +15K`` (the POC row's volume and delta)."""
    i = res.poc_idx
    if res.kind == "tpo":
        return f"POC {fmt.price(res.poc, tick)} | TPO {int(np.asarray(res.columns['tpo'])[i])}"
    if res.kind == "recency":
        wv = float(np.asarray(res.columns["weighted_volume"])[i])
        return f"POC {fmt.price(res.poc, tick)} | wVol {fmt.volume(wv)} | Vol {fmt.volume(float(res.volume[i]))}"
    return fmt.poc_label(res.poc, float(res.volume[i]), float(res.delta[i]), tick)
