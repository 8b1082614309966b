"""What a viewer can change: :class:`DashboardSettings`, and reading it from the URL safely.

Every control of the page is one ``param`` parameter (with ``doc`` and bounds),
and every parameter can be set from the page's URL query
(:data:`URL_NAMES` gives the short names, e.g.
``?symbol=ETHUSDT&mode=heatmap&row_ticks=50&va=0.7&theme=dark&embed=1&view=footprint``).

:func:`parse_query` never raises: a bad or hostile value (an unknown symbol,
a number out of range, markup or control characters in a value, a repeated
name, a fixed window the REST API would refuse) is left out and described in a
plain-text message; the page shows the message (HTML-escaped) and keeps the
default. Numbers are read as strictly as the REST API reads them, and the
window's limits are the API's (:mod:`service.limits`). Validation is param's own (each value is tried on a scratch
:class:`DashboardSettings`), so the URL and the widgets accept exactly the same
values.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

import param

from compute.candles import INTERVALS
from compute.kinds import KINDS, PROFILE_KINDS
from compute.sessions import SESSION_LENGTHS
from service.limits import MAX_RANGE_MS, RangeError, check_range, has_control, strict_float, strict_int

#: Ways to draw the volume profile (kind ``volume``): mode -> what the bars show.
VOLUME_MODES = {"buysell": "buy/sell split", "delta": "delta", "heatmap": "volume heat-map"}
#: Profile modes (issue 6 item 2): name -> what the bars show. The other profile kinds of the registry
#: (:data:`compute.kinds.PROFILE_KINDS`) are modes of their own name.
MODES = {**VOLUME_MODES, **{k: KINDS[k].label for k in PROFILE_KINDS if k != "volume"}}


def kind_of_mode(mode: str) -> str:
    """The registry kind a profile mode computes: ``volume`` for the ways to draw it, else the mode itself."""
    return "volume" if mode in VOLUME_MODES else mode
VIEWS = ("chart", "footprint")
FOOTPRINT_MODES = {"bidask": "bid x ask", "delta": "delta", "total": "total"}
THEME_NAMES = ("dark", "light")

#: Most fixed-range profiles a page draws at once.
MAX_FIXED_RANGES = 5

#: Most rows a profile may have; a finer row size is coarsened (and the page says so).
MAX_PROFILE_ROWS = 1500

_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")
_DIGITS_RE = re.compile(r"-?[0-9]+", re.ASCII)


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
    interval = param.Selector(default="1m", objects=list(INTERVALS),
                              doc="Candle interval (the REST API's intervals, aggregated from the 1-minute candles).")
    follow = param.Boolean(default=True, doc="Follow the live edge; panning or zooming the chart turns it off.")
    window_minutes = param.Integer(default=120, bounds=(5, MAX_RANGE_MS // 60_000),
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
    highlight = param.NumericTuple(default=None, allow_None=True, length=2,
                                   doc="Highlighted profile row: its price band (low, high), low < high.")
    sessions = param.Selector(default="off", objects=["off", *SESSION_LENGTHS],
                              doc="Session volume profiles, each drawn in its own time span (off, 1h ... 1d, 1w).")
    session_start = param.String(default="00:00", regex=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                                 doc="Time of day (HH:MM UTC) at which a session starts.")
    naked_pocs = param.Boolean(default=True, doc="With sessions: extend each session's POC until a later trade "
                                                  "touches it (naked POCs).")
    vwap = param.Boolean(default=False, doc="VWAP with 1σ and 2σ bands: reset at each session (sessions on), "
                                            "else anchored at the window's start.")
    anchor = param.Integer(default=None, allow_None=True, bounds=(0, None),
                           doc="Anchored VWAP from this time (UTC ms); a double click on a candle sets it.")
    fixed_ranges = param.List(default=[], item_type=tuple, bounds=(0, MAX_FIXED_RANGES),
                              doc="Fixed-range profiles: (start, end) pairs in UTC ms, each drawn inside its range "
                                  "(the chart's range tool adds one by a drag across the chart).")

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
    "highlight": "hl", "sessions": "sessions", "session_start": "session_start", "naked_pocs": "naked",
    "vwap": "vwap", "anchor": "anchor", "fixed_ranges": "fr",
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
    """UTC ms from ASCII digits (ms) or an ISO 8601 date/time (naive = UTC); ValueError otherwise."""
    if _DIGITS_RE.fullmatch(text):
        return strict_int(text)
    if not text.isascii() or text != text.strip():
        raise ValueError("not ASCII")
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


def _fixed_ranges(text: str) -> list[tuple[int, int]]:
    """``start..end,start..end`` (UTC ms or ISO 8601) as a list of (start, end); ValueError with a reason."""
    out = []
    for part in text.split(","):
        a, sep, b = part.partition("..")
        try:
            if not sep:
                raise ValueError
            start, end = _time_ms(a), _time_ms(b)
        except (ValueError, OverflowError, OSError):
            raise ValueError("not a list of ranges start..end (UTC ms or ISO 8601), comma separated") from None
        try:
            check_range(start, end)
        except RangeError as e:
            raise ValueError(str(e)) from None
        out.append((start, end))
    if len(out) > MAX_FIXED_RANGES:
        raise ValueError(f"at most {MAX_FIXED_RANGES} fixed ranges")
    return out


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
        sym = text.upper()
        if not _SYMBOL_RE.match(sym):
            raise ValueError("not a symbol name")
        if symbols and sym not in symbols:
            raise ValueError(f"not an ingested symbol (ingested: {', '.join(symbols)})")
        return sym
    if name == "highlight":
        parts = text.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            low, high = strict_float(parts[0]), strict_float(parts[1])
        except ValueError:
            raise ValueError("not a price band low,high (e.g. 9640.5,9641.5)") from None
        if not low < high:
            raise ValueError("low must be below high")
        return (low, high)
    if name == "fixed_ranges":
        return _fixed_ranges(text)
    if name in ("range_start", "range_end", "anchor"):
        try:
            return _time_ms(text)
        except (ValueError, OverflowError, OSError):
            raise ValueError("not a time (UTC ms or ISO 8601 like 2020-02-22T01:00)") from None
    if isinstance(p, param.Boolean):
        t = text.lower()
        if t in _TRUE:
            return True
        if t in _FALSE:
            return False
        raise ValueError("not a yes/no value (1/0, true/false)")
    if isinstance(p, param.Selector):
        t = text.lower()
        for o in p.objects:
            if str(o).lower() == t:
                return o
        raise ValueError(f"not one of {', '.join(map(str, p.objects))}")
    if isinstance(p, param.String):
        return text  # checked by the parameter itself (its regex) on the scratch settings
    if isinstance(p, param.Integer):
        return strict_int(text)
    if isinstance(p, param.Number):
        return strict_float(text)
    if isinstance(p, param.List):
        parts = [s for s in text.replace(";", ",").split(",") if s]
        out = []
        for s in parts:
            try:
                v = strict_float(s)
            except ValueError:
                raise ValueError("not a comma-separated list of fractions") from None
            if not 0.0 <= v <= 1.0:
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
        gives them; a name given more than once is refused (unknown names are
        ignored with a message, e.g. an embedding site's ``utm_source``).
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
        default used instead. A fixed window (``from``/``to``) must pass
        :func:`service.limits.check_range` (``from`` before ``to``, both within
        2017-01-01 .. now + 1 day, at most :data:`service.limits.MAX_RANGE_MS`
        long), like the REST API's ranges. Never raises.
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
        try:
            values[name] = _accepted(name, text, len(vals), symbols, scratch)
        except ValueError as e:
            default = getattr(base, name) if base is not None else DashboardSettings.param[name].default
            messages.append(f"{URL_NAMES[name]}={shown(text)} refused: {e}; using {default!r}")
    _check_window(values, messages)
    return values, messages


def _accepted(name: str, text: str, times: int, symbols: Sequence[str], scratch: DashboardSettings):
    """The value of parameter ``name`` given once as ``text``, tried on ``scratch``; ValueError with a reason."""
    p = DashboardSettings.param[name]
    if times > 1:
        raise ValueError(f"given {times} times")
    if has_control(text):
        raise ValueError("contains a control character")
    v = _convert(name, p, text, symbols)
    try:
        scratch.param.update({name: v})
    except (ValueError, TypeError):
        raise ValueError("out of range" + _bounds_text(p)) from None
    return v


def _check_window(values: dict, messages: list[str]) -> None:
    """Keep a fixed window (from/to) only when both ends are given and the REST API would accept it.

    An accepted window turns following off; a refused one is dropped from ``values``
    with a message in ``messages``.
    """
    if ("range_start" in values) != ("range_end" in values):
        messages.append("a fixed window needs both from= and to=; following the live edge")
        values.pop("range_start", None)
        values.pop("range_end", None)
    elif "range_start" in values:
        try:
            check_range(values["range_start"], values["range_end"])
        except RangeError as e:
            messages.append(f"from=/to= window refused: {e}; following the live edge")
            values.pop("range_start")
            values.pop("range_end")
        else:
            values["follow"] = False


def _valid_range(rng: tuple[int, int]) -> tuple[int, int] | None:
    """``rng`` as whole ms, its start moved up to :data:`MAX_RANGE_MS` before its end; None if the URL would refuse it."""
    try:
        start, end = int(round(rng[0])), int(round(rng[1]))
        start = max(start, end - MAX_RANGE_MS)
        check_range(start, end)
    except (RangeError, TypeError, ValueError, OverflowError):
        return None
    return start, end


def _num(v: float) -> str:
    """A number for a URL: as short as ``:g`` but never rounded (``45135.25``, not ``45135.2``)."""
    return f"{float(v):.15g}"


def query_of(settings: DashboardSettings, defaults: Mapping | None = None,
             view_range: tuple[int, int] | None = None) -> dict[str, str]:
    """The URL query (short names) that recreates ``settings``: only values that differ from the defaults.

    ``view_range`` (UTC ms) is the page's visible time range when it does not follow the live
    edge (e.g. after a pan or zoom): it is written as ``from``/``to`` (moved, if need be, to
    pass :func:`service.limits.check_range`, so that the URL reopens; left out if it cannot).

    ``defaults`` (parameter name -> value) are the page's starting values, e.g. the
    server's symbol and refresh period; missing names use the class defaults. Numbers are
    written so that they read back equal (``{:.15g}``: no rounding of prices or notionals).
    """
    out = {}
    defaults = defaults or {}
    rng = _valid_range(view_range) if view_range is not None and not settings.follow else None
    for name, url in URL_NAMES.items():
        v = getattr(settings, name)
        if rng is not None and name in ("range_start", "range_end"):
            out[url] = str(rng[name == "range_end"])
            continue
        if v == defaults.get(name, DashboardSettings.param[name].default):
            continue
        if name == "fixed_ranges":
            out[url] = ",".join(f"{int(a)}..{int(b)}" for a, b in v)
        elif isinstance(v, bool):
            out[url] = "1" if v else "0"
        elif isinstance(v, list | tuple):
            out[url] = ",".join(_num(x) for x in v)
        elif isinstance(v, float):
            out[url] = _num(v)
        elif v is not None:
            out[url] = str(v)
    return out
