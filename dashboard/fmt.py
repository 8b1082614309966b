"""Number formatting for the page: prices on the symbol's tick, volumes abbreviated."""

from __future__ import annotations

import datetime as dt

from compute.grid import decimals_for


def price(value: float, tick: float, sep: str = ",") -> str:
    """Format a price with the tick's decimals, e.g. ``45,135.00`` (sep="" gives ``45135.00``)."""
    d = decimals_for(tick)
    s = f"{value:,.{d}f}"
    return s if sep == "," else s.replace(",", sep)


def volume(value: float, signed: bool = False) -> str:
    """Abbreviate a volume: 950 -> ``950``, 1234 -> ``1.23K``, 1.2e6 -> ``1.2M``; ``signed`` adds ``+``."""
    sign = "-" if value < 0 else ("+" if signed else "")
    v = abs(value)
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if v >= div:
            x = v / div
            return f"{sign}{x:.3g}{suffix}"
    return f"{sign}{v:.3g}" if v < 100 else f"{sign}{v:.0f}"


def utc(ms: int | float | None, with_ms: bool = True) -> str:
    """UTC time of an epoch-ms value, ``2020-02-22 01:02:03.456 UTC``."""
    if ms is None:
        return "—"
    t = dt.datetime.fromtimestamp(float(ms) / 1000, tz=dt.UTC)
    s = t.strftime("%Y-%m-%d %H:%M:%S")
    if with_ms:
        s += f".{int(ms) % 1000:03d}"
    return s + " UTC"


def clock(seconds: float) -> str:
    """Wall clock ``hh:mm:ss`` (UTC) of an epoch-seconds value."""
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%H:%M:%S")
