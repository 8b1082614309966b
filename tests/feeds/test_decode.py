"""feeds.decode: real frames decode to what the stdlib json module reads; bad frames are counted, never raised.

Real frames: the recorded aggTrade frames (cryptofeed) verbatim and the recorded
trade frames (hftbacktest) re-encoded as aggTrade frames with a = f = l = t
(:func:`feeds.readers.agg_trade_frames`).  The expected values come from
``json.loads`` of the same text.  The forceOrder frame is Binance's documented
example payload (developers.binance.com, Liquidation Order Streams).
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import feeds.decode
from feeds.decode import (
    LIQUIDATION_COLUMNS,
    MAX_DEPTH,
    MAX_FRAME_BYTES,
    REJECT_REASONS,
    FrameDecoder,
    decode_rest_agg_trades,
    json_depth,
)
from feeds.readers import agg_trade_frames, read_trades_by_symbol

ROOT = Path(__file__).resolve().parents[2]
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
    # out-of-range values in a well-typed frame: rejected by reason, the rest of the batch goes on
    neg = real_frames[1].replace(b'"p":"', b'"p":"-')
    assert dec.feed(neg) == "out_of_range:aggTrade"
    dec.feed(real_frames[2])
    out = dec.flush()
    assert sum(len(c) for c in out.trades.values()) == 1
    assert [r.id for r in out.replies] == [1, 3, None]
    assert dec.counts["invalid:aggTrade"] == 1 and dec.counts["out_of_range:aggTrade"] == 1
    assert dec.counts["aggTrade"] == 1 and dec.counts["malformed"] == 6
    assert dec.rejected == {"malformed": 6, "invalid": 1, "out_of_range": 1, "unexpected": 3}


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


# ----------------------------------------------------------------------------- no frame can wedge the decoder
_INTS = ["9223372036854775808", "18446744073709551615", "18446744073709551616", "1" + "0" * 30, "-1",
         "-9223372036854775809"]  # 2**63, 2**64-1, 2**64, 1e30, -1, -2**63-1
_FLOATS = ['"inf"', '"-inf"', '"nan"', '"Infinity"', '"0"', '"-1"', "0", "1e400", '"1e400"', "-1e400", '"-0"']
_POISON = ([(f, v) for f in ("a", "f", "l", "T", "E") for v in _INTS] + [("T", "0"), ("E", "0")]
           + [(f, v) for f in ("p", "q") for v in _FLOATS])


def _with(frame: bytes, field: str, raw: str) -> bytes:
    """``frame`` with the data field ``field`` set to the JSON text ``raw``."""
    out, n = re.subn(rb'"' + field.encode() + rb'":[^,}]*', b'"' + field.encode() + b'":' + raw.encode(), frame)
    assert n == 1, (field, frame)
    return out


def _ids(out) -> dict:
    return {s: c.agg_id.tolist() for s, c in out.trades.items()}


@pytest.mark.parametrize(("field", "raw"), _POISON)
def test_an_out_of_range_value_costs_its_frame_only_and_the_decoder_goes_on(real_frames, field, raw):
    """The issue-13 wedge: a = 2**63 made every later flush raise OverflowError. Now the frame is counted
    ``out_of_range:aggTrade``, the rest of its batch arrives, and so do the next batches."""
    good = real_frames[91:95]  # BTCUSDT
    a = [json.loads(f)["data"]["a"] for f in good]
    dec = FrameDecoder()
    assert dec.feed(good[0]) == "aggTrade"
    assert dec.feed(_with(good[1], field, raw)) == "out_of_range:aggTrade"
    assert dec.feed(good[2]) == "aggTrade"
    out = dec.flush()
    assert _ids(out) == {"BTCUSDT": [a[0], a[2]]} and out.frames == 3 and dec.pending == 0
    assert dec.counts == {"aggTrade": 2, "out_of_range:aggTrade": 1} and dec.rejected == {"out_of_range": 1}
    dec.feed(good[3])
    assert _ids(dec.flush()) == {"BTCUSDT": [a[3]]}


def test_last_id_below_first_id_is_rejected_at_flush(real_frames):
    good = real_frames[91:93]
    d = json.loads(good[0])["data"]
    bad = _with(good[0], "f", str(d["l"] + 5))
    dec = FrameDecoder()
    for fr in (bad, good[1]):
        dec.feed(fr)
    out = dec.flush()
    assert _ids(out) == {"BTCUSDT": [json.loads(good[1])["data"]["a"]]}
    assert dec.counts == {"aggTrade": 1, "out_of_range:aggTrade": 1}


def test_too_large_too_deep_and_odd_inputs_are_counted_by_reason(real_frames):
    good = real_frames[91]
    padded = good[:-2] + b',"pad":"' + b"x" * (MAX_FRAME_BYTES - len(good) - 9) + b'"}}'
    assert len(padded) == MAX_FRAME_BYTES
    cases = list({
        padded: "aggTrade",  # at the limit: decoded (the unknown field is skipped)
        padded[:-3] + b'x"}}': "too_large",  # one byte more
        b"[" * (5 << 20): "too_large",
        '{"a":' * 100_000: "too_deep",  # the fuzz run's RecursionError
        b"[" * 100_000: "too_deep",
        b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1): "too_deep",
        b'{"result":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}": "too_deep",  # object + 8 arrays = 9 deep
        b'{"result":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b',"id":1}': "reply",  # 8 deep: fine
        b'{"result":"' + b"[" * 50 + b'","id":2}': "reply",  # brackets inside a string do not nest
        None: "malformed",
        12345: "malformed",
        "\ud800": "malformed",  # lone surrogate
        b'{"stream":"x@aggTrade","data":{"e":"aggTrade","E":1,"s":"X","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,'
        b'"m":true,"deep":' + b"[" * 20 + b"]" * 20 + b"}}": "too_deep",
    }.items())
    dec = FrameDecoder()
    cases += [(bytearray(good), "aggTrade"), (memoryview(good), "aggTrade")]
    for fr, kind in cases:
        assert dec.feed(fr) == kind, repr(fr)[:80]
    out = dec.flush()
    assert len(out.trades["BTCUSDT"]) == 3 and dec.pending == 0
    assert dec.rejected == {"too_large": 2, "too_deep": 5, "malformed": 3}
    assert sum(dec.counts.values()) == len(cases)


def test_json_depth_ignores_strings_and_escapes():
    assert json_depth(b"") == 0 and json_depth(b"1") == 0 and json_depth("[]") == 1
    assert json_depth(b'{"a":[{"b":[]}]}') == 4
    assert json_depth(b'{"a":"[[[{{{"}') == 1
    assert json_depth(b'{"a":"\\"[[[["}') == 1  # escaped quote stays inside the string
    assert json_depth(b'["\\\\",[[]]]') == 3  # an escaped backslash ends before the closing quote
    assert json_depth("[" * 100_000) == 100_000


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=3),
                                                                               kids, max_size=3), max_leaves=20)


def _ref_depth(v) -> int:
    if isinstance(v, list):
        return 1 + max(map(_ref_depth, v), default=0)
    if isinstance(v, dict):
        return 1 + max(map(_ref_depth, v.values()), default=0)
    return 0


@settings(max_examples=100, deadline=None)
@given(_JSON)
def test_fuzz_json_depth_matches_a_recursive_reference(value):
    assert json_depth(json.dumps(value)) == _ref_depth(value)


def test_case_variant_symbols_of_one_flush_share_one_buffer(real_frames):
    """``btcusdt`` and ``BTCUSDT`` used to be two dict entries upper-cased onto one key: one batch was lost."""
    good = real_frames[91:94]
    frames = [good[0].replace(b'"s":"BTCUSDT"', b'"s":"btcusdt"'), good[1], good[2].replace(b'"s":"BTCUSDT"',
                                                                                        b'"s":"BtcUsdt"')]
    dec = FrameDecoder()
    for fr in frames:
        assert dec.feed(fr) == "aggTrade"
    out = dec.flush()
    assert _ids(out) == {"BTCUSDT": [json.loads(f)["data"]["a"] for f in good]}  # all three, arrival order
    assert out.trades["BTCUSDT"].symbol == "BTCUSDT" and dec.counts == {"aggTrade": 3}


def test_a_failure_inside_flush_or_feed_costs_only_its_part(real_frames, monkeypatch):
    """Defence in depth: even a bug in building one symbol's columns leaves the others, resets the buffers,
    and is counted; a bug while decoding costs one frame."""
    real_columns = feeds.decode._columns

    def columns(sym, msgs):
        if sym == "SUSHIUSDT":
            raise OverflowError("boom")
        return real_columns(sym, msgs)

    monkeypatch.setattr(feeds.decode, "_columns", columns)
    dec = FrameDecoder()
    for fr in real_frames[:91]:
        dec.feed(fr)
    out = dec.flush()
    n_sushi = sum(b'"s":"SUSHIUSDT"' in f for f in real_frames[:91])
    assert n_sushi and "SUSHIUSDT" not in out.trades and len(out.trades) == 3 and dec.pending == 0
    assert dec.counts["failed:aggTrade"] == n_sushi and sum(dec.counts.values()) == 91
    assert dec.flush().trades == {}

    class Broken:
        def decode(self, frame):
            raise KeyError("bug")

    monkeypatch.setattr(feeds.decode, "_ENV", Broken())
    monkeypatch.setattr(feeds.decode, "_FAST", Broken().decode)  # the fast path too (it decodes real frames)
    assert dec.feed(real_frames[0]) == "failed:feed" and dec.rejected["failed"] == n_sushi + 1


def test_rest_decoder_raises_only_value_error_for_out_of_range_bodies():
    body = (b'[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,"T":1498793709153,"m":true,'
            b'"M":true}]')
    bodies = [_with(body, f, v) for f, v in _POISON if f != "E"] + [
        _with(body, "f", "27790"),  # l < f
        b"[" * 100_000,  # RecursionError inside msgspec
        b'[{"a":' * 50_000,
    ]
    for bad in bodies:
        with pytest.raises(ValueError) as info:
            decode_rest_agg_trades(bad, "BNBBTC")
        assert type(info.value) is ValueError, bad[:60]


# ----------------------------------------------------------------------------- fuzzing the hardening
_REAL = agg_trade_frames(USDM_ALTS) + agg_trade_frames(USDM_BTC)[:200] if USDM_ALTS.exists() and USDM_BTC.exists() \
    else []  # 91 + 200 real aggTrade frames (the test requires them)
_BIG = [
    b"[" * MAX_FRAME_BYTES,  # at the limit and 1 Mi deep
    ('{"a":' * 200_000).encode(),  # 1 MB, deep
] + ([
    _REAL[0][:-2] + b',"pad":"' + b"x" * (MAX_FRAME_BYTES - len(_REAL[0]) - 9) + b'"}}',  # exactly at the limit
    _REAL[1][:-2] + b',"pad":"' + b"x" * (3 << 20) + b'"}}',  # 3 MB
] if _REAL else [])


@st.composite
def _poisoned(draw):
    fr = draw(st.sampled_from(_REAL[:91]))
    field = draw(st.sampled_from(["a", "f", "l", "T", "E", "p", "q"]))
    if field in ("p", "q"):
        raw = draw(st.sampled_from(_FLOATS) | st.floats(allow_nan=False, allow_infinity=False).map(repr))
    else:
        raw = draw(st.sampled_from(_INTS) | st.integers(-(2**70), 2**70).map(str))
    return _with(fr, field, raw)


@st.composite
def _deep(draw):
    k = draw(st.sampled_from([MAX_DEPTH + 1, 50, 1000, 100_000]))
    opener = draw(st.sampled_from(['{"a":', "[", '{"stream":"btcusdt@aggTrade","data":', '{"result":[']))
    closed = draw(st.booleans())
    text = opener * k + ("1" + "}" * k if closed and opener.startswith("{") else "]" * k if closed else "")
    return text if draw(st.booleans()) else text.encode()


def test_fuzz_no_frame_can_wedge_the_decoder():
    """Anything goes in (200 examples of up to 25 frames: real, poisoned, mutated, deep, several MB, random);
    nothing raises, every frame is counted once, intact real trades survive, flush resets."""
    require(bool(_REAL), f"{USDM_ALTS} and {USDM_BTC} (real frames) are not there")
    _fuzz_no_wedge()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.one_of(st.sampled_from(_REAL), _poisoned(), _mutated(_REAL[:91] or [b"{}"]), _deep(),
                          st.sampled_from(_BIG), st.binary(max_size=300), st.text(max_size=300)), min_size=1,
                max_size=25))
def _fuzz_no_wedge(frames):
    dec = FrameDecoder()
    kinds = [dec.feed(fr) for fr in frames]
    assert all(isinstance(k, str) for k in kinds)
    out = dec.flush()
    assert dec.pending == 0 and out.frames == len(frames)
    assert sum(dec.counts.values()) == len(frames)  # each frame in exactly one bucket
    assert set(dec.rejected) <= set(REJECT_REASONS) and "failed" not in dec.rejected
    returned = collections.Counter(kinds)
    for k, v in dec.counts.items():
        if k.split(":")[0] not in ("aggTrade", "forceOrder", "out_of_range"):
            assert v == returned[k], k  # counted as feed said
    n = 0
    for sym, c in out.trades.items():
        n += len(c)
        assert sym == sym.upper()
        assert np.all(np.isfinite(c.price) & (c.price > 0) & np.isfinite(c.qty) & (c.qty > 0))
        assert np.all((c.agg_id >= 0) & (c.first_id >= 0) & (c.last_id >= c.first_id) & (c.time > 0))
    assert n == dec.counts["aggTrade"]
    got = collections.Counter((s, int(a)) for s, c in out.trades.items() for a in c.agg_id)
    intact = collections.Counter((json.loads(fr)["data"]["s"], json.loads(fr)["data"]["a"]) for fr in frames
                                 if fr in _REAL)
    assert not intact - got  # every intact real trade of the batch arrived (as often as it was sent)
    assert dec.flush().trades == {} and dec.pending == 0
