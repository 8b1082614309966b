"""The sidebar: one widget per setting (each bound to its ``param``), the downloads and the embed help."""

from __future__ import annotations

import datetime as dt
import html
import urllib.parse
from collections.abc import Callable

import panel as pn
import param
from panel.custom import JSComponent
from panel.viewable import Viewer

from .settings import FOOTPRINT_MODES, MODES, DashboardSettings, query_of
from .theme import THEMES, css_for


def sync_url(settings: DashboardSettings, defaults: dict, view_range: tuple[int, int] | None = None,
             loc=None) -> None:
    """Put the view in the browser's URL query (values equal to ``defaults`` left out); no-op outside a session.

    ``view_range`` is the visible time range (``from``/``to``) when the page does not follow
    the live edge (see :func:`dashboard.settings.query_of`); ``loc`` the session's
    ``pn.state.location`` (default: the current one).
    """
    loc = loc if loc is not None else pn.state.location
    if loc is None:
        return
    q = query_of(settings, defaults, view_range)
    search = ("?" + urllib.parse.urlencode(q)) if q else ""
    if loc.search != search:
        loc.search = search


def embed_help(settings: DashboardSettings, defaults: dict, view_range: tuple[int, int] | None = None,
               loc=None) -> str:
    """What an embedding site needs, as escaped HTML (iframe snippet for the current view)."""
    loc = loc if loc is not None else pn.state.location
    base = "http://localhost:5006/"
    host = "localhost:5006"
    if loc is not None and loc.hostname:
        port = f":{loc.port}" if loc.port else ""
        host = f"{loc.hostname}{port}"
        base = f"{loc.protocol or 'http:'}//{host}{loc.pathname or '/'}"
    q = dict(query_of(settings, defaults, view_range))
    q["embed"] = "1"
    src = base + "?" + urllib.parse.urlencode(q)
    snippet = f'<iframe src="{src}" width="1280" height="720" style="border:0"></iframe>'
    e = html.escape
    return (
        '<div class="fl-embed">'
        f"<pre>{e(snippet)}</pre>"
        "<p>The page's websocket only accepts the origins it was told about. Start the server with "
        f"<code>python serve.py --allow-websocket-origin={e(host)}</code> (the host:port browsers use to reach "
        "flowlens; it is allowed by default only for the address it binds). For a script embed "
        "(<code>bokeh.embed.server_document</code>) also add the embedding site's host:port.</p>"
        "<p>Every control, the visible time range (<code>from</code>/<code>to</code>) and the highlighted row "
        "(<code>hl</code>) are in the page's URL (README: page URL parameters), e.g. "
        "<code>?symbol=ETHUSDT&amp;mode=heatmap&amp;row_ticks=50&amp;va=0.7&amp;theme=dark&amp;embed=1"
        "&amp;view=footprint</code>. Example page: <code>assets/embed-example.html</code>.</p></div>"
    )


class LiveButton(JSComponent):
    """The follow-the-live-edge switch: a filled "● LIVE" while following, an outlined "Go live" when not.

    A real ``<button>`` with ``aria-pressed`` (``true`` while following) and a tooltip that says
    what a click does; ``value`` is the setting (``DashboardSettings.follow``).
    """

    value = param.Boolean(default=True, doc="True while the page follows the live edge.")

    _esm = """
export function render({ model }) {
  const b = document.createElement("button")
  b.type = "button"
  b.className = "fl-live"
  const paint = () => {
    const on = !!model.value
    b.classList.toggle("on", on)
    b.setAttribute("aria-pressed", on ? "true" : "false")
    b.textContent = on ? "\u25CF LIVE" : "Go live"
    b.title = on ? "Following the live edge (click to stop; panning stops it too)"
                 : "Not following: click to follow the live edge again"
  }
  b.addEventListener("click", () => { model.value = !model.value })
  model.on("value", paint)
  paint()
  return b
}
"""

    def __init__(self, theme: str = "dark", **params):
        th = THEMES[theme]
        css = f"""
:host {{ width: 100%; }}
.fl-live {{ width: 100%; min-height: 34px; border-radius: 4px; cursor: pointer; font: 600 13px/1.2 system-ui, sans-serif;
  letter-spacing: .04em; border: 2px solid {th["ok"]}; background: transparent; color: {th["text"]}; }}
.fl-live.on {{ background: {th["ok"]}; color: {th["bg"]}; border-color: {th["ok"]}; }}
.fl-live:not(.on) {{ border-style: dashed; border-color: {th["muted"]}; }}
.fl-live:hover {{ filter: brightness(1.12); }}
.fl-live:focus-visible {{ outline: 2px solid {th["va"]}; outline-offset: 2px; }}
"""
        params.setdefault("stylesheets", [css])
        params.setdefault("sizing_mode", "stretch_width")
        params.setdefault("margin", (6, 10))
        super().__init__(**params)


class Controls(Viewer):
    """The sidebar of one page.

    Parameters
    ----------
    settings : DashboardSettings
    symbols : list of str
        The ingested symbols offered in the symbol control.
    downloads : Viewer
        The download widgets (:class:`dashboard.download.Downloads`).
    show_messages : callable(list of str)
        Shows a refused value (the percentile lines are typed as text).
    defaults : dict
        The server's settings (left out of the embed snippet's URL).
    alerts : Viewer, optional
        The "Alerts" card (:class:`dashboard.alerts_card.AlertsCard`); None leaves it out.
    """

    settings = param.ClassSelector(class_=DashboardSettings, doc="What the viewer has chosen.")
    symbols = param.List(default=[], item_type=str, doc="Ingested symbols offered in the symbol control.")
    theme = param.Selector(default="dark", objects=list(THEMES), doc="Colour theme of the embed help.")
    defaults = param.Dict(default={}, doc="The server's settings (values equal to them stay out of URLs).")

    def __init__(self, downloads: Viewer, show_messages: Callable, alerts: Viewer | None = None, **params):
        super().__init__(**params)
        self.downloads = downloads
        self.alerts = alerts
        self._show_messages = show_messages
        self.help_pane = pn.pane.HTML(embed_help(self.settings, self.defaults), stylesheets=[css_for(self.theme)],
                                      sizing_mode="stretch_width")
        self.live = LiveButton(theme=self.theme, value=self.settings.follow, name="follow")
        s = self.settings
        self.live.param.watch(lambda e: s.param.update(follow=e.new) if s.follow != e.new else None, "value")
        s.param.watch(lambda e: setattr(self.live, "value", e.new), "follow")

    def show_view(self, view_range: tuple[int, int] | None, loc=None) -> None:
        """Bring the embed snippet up to date with the view (its visible range too, when not following)."""
        self.help_pane.object = embed_help(self.settings, self.defaults, view_range, loc)

    def _percentiles(self) -> pn.widgets.TextInput:
        s = self.settings
        pct = pn.widgets.TextInput(label="Percentile lines (%)", value=", ".join(f"{p * 100:g}" for p in s.percentiles))

        def set_pct(event):
            try:
                vals = [float(x) / 100 for x in event.new.replace(";", ",").split(",") if x.strip()]
                if any(not (0 <= v <= 1) for v in vals) or len(vals) > 9:
                    raise ValueError
            except ValueError:
                self._show_messages([f"percentile lines {event.new[:40]!r} refused: use up to 9 numbers 0-100"])
                return
            s.percentiles = vals

        pct.param.watch(set_pct, "value")
        return pct

    def _display(self) -> pn.Column:
        p, W = self.settings.param, pn.widgets
        return pn.Column(
            W.Checkbox.from_param(p.show_profile, label="Volume profile"),
            W.Checkbox.from_param(p.heatmap, label="Heat-map behind candles"),
            W.Checkbox.from_param(p.developing, label="Developing POC/VAH/VAL"),
            W.Checkbox.from_param(p.hatch, label="Hatch bars (buys /, sells \\)"),
            W.Checkbox.from_param(p.dim_candles, label="Dim candles under profile"),
            W.FloatSlider.from_param(p.max_width, label="Max bar width"),
            self._percentiles(),
        )

    def _sessions(self) -> pn.Column:
        p, W = self.settings.param, pn.widgets
        return pn.Column(
            W.Select.from_param(p.sessions, label="Session profiles"),
            W.TextInput.from_param(p.session_start, label="Session start (HH:MM UTC)"),
            W.Checkbox.from_param(p.naked_pocs, label="Naked POCs"),
            W.Checkbox.from_param(p.vwap, label="VWAP with 1σ/2σ bands"),
            self._drawings,
        )

    @param.depends("settings.fixed_ranges", "settings.anchor")
    def _drawings(self) -> pn.Column:
        """One remove button per fixed-range profile and for the anchored VWAP (or how to make them)."""
        s = self.settings

        def hhmm(ms: int) -> str:
            return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%m-%d %H:%M")

        def button(label: str, remove: Callable) -> pn.widgets.Button:
            b = pn.widgets.Button(name=f"✕ {label}", button_type="light", sizing_mode="stretch_width",
                                  description="Remove it")
            b.on_click(lambda _e: remove())
            return b

        items = [button(f"range {hhmm(a)} → {hhmm(b)[-5:]}",
                        lambda r=(a, b): setattr(s, "fixed_ranges", [x for x in s.fixed_ranges if tuple(x) != r]))
                 for a, b in s.fixed_ranges]
        if s.anchor is not None:
            items.append(button(f"VWAP anchored {hhmm(s.anchor)}", lambda: setattr(s, "anchor", None)))
        hint = pn.pane.Markdown("Fixed range: drag across the chart with the range tool. Anchored VWAP: double "
                                "click a candle.", styles={"font-size": "0.85em", "opacity": "0.8"})
        return pn.Column(*items, hint, sizing_mode="stretch_width")

    def _footprint(self) -> pn.Column:
        p, W = self.settings.param, pn.widgets
        return pn.Column(
            W.RadioButtonGroup.from_param(p.footprint_mode, options={v: k for k, v in FOOTPRINT_MODES.items()},
                                          label="Cells", color="light"),
            W.IntInput.from_param(p.footprint_candles, label="Candles"),
            W.FloatInput.from_param(p.imbalance_ratio, label="Imbalance ratio (x)"),
            W.IntInput.from_param(p.stacked_min, label="Stacked imbalance rows"),
        )

    def __panel__(self) -> pn.Column:
        p, W = self.settings.param, pn.widgets
        display, footprint = self._display(), self._footprint()
        col = pn.Column(
            pn.Row(W.Select.from_param(p.symbol, options=self.symbols, label="Symbol", sizing_mode="stretch_width"),
                   W.Select.from_param(p.interval, label="Interval", width=80), sizing_mode="stretch_width"),
            W.RadioButtonGroup.from_param(p.view, label="View", color="light"),
            W.Select.from_param(p.mode, options={v: k for k, v in MODES.items()}, label="Profile mode"),
            W.IntInput.from_param(p.row_ticks, label="Ticks per row (0 = auto)"),
            W.FloatSlider.from_param(p.value_area, label="Value area"),
            W.FloatInput.from_param(p.half_life, label="Half-life, s (0 = auto)"),
            self.live,
            W.IntInput.from_param(p.window_minutes, label="Window while following (min)"),
            pn.Card(display, title="Display", collapsed=False, sizing_mode="stretch_width"),
            pn.Card(self._sessions(), title="Sessions & VWAP", collapsed=True, sizing_mode="stretch_width"),
            pn.Card(footprint, title="Footprint", collapsed=True, sizing_mode="stretch_width"),
            *([self.alerts.__panel__()] if self.alerts is not None else []),
            pn.Card(self.downloads.__panel__(), title="Download", collapsed=False, sizing_mode="stretch_width"),
            W.IntInput.from_param(p.update_ms, label="Refresh (ms)"),
            pn.Card(self.help_pane, title="Embed this chart", collapsed=True, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        for w in col.select(pn.widgets.Widget):
            w.sizing_mode = "stretch_width"
        return col
