"""feeds.decode's fast path (one narrow typed msgspec call per aggTrade frame) against the general decoder.

On every real recorded frame of ``shared/data/binance/ws-raw-*`` (the benchmark's input), a
decoder with the fast path and one forced through the general path give identical columns and
counts; frames the fast path refuses (an extra field, a missing stream, str frames with odd
text) still decode through the general path, in arrival order with the fast ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require

import feeds.decode
from feeds.decode import FrameDecoder
from feeds.decode_types import AggTrades
from feeds.readers import agg_trade_frames

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance"


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    paths = sorted(SHARED.glob("ws-raw-*.gz"))
    require(bool(paths), f"no raw WebSocket recordings in {SHARED}")
    out: list[bytes] = []
    for p in paths:
        out.extend(agg_trade_frames(p))
    return out


def _decode(frames, fast: bool, flush_every: int = 2000, monkeypatch=None):
    if not fast:
        monkeypatch.setattr(feeds.decode, "_FAST", lambda frame: (_ for _ in ()).throw(ValueError("off")))
    dec = FrameDecoder()
    parts: dict[str, list[AggTrades]] = {}
    for i in range(0, len(frames), flush_every):
        for fr in frames[i : i + flush_every]:
            assert dec.feed(fr) == "aggTrade"
        for sym, cols in dec.flush().trades.items():
            parts.setdefault(sym, []).append(cols)
    if not fast:
        monkeypatch.undo()
    return dec, {s: AggTrades.concat(p) for s, p in parts.items()}


def _assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for sym in a:
        for c in AggTrades._COLS:
            x, y = getattr(a[sym], c), getattr(b[sym], c)
            assert x.dtype == y.dtype, (sym, c)
            np.testing.assert_array_equal(x, y, err_msg=f"{sym}.{c}")


def test_fast_and_general_paths_give_identical_batches_on_every_real_frame(frames, monkeypatch):
    fast_dec, fast = _decode(frames, True)
    slow_dec, slow = _decode(frames, False, monkeypatch=monkeypatch)
    assert fast_dec.fast == len(frames), "every real aggTrade frame takes the fast path"
    assert slow_dec.fast == 0
    assert fast_dec.counts == slow_dec.counts == {"aggTrade": len(frames)}
    _assert_same(fast, slow)
    first = json.loads(frames[0])["data"]
    sym = first["s"].upper()
    assert (int(fast[sym].agg_id[0]), float(fast[sym].price[0])) == (first["a"], float(first["p"]))


def test_refused_frames_fall_back_in_arrival_order(frames):
    """An extra field, a str frame, whitespace: the general path takes what the fast path refuses."""
    good = [f for f in frames if b'"s":"BTCUSDT"' in f][:6]
    extra = good[1][:-2] + b',"X":1}}'  # unknown payload field: the general decoder skips it
    outer = good[3][:-1] + b',"id":7}'  # an envelope field the fast path does not know
    spaced = good[4].replace(b":", b": ")
    mixed = [good[0], extra, good[2].decode(), outer, spaced, good[5]]
    dec = FrameDecoder()
    assert [dec.feed(f) for f in mixed] == ["aggTrade"] * 6
    assert dec.pending == 6
    out = dec.flush()
    assert dec.fast == 4  # good[0], good[2] as str, spaced, good[5]
    assert out.frames == 6 and dec.counts == {"aggTrade": 6}
    assert out.trades["BTCUSDT"].agg_id.tolist() == [json.loads(f)["data"]["a"] for f in good]


def test_fast_path_keeps_the_range_checks(frames):
    good = next(f for f in frames if b'"s":"BTCUSDT"' in f)
    d = json.loads(good)["data"]
    cases = {
        good.replace(f'"a":{d["a"]}'.encode(), b'"a":-1'): "out_of_range:aggTrade",
        good.replace(f'"T":{d["T"]}'.encode(), b'"T":0'): "out_of_range:aggTrade",
        good.replace(b'"p":"', b'"p":"-'): "out_of_range:aggTrade",
        good.replace(b'"e":"aggTrade"', b'"e":"trade"'): "unexpected:trade",
        good.replace(b'"m":', b'"m":"maybe","z":'): "invalid:aggTrade",
    }
    for fr, kind in cases.items():
        dec = FrameDecoder()
        assert dec.feed(fr) == kind, fr
        dec.flush()
        assert dec.fast == 0


def test_fast_path_respects_a_small_frame_limit(frames):
    dec = FrameDecoder(max_frame_bytes=64)
    assert dec.feed(frames[0]) == "too_large"
    assert dec.flush().frames == 1 and dec.fast == 0


@pytest.mark.parametrize("big", [2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1])
def test_ids_and_times_above_2_53_stay_exact(frames, big):
    good = next(f for f in frames if b'"s":"BTCUSDT"' in f)
    d = json.loads(good)["data"]
    fr = good.replace(f'"a":{d["a"]}'.encode(), f'"a":{big}'.encode()).replace(
        f'"l":{d["l"]}'.encode(), f'"l":{big}'.encode())
    dec = FrameDecoder()
    assert dec.feed(good) == dec.feed(fr) == "aggTrade"
    c = dec.flush().trades["BTCUSDT"]
    assert c.agg_id.tolist() == [d["a"], big] and c.last_id.tolist() == [d["l"], big]
    assert c.time.tolist() == [d["T"]] * 2
