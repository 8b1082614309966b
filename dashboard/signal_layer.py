"""Alert signals on the page: markers on the price chart and a toast for each new one.

A snapshot of a symbol's view carries its newest alert signals (:attr:`engine.view.Snapshot.signals`, dicts
oldest first, each with its Redis stream id under ``"id"``). :class:`SignalLayer` draws those in the visible
window as markers on the price chart (a ColumnDataSource named ``signals``: x = the firing trade's time,
y = its price; hover: rule name and type, level, value); :class:`SignalToasts` tells one session which
signals are new to it (stream id newer than the newest it saw; the ones there when the page opened are
not news) and shows each as a toast (``pn.state.notifications``).
"""

from __future__ import annotations

import datetime as dt
import math

import param
from bokeh.models import ColumnDataSource, HoverTool

from . import fmt
from .sources import empty, update_source
from .theme import THEMES

SIGNAL_COLUMNS = ("t", "price", "dir", "colour", "rule", "name", "level", "value", "when")
#: Most toasts one check shows (a burst after a reconnect is summed up in one more).
MAX_TOASTS = 3


def stream_key(stream_id) -> tuple[int, int]:
    """A Redis stream id (``"1582333200123-0"``) as a comparable ``(ms, seq)``; (-1, -1) for none."""
    try:
        ms, _, seq = str(stream_id).partition("-")
        return int(ms), int(seq or 0)
    except (TypeError, ValueError):
        return (-1, -1)


def _num(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def direction_of(sig: dict) -> str:
    """▲ when the measured value is above the level it crossed, ▼ below, ● when it cannot tell."""
    value, level = _num(sig.get("value")), _num(sig.get("level"))
    if math.isnan(value) or math.isnan(level) or value == level:
        return "●"
    return "▲" if value > level else "▼"


def toast_text(sig: dict, tick: float) -> str:
    """A signal in one line: ``▲ price_cross 9,712.50 · BTCUSDT 12:03:04 UTC`` (the rule's name after the type)."""
    name = f" “{sig['name']}”" if sig.get("name") else ""
    when = dt.datetime.fromtimestamp(int(sig["time"]) / 1000, dt.UTC).strftime("%H:%M:%S")
    return (f"{direction_of(sig)} {sig.get('rule', 'alert')}{name} {fmt.price(float(sig['price']), tick)} · "
            f"{sig.get('symbol', '')} {when} UTC")


def signal_columns(signals, window: tuple[int, int] | None, theme: dict) -> dict:
    """Columns of the signals whose time lies in ``window`` ``[start, end]`` (None: all)."""
    cols = empty(SIGNAL_COLUMNS)
    for s in signals:
        t = int(s["time"])
        if window is not None and not (window[0] <= t <= window[1]):
            continue
        arrow = direction_of(s)
        cols["t"].append(float(t))
        cols["price"].append(float(s["price"]))
        cols["dir"].append(arrow)
        cols["colour"].append({"▲": theme["up"], "▼": theme["down"]}.get(arrow, theme["warn"]))
        cols["rule"].append(str(s.get("rule", "")))
        cols["name"].append(str(s.get("name") or "—"))
        cols["level"].append(_num(s.get("level")))
        cols["value"].append(_num(s.get("value")))
        cols["when"].append(float(t))
    return cols


class SignalLayer(param.Parameterized):
    """The alert signals of the visible window as markers on one Bokeh figure (source ``signals``).

    Diamonds (the liquidations are triangles) filled in the up or down colour by the crossing's direction,
    ringed in the theme's warning colour.
    """

    theme = param.Selector(default="dark", objects=list(THEMES), doc="Colour theme.")
    size = param.Number(default=13.0, bounds=(4.0, 40.0), doc="Marker size (px).")

    def __init__(self, fig, **params):
        super().__init__(**params)
        th = THEMES[self.theme]
        self.source = ColumnDataSource(empty(SIGNAL_COLUMNS), name="signals")
        self.markers = fig.scatter(x="t", y="price", marker="diamond", size=self.size, fill_color="colour",
                                   line_color=th["warn"], line_width=2, fill_alpha=0.9, source=self.source,
                                   name="signal_markers")
        fig.add_tools(HoverTool(renderers=[self.markers], tooltips=[
            ("alert", "@dir @name (@rule)"), ("time", "@when{%F %H:%M:%S} UTC"), ("price", "@price{0,0.00}"),
            ("level", "@level{0,0.[00]}"), ("value", "@value{0,0.[00]}"),
        ], formatters={"@when": "datetime"}, name="signal_hover"))

    def update(self, signals, window: tuple[int, int] | None) -> None:
        """Show the ``signals`` (snapshot dicts) whose time lies in ``window`` (UTC ms)."""
        update_source(self.source, signal_columns(signals, window, THEMES[self.theme]))


class SignalToasts:
    """Which of a symbol's signals are new to one session, and their toasts.

    The first look at a symbol only notes its newest stream id (signals already there when the page opened,
    or when the viewer switched to the symbol, are not news); every later look returns the signals with a
    newer id, oldest first.
    """

    def __init__(self):
        self.symbol: str | None = None
        self.last: tuple[int, int] = (-1, -1)

    def new(self, symbol: str, signals) -> list[dict]:
        """The signals of ``symbol`` newer than the newest this session saw (none on the first look)."""
        newest = max((stream_key(s.get("id")) for s in signals), default=(-1, -1))
        if symbol != self.symbol:
            self.symbol, self.last = symbol, newest
            return []
        fresh = [s for s in signals if stream_key(s.get("id")) > self.last]
        self.last = max(self.last, newest)
        return fresh

    def show(self, signals: list[dict], tick: float, notifications) -> list[str]:
        """Toast each of ``signals`` on ``notifications`` (Panel's NotificationArea; None: only return the texts)."""
        texts = [toast_text(s, tick) for s in signals[-MAX_TOASTS:]]
        if len(signals) > MAX_TOASTS:
            texts.insert(0, f"{len(signals) - MAX_TOASTS} more alert signals")
        if notifications is not None:
            for text in texts:
                notifications.info(text, duration=8000)
        return texts
