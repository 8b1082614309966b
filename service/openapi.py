"""The REST API's OpenAPI 3.1 description, served at ``/api/v1/openapi.json``.

Built from the handlers themselves: each path's query parameters are its handler's ``PARAMS`` (their longest
values as ``maxLength``) and its methods its ``METHODS``, so the description cannot name a parameter the API
does not take or miss one it takes; :data:`PARAMETERS` gives each parameter's type, bounds, choices and
meaning once, shared by every path that takes it. Answers are JSON objects (the Arrow stream of
``/api/v1/heatmap`` aside); every error is ``{"error", "parameter"}`` (:data:`ERROR`).
"""

from __future__ import annotations

from compute.candles import INTERVALS
from compute.kinds import PROFILE_KINDS
from compute.result import VA_METHODS
from compute.sessions import SESSION_LENGTHS

from .limits import EARLIEST_MS, MAX_QUERY_CHARS, MAX_QUERY_PARAMS, MAX_ROWS, MAX_TRADES

_MS = {"type": "integer", "minimum": EARLIEST_MS, "description": "UTC milliseconds"}
_VA = {"type": "number", "minimum": 0.5, "maximum": 0.95, "default": 0.7}

#: Every query parameter of the API: its JSON schema (type, bounds, choices) and what it means.
PARAMETERS: dict[str, tuple[dict, str]] = {
    "symbol": ({"type": "string", "example": "BTCUSDT"}, "An ingested symbol (case-insensitive)."),
    "from": (_MS, "Start of the range, inclusive (default: `to` minus one hour); ranges of at most 7 days."),
    "to": (_MS, "End of the range, exclusive (default: just after the last trade)."),
    "anchor": (_MS, "Start of the anchored VWAP (UTC ms)."),
    "row_size": ({"type": "number", "exclusiveMinimum": 0}, f"Profile row height in quote currency, a multiple of "
                 f"the tick (default: about 120 rows; at most {MAX_ROWS:,} rows)."),
    "kind": ({"type": "string", "enum": list(PROFILE_KINDS), "default": "volume"}, "Profile kind (compute/kinds.py)."),
    "value_area": (_VA, "Share of the volume in the value area."),
    "value_area_method": ({"type": "string", "enum": list(VA_METHODS), "default": "single"},
                          "single-row expansion, or Dalton's dual-row."),
    "half_life": ({"type": "number", "exclusiveMinimum": 0, "maximum": 30 * 86400},
                  "Recency half-life in seconds (kind=recency only)."),
    "percentiles": ({"type": "string", "pattern": r"^[0-9.]+(,[0-9.]+){0,19}$", "example": "0.1,0.5,0.9"},
                    "1-20 volume percentiles in (0, 1), comma separated."),
    "interval": ({"type": "string", "enum": list(INTERVALS), "default": "1m"}, "Candle interval."),
    "limit": ({"type": "integer", "minimum": 1, "maximum": MAX_TRADES, "default": 1000}, "Most trades answered."),
    "session_length": ({"type": "string", "enum": list(SESSION_LENGTHS), "default": "1d"}, "Session length."),
    "session_start": ({"type": "string", "pattern": r"^[0-2][0-9]:[0-5][0-9]$", "default": "00:00"},
                      "Session start, HH:MM UTC."),
    "composite": ({"type": "string", "enum": ["0", "1"], "default": "1"}, "Include the composite of the sessions."),
    "bands": ({"type": "string", "example": "1,2,3"}, "VWAP band multipliers of σ, comma separated."),
    "imbalance_ratio": ({"type": "number", "minimum": 1, "default": 3}, "Diagonal imbalance ratio."),
    "stacked": ({"type": "integer", "minimum": 1, "maximum": 1000, "default": 3}, "Rows in a stacked imbalance."),
    "min_volume": ({"type": "number", "minimum": 0, "default": 0}, "Smallest cell volume counted (base asset)."),
    "width": ({"type": "integer", "minimum": 1, "maximum": 4096, "default": 600}, "Heat-map columns (time)."),
    "height": ({"type": "integer", "minimum": 1, "maximum": 4096, "default": 300}, "Heat-map rows (price)."),
    "agg": ({"type": "string", "enum": ["volume", "delta", "count"], "default": "volume"}, "Heat-map aggregate."),
    "price_low": ({"type": "number", "minimum": 0}, "Heat-map lowest price (default: the range's)."),
    "price_high": ({"type": "number", "minimum": 0}, "Heat-map highest price (default: the range's)."),
    "format": ({"type": "string", "enum": ["json", "arrow"], "default": "json"},
               "json, or an Arrow IPC stream (also with Accept: application/vnd.apache.arrow.stream)."),
    "rule": ({"type": "string"}, "A rule id: only its signals."),
    "last_event_id": ({"type": "string", "pattern": r"^[0-9]+-[0-9]+$"},
                      "Resume after this signal id (or the Last-Event-ID header)."),
}

#: The JSON of every error answer.
ERROR = {"type": "object", "required": ["error", "parameter"],
         "properties": {"error": {"type": "string"}, "parameter": {"type": ["string", "null"]}}}

#: What each path answers with 200/201 (the keys every answer has; answers may carry more).
ANSWERS: dict[str, list[str]] = {
    "/api/v1/vpvr": ["symbol", "kind", "start", "end", "row_size", "tick", "coverage"],
    "/api/v1/candles": ["symbol", "interval", "candles"],
    "/api/v1/trades": ["symbol", "trades", "count", "truncated"],
    "/api/v1/liquidations": ["symbol", "liquidations", "note"],
    "/api/v1/sessions": ["symbol", "row_size", "tick"],
    "/api/v1/vwap": ["symbol", "interval", "coverage"],
    "/api/v1/footprint": ["symbol", "interval", "start", "end"],
    "/api/v1/developing": ["symbol", "interval", "coverage"],
    "/api/v1/heatmap": ["symbol", "agg", "start", "end", "width", "height"],
    "/api/v1/alerts": ["alerts"],
    "/api/v1/alerts/{id}": ["id", "symbol", "rule", "armed_after_id"],
    "/api/v1/signals": ["symbol", "signals", "truncated"],
}

#: What each path answers a POST with (201): the stored rule and its backtest over the history held.
CREATED: dict[str, list[str]] = {"/api/v1/alerts": ["id", "symbol", "rule", "armed_after_id", "backtest"]}

_ERRORS = {"400": "A parameter is refused (named in `parameter`).", "401": "Writing without the API token.",
           "404": "No such rule or path.", "405": "A method the path does not take.",
           "429": "Rate limit exceeded (see Retry-After)."}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(path: str, method: str, handler) -> dict:
    params = [] if method != "GET" else [
        {"name": name, "in": "query", "required": name == "symbol" and path != "/api/v1/alerts",
         "description": PARAMETERS[name][1], "schema": {**PARAMETERS[name][0], "maxLength": longest}
         if PARAMETERS[name][0]["type"] == "string" else PARAMETERS[name][0]}
        for name, longest in handler.PARAMS.items()]
    if "{id}" in path:
        params.append({"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-f]{1,32}$"}})
    if method == "POST":
        ok = {"201": _json({"type": "object", "required": CREATED[path]}, "The stored rule and how often it would "
                           "have fired on the history held.")}
    else:
        ok = {"200": _json({"type": "object", "required": ANSWERS.get(path, [])}, "The answer.")}
    if path.endswith("/stream"):
        ok = {"200": {"description": "Server-Sent Events: `event: signal`, `id:` the signal id, `data:` its JSON.",
                      "content": {"text/event-stream": {"schema": {"type": "string"}}}}}
    if path == "/api/v1/heatmap":
        ok["200"]["content"]["application/vnd.apache.arrow.stream"] = {"schema": {"type": "string", "format": "binary"}}
    if method == "DELETE":
        ok = {"200": _json({"type": "object", "required": ["deleted"]}, "The rule was removed.")}
    op = {"summary": (handler.__doc__ or "").strip().splitlines()[0] if handler.__doc__ else path,
          "parameters": params, "responses": {**ok, **{c: _json(ERROR, d) for c, d in _ERRORS.items()}}}
    if method in ("POST", "DELETE"):
        op["security"] = [{"bearer": []}]
    if method == "POST":
        op["requestBody"] = {"required": True, "description": "A rule (compute/alert_rules.py), optionally with "
                             "\"webhook\": {\"url\", \"secret\"}.", "content": {"application/json": {"schema": {
                                 "type": "object", "required": ["type", "symbol"]}}}}
    return op


def describe(routes: list) -> dict:
    """The OpenAPI 3.1 document of ``routes`` (``(pattern, handler, kwargs)`` of :func:`service.api.routes`;
    the catch-all 404 route is left out)."""
    paths = {}
    for pattern, handler, _ in routes:
        if not pattern.startswith("/api/v1/"):
            continue
        path = pattern.replace("([0-9a-f]{1,32})", "{id}")
        paths[path] = {m.lower(): _operation(path, m, handler) for m in getattr(handler, "METHODS", ("GET",))}
    return {
        "openapi": "3.1.0",
        "info": {"title": "flowlens REST API", "version": "1",
                 "description": "Volume profiles, candles, trades, liquidations, sessions, VWAP, footprint and "
                                "heat-map of the ingested Binance symbols, and server-side alerts. Times are UTC "
                                "milliseconds, prices quote currency, quantities base asset. At most "
                                f"{MAX_QUERY_PARAMS} parameters in {MAX_QUERY_CHARS:,} characters; unknown, empty or "
                                "repeated parameters are refused."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
