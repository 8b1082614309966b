"""Rejected feed frames are visible on the page: the status line says ``rejected N`` (reasons in its title).

The counts travel as the live client's :class:`feeds.binance_ws.StreamStatus` (``rejected``, ``feed_id``)
in the ingest meta's ``streams`` JSON, as written by :meth:`store.ingest.IngestService._status_meta`.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

from dashboard.status import status_html
from feeds.binance_ws import StreamStatus


def _streams(**status) -> str:
    return json.dumps([StreamStatus("BTCUSDT", "btcusdt@aggTrade", connected=True, **status).to_dict()])


def _text(meta: dict) -> str:
    snap = SimpleNamespace(meta=meta, redis_ok=True, stale_since=None, redis_rtt_ms=0.4)
    return status_html(snap, "dark", now=1_700_000_000.0)


def test_status_line_shows_rejected_frames_only_when_there_are_some():
    meta = {"source": "LIVE usdm BTCUSDT", "streams": _streams(rejected={"out_of_range": 2, "too_deep": 1})}
    raw = _text(meta)
    text = re.sub(r"<[^>]+>", "", raw)
    assert "btcusdt@aggTrade connected rejected 3" in text
    assert 'title="frames rejected: out_of_range 2, too_deep 1"' in raw
    assert "rejected" not in _text({"source": "LIVE usdm BTCUSDT", "streams": _streams()})
    # values from Redis are not trusted: junk neither breaks the line nor gets in unescaped
    junk = json.dumps([{"stream": "s", "connected": True, "rejected": {"<b>x": "nan", "y": "1e400", "z": 4}}])
    raw = _text({"source": "LIVE usdm BTCUSDT", "streams": junk})
    assert "rejected 4" in re.sub(r"<[^>]+>", "", raw) and "<b>x" not in raw
