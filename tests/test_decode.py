"""feeds.decode: real frames decode to what the stdlib json module reads; bad frames are counted, never raised.

Real frames: the recorded aggTrade frames (cryptofeed) verbatim and the recorded
trade frames (hftbacktest) re-encoded as aggTrade frames with a = f = l = t
(:func:`feeds.readers.agg_trade_frames`).  The expected values come from
``json.loads`` of the same text.  The forceOrder frame is Binance's documented
example payload (developers.binance.com, Liquidation Order Streams).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.decode import LIQUIDATION_COLUMNS, FrameDecoder, decode_rest_agg_trades
from feeds.readers import agg_trade_frames, read_trades_by_symbol

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "binance"
USDM_ALTS = SHARED / "ws-raw-usdm-alts-2021-07-22.cryptofeed.txt.gz"
USDM_BTC = SHARED / "ws-raw-usdm-btcusdt-2023-04-05.hftbacktest.txt.gz"

# Binance docs, "Liquidation Order Streams" example payload, in the combined envelope.
DOC_FORCE_ORDER = (
    b'{"stream":"btcusdt@forceOrder","data":{"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL",'
    b'"o":"LIMIT","f":"IOC","q":"0.014","p":"9910","ap":"9910","X":"FILLED","l":"0.014","z":"0.014",'
    b'"T":1568014460893}}}'
)


@pytest.fixture(scope="module")
def real_frames() -> list[bytes]:
    return agg_trade_frames(USDM_ALTS) + agg_trade_frames(USDM_BTC)


def _json_columns(frames):
    out: dict[str, list] = {}
    for fr in frames:
        d = json.loads(fr)["data"]
        out.setdefault(d["s"], []).append((d["a"], float(d["p"]), float(d["q"]), d["f"], d["l"], d["T"], d["E"], d["m"]))
    return out


def test_real_frames_decode_like_json(real_frames):
    assert len(real_frames) == 91 + 10_738  # PROVENANCE: 91 aggTrade frames + 10 738 trades
    dec = FrameDecoder()
    kinds = {dec.feed(fr) for fr in real_frames}
    assert kinds == {"aggTrade"}
    out = dec.flush()
    ref = _json_columns(real_frames)
    assert set(out.trades) == set(ref) == {"SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT", "BTCUSDT"}
    for sym, rows in ref.items():
        c = out.trades[sym]
        a, p, q, f, ll, t, e, m = map(np.array, zip(*rows, strict=True))
        np.testing.assert_array_equal(c.agg_id, a)
        np.testing.assert_array_equal(c.price, p)
        np.testing.assert_array_equal(c.qty, q)
        np.testing.assert_array_equal(c.first_id, f)
        np.testing.assert_array_equal(c.last_id, ll)
        np.testing.assert_array_equal(c.time, t)
        np.testing.assert_array_equal(c.event_time, e)
        np.testing.assert_array_equal(c.is_buyer_maker, m)
    assert dec.counts == {"aggTrade": len(real_frames)}
    assert dec.flush().trades == {} and dec.pending == 0


def test_decoded_batches_equal_the_reader(real_frames):
    """Same trades whether a recording is read from file or decoded frame by frame."""
    dec = FrameDecoder()
    for fr in real_frames[:91]:
        dec.feed(fr.decode())  # str frames too (aiohttp hands TEXT frames over as str)
    out = dec.flush()
    ref = read_trades_by_symbol(USDM_ALTS)
    for sym, b in ref.items():
        got = out.trades[sym].batch()
        for col in ("time", "price", "qty", "is_buyer_maker", "trade_id"):
            np.testing.assert_array_equal(getattr(got, col), getattr(b, col))


def test_force_order_doc_example():
    dec = FrameDecoder()
    assert dec.feed(DOC_FORCE_ORDER) == "forceOrder"
    out = dec.flush()
    df = out.liquidations_df()
    assert list(df.columns) == list(LIQUIDATION_COLUMNS)
    row = df.iloc[0].to_dict()
    assert row == {
        "symbol": "BTCUSDT", "side": "SELL", "order_type": "LIMIT", "time_in_force": "IOC", "price": 9910.0,
        "avg_price": 9910.0, "orig_qty": 0.014, "filled_qty": 0.014, "last_filled_qty": 0.014, "status": "FILLED",
        "time": 1568014460893, "event_time": 1568014460893,
    }


def test_replies_and_bad_frames_are_counted_and_skipped(real_frames):
    dec = FrameDecoder("t")
    bad = {
        b"": "malformed",
        b"not json at all": "malformed",
        real_frames[0][:40]: "malformed",  # truncated
        b"[1,2,3]": "malformed",
        b'"str"': "malformed",
        b'{"stream":"btcusdt@aggTrade","data":null}': "unexpected:empty",
        b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate","E":1,"b":[],"a":[]}}': "unexpected:depthUpdate",
        b'{"stream":"x@aggTrade","data":{"e":"aggTrade","E":"x","a":"nan","s":7,"p":null,"q":[],"m":"maybe"}}':
            "invalid:aggTrade",
        b'{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}': "unexpected:bare:aggTrade",
        b'{"result":null,"id":1}': "reply",
        b'{"code":2,"msg":"Invalid request","id":3}': "error",
        b'{"error":{"code":3,"msg":"Invalid JSON"},"id":null}': "error",
        b"\x00\xffbinary-garbage": "malformed",
    }
    for fr, kind in bad.items():
        assert dec.feed(fr) == kind, fr
    # out-of-range values in a well-typed frame: dropped at flush
    neg = real_frames[1].replace(b'"p":"', b'"p":"-')
    assert dec.feed(neg) == "aggTrade"
    dec.feed(real_frames[2])
    out = dec.flush()
    assert sum(len(c) for c in out.trades.values()) == 1
    assert [r.id for r in out.replies] == [1, 3, None]
    assert dec.counts["invalid:aggTrade"] == 2 and dec.counts["aggTrade"] == 1
    assert dec.counts["malformed"] == 6


def test_rest_answer_decodes_and_rejects_bad_bodies():
    body = (b'[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,"T":1498793709153,"m":true,'
            b'"M":true}]')  # Binance docs example of GET /api/v3/aggTrades
    t = decode_rest_agg_trades(body, "bnbbtc")
    assert t.symbol == "BNBBTC" and t.agg_id.tolist() == [26129] and t.price.tolist() == [0.01633102]
    assert t.is_buyer_maker.tolist() == [True] and t.time.tolist() == [1498793709153]
    for bad in (b'{"code":-1121,"msg":"Invalid symbol."}', b"[{", b'[{"a":1}]',
                body.replace(b'"0.01633102"', b'"-1"')):
        with pytest.raises(ValueError):
            decode_rest_agg_trades(bad, "BNBBTC")


# ----------------------------------------------------------------------------- fuzzing
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=200), st.text(max_size=200)), max_size=20))
def test_fuzz_arbitrary_frames_never_raise_and_are_all_counted(frames):
    dec = FrameDecoder()
    for fr in frames:
        dec.feed(fr)
    out = dec.flush()
    assert out.frames == len(frames)
    assert sum(dec.counts.values()) == len(frames)


@st.composite
def _mutated(draw, frames):
    fr = draw(st.sampled_from(frames))
    op = draw(st.sampled_from(["cut", "flip", "insert", "delete", "dup"]))
    i = draw(st.integers(0, len(fr) - 1))
    if op == "cut":
        return fr[:i]
    if op == "flip":
        return fr[:i] + bytes([fr[i] ^ draw(st.integers(1, 255))]) + fr[i + 1 :]
    if op == "insert":
        return fr[:i] + draw(st.binary(min_size=1, max_size=5)) + fr[i:]
    if op == "delete":
        return fr[:i] + fr[i + 1 :]
    return fr + fr


_FUZZ_FRAMES = agg_trade_frames(USDM_ALTS) if USDM_ALTS.exists() else [DOC_FORCE_ORDER]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_mutated(_FUZZ_FRAMES), st.sampled_from(_FUZZ_FRAMES)), min_size=1, max_size=30))
def test_fuzz_mutated_real_frames(frames):
    """Mutated real frames: never raise; whatever is accepted as an aggTrade has sane values."""
    dec = FrameDecoder()
    for fr in frames:
        dec.feed(fr)
    out = dec.flush()
    assert sum(dec.counts.values()) == len(frames)
    n = 0
    for sym, c in out.trades.items():
        n += len(c)
        assert sym == sym.upper()
        assert np.all(c.price > 0) and np.all(np.isfinite(c.price))
        assert np.all(c.qty > 0) and np.all(c.agg_id >= 0) and np.all(c.last_id >= c.first_id)
    assert n == dec.counts["aggTrade"]
    # every untouched real frame is among the decoded trades
    intact = [fr for fr in frames if fr in _FUZZ_FRAMES]
    got = {(s, int(a)) for s, c in out.trades.items() for a in c.agg_id}
    for fr in intact:
        d = json.loads(fr)["data"]
        assert (d["s"], d["a"]) in got


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["BTCUSDT", "ETHUSDT"]), st.integers(0, 2**53), st.decimals(min_value="0.00000001",
                                                                                   max_value="1000000", places=8),
    st.decimals(min_value="0.001", max_value="10000", places=3), st.integers(1, 2**41), st.booleans()),
    max_size=40))
def test_fuzz_generated_valid_frames_roundtrip(rows):
    dec = FrameDecoder()
    for sym, a, p, q, t, m in rows:
        fr = json.dumps({"stream": f"{sym.lower()}@aggTrade", "data": {
            "e": "aggTrade", "E": t + 1, "a": a, "s": sym, "p": str(p), "q": str(q), "f": a, "l": a, "T": t,
            "m": m}})
        assert dec.feed(fr) == "aggTrade"
    out = dec.flush()
    for sym in ("BTCUSDT", "ETHUSDT"):
        want = [r for r in rows if r[0] == sym]
        if not want:
            assert sym not in out.trades
            continue
        c = out.trades[sym]
        assert c.agg_id.tolist() == [r[1] for r in want]
        assert c.price.tolist() == [float(str(r[2])) for r in want]
        assert c.qty.tolist() == [float(str(r[3])) for r in want]
        assert c.is_buyer_maker.tolist() == [r[5] for r in want]
