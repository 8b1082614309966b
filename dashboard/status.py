"""The status bar: where the data comes from and whether it is fresh.

:func:`status_html` turns a snapshot's ingest status (``meta``, Redis state) into
one line of HTML. Every value that comes from outside (the ``meta`` hash in
Redis, stream names) is HTML-escaped; nothing from the URL ever reaches it.

Shown, on one line that never wraps: LIVE or REPLAY and one short reason (the whole
source and reason in its tooltip, said once), trades per second, the last trade's
time (UTC), the lag of the last trade (live), Redis state with its round-trip time,
``stale since hh:mm:ss``, then per-stream connection state (from
``meta["streams"]``, a JSON list of ``{stream, connected, lag_ms, reconnects,
gaps_filled, gaps_unfilled, rejected}`` written by a live feed, ``rejected`` a
``{reason: frames}`` dict shown as ``rejected N`` when not zero; absent for a replay).
``stale since`` shows when Redis stops answering or the ingest heartbeat stops. The span carries
``data-heartbeat`` (the ingest's wall-clock ms of the data shown) and ``data-last-id``
(the last trade id shown), so a client can measure how long a trade takes from the
ingest to the screen (``benchmarks/bench_load.py``).
"""

from __future__ import annotations

import html
import json
import re
import time

import panel as pn
import param
from panel.viewable import Viewer

from . import fmt
from .panels import HtmlBox
from .settings import MODES
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


def _stream_html(s: dict, th: dict) -> str:
    """One stream's part of the status line: connection, lag, reconnects, gaps, rejected frames."""
    e = html.escape
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
    rej = s.get("rejected")
    rej = {str(k): int(x) if 0 < (x := _num(v)) < 1e15 else 0 for k, v in rej.items()} if isinstance(rej, dict) else {}
    if sum(rej.values()):
        why_rej = ", ".join(f"{k} {v}" for k, v in sorted(rej.items()) if v)
        bits.append(f'<span style="color:{th["warn"]}" title="frames rejected: {e(why_rej)}">'
                    f"rejected {sum(rej.values())}</span>")
    return '<span class="fl-stream">' + " ".join(bits) + "</span>"


#: Longest short reason shown in the line (the whole text is in its tooltip).
REASON_CHARS = 56


def short_reason(meta: dict) -> tuple[str, str, str]:
    """``(mode, short, full)``: the badge, one short reason for the line and the whole story for its tooltip.

    The ingest writes its note twice (appended to ``source`` and as ``reason``); it is said once
    here. With a note (e.g. the live fallback's "Binance unreachable at start-up: <long DNS
    error>") the short reason is the note's head (up to its first ``:``), else the source's
    description (the recording and speed, or the market and symbols); longer than
    :data:`REASON_CHARS` it is cut with an ellipsis. ``full`` names the source and why.
    """
    mode, why = source_mode(meta)
    note = str(meta.get("reason", "") or meta.get("source_reason", "") or "").strip()
    src = str(meta.get("source", "") or "").strip()
    if src.upper().startswith(mode + " "):
        src = src[len(mode) + 1 :]
    if note:
        src = src.replace(f" — {note}", "").replace(note, "").strip(" —")
    src = src or "waiting for the ingest service…"
    short = note.split(":", 1)[0].strip() if note else src
    if len(short) > REASON_CHARS:
        short = short[: REASON_CHARS - 1].rstrip() + "…"
    return mode, short, f"{mode} {src}\n{why}"


def status_html(snap, theme: str = "dark", now: float | None = None) -> str:
    """One line of HTML for the status bar (a ``<span class="fl-status">``); see the module docstring.

    ``snap`` is a :class:`engine.view.Snapshot` (``meta`` dict of strings, ``redis_ok``,
    ``redis_rtt_ms``, ``stale_since`` wall seconds or None). ``now`` is wall time in s.
    The line is short on purpose (it never wraps, CSS cuts what does not fit with an
    ellipsis): the source badge and one short reason (whole text in its tooltip), trades/s,
    the last trade's time of day (date in its tooltip), the lag (live), Redis, stale since,
    then the live streams. The span's ``title`` holds the whole line as text.
    """
    th = THEMES[theme]
    now = time.time() if now is None else now
    m = snap.meta or {}
    e = html.escape
    mode, short, full = short_reason(m)
    colour = {"LIVE": th["ok"], "REPLAY": th["warn"], "WAITING": th["muted"]}[mode]
    parts = [
        f'<span class="fl-src" title="{e(full)}"><b class="fl-badge" style="color:{th["bg"]};background:{colour}">'
        f'{mode}</b> <span class="fl-why">{e(short)}</span></span>',
    ]
    last = m.get("last_trade_time")
    last_ms = _num(last, None) if last not in (None, "") else None
    parts.append(f"{_num(m.get('tps')):,.1f} trades/s")
    if last_ms is not None:
        clock = fmt.utc(last_ms, False)[11:]  # "hh:mm:ss UTC"
        parts.append(f'<span title="last trade {e(fmt.utc(last_ms))}">last trade {clock}</span>')
    else:
        parts.append("last trade —")
    if mode == "LIVE" and last_ms is not None:
        parts.append(f"lag {fmt.duration(max(now * 1000 - last_ms, 0))}")

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

    streams, bad = _streams(m.get("streams"))
    if bad:
        parts.append(f'<span style="color:{th["warn"]}">stream status unreadable</span>')
    parts += [_stream_html(st, th) for st in streams or []]
    inner = " · ".join(parts)
    line = html.unescape(re.sub(r"<[^>]+>", "", inner))
    hb_attr = html.escape(str(hb)) if hb not in (None, "") else ""
    lid = m.get("last_trade_id")
    lid_attr = html.escape(str(lid)) if lid not in (None, "") else ""
    return (f'<span class="fl-status" data-heartbeat="{hb_attr}" data-last-id="{lid_attr}" '
            f'title="{e(line)}">{inner}</span>')


#: The status and summary boxes are one line as wide as the page (Bokeh's Div shrinks to its text otherwise,
#: and a long line pushed the page wider than the screen instead of being cut with an ellipsis).
LINE_BOX_CSS = """
:host { min-width: 0; max-width: 100%; overflow: hidden; }
.bk-clearfix { display: block; width: 100%; min-width: 0; }
"""


class StatusBar(Viewer):
    """The status line over the chart and the profile summary under it (two :class:`dashboard.panels.HtmlBox`).

    ``status`` (named ``status``) says where the data comes from and whether it is fresh;
    ``summary`` (named ``summary``) carries the shown profile's numbers, also as
    ``data-*`` attributes that the browser tests read.
    """

    theme = param.Selector(default="dark", objects=list(THEMES), doc="Colour theme of the texts.")

    def __init__(self, css: str, **params):
        super().__init__(**params)
        self.status = HtmlBox("connecting…", css + LINE_BOX_CSS, name="status", margin=(2, 8))
        self.summary = HtmlBox("", css + LINE_BOX_CSS, name="summary", margin=(2, 8))

    def show_snapshot(self, snap) -> None:
        """The status of a :class:`engine.view.Snapshot` (see :func:`status_html`)."""
        self.status.object = status_html(snap, self.theme)

    def show_error(self, e: Exception) -> None:
        """A refresh failed: say so in the status line (escaped)."""
        self.status.object = (f'<span class="fl-status" style="color:{THEMES[self.theme]["bad"]}">display error: '
                              f"{html.escape(type(e).__name__)}: {html.escape(str(e))[:200]}</span>")

    def show_summary(self, res, row_size: float, tick: float, labels: dict, mode: str, coverage=None) -> None:
        """One line on the profile ``res`` (mode, range, row, POC/VA labels, volume, delta, trades) and what it
        was computed from (``coverage``, a :class:`compute.coverage.Coverage`: id range, complete or its gaps)."""
        def p(v):
            return fmt.price(v, tick, sep="")

        start, end = res.start, res.end
        delta = res.buy_volume - res.sell_volume
        e = html.escape
        text = (
            f"VPVR {MODES[mode]} · {fmt.utc(start, False)} → {fmt.utc(end, False)} · row {fmt.price(row_size, tick)} · "
            f"<b>{e(labels.get('poc', ''))}</b> · {e(labels.get('vah', ''))} · "
            f"{e(labels.get('val', ''))} · {e(labels.get('va', ''))} · "
            f"Vol {fmt.volume(res.total_volume)} · Δ {fmt.volume(delta, signed=True)} · {res.trades:,} trades"
        )
        cov_attrs = ""
        if coverage is not None and coverage.trades:
            cls = "fl-complete" if coverage.complete else "fl-gaps"
            text += f' · <span class="{cls}">{e(coverage.summary())}</span>'
            cov_attrs = (f' data-first-id="{coverage.first_id}" data-last-id-range="{coverage.last_id}" '
                         f'data-missing="{coverage.missing}"')
        self.summary.object = (
            f'<span class="fl-profile fl-summary" data-poc="{p(res.poc)}" data-vah="{p(res.vah)}" '
            f'data-val="{p(res.val)}" data-from="{start}" data-to="{end}" data-row-size="{p(row_size)}" '
            f'data-trades="{res.trades}" data-mode="{mode}" data-kind="{res.kind}"{cov_attrs}>{text}</span>'
        )

    def __panel__(self) -> pn.Column:
        return pn.Column(self.status.pane, self.summary.pane, sizing_mode="stretch_width")
