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


def percent(fraction: float) -> str:
    """A fraction as the issue writes it: 0.7 -> ``70 %``, 0.685 -> ``68.5 %``."""
    return f"{round(float(fraction) * 100, 2):g} %"


def poc_label(poc: float, row_volume: float, row_delta: float, tick: float) -> str:
    """``POC 45,135.00 | Vol 1.2M | Δ +15K``: the POC row's middle price, its volume and its delta."""
    return f"POC {price(poc, tick)} | Vol {volume(row_volume)} | Δ {volume(row_delta, signed=True)}"


def va_edge_label(edge: str, value: float, value_area: float, tick: float) -> str:
    """``VAH 45,150.00 (70 %)`` (``edge`` is ``"VAH"`` or ``"VAL"``)."""
    return f"{edge} {price(value, tick)} ({percent(value_area)})"


def va_summary(vah: float, val: float, va_volume: float, tick: float) -> str:
    """``VA 35.00 wide | 820K``: the value area's height (quote currency) and the volume inside it."""
    return f"VA {price(vah - val, tick)} wide | {volume(va_volume)}"


def percentile_label(p: float, value: float, tick: float) -> str:
    """``P25 45,120.00`` for the 25 % percentile line."""
    return f"P{round(float(p) * 100, 1):g} {price(value, tick)}"


def duration(ms: float) -> str:
    """A lag or age: ``850 ms``, ``12.3 s``, ``4 min``, ``2.5 h``."""
    ms = float(ms)
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.0f} min"
    return f"{ms / 3_600_000:.1f} h"
