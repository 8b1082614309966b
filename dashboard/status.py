"""The status bar: where the data comes from and whether it is fresh.

:func:`status_html` turns a snapshot's ingest status (``meta``, Redis state) into
one line of HTML. Every value that comes from outside (the ``meta`` hash in
Redis, stream names) is HTML-escaped; nothing from the URL ever reaches it.

Shown: LIVE or REPLAY and why, per-stream connection state (from
``meta["streams"]``, a JSON list of ``{stream, connected, lag_ms, reconnects,
gaps_filled, gaps_unfilled}`` written by a live feed; absent for a replay), the
lag of the last trade (live) or the replay clock, trades per second, the last
trade time (UTC), Redis state with its round-trip time, and ``stale since
hh:mm:ss`` when Redis stops answering or the ingest heartbeat stops. The span carries
``data-heartbeat`` (the ingest's wall-clock ms of the data shown) and ``data-last-id``
(the last trade id shown), so a client can measure how long a trade takes from the
ingest to the screen (``benchmarks/bench_load.py``).
"""

from __future__ import annotations

import html
import json
import time

from . import fmt
from .theme import THEMES

#: The ingest heartbeat is stale after this long without an update (s).
STALE_AFTER_S = 5.0


def _streams(raw) -> tuple[list[dict] | None, bool]:
    """Parse ``meta["streams"]``; returns (list or None when absent, whether it was malformed)."""
    if raw is None or raw == "":
        return None, False
    try:
        val = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except (ValueError, TypeError):
        return None, True
    if not isinstance(val, list) or not all(isinstance(s, dict) for s in val):
        return None, True
    return val, False


def _num(v, default=0.0) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def source_mode(meta: dict) -> tuple[str, str]:
    """(``"LIVE"``/``"REPLAY"``/``"WAITING"``, why) from the ingest status."""
    src = str(meta.get("source", "") or "")
    mode = str(meta.get("mode", "") or "").upper() or (src.split(" ", 1)[0].upper() if src else "")
    why = str(meta.get("reason", "") or meta.get("source_reason", "") or "")
    if mode not in ("LIVE", "REPLAY"):
        mode = "REPLAY" if "replay" in src.lower() else ("LIVE" if src else "WAITING")
    if not why:
        why = {
            "LIVE": "live Binance WebSocket feed",
            "REPLAY": "replaying a recording (serve.py --source replay)",
            "WAITING": "no ingest status in Redis yet",
        }[mode]
    return mode, why


def status_html(snap, theme: str = "dark", now: float | None = None) -> str:
    """One line of HTML for the status bar (a ``<span class="fl-status">``); see the module docstring.

    ``snap`` is a :class:`store.view.Snapshot` (``meta`` dict of strings, ``redis_ok``,
    ``redis_rtt_ms``, ``stale_since`` wall seconds or None). ``now`` is wall time in s.
    """
    th = THEMES[theme]
    now = time.time() if now is None else now
    m = snap.meta or {}
    e = html.escape
    mode, why = source_mode(m)
    colour = {"LIVE": th["ok"], "REPLAY": th["warn"], "WAITING": th["muted"]}[mode]
    src = str(m.get("source", "") or "waiting for the ingest service…")
    if src.upper().startswith(mode + " "):
        src = src[len(mode) + 1 :]
    parts = [
        f'<b class="fl-badge" style="color:{th["bg"]};background:{colour}">{mode}</b> '
        f'<span class="fl-source">{e(src)}</span> <span class="fl-why">({e(why)})</span>',
    ]
    last = m.get("last_trade_time")
    last_ms = _num(last, None) if last not in (None, "") else None
    if mode == "LIVE" and last_ms is not None:
        parts.append(f"lag {fmt.duration(max(now * 1000 - last_ms, 0))}")
    parts.append(f"{_num(m.get('tps')):,.1f} trades/s")
    parts.append(f"last trade {fmt.utc(last_ms) if last_ms is not None else '—'}")

    streams, bad = _streams(m.get("streams"))
    if bad:
        parts.append(f'<span style="color:{th["warn"]}">stream status unreadable</span>')
    for s in streams or []:
        ok = bool(s.get("connected"))
        dot = f'<span style="color:{th["ok"] if ok else th["bad"]}">●</span>'
        bits = [f"{dot} {e(str(s.get('stream', '?')))}", "connected" if ok else "disconnected"]
        if s.get("lag_ms") is not None:
            bits.append(f"lag {fmt.duration(_num(s.get('lag_ms')))}")
        rc = int(_num(s.get("reconnects")))
        if rc:
            bits.append(f"{rc} reconnects")
        gf, gu = int(_num(s.get("gaps_filled"))), int(_num(s.get("gaps_unfilled")))
        if gf or gu:
            gap_colour = th["bad"] if gu else th["muted"]
            bits.append(f'<span style="color:{gap_colour}">gaps {gf} filled / {gu} unfilled</span>')
        parts.append('<span class="fl-stream">' + " ".join(bits) + "</span>")

    if snap.redis_ok:
        redis = f'<span style="color:{th["ok"]}">Redis OK</span>'
        if snap.redis_rtt_ms is not None:
            redis += f" ({snap.redis_rtt_ms:.1f} ms)"
    else:
        since = fmt.clock(snap.stale_since) if snap.stale_since else "—"
        redis = f'<span style="color:{th["bad"]}">Redis unreachable · stale since {since}</span>'
    parts.append(redis)
    hb = m.get("heartbeat")
    if snap.redis_ok and hb not in (None, ""):
        hb_s = _num(hb) / 1000
        if now - hb_s > STALE_AFTER_S:
            parts.append(f'<span style="color:{th["bad"]}">stale since {fmt.clock(hb_s)}</span>')
    inner = " · ".join(parts)
    hb_attr = html.escape(str(hb)) if hb not in (None, "") else ""
    lid = m.get("last_trade_id")
    lid_attr = html.escape(str(lid)) if lid not in (None, "") else ""
    return f'<span class="fl-status" data-heartbeat="{hb_attr}" data-last-id="{lid_attr}">{inner}</span>'

