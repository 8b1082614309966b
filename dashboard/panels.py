"""Side panels as small HTML tables: the time & sales tape and the recent liquidations.

Both are pure functions of shared, per-process data (see :mod:`dashboard.data`),
so the page memoises the HTML per process. Every cell is a number formatted
here or a fixed word; anything that could come from outside is HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
import html

import numpy as np
import pandas as pd

from . import fmt
from .theme import THEMES


class HtmlBox:
    """Trusted HTML (built and escaped here) in a Bokeh ``Div``, for parts updated several times a second.

    Panel's HTML pane HTML-escapes its text once more for transport (about 1.6 times the bytes);
    a Div's text goes as is. ``object`` is the HTML; setting an equal value sends nothing.
    ``pane`` is what goes into a layout.
    """

    def __init__(self, text: str = "", css: str = "", name: str | None = None, sizing_mode: str = "stretch_width",
                 styles: dict | None = None, **pane_kw):
        import panel as pn
        from bokeh.models import Div

        self.div = Div(text=text, name=name, sizing_mode=sizing_mode, styles=styles or {})
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
