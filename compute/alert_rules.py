"""Alert rules (issue 18): strictly validated JSON objects, one :mod:`msgspec` Struct per ``"type"``.

A rule is a JSON object with a ``"type"`` tag (:data:`RULE_TYPES`) and these common fields:

* ``symbol`` (str, non-empty; upper-cased), ``market`` (``"usdm"`` | ``"coinm"`` | ``"spot"``, default
  ``"usdm"``), ``cooldown_s`` (seconds of trade time, 0 ≤ x ≤ 30 days, default 0), optional ``name``.

Its own fields (every number finite and bounded; prices in quote currency, quantities in base asset):

* ``price_cross``: ``level`` (a price > 0, or a :class:`LevelRef`), ``direction`` ``"up"|"down"|"any"``;
* ``liquidation``: ``min_notional`` (quote currency, > 0), optional ``side`` ``"BUY"|"SELL"``;
* ``stacked_imbalance``: ``interval`` (:data:`compute.candles.INTERVALS`, default ``"1m"``), ``ticks_per_row``
  (default 10), ``ratio`` (≥ 1, default 3), ``min_stack`` (≥ 1, default 3), ``side`` ``"buy"|"sell"|"any"``
  (default ``"any"``), ``ignore_zeros`` (default true), ``min_volume`` (base asset, default 0) — the
  footprint's own settings (:func:`compute.footprint.footprint`);
* ``delta``: ``threshold`` (base asset, > 0), ``direction`` (default ``"any"``) and either
  ``"window": "candle"`` with ``interval`` (default ``"1m"``) or ``window_s`` (seconds, whole ms);
* ``volume_spike``: ``window_s`` (seconds, whole ms), ``k`` (> 0), ``lookback`` (windows, default 20).

:func:`parse_rule` raises :class:`RuleError` whose ``field`` names the offending field as a dotted path
(``"level.ref"``); the definitions of when each rule fires are in :mod:`compute.alerts`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from .candles import INTERVALS
from .sessions import SESSION_LENGTHS, parse_session_start

__all__ = ["RULE_TYPES", "Delta", "LevelRef", "Liquidation", "PriceCross", "Rule", "RuleError", "StackedImbalance",
           "VolumeSpike", "parse_rule", "rule_to_dict"]

_M = msgspec.Meta
Price = Annotated[float, _M(gt=0, le=1e12)]
Positive = Annotated[float, _M(gt=0, le=1e12)]
Seconds = Annotated[float, _M(gt=0, le=30 * 86_400)]
TicksPerRow = Annotated[int, _M(ge=1, le=10**9)]
Direction = Literal["up", "down", "any"]
Interval = Literal[tuple(INTERVALS)]  # type: ignore[valid-type]
SessionLength = Literal[tuple(SESSION_LENGTHS)]  # type: ignore[valid-type]
_FLAGS = {"forbid_unknown_fields": True, "frozen": True, "kw_only": True}


class RuleError(ValueError):
    """An invalid rule. ``field`` is the dotted path of the offending field (``"level.ref"``; ``""`` for the
    whole object); ``str(error)`` is one line naming it."""

    def __init__(self, field: str, message: str):
        self.field = field
        text = " ".join(str(message).split())
        super().__init__(f"invalid rule: {field}: {text}" if field else f"invalid rule: {text}")


class LevelRef(msgspec.Struct, **_FLAGS):
    """A developing session level as a price_cross level (definitions in :mod:`compute.alerts`).

    ``ref``: ``poc``, ``vah``, ``val`` (:func:`compute.profile.volume_profile` of the session so far, rows of
    ``ticks_per_row`` ticks, ``value_area`` fraction 0.5..0.95 with at most 4 decimals, single-row expansion), ``vwap``
    (:func:`compute.vwap.vwap` anchored at the session start) or ``naked_poc`` (the most recent prior session's
    untouched POC, :mod:`compute.sessions`). Sessions: ``session_length`` of :data:`SESSION_LENGTHS`, starting at
    ``session_start`` ("HH:MM" UTC).
    """

    ref: Literal["poc", "vah", "val", "vwap", "naked_poc"]
    session_length: SessionLength = "1d"
    session_start: str = "00:00"
    ticks_per_row: TicksPerRow = 10
    value_area: Annotated[float, _M(ge=0.5, le=0.95)] = 0.7


class _Common(msgspec.Struct, **_FLAGS):
    symbol: Annotated[str, _M(min_length=1, max_length=40)]
    market: Literal["usdm", "coinm", "spot"] = "usdm"
    cooldown_s: Annotated[float, _M(ge=0, le=30 * 86_400)] = 0.0
    name: Annotated[str, _M(max_length=200)] | None = None


class PriceCross(_Common, tag_field="type", tag="price_cross", **_FLAGS):
    """Price crosses a fixed price or a developing session level (:class:`LevelRef`)."""

    level: Price | LevelRef
    direction: Direction


class Liquidation(_Common, tag_field="type", tag="liquidation", **_FLAGS):
    """A forceOrder of notional ≥ ``min_notional`` (quote currency); ``side`` "SELL" = a long was liquidated."""

    min_notional: Positive
    side: Literal["BUY", "SELL"] | None = None


class StackedImbalance(_Common, tag_field="type", tag="stacked_imbalance", **_FLAGS):
    """A candle's footprint gains a stack of ≥ ``min_stack`` imbalanced rows (:mod:`compute.footprint`)."""

    interval: Interval = "1m"
    ticks_per_row: TicksPerRow = 10
    ratio: Annotated[float, _M(ge=1, le=10_000)] = 3.0
    min_stack: Annotated[int, _M(ge=1, le=10_000)] = 3
    side: Literal["buy", "sell", "any"] = "any"
    ignore_zeros: bool = True
    min_volume: Annotated[float, _M(ge=0, le=1e12)] = 0.0


class Delta(_Common, tag_field="type", tag="delta", **_FLAGS):
    """Candle delta, or the CVD change over a trailing window, reaches ±``threshold`` (base asset)."""

    threshold: Positive
    window: Literal["candle"] | None = None
    interval: Interval | None = None
    window_s: Seconds | None = None
    direction: Direction = "any"


class VolumeSpike(_Common, tag_field="type", tag="volume_spike", **_FLAGS):
    """Volume of the trailing ``window_s`` ≥ ``k`` × the mean of the ``lookback`` windows before it."""

    window_s: Seconds
    k: Positive
    lookback: Annotated[int, _M(ge=1, le=10_000)] = 20


Rule = PriceCross | Liquidation | StackedImbalance | Delta | VolumeSpike
#: The rule types by their ``"type"`` tag, in this order.
RULE_TYPES: tuple[str, ...] = ("price_cross", "liquidation", "stacked_imbalance", "delta", "volume_spike")
_BY_TAG = dict(zip(RULE_TYPES, (PriceCross, Liquidation, StackedImbalance, Delta, VolumeSpike), strict=True))

_PATH = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)
_NAMED = re.compile(r"^Object (?:missing required|contains unknown) field `([^`]*)`")


def _field_of(error: msgspec.ValidationError) -> str:
    """The dotted field path of a msgspec error ("… - at `$.level.ref`" → "level.ref")."""
    m = _PATH.match(str(error))
    path = (m.group(2) or "").lstrip(".")
    named = _NAMED.match(m.group(1))
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return path


def _whole_ms(field: str, value: float | None) -> None:
    if value is not None and abs(value * 1000 - round(value * 1000)) > 1e-6:
        raise RuleError(field, f"must be a whole number of milliseconds, got {value!r}")


def _check(rule: Rule) -> Rule:
    """The checks msgspec's types cannot state; returns the rule normalised (symbol upper-cased, defaults)."""
    if not rule.symbol.strip() or rule.symbol != rule.symbol.strip():
        raise RuleError("symbol", f"must be a non-empty symbol without spaces, got {rule.symbol!r}")
    repl = {"symbol": rule.symbol.upper()}
    if isinstance(rule, PriceCross) and isinstance(rule.level, LevelRef):
        try:
            parse_session_start(rule.level.session_start)
        except ValueError as e:
            raise RuleError("level.session_start", str(e)) from None
        if round(rule.level.value_area, 4) != rule.level.value_area:
            raise RuleError("level.value_area", f"at most 4 decimals, got {rule.level.value_area!r}")
    elif isinstance(rule, Delta):
        if (rule.window is None) == (rule.window_s is None):
            raise RuleError("window", 'give either "window": "candle" (with "interval") or "window_s"')
        if rule.window_s is not None and rule.interval is not None:
            raise RuleError("interval", 'applies to "window": "candle" only')
        _whole_ms("window_s", rule.window_s)
        if rule.window == "candle" and rule.interval is None:
            repl["interval"] = "1m"
    elif isinstance(rule, VolumeSpike):
        _whole_ms("window_s", rule.window_s)
    return msgspec.structs.replace(rule, **repl)


def parse_rule(obj: dict | str | bytes | Rule) -> Rule:
    """Validate a rule given as a dict, JSON text or bytes (a Rule is checked and returned normalised).

    Strict (msgspec ``strict=True``, unknown fields forbidden): ``"1"`` is not a number, ``true`` not an int.

    Raises
    ------
    RuleError
        Bad JSON (``field`` ""), an unknown ``type``, a missing, unknown or out-of-bounds field (``field`` its
        dotted path, e.g. ``"level.ref"``).
    """
    if isinstance(obj, tuple(_BY_TAG.values())):
        obj = msgspec.to_builtins(obj)
    try:
        if isinstance(obj, str | bytes | bytearray):
            rule = msgspec.json.decode(obj, type=Rule, strict=True)
        elif isinstance(obj, dict):
            rule = msgspec.convert(obj, Rule, strict=True)
        else:
            raise RuleError("", f"a rule is a JSON object, got {type(obj).__name__}")
    except msgspec.ValidationError as e:
        field = _field_of(e)
        raise RuleError(field, str(e).split(" - at ")[0]) from None
    except msgspec.DecodeError as e:
        raise RuleError("", f"not JSON: {e}") from None
    return _check(rule)


def rule_to_dict(rule: Rule) -> dict:
    """The rule as a JSON-ready dict with its ``"type"`` and every field (defaults filled in); ``parse_rule`` of it
    gives the rule back."""
    return msgspec.to_builtins(rule)
