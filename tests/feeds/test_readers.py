"""feeds.readers on every real recording, checked against independent parses and PROVENANCE.md figures.

Independent derivations: pandas ``read_csv`` for the CSV files, the stdlib ``json``
module line by line for the WebSocket recordings.  The figures quoted from
``shared/data/binance/PROVENANCE.md`` ("verified" section of each file) are
checked as well.  Layouts we have no real file for (data.binance.vision
aggTrades) are built from REAL rows of the bundled trades dump written into that
layout in tmp_path; the test names say so.
"""

from __future__ import annotations

import gzip
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compute.batch import TradeBatch
from feeds.readers import (
    read_agg_trades,
    read_file,
    read_trades,
    read_trades_by_symbol,
    read_ws_recording,
    sniff_format,
    symbol_from_name,
    to_ms,
)

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"
SHARED = ROOT.parent / "shared" / "data" / "binance"
SHARED_FILES = sorted(SHARED.glob("*.gz")) if SHARED.is_dir() else []
ALL_REAL = [*sorted((ROOT / "assets" / "recordings").glob("*.gz")), *SHARED_FILES]

# PROVENANCE.md, section 2/3 tables: trades, taker buy / sell volume, channel counts.
PROV_WS = {
    "ws-raw-usdm-btcusdt-2024-08-08.hftbacktest.txt.gz": (
        "BTCUSDT", 21313, 1251.576, 1177.790, {"trade": 21313, "bookTicker": 66089, "depth@0ms": 6551}, 1),
    "ws-raw-usdm-ethusdt-2024-08-08.hftbacktest.txt.gz": (
        "ETHUSDT", 14076, 4960.564, 4204.384, {"trade": 14076, "bookTicker": 53992, "depth@0ms": 6586}, 1),
    "ws-raw-spot-btcusdt-2024-08-08.hftbacktest.txt.gz": (
        "BTCUSDT", 9757, 96.651, 115.382, {"trade": 9757, "bookTicker": 28040, "depth@100ms": 3451}, 1),
    "ws-raw-cm-btcusd_perp-2024-08-08.hftbacktest.txt.gz": (
        "BTCUSD_PERP", 2286, 35603, 47638, {"trade": 2286, "bookTicker": 19136, "depth@0ms": 26847}, 1),
    "ws-raw-usdm-btcusdt-2023-04-05.hftbacktest.txt.gz": (
        "BTCUSDT", 10738, 456.749, 530.749,
        {"trade": 10738, "bookTicker": 37440, "depth@0ms": 11788, "markPrice@1s": 415}, 0),
}


def test_the_shared_data_folder_is_there():
    """The rest of this module reads ../shared/data/binance; make its absence loud, not a silent skip."""
    assert BUNDLED.exists()
    assert len(SHARED_FILES) >= 10, f"expected the shared recordings in {SHARED}"


# ----------------------------------------------------------------------------- helpers
def _pandas_trades_dump(path) -> pd.DataFrame:
    df = pd.read_csv(path)
    return df.sort_values("id", kind="stable")


def _json_parse(path) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Independent parse of a WS recording: trades with the stdlib json module, channel counts by regex."""
    rows: dict[str, list] = {}
    counts: dict[str, int] = {}
    stream_re = re.compile(rb'\{"stream":"[^"@]*@([^"]+)"')
    for line in gzip.decompress(Path(path).read_bytes()).splitlines():
        i = line.find(b"{")
        m = stream_re.match(line, i) if i >= 0 else None
        if not m:
            continue
        ch = m.group(1).decode()
        counts[ch] = counts.get(ch, 0) + 1
        if ch in ("trade", "aggTrade"):
            d = json.loads(line[i:])["data"]
            tid = d["a"] if d["e"] == "aggTrade" else d["t"]
            rows.setdefault(d["s"], []).append((tid, d["T"], float(d["p"]), float(d["q"]), bool(d["m"])))
    trades = {s: pd.DataFrame(r, columns=["id", "time", "price", "qty", "m"]).sort_values("id") for s, r in rows.items()}
    return trades, counts


def _json_trades(path) -> dict[str, pd.DataFrame]:
    return _json_parse(path)[0]


def _assert_batch_equals(b: TradeBatch, df: pd.DataFrame, id_col="id", time=None, m_col="m"):
    assert len(b) == len(df)
    np.testing.assert_array_equal(b.trade_id, df[id_col].to_numpy())
    np.testing.assert_array_equal(b.time, df["time"].to_numpy() if time is None else time)
    np.testing.assert_array_equal(b.price, df["price"].to_numpy(dtype=float))
    np.testing.assert_array_equal(b.qty, df["qty"].to_numpy(dtype=float))
    np.testing.assert_array_equal(b.is_buyer_maker, df[m_col].to_numpy(dtype=bool))


# ----------------------------------------------------------------------------- every real file
@pytest.mark.parametrize("path", ALL_REAL, ids=lambda p: p.name)
def test_every_real_file_reads_sorted_unique_and_consistent(path):
    res = read_file(path)
    assert res.batches, "no trades read"
    assert res.stats.skipped.get("malformed", 0) == 0
    for sym, b in res.batches.items():
        assert sym == b.symbol and sym == sym.upper() and sym
        assert len(b) > 0
        assert np.all(np.diff(b.trade_id) > 0), "sorted by id, no duplicates"
        assert np.all(np.diff(b.trade_id) == 1), "PROVENANCE: ids contiguous in every real file"
        assert np.all(np.diff(b.time) >= 0), "PROVENANCE: exchange times monotonic"
        assert np.all(b.price > 0) and np.all(b.qty > 0)
        assert b.time.min() > 1.5e12 and b.time.max() < 2e12, "times in ms"
    assert res.stats.trades == sum(len(b) for b in res.batches.values())


def test_bundled_trades_dump_matches_pandas_and_provenance():
    b = read_trades(BUNDLED)
    df = _pandas_trades_dump(BUNDLED)
    _assert_batch_equals(b, df, m_col="is_buyer_maker")
    assert b.symbol == "BTCUSDT"
    # PROVENANCE.md section 1 "Verified"
    assert len(b) == 69_239
    assert (b.trade_id[0], b.trade_id[-1]) == (42377944, 42447182)
    assert int(b.is_buyer_maker.sum()) == 35_221 and int((~b.is_buyer_maker).sum()) == 34_018
    assert b.qty.sum() == pytest.approx(31_571.327, abs=1e-6)
    assert b.buy_qty.sum() == pytest.approx(15_215.652, abs=1e-6)
    assert b.sell_qty.sum() == pytest.approx(16_355.675, abs=1e-6)
    assert (b.price.min(), b.price.max()) == (9565.0, 9710.7)


@pytest.mark.skipif(not SHARED_FILES, reason="CI always has ../shared; the guard test above fails without it")
def test_tardis_csv_equals_the_trades_dump_of_the_same_trades():
    path = SHARED / "binance-futures_trades_2020-02-22_BTCUSDT.00-12UTC.tardis.csv.gz"
    res = read_file(path)
    assert res.stats.format == "tardis" and res.stats.time_unit == "us"
    b = res.batch()
    df = pd.read_csv(path).sort_values("id")
    assert b.symbol == "BTCUSDT"
    np.testing.assert_array_equal(b.trade_id, df["id"].to_numpy())
    np.testing.assert_array_equal(b.time, df["timestamp"].to_numpy() // 1000)
    np.testing.assert_array_equal(b.price, df["price"].to_numpy(dtype=float))
    np.testing.assert_array_equal(b.qty, df["amount"].to_numpy(dtype=float))
    np.testing.assert_array_equal(b.is_buyer_maker, (df["side"] == "sell").to_numpy())
    # PROVENANCE: the two layouts hold the same trades
    d = read_trades(BUNDLED)
    for col in ("time", "price", "qty", "is_buyer_maker", "trade_id"):
        np.testing.assert_array_equal(getattr(b, col), getattr(d, col))


@pytest.mark.parametrize("name", sorted(PROV_WS))
def test_ws_recording_matches_json_parse_and_provenance(name):
    path = SHARED / name
    sym, n, buy, sell, channels, snapshots = PROV_WS[name]
    res = read_ws_recording(path)
    assert res.stats.format == "ws-hftbacktest"
    assert list(res.batches) == [sym]
    b = res.batches[sym]
    ref, counts = _json_parse(path)
    _assert_batch_equals(b, ref[sym])
    assert len(b) == n
    assert b.buy_qty.sum() == pytest.approx(buy, abs=5e-4)  # PROVENANCE rounds to 3 decimals
    assert b.sell_qty.sum() == pytest.approx(sell, abs=5e-4)
    assert dict(res.stats.events) == channels == counts
    assert res.stats.skipped.get("snapshot", 0) == snapshots


def test_cryptofeed_raw_usdm_counts_and_symbol_filter():
    path = SHARED / "ws-raw-usdm-alts-2021-07-22.cryptofeed.txt.gz"
    assert sniff_format(path) == "ws-cryptofeed"
    res = read_file(path)
    # PROVENANCE section 3: 1536 lines: aggTrade 91, bookTicker 613, depth@100ms 764, kline_1m 67
    assert dict(res.stats.events) == {"aggTrade": 91, "bookTicker": 613, "depth@100ms": 764, "kline_1m": 67}
    assert res.stats.skipped["header"] == 1
    assert {s: len(b) for s, b in res.batches.items()} == {
        "SUSHIUSDT": 40, "CTKUSDT": 38, "AKROUSDT": 8, "KEEPUSDT": 5}
    ref = _json_trades(path)
    for s, b in res.batches.items():
        _assert_batch_equals(b, ref[s])
    with pytest.raises(ValueError, match="several symbols"):
        read_trades(path)
    one = read_file(path, symbol="sushiusdt")
    assert list(one.batches) == ["SUSHIUSDT"] and one.stats.skipped["other_symbol"] == 51
    _assert_batch_equals(read_trades(path, symbol="SUSHIUSDT"), ref["SUSHIUSDT"])
    with pytest.raises(ValueError, match="no trades for symbol"):
        read_trades(path, symbol="DOGEUSDT")


def test_jsonl_aggtrades_equal_the_raw_recording_they_come_from():
    """PROVENANCE: the .jsonl files are the aggTrade frames of the raw files, prefix stripped."""
    for raw, jl, n, first_last in (
        ("ws-raw-usdm-alts-2021-07-22.cryptofeed.txt.gz", "ws-aggTrade-usdm-alts-2021-07-22.cryptofeed.jsonl.gz",
         91, (1626992741421, 1626992770366)),
        ("ws-raw-spot-alts-2021-10-12.cryptofeed.txt.gz", "ws-aggTrade-spot-alts-2021-10-12.cryptofeed.jsonl.gz",
         2, None),
    ):
        a, b = read_trades_by_symbol(SHARED / raw), read_trades_by_symbol(SHARED / jl)
        assert sniff_format(SHARED / jl) == "ws-jsonl"
        assert a.keys() == b.keys()
        assert sum(len(x) for x in b.values()) == n
        for s in a:
            for col in ("time", "price", "qty", "is_buyer_maker", "trade_id"):
                np.testing.assert_array_equal(getattr(a[s], col), getattr(b[s], col))
        if first_last:
            ts = np.concatenate([x.time for x in b.values()])
            assert (ts.min(), ts.max()) == first_last


def test_cryptofeed_spot_alts_holds_two_aggtrades():
    res = read_file(SHARED / "ws-raw-spot-alts-2021-10-12.cryptofeed.txt.gz")
    # PROVENANCE: 267 lines: aggTrade 2, bookTicker 84, depth@100ms 177, kline_1m 2
    assert dict(res.stats.events) == {"aggTrade": 2, "bookTicker": 84, "depth@100ms": 177, "kline_1m": 2}
    assert sorted(res.batches) == ["LRCBTC", "NKNUSDT"]
    assert res.batches["LRCBTC"].price[0] == 0.00000638


# ----------------------------------------------------------------------------- vision aggTrades layouts
def _real_rows(n=2000) -> pd.DataFrame:
    """The first n REAL trades of the bundled dump (each trade is its own aggTrade: a = f = l = id)."""
    return pd.read_csv(BUNDLED, nrows=n, dtype={"price": str, "qty": str})


def _vision_layout(df: pd.DataFrame, spot: bool, time_us: bool) -> pd.DataFrame:
    out = pd.DataFrame({
        "agg_trade_id": df["id"], "price": df["price"], "quantity": df["qty"],
        "first_trade_id": df["id"], "last_trade_id": df["id"],
        "transact_time": df["time"] * (1000 if time_us else 1),
        "is_buyer_maker": df["is_buyer_maker"].map({True: "true", False: "false"}),
    })
    if spot:
        out["is_buyer_maker"] = df["is_buyer_maker"].map({True: "True", False: "False"})
        out["was_the_trade_the_best_price_match"] = "True"
    return out


def _write(df: pd.DataFrame, path: Path, header: bool):
    text = df.to_csv(index=False, header=header, lineterminator="\n").encode()
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(path.stem + ".csv", text)
    elif path.suffix == ".gz":
        path.write_bytes(gzip.compress(text))
    else:
        path.write_bytes(text)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".zip"])
@pytest.mark.parametrize("header", [True, False], ids=["header", "headerless"])
def test_usdm_vision_aggtrades_layout_built_from_real_trades(tmp_path, suffix, header):
    real = _real_rows()
    path = tmp_path / f"BTCUSDT-aggTrades-2020-02-22{suffix}"
    # shuffled: monthly vision files interleave, the reader must sort by agg_trade_id
    _write(_vision_layout(real, spot=False, time_us=False).sample(frac=1, random_state=7), path, header)
    assert sniff_format(path) == "aggtrades"
    res = read_file(path)
    assert res.stats.time_unit == "ms" and res.stats.rows == len(real)
    b = res.batch()
    assert b.symbol == "BTCUSDT"
    np.testing.assert_array_equal(b.trade_id, real["id"].to_numpy())
    np.testing.assert_array_equal(b.time, real["time"].to_numpy())
    np.testing.assert_array_equal(b.price, real["price"].astype(float).to_numpy())
    np.testing.assert_array_equal(b.qty, real["qty"].astype(float).to_numpy())
    np.testing.assert_array_equal(b.is_buyer_maker, real["is_buyer_maker"].to_numpy())


@pytest.mark.parametrize("suffix", [".csv", ".zip"])
def test_spot_vision_aggtrades_8_columns_headerless_microseconds_built_from_real_trades(tmp_path, suffix):
    real = _real_rows()
    path = tmp_path / f"BTCUSDT-aggTrades-2025-01-01{suffix}"
    _write(_vision_layout(real, spot=True, time_us=True), path, header=False)
    res = read_agg_trades(path)
    assert res.stats.time_unit == "us"
    b = res.batch()
    np.testing.assert_array_equal(b.time, real["time"].to_numpy())  # µs detected and brought back to ms
    np.testing.assert_array_equal(b.trade_id, real["id"].to_numpy())
    np.testing.assert_array_equal(b.is_buyer_maker, real["is_buyer_maker"].to_numpy())


def test_spot_vision_file_spanning_the_2025_unit_switch_built_from_real_trades(tmp_path):
    """A monthly file could hold ms rows (2024) then µs rows (2025): the unit is decided per value."""
    real = _real_rows(1000)
    df = _vision_layout(real, spot=True, time_us=False)
    df.loc[500:, "transact_time"] = df.loc[500:, "transact_time"] * 1000
    path = tmp_path / "BTCUSDT-aggTrades-2024-12.csv"
    _write(df, path, header=False)
    res = read_file(path)
    assert res.stats.time_unit == "mixed"
    np.testing.assert_array_equal(res.batch().time, real["time"].to_numpy())


def test_to_ms_by_magnitude():
    t, unit = to_ms(np.array([1582329602111, 1735689600000123, 1723161255030314667]))
    assert unit == "mixed"
    assert t.tolist() == [1582329602111, 1735689600000, 1723161255030]
    assert to_ms(np.array([1735689600000123]))[1] == "us"
    assert to_ms(np.array([1582329602111]))[1] == "ms"


def test_headerless_trades_dump_built_from_real_rows(tmp_path):
    real = _real_rows(500)
    path = tmp_path / "ETHUSDT-trades-2020-02-22.csv"
    text = gzip.decompress(BUNDLED.read_bytes()).split(b"\n", 1)[1]
    path.write_bytes(b"\n".join(text.split(b"\n")[:500]) + b"\n")
    assert sniff_format(path) == "trades-dump"
    b = read_trades(path)
    assert b.symbol == "ETHUSDT"  # from the file name (the label only; the rows are BTCUSDT's)
    np.testing.assert_array_equal(b.trade_id, real["id"].to_numpy())
    assert read_trades(path, symbol="btcusdt").symbol == "BTCUSDT"


# ----------------------------------------------------------------------------- bad input
def test_malformed_duplicated_and_bare_frames_in_a_recording_built_from_real_frames(tmp_path):
    src = SHARED / "ws-aggTrade-usdm-alts-2021-07-22.cryptofeed.jsonl.gz"
    lines = gzip.decompress(src.read_bytes()).splitlines()
    ref = read_trades_by_symbol(src)
    bare = json.dumps(json.loads(lines[3])["data"]).encode()  # ws-mode frame without envelope
    bad = [
        lines[0][: len(lines[0]) // 2],  # truncated
        b"garbage{not json",
        b'{"stream":"ctkusdt@aggTrade","data":{"e":"aggTrade","s":"CTKUSDT","a":1}}',  # fields missing
        b'{"result":null,"id":1}',  # subscribe acknowledgement
        lines[7] + b"," + lines[8],  # two frames on one line: malformed, and must not shift the others
    ]
    mixed = [*lines[:10], *bad, lines[5], lines[6], bare, *lines[10:]]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    res = read_file(path)
    assert res.stats.skipped["malformed"] == 4
    assert res.stats.skipped["duplicate"] == 3
    assert res.stats.events["unknown"] == 1
    assert {s: len(b) for s, b in res.batches.items()} == {s: len(b) for s, b in ref.items()}
    for s in ref:
        np.testing.assert_array_equal(res.batches[s].trade_id, ref[s].trade_id)
        np.testing.assert_array_equal(res.batches[s].price, ref[s].price)


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_trades(tmp_path / "nope.csv")
    p = tmp_path / "x.csv"
    p.write_text("hello,world\n1,2\n")
    with pytest.raises(ValueError, match="unknown trade file layout"):
        read_trades(p)
    e = tmp_path / "e.csv"
    e.write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_trades(e)
    bad = tmp_path / "BTCUSDT-trades-x.csv"
    bad.write_text("id,price,qty,quote_qty,time,is_buyer_maker\n1,2.0,abc,1,1582329602111,true\n")
    with pytest.raises(ValueError, match="cannot parse"):
        read_trades(bad)


def test_symbol_from_name():
    assert symbol_from_name("BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz") == "BTCUSDT"
    assert symbol_from_name("binance-futures_trades_2020-02-22_BTCUSDT.00-12UTC.tardis.csv.gz") == "BTCUSDT"
    assert symbol_from_name("/x/BTCUSD_PERP-aggTrades-2024-08-01.zip") == "BTCUSD_PERP"
    assert symbol_from_name("ws-raw-usdm-btcusdt-2024-08-08.hftbacktest.txt.gz") == ""


@pytest.mark.parametrize("path", ALL_REAL, ids=lambda p: p.name)
def test_sniff_every_real_file(path):
    expected = ("trades-dump" if "-trades-" in path.name else "tardis" if "tardis" in path.name
                else "ws-jsonl" if path.name.endswith(".jsonl.gz") else
                "ws-cryptofeed" if "cryptofeed" in path.name else "ws-hftbacktest")
    assert sniff_format(path) == expected
