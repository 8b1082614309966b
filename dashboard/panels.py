"""Side panels as small HTML tables: the time & sales tape and the recent liquidations.

Both are pure functions of shared, per-process data (see :mod:`dashboard.data`),
so the page memoises the HTML per process. Every cell is a number formatted
here or a fixed word; anything that could come from outside is HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import time

import numpy as np
import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from . import fmt
from .data import liquidations_view, shared, tape_rows
from .settings import DashboardSettings
from .theme import THEMES


class HtmlBox:
    """Trusted HTML (built and escaped here) in a Bokeh ``Div``, for parts updated several times a second.

    Panel's HTML pane HTML-escapes its text once more for transport (about 1.6 times the bytes);
    a Div's text goes as is. ``object`` is the HTML; setting an equal value sends nothing.
    ``pane`` is what goes into a layout.
    """

    def __init__(self, text: str = "", css: str = "", name: str | None = None, sizing_mode: str = "stretch_width",
                 styles: dict | None = None, **pane_kw):
        from bokeh.models import Div

        # The Div carries the style sheet itself too: without a design (the embed view, no template) Panel does
        # not pass the pane's stylesheets on, and the status line wrapped in the page's default font.
        self.div = Div(text=text, name=name, sizing_mode=sizing_mode, styles=styles or {},
                       stylesheets=[css] if css else [])
        # Panel gives the model of a Bokeh pane the pane's stylesheets (plus its design's), replacing the model's own
        self.pane = pn.pane.Bokeh(self.div, sizing_mode=sizing_mode, stylesheets=[css] if css else [], **pane_kw)

    @property
    def object(self) -> str:
        return self.div.text

    @object.setter
    def object(self, text: str) -> None:
        if text != self.div.text:
            self.div.text = text


#: Shown with the liquidation table (reference b11 / Binance "Liquidation Order Streams").
LIQUIDATION_NOTE = (
    "Binance sends at most one liquidation per symbol per second (a 1000 ms snapshot of the latest one), "
    "so these markers and totals undercount."
)


def _hms(ms: np.ndarray, with_ms: bool = True) -> list[str]:
    out = []
    for v in ms.tolist():
        t = dt.datetime.fromtimestamp(v / 1000, tz=dt.UTC)
        s = t.strftime("%H:%M:%S")
        out.append(f"{s}.{int(v) % 1000:03d}" if with_ms else s)
    return out


def tape_html(rows: dict, tick: float, theme: str = "dark", min_size: float = 0.0) -> str:
    """Time & sales table from :func:`dashboard.data.tape_rows` (newest first)."""
    th = THEMES[theme]
    n = len(rows["time"])
    head = (f'<div class="fl-panel-title">Time &amp; sales <span class="fl-muted">'
            f'{"≥ " + fmt.volume(min_size) if min_size > 0 else "all sizes"}</span></div>')
    if not n:
        return head + '<div class="fl-muted fl-tape">no trades</div>'
    times = _hms(rows["time"])
    body = []
    # compact rows (sent several times a second): class b/s colours the row, end tags are implied (HTML5)
    for i in range(n):
        side = rows["side"][i]
        body.append(
            f'<tr class={"b" if side == "buy" else "s"}><td>{times[i]}<td>'
            f'{fmt.price(float(rows["price"][i]), tick)}<td>{float(rows["qty"][i]):,.3f}'
            f'<td>{"B" if side == "buy" else "S"}'
        )
    style = f"<style>.fl-tape .b{{color:{th['buy']}}}.fl-tape .s{{color:{th['sell']}}}</style>"
    return (head + style + '<table class="fl-table fl-tape"><thead><tr><th>time (UTC)</th><th class="r">price</th>'
            '<th class="r">size</th><th class="c">side</th></tr></thead><tbody>' + "".join(body) + "</tbody></table>")


def liquidations_html(liq: pd.DataFrame, tick: float, theme: str = "dark", min_notional: float = 0.0,
                      limit: int = 25) -> str:
    """Recent liquidations (newest first) from :func:`dashboard.data.liquidations_view`, with the Binance note."""
    th = THEMES[theme]
    e = html.escape
    head = (f'<div class="fl-panel-title">Liquidations <span class="fl-muted">'
            f'{"≥ " + fmt.volume(min_notional) + " notional" if min_notional > 0 else "all"}</span></div>')
    note = f'<div class="fl-note">{e(LIQUIDATION_NOTE)}</div>'
    if not len(liq):
        return head + '<div class="fl-muted fl-liqs">no liquidations in the visible range</div>' + note
    df = liq.tail(limit).iloc[::-1]
    times = _hms(df["time"].to_numpy(), with_ms=False)
    body = []
    longs = int((liq["side"] == "SELL").sum())
    shorts = len(liq) - longs
    total = float(liq["notional"].sum())
    for i, (_, r) in enumerate(df.iterrows()):
        is_long = r["side"] == "SELL"
        c = th["liq_long"] if is_long else th["liq_short"]
        body.append(
            f'<tr><td>{times[i]}</td><td style="color:{c}">{"▼ long" if is_long else "▲ short"}</td>'
            f'<td class="r">{fmt.price(float(r["price"]), tick)}</td><td class="r">{float(r["qty"]):,.3f}</td>'
            f'<td class="r">{fmt.volume(float(r["notional"]))}</td></tr>'
        )
    summary = (f'<div class="fl-muted">{len(liq)} in range: {longs} longs, {shorts} shorts liquidated · '
               f'{fmt.volume(total)} notional</div>')
    return (head + summary + '<table class="fl-table fl-liqs"><thead><tr><th>time</th><th>liquidated</th>'
            '<th class="r">price</th><th class="r">qty</th><th class="r">notional</th></tr></thead><tbody>'
            + "".join(body) + "</tbody></table>" + note)


#: Rows of the time & sales tape, and the shortest interval between two updates of the side panels (s).
TAPE_ROWS, SIDE_MIN_S = 22, 0.5


#: On a phone (the panels under the chart) the tape keeps a readable height instead of stretching.
SIDE_CSS = """
@media (max-width: 767.98px) {
  :host { height: auto !important; }
  .fl-tape-box { height: 420px !important; flex: 0 0 auto !important; }
}
"""


class SidePanels(Viewer):
    """Liquidations (with min-notional filter and the Binance note) over the time & sales tape, beside the chart.

    :meth:`update` also sets the chart's liquidation markers (embedded pages too, which
    show no side panels). The tables are rebuilt at most every :data:`SIDE_MIN_S`
    seconds unless a filter changed; their HTML is shared by the process's sessions.
    """

    settings = param.ClassSelector(class_=DashboardSettings, doc="The viewer's settings (filters, embed).")
    theme = param.Selector(default="dark", objects=list(THEMES), doc="Colour theme of the tables.")

    def __init__(self, css: str, **params):
        super().__init__(**params)
        self.tape = HtmlBox("", css, name="tape", sizing_mode="stretch_both", styles={"overflow-y": "auto"},
                            css_classes=["fl-tape-box"])
        self.liqs = HtmlBox("", css, name="liquidations", styles={"overflow-y": "auto", "max-height": "360px"})
        self._seen = None
        self._at = 0.0

    def update(self, snap, tick: float, rng: tuple[int, int], chart) -> None:
        """Show the liquidations of ``rng`` on ``chart`` (a PriceChart) and refresh the tables (throttled)."""
        s = self.settings
        liq = getattr(snap, "liquidations", None)
        liq_id = (id(liq), len(liq)) if liq is not None else None
        start, end = rng
        lkey = ("liq", snap.symbol, liq_id, start, end, float(s.liq_min_notional))
        lv = shared(lkey, lambda: liquidations_view(liq, snap.symbol, start, end, s.liq_min_notional))
        chart.update_liquidations(lv)
        if s.embed:
            return
        key = (snap.symbol, snap.version, lkey, float(s.tape_min_size), self.theme)
        now = time.monotonic()
        settings_changed = key[2:] != (self._seen or (None,) * 5)[2:]
        if key == self._seen or (not settings_changed and now - self._at < SIDE_MIN_S):
            return
        self._seen, self._at = key, now
        theme, min_size, min_notional = self.theme, s.tape_min_size, s.liq_min_notional
        tk = ("tape_html", snap.symbol, snap.version, float(min_size), theme, tick)
        self.tape.object = shared(tk, lambda: tape_html(tape_rows(snap.trades, min_size, n=TAPE_ROWS), tick,
                                                         theme, min_size))
        self.liqs.object = shared(("liq_html", lkey, theme, tick),
                                  lambda: liquidations_html(lv, tick, theme, min_notional))

    def __panel__(self) -> pn.Column:
        s = self.settings
        W = pn.widgets
        return pn.Column(
            W.FloatInput.from_param(s.param.liq_min_notional, label="Min liquidation notional", width=170),
            self.liqs.pane,
            W.FloatInput.from_param(s.param.tape_min_size, label="Min trade size (tape)", width=170),
            self.tape.pane,
            width=330, sizing_mode="stretch_height", name="side", css_classes=["fl-side"],
            stylesheets=[SIDE_CSS],
        )
