"""/metrics has ``flowlens_frames_rejected_total{symbol, reason}``: the live client's cumulative rejection counts
(``StreamStatus.rejected`` in the ingest meta's ``streams`` JSON) turned into counter increments, once, by the
process that runs the feed (``StreamStatus.feed_id``)."""

from __future__ import annotations

import json
import os
import socket

from prometheus_client import REGISTRY

from feeds.binance_ws import BinanceStreamClient, StreamStatus


def _streams(**status) -> str:
    return json.dumps([StreamStatus("BTCUSDT", "btcusdt@aggTrade", connected=True, **status).to_dict()])


def _sample(symbol: str, reason: str) -> float:
    return REGISTRY.get_sample_value("flowlens_frames_rejected_total", {"symbol": symbol, "reason": reason}) or 0.0


def test_rejections_become_counter_increments_once_and_only_for_this_process():
    from service.ops import Metrics

    m = Metrics()
    mine = BinanceStreamClient(symbols=["BTCUSDT"]).feed_id
    assert mine.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    sym = "REJTESTUSDT"
    m.absorb_rejections(sym, _streams(rejected={"out_of_range": 2, "too_deep": 1}, feed_id=mine))
    m.absorb_rejections(sym, _streams(rejected={"out_of_range": 2, "too_deep": 1}, feed_id=mine))  # same totals
    assert (_sample(sym, "out_of_range"), _sample(sym, "too_deep")) == (2, 1)
    m.absorb_rejections(sym, _streams(rejected={"out_of_range": 5, "too_deep": 1}, feed_id=mine))
    assert _sample(sym, "out_of_range") == 5
    # another process's feed (another server process reading the same meta) is its own business
    m.absorb_rejections(sym, _streams(rejected={"out_of_range": 50}, feed_id="otherhost:1:1"))
    assert _sample(sym, "out_of_range") == 5
    # a new client of this process (the lease came back) counts from zero
    new = BinanceStreamClient(symbols=["BTCUSDT"]).feed_id
    m.absorb_rejections(sym, _streams(rejected={"out_of_range": 1}, feed_id=new))
    assert _sample(sym, "out_of_range") == 6
    # junk is ignored: no exception, no unbounded label values
    for junk in ("{not json", "null", json.dumps([{"feed_id": new, "rejected": {"bogus": 3, "malformed": "x"}}])):
        m.absorb_rejections(sym, junk)
    assert _sample(sym, "bogus") == 0 and _sample(sym, "malformed") == 0
