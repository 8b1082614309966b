"""Entry point of the served page: ``page, dash = create_page(registry, DashboardSettings(...))`` (used by serve.py).

URL query values (see :mod:`dashboard.settings`) override the settings given, after
validation; refused values are listed in a visible message. The page itself is
:class:`dashboard.page.Dashboard`, composed of small components (see there).
"""

from __future__ import annotations

import urllib.parse

import panel as pn
from bokeh.models import CustomJS

from .page import Dashboard
from .schedule import STATUS_MS
from .settings import DashboardSettings, parse_query
from .theme import THEMES, css_for
from .warm import warm_in_background, warm_up


def known_symbols(registry) -> list[str]:
    """The ingested symbols this process can show.

    Uses ``registry.symbols`` / ``registry.known_symbols()`` when the registry offers
    them, else the views that are running (started by serve.py) or hold ingest status.
    """
    for attr in ("known_symbols", "symbols"):
        v = getattr(registry, attr, None)
        if callable(v):
            try:
                v = v()
            except Exception:  # noqa: BLE001 - a failing optional hook must not break the page
                v = None
        if isinstance(v, list | tuple | set | frozenset) and v:
            return sorted({str(s).upper() for s in v})
    views = getattr(registry, "views", {}) or {}
    return sorted(s for s, v in views.items() if getattr(v, "started", False) or v.snapshot.meta)


def _session_args() -> dict:
    try:
        return dict(pn.state.session_args or {})
    except Exception:  # noqa: BLE001 - outside a server session there are no args
        return {}


#: Below this width (px) the sidebar is a drawer over the page, closed until the header's menu button opens it.
PHONE_MAX_PX = 767.98

#: Runs when the document is ready: on a phone the sidebar starts closed (a drawer), and a tap beside the
#: open drawer closes it. The template renders it open (Bootstrap's collapse toggles it); until this has
#: run, the phone CSS keeps it hidden (``html:not(.fl-drawer)``), so it never flashes open.
DRAWER_JS = f"""
const root = document.documentElement;
if (!root.classList.contains("fl-drawer")) {{
  const phone = () => window.matchMedia("(max-width: {PHONE_MAX_PX}px)").matches;
  const close = () => {{
    const sb = document.getElementById("sidebar"), btn = document.getElementById("sidebar-toggle");
    if (!sb || !sb.classList.contains("show")) return;
    sb.classList.remove("show");
    if (btn) {{ btn.setAttribute("aria-expanded", "false"); btn.classList.add("collapsed"); }}
  }};
  if (phone()) close();
  const main = document.getElementById("main");
  if (main) main.addEventListener("pointerdown", () => {{ if (phone()) close(); }});
  root.classList.add("fl-drawer");
}}
"""


def _svg_url(svg: str) -> str:
    return "url(\"data:image/svg+xml," + urllib.parse.quote(svg, safe=" =:/'") + "\")"


def _template_css(th: dict) -> str:
    """The template's colours, the header icons in the theme's text colour, and the phone layout (a drawer)."""
    icon = ("<svg xmlns='http://www.w3.org/2000/svg' width='30' height='30' viewBox='0 0 30 30'>"
            f"<path stroke='{th['text']}' stroke-width='2.4' stroke-linecap='round' stroke-miterlimit='10' "
            "d='M4 7h22M4 15h22M4 23h22'/></svg>")
    return f"""
body, #main, .main, #content {{ background: {th['bg']} !important; }}
#sidebar {{ background: {th['panel']} !important; }}
#header {{ border-bottom: 1px solid {th['grid']}; }}
#header .navbar {{ --bs-navbar-toggler-icon-bg: {_svg_url(icon)}; }}
#header .navbar-toggler-icon, #header.navbar .navbar-toggler-icon {{ background-image: {_svg_url(icon)}; opacity: 1; }}
#sidebar-toggle {{ color: {th['text']}; opacity: 1; }}
#sidebar-toggle:focus-visible {{ outline: 2px solid {th['va']}; outline-offset: 2px; box-shadow: none; }}
#header .title {{ color: {th['text']} !important; }}
@media (max-width: {PHONE_MAX_PX}px) {{
  #header .title {{ font-size: 1.15em; }}
  #content {{ position: relative; }}
  #sidebar {{ position: absolute; top: 0; left: 0; bottom: 0; z-index: 1040; height: 100%;
    width: min(86vw, 320px) !important; max-width: 86vw !important; box-shadow: 4px 0 16px rgba(0, 0, 0, .45); }}
  #sidebar.collapsing {{ transition: none; }}
  html:not(.fl-drawer) #sidebar {{ display: none !important; }}
  #main {{ padding: 4px 2px 12px 2px; width: 100%; }}
}}
"""


def _template(dash: Dashboard) -> pn.template.BootstrapTemplate:
    """The full page: the controls in the sidebar, the dashboard in the main area, in the theme's colours.

    On a phone (below :data:`PHONE_MAX_PX`) the sidebar is a drawer over the page, closed until
    the header's menu button opens it, and the side panels go under the chart (:mod:`dashboard.page`).
    """
    s = dash.settings
    th = THEMES[s.theme]
    busy = pn.indicators.LoadingSpinner(width=20, height=20, color="primary" if s.theme == "light" else "light",
                                        bgcolor="dark" if s.theme == "light" else "light")
    tmpl = pn.template.BootstrapTemplate(
        title=f"flowlens · {s.symbol}", theme="dark" if s.theme == "dark" else "default",
        sidebar=[dash.controls()], main=[dash.main()], sidebar_width=280,
        header_background=th["panel"], header_color=th["text"], busy_indicator=busy,
    )
    tmpl.config.raw_css.append(_template_css(th))
    doc = pn.state.curdoc
    if doc is not None:  # (the Bootstrap template leaves its config's js_files out of the page)
        doc.js_on_event("document_ready", CustomJS(code=DRAWER_JS))
    return tmpl


def create_page(registry, settings: DashboardSettings | None = None, interval_ms: int | None = None,
                query: dict | None = None, alerts=None):
    """Build the served page for one session; returns ``(page, dashboard)``.

    ``settings`` are the server's defaults for this session (symbol, update period...);
    the URL query (``query``, default ``pn.state.session_args``) overrides them after
    validation (:func:`dashboard.settings.parse_query`); refused values are shown in a
    message at the top of the page. ``embed=1`` returns the chart alone (no template).
    ``alerts`` is the process's :class:`service.alerts.AlertBook` (serve.py passes ``Runtime.alerts``):
    the sidebar then has an "Alerts" card; None (notebooks, tests) leaves it out. New alert signals
    are toasted (Panel notifications, on in served sessions) and drawn on the chart either way.
    """
    base = settings or DashboardSettings()
    symbols = known_symbols(registry) or [base.symbol]
    if base.symbol not in symbols:
        symbols = sorted({*symbols, base.symbol})
    args = _session_args() if query is None else query
    values, messages = parse_query(args, symbols, base)
    defaults = {k: v for k, v in base.param.values().items() if k != "name"}
    base.param.update(**values)
    dash = Dashboard(registry, settings=base, symbols=symbols, messages=messages, interval_ms=interval_ms,
                     alerts=alerts)
    dash.defaults = defaults
    autoload = any(str(k).startswith("bokeh-autoload") or str(k) == "bokeh-absolute-url" for k in args)
    dash.url_sync = not autoload
    if pn.state.curdoc is not None:
        pn.config.theme = "dark" if base.theme == "dark" else "default"
        pn.config.notifications = True  # (this session's) toasts of new alert signals; before the template
        dash.location = pn.state.location
    page = dash.embedded() if base.embed else _template(dash)
    dash.fill()
    dash.start()
    warm_in_background(registry)  # once per process, off the session's thread
    return page, dash


__all__ = ["STATUS_MS", "Dashboard", "DashboardSettings", "create_page", "css_for", "known_symbols", "warm_up"]
