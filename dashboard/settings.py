"""What a viewer can change: :class:`DashboardSettings`, and reading it from the URL safely.

Every control of the page is one ``param`` parameter (with ``doc`` and bounds),
and every parameter can be set from the page's URL query
(:data:`URL_NAMES` gives the short names, e.g.
``?symbol=ETHUSDT&mode=heatmap&row_ticks=50&va=0.7&theme=dark&embed=1&view=footprint``).

:func:`parse_query` never raises: a bad or hostile value (an unknown symbol,
a number out of range, markup in a value) is left out and described in a
plain-text message; the page shows the message (HTML-escaped) and keeps the
default. Validation is param's own (each value is tried on a scratch
:class:`DashboardSettings`), so the URL and the widgets accept exactly the same
values.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence

import param

#: Profile modes (issue 6 item 2): name -> what the bars show.
MODES = {
    "buysell": "buy/sell split",
    "delta": "delta",
    "heatmap": "volume heat-map",
    "recency": "recency (time-weighted)",
    "tpo": "TPO count",
    "split": "split: 1st half | 2nd half",
}
VIEWS = ("chart", "footprint")
#: Candle intervals offered (aggregated from the stored 1-minute candles).
INTERVALS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}
FOOTPRINT_MODES = {"bidask": "bid x ask", "delta": "delta", "total": "total"}
THEME_NAMES = ("dark", "light")

#: Most rows a profile may have; a finer row size is coarsened (and the page says so).
MAX_PROFILE_ROWS = 1500

_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")


class DashboardSettings(param.Parameterized):
    """Every control of the page (one parameter each); see :data:`URL_NAMES` for the URL query names."""

    symbol = param.String(default="BTCUSDT", doc="Symbol shown; one of the symbols the ingest service writes.")
    view = param.Selector(default="chart", objects=list(VIEWS),
                          doc="chart = candles + VPVR; footprint = footprint candles + CVD.")
    mode = param.Selector(default="buysell", objects=list(MODES), doc="What the VPVR bars show: " + ", ".join(
        f"{k} ({v})" for k, v in MODES.items()))
    row_ticks = param.Integer(default=0, bounds=(0, 1_000_000),
                              doc="Ticks per profile row; 0 picks the row size automatically (about 120 rows).")
    value_area = param.Number(default=0.7, bounds=(0.5, 0.95), step=0.01,
                              doc="Share of the range's volume inside the value area (0.5-0.95).")
    half_life = param.Number(default=0.0, bounds=(0.0, 30 * 86400.0), step=60.0,
                             doc="Half-life of the recency weighting (s); 0 = a quarter of the visible range.")
    interval = param.Selector(default="1m", objects=list(INTERVALS), doc="Candle interval.")
    follow = param.Boolean(default=True, doc="Follow the live edge; panning or zooming the chart turns it off.")
    window_minutes = param.Integer(default=120, bounds=(5, 10_080),
                                   doc="Time range shown while following the live edge (minutes).")
    range_start = param.Integer(default=None, allow_None=True, bounds=(0, None),
                                doc="Start of a fixed window (UTC ms); with range_end it turns following off.")
    range_end = param.Integer(default=None, allow_None=True, bounds=(0, None),
                              doc="End of a fixed window (UTC ms, exclusive).")
    show_profile = param.Boolean(default=True, doc="Draw the VPVR on the right edge.")
    heatmap = param.Boolean(default=False, doc="Datashader heat-map of traded volume (time x price) behind the candles.")
    developing = param.Boolean(default=True, doc="Developing POC/VAH/VAL as step lines on the candles.")
    percentiles = param.List(default=[0.25, 0.5, 0.75], item_type=float, bounds=(0, 9),
                             doc="Percentile lines (fractions of the range's volume, each 0-1).")
    hatch = param.Boolean(default=False, doc="Hatch patterns on the bars (buys /, sells \\) so colour is not needed.")
    max_width = param.Number(default=0.25, bounds=(0.05, 0.6), step=0.01,
                             doc="Share of the chart's width the longest profile bar takes.")
    dim_candles = param.Boolean(default=True, doc="Dim the candles (80 % opacity) while the profile is on.")
    footprint_mode = param.Selector(default="bidask", objects=list(FOOTPRINT_MODES),
                                    doc="Footprint cells: bid x ask volume, delta, or total volume.")
    footprint_candles = param.Integer(default=10, bounds=(3, 60), doc="Candles shown in the footprint view.")
    imbalance_ratio = param.Number(default=3.0, bounds=(1.0, 50.0), step=0.5,
                                   doc="Diagonal imbalance ratio (3 = 300 %).")
    stacked_min = param.Integer(default=3, bounds=(2, 20), doc="Consecutive imbalanced rows that form a stack.")
    liq_min_notional = param.Number(default=0.0, bounds=(0.0, 1e12), step=1000.0,
                                    doc="Smallest liquidation shown (notional, quote currency).")
    tape_min_size = param.Number(default=0.0, bounds=(0.0, 1e9), step=0.1,
                                 doc="Smallest trade shown on the time & sales tape (base asset).")
    update_ms = param.Integer(default=250, bounds=(50, 5000), doc="Period of this session's refresh (ms).")
    theme = param.Selector(default="dark", objects=list(THEME_NAMES), doc="Colour theme.")
    embed = param.Boolean(default=False, doc="Chart only, without the page's template (for iframes).")

    @property
    def interval_ms(self) -> int:
        return INTERVALS[self.interval]


#: URL query name of each parameter (the parameter's own name is accepted too).
URL_NAMES = {
    "symbol": "symbol", "view": "view", "mode": "mode", "row_ticks": "row_ticks", "value_area": "va",
    "half_life": "half_life", "interval": "interval", "follow": "follow", "window_minutes": "window",
    "range_start": "from", "range_end": "to", "show_profile": "profile", "heatmap": "heat",
    "developing": "developing", "percentiles": "pct", "hatch": "hatch", "max_width": "width",
    "dim_candles": "dim", "footprint_mode": "fp", "footprint_candles": "fp_candles",
    "imbalance_ratio": "imbalance", "stacked_min": "stacked", "liq_min_notional": "liq_min",
    "tape_min_size": "tape_min", "update_ms": "update_ms", "theme": "theme", "embed": "embed",
}
_BY_URL = {**{v: k for k, v in URL_NAMES.items()}, **{k: k for k in URL_NAMES}}
#: Query keys that belong to Bokeh/Panel and are ignored silently.
_IGNORED_PREFIXES = ("bokeh-", "panel-", "_")
_TRUE = {"1", "true", "yes", "on", "t", "y"}
_FALSE = {"0", "false", "no", "off", "f", "n"}


def _text(raw) -> str:
    if isinstance(raw, bytes | bytearray):
        return bytes(raw).decode("utf-8", errors="replace")
    return str(raw)


def shown(value: str, limit: int = 40) -> str:
    """A user-supplied value quoted for a message (plain text; escape before rendering)."""
    v = value if len(value) <= limit else value[:limit] + "…"
    return repr(v)


def _time_ms(text: str) -> int:
    """UTC ms from digits (ms) or an ISO 8601 date/time (naive = UTC)."""
    if text.isdigit():
        return int(text)
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


def _bounds_text(p: param.Parameter) -> str:
    lo, hi = getattr(p, "bounds", None) or (None, None)
    if lo is None and hi is None:
        return ""
    if hi is None:
        return f" (at least {lo:g})"
    return f" (allowed {lo:g} to {hi:g})"


def _convert(name: str, p: param.Parameter, text: str, symbols: Sequence[str]):
    """Convert one query value; raises ValueError with a short reason."""
    if name == "symbol":
        sym = text.strip().upper()
        if not _SYMBOL_RE.match(sym):
            raise ValueError("not a symbol name")
        if symbols and sym not in symbols:
            raise ValueError(f"not an ingested symbol (ingested: {', '.join(symbols)})")
        return sym
    if name in ("range_start", "range_end"):
        try:
            return _time_ms(text.strip())
        except (ValueError, OverflowError, OSError):
            raise ValueError("not a time (UTC ms or ISO 8601 like 2020-02-22T01:00)") from None
    if isinstance(p, param.Boolean):
        t = text.strip().lower()
        if t in _TRUE:
            return True
        if t in _FALSE:
            return False
        raise ValueError("not a yes/no value (1/0, true/false)")
    if isinstance(p, param.Selector):
        t = text.strip().lower()
        for o in p.objects:
            if str(o).lower() == t:
                return o
        raise ValueError(f"not one of {', '.join(map(str, p.objects))}")
    if isinstance(p, param.Integer):
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError("not a whole number") from None
    if isinstance(p, param.Number):
        try:
            v = float(text.strip())
        except ValueError:
            raise ValueError("not a number") from None
        if not math.isfinite(v):
            raise ValueError("not a finite number")
        return v
    if isinstance(p, param.List):
        parts = [s for s in text.replace(";", ",").split(",") if s.strip()]
        out = []
        for s in parts:
            try:
                v = float(s)
            except ValueError:
                raise ValueError("not a comma-separated list of fractions") from None
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ValueError("each percentile must be a fraction from 0 to 1")
            out.append(v)
        return out
    raise ValueError("cannot be set from the URL")


def parse_query(args: Mapping[str, Sequence], symbols: Sequence[str] = (),
                base: DashboardSettings | None = None) -> tuple[dict, list[str]]:
    """Validated settings from URL query arguments, and plain-text messages about what was refused.

    Parameters
    ----------
    args : mapping
        Query name -> list of raw values (bytes or str), as ``pn.state.session_args``
        gives them; the last value of a repeated name wins.
    symbols : sequence of str
        The ingested symbols; an empty sequence accepts any well-formed symbol name.
    base : DashboardSettings, optional
        The settings the page starts from (the messages name its values as the fallback).

    Returns
    -------
    (values, messages) : (dict, list of str)
        ``values`` maps parameter names to accepted values (ready for
        ``DashboardSettings.param.update``); each message names the refused
        query value (quoted with :func:`shown`, not escaped), why, and the
        default used instead. Never raises.
    """
    values: dict = {}
    messages: list[str] = []
    scratch = DashboardSettings()
    for key, raw_values in args.items():
        k = _text(key)
        if k.startswith(_IGNORED_PREFIXES):
            continue
        vals = raw_values if isinstance(raw_values, list | tuple) else [raw_values]
        if not vals:
            continue
        text = _text(vals[-1])
        name = _BY_URL.get(k) or _BY_URL.get(k.lower())
        if name is None:
            messages.append(f"unknown URL parameter {shown(k)} ignored")
            continue
        p = DashboardSettings.param[name]
        default = getattr(base, name) if base is not None else p.default
        try:
            v = _convert(name, p, text, symbols)
            try:
                scratch.param.update({name: v})
            except (ValueError, TypeError):
                raise ValueError("out of range" + _bounds_text(p)) from None
        except ValueError as e:
            messages.append(f"{URL_NAMES[name]}={shown(text)} refused: {e}; using {default!r}")
            continue
        values[name] = v
    if ("range_start" in values) != ("range_end" in values):
        messages.append("a fixed window needs both from= and to=; following the live edge")
        values.pop("range_start", None)
        values.pop("range_end", None)
    elif "range_start" in values and values["range_start"] >= values["range_end"]:
        messages.append("from= must be before to=; following the live edge")
        values.pop("range_start")
        values.pop("range_end")
    elif "range_start" in values:
        values["follow"] = False
    return values, messages


def query_of(settings: DashboardSettings, defaults: Mapping | None = None) -> dict[str, str]:
    """The URL query (short names) that recreates ``settings``: only values that differ from the defaults.

    ``defaults`` (parameter name -> value) are the page's starting values, e.g. the
    server's symbol and refresh period; missing names use the class defaults.
    """
    out = {}
    defaults = defaults or {}
    for name, url in URL_NAMES.items():
        v = getattr(settings, name)
        if v == defaults.get(name, DashboardSettings.param[name].default):
            continue
        if isinstance(v, bool):
            out[url] = "1" if v else "0"
        elif isinstance(v, list):
            out[url] = ",".join(f"{x:g}" for x in v)
        elif isinstance(v, float):
            out[url] = f"{v:g}"
        elif v is not None:
            out[url] = str(v)
    return out
