"""feeds.history.load_history on every source layout, built from the real bundled trades (and the shared recordings).

The layouts are written here from the real recording (2020-02-22 USD-M BTCUSDT trades, 69 239
rows): data.binance.vision USD-M aggTrades zip (7 columns, header), spot aggTrades zip (8
columns, no header, times in µs as spot dumps from 2025 — the unit is what is tested here),
the backfill's daily Parquet, the recorder's hourly Parquet (with a liquidations file and raw
frames beside it) and the recorder's raw aggTrade frames alone. The expected frame is derived
independently, straight from the CSV text with pandas.
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feeds.history import HISTORY_COLUMNS, HISTORY_DTYPES, discover, load_history, to_ms

SYM = "BTCUSDT"
DAY = "2020-02-22"
HOUR = 3_600_000


@pytest.fixture(scope="module")
def raw(recording_path) -> pd.DataFrame:
    """The recording's columns as the exact text of the file."""
    return pd.read_csv(recording_path, dtype=str)


@pytest.fixture(scope="module")
def expected(raw) -> pd.DataFrame:
    return pd.DataFrame({
        "time": raw["time"].astype(np.int64), "price": raw["price"].astype(float), "qty": raw["qty"].astype(float),
        "is_buyer_maker": raw["is_buyer_maker"].str.lower() == "true", "trade_id": raw["id"].astype(np.int64),
        "symbol": pd.Categorical([SYM] * len(raw), categories=[SYM]),
    })


def _agg_lines(raw: pd.DataFrame, spot: bool) -> list[str]:
    t = raw["time"] if not spot else (raw["time"].astype(np.int64) * 1000).astype(str)  # spot dumps: µs
    m = raw["is_buyer_maker"].str.lower()
    cols = [raw["id"], raw["price"], raw["qty"], raw["id"], raw["id"], t, m]
    if spot:
        cols.append(pd.Series(["true"] * len(raw)))
    return [",".join(r) for r in zip(*cols, strict=True)]


def _write_zip(path, member: str, lines: list[str], header: str | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(([header] if header else []) + lines) + "\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, text)


def write_vision(root, raw, spot: bool = False):
    folder = root / "data" / ("spot" if spot else "futures/um") / "daily" / "aggTrades" / SYM
    name = f"{SYM}-aggTrades-{DAY}"
    header = None if spot else "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
    _write_zip(folder / f"{name}.zip", f"{name}.csv", _agg_lines(raw, spot), header)
    return folder / f"{name}.zip"


def _trades_table(raw: pd.DataFrame, timestamp: bool = False) -> pa.Table:
    ids = raw["id"].astype(np.int64).to_numpy()
    t = raw["time"].astype(np.int64).to_numpy()
    return pa.table({
        "symbol": pa.array([SYM] * len(raw)), "agg_trade_id": ids,
        "price": raw["price"].astype(float).to_numpy(), "qty": raw["qty"].astype(float).to_numpy(),
        "first_trade_id": ids, "last_trade_id": ids,
        "time": pa.array(t, pa.timestamp("ms", tz="UTC")) if timestamp else t,
        "is_buyer_maker": (raw["is_buyer_maker"].str.lower() == "true").to_numpy(),
    })


def _day_dir(root):
    d = root / "trades" / "usdm" / SYM / DAY
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_backfill(root, raw):
    """The backfill's file: ``trades/<market>/<SYM>/<day>/vision-<SYM>-<day>.parquet``."""
    path = _day_dir(root) / f"vision-{SYM}-{DAY}.parquet"
    pq.write_table(_trades_table(raw), path)
    return path


def write_recorder(root, raw, hours=range(12), timestamp: bool = True, frames: bool = True):
    """The recorder's hourly parts, a (empty) liquidations part, and raw frames beside them."""
    t = raw["time"].astype(np.int64)
    day0 = int(t.iloc[0]) // 86_400_000 * 86_400_000
    d = _day_dir(root)
    for h in hours:
        part = raw[(t >= day0 + h * HOUR) & (t < day0 + (h + 1) * HOUR)]
        flush = day0 + (h + 1) * HOUR
        pq.write_table(_trades_table(part, timestamp), d / f"part-{flush:013d}-4242-{h:06d}.parquet")
    (d / ".part-tmp.parquet.tmp").write_bytes(b"PAR1 half written")  # a writer's temporary file
    liq_dir = root / "liquidations" / "usdm" / SYM / DAY
    liq_dir.mkdir(parents=True, exist_ok=True)
    liq = pa.table({"symbol": pa.array([], pa.string()), "side": pa.array([], pa.string()),
                    "order_type": pa.array([], pa.string()), "price": pa.array([], pa.float64()),
                    "avg_price": pa.array([], pa.float64()), "orig_qty": pa.array([], pa.float64()),
                    "filled_qty": pa.array([], pa.float64()), "status": pa.array([], pa.string()),
                    "time": pa.array([], pa.int64())})
    pq.write_table(liq, liq_dir / f"part-{day0:013d}-4242-000000.parquet")
    if frames:
        write_frames(root / "raw" / "usdm" / DAY / f"usdm-{DAY}T00.jsonl.gz", raw.iloc[:1000], receive=True)


def write_frames(path, raw, receive: bool = False):
    """The real trades as combined-stream aggTrade frames (a = f = l = trade id), one per line, gzip.

    ``receive``: prefix each line with a receive time in ms, as the recorder writes them.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    m = raw["is_buyer_maker"].str.lower()
    lines = [
        (f"{int(t) + 7} " if receive else "")
        + f'{{"stream":"{SYM.lower()}@aggTrade","data":{{"e":"aggTrade","E":{t},"a":{i},"s":"{SYM}","p":"{p}",'
        f'"q":"{q}","f":{i},"l":{i},"T":{t},"m":{mm}}}}}'
        for i, p, q, t, mm in zip(raw["id"], raw["price"], raw["qty"], raw["time"], m, strict=True)
    ]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")


def check_schema(df: pd.DataFrame, symbols=(SYM,)) -> None:
    assert tuple(df.columns) == HISTORY_COLUMNS
    for c, d in HISTORY_DTYPES.items():
        assert df[c].dtype == d, (c, df[c].dtype)
    assert isinstance(df["symbol"].dtype, pd.CategoricalDtype)
    assert list(df["symbol"].cat.categories) == sorted(symbols)


def same(df: pd.DataFrame, exp: pd.DataFrame) -> None:
    check_schema(df)
    pd.testing.assert_frame_equal(df.reset_index(drop=True), exp.reset_index(drop=True), check_exact=True,
                                  check_categorical=False)


# -- each layout gives the same frame --------------------------------------------------------------
@pytest.mark.parametrize("layout", ["vision-usdm", "vision-spot-us", "backfill", "recorder", "recorder-frames",
                                    "bundled-dump"])
def test_every_layout_loads_the_same_trades_with_the_same_dtypes(tmp_path, raw, expected, recording_path, layout):
    market = "usdm"
    if layout == "vision-usdm":
        write_vision(tmp_path, raw)
    elif layout == "vision-spot-us":
        write_vision(tmp_path, raw, spot=True)
        market = "spot"
    elif layout == "backfill":
        write_backfill(tmp_path, raw)
    elif layout == "recorder":
        write_recorder(tmp_path, raw)
    elif layout == "recorder-frames":
        write_frames(tmp_path / "raw" / "usdm" / DAY / f"usdm-{DAY}T00.jsonl.gz", raw, receive=True)
    source = recording_path if layout == "bundled-dump" else tmp_path
    df = load_history(source, market, SYM, progress=False)
    same(df, expected)
    assert df.attrs["market"] == market and df.attrs["duplicates_dropped"] == 0
    lazy = load_history(source, market, SYM, dask=True)
    assert isinstance(lazy, dd.DataFrame)
    same(lazy.compute(), expected)


def test_recorder_layout_reads_parquet_not_liquidations_or_the_raw_frames_beside_it(tmp_path, raw):
    write_recorder(tmp_path, raw, hours=[0, 1])
    files = discover(tmp_path, "usdm", layout="recorder")
    assert [f.path.name for f in files] == ["part-1582333200000-4242-000000.parquet",
                                            "part-1582336800000-4242-000001.parquet"]
    assert all(f.symbol == SYM and f.market == "usdm" for f in files)


def test_loader_equals_the_recorders_own_reader_on_files_it_wrote(tmp_path, raw, expected):
    from feeds.recorder import read_trades, trades_table, write_parquet_atomic

    t = raw["time"].astype(np.int64).to_numpy()
    ids = raw["id"].astype(np.int64).to_numpy()
    d = _day_dir(tmp_path)
    for k, sl in enumerate((slice(0, 30_000), slice(25_000, 50_000), slice(50_000, None))):  # parts overlap
        tbl = trades_table(SYM, ids[sl], raw["price"].astype(float)[sl], raw["qty"].astype(float)[sl], ids[sl],
                           ids[sl], t[sl], expected["is_buyer_maker"][sl])
        write_parquet_atomic(tbl, d / f"part-{t[sl][-1]:013d}-1-{k:06d}.parquet")
    ours = load_history(tmp_path, "usdm", SYM, progress=False)
    same(ours, expected)
    theirs = read_trades(tmp_path, "usdm", [SYM])
    np.testing.assert_array_equal(ours["trade_id"].to_numpy(), theirs["agg_trade_id"].to_numpy())
    np.testing.assert_array_equal(ours["qty"].to_numpy(), theirs["qty"].to_numpy())
    same(load_history(tmp_path, "usdm", SYM, dask=True).compute(), expected)


def test_date_range_is_start_inclusive_end_exclusive_and_a_bare_end_date_means_the_whole_day(tmp_path, raw, expected):
    write_recorder(tmp_path, raw, frames=False)
    s, e = "2020-02-22T03:00:00", "2020-02-22T04:30:00"
    df = load_history(tmp_path, "usdm", SYM, s, e, progress=False)
    t = expected["time"]
    lo, hi = pd.Timestamp(s, tz="UTC").value // 10**6, pd.Timestamp(e, tz="UTC").value // 10**6
    same(df, expected[(t >= lo) & (t < hi)])
    # hourly files outside the range are not even opened
    assert len(df.attrs["files"]) == 2
    same(load_history(tmp_path, "usdm", SYM, DAY, DAY, progress=False), expected)
    assert to_ms(DAY, end=True) - to_ms(DAY) == 86_400_000
    lazy = load_history(tmp_path, "usdm", SYM, s, e, dask=True, partition_rows=1)
    assert lazy.npartitions == 2
    same(lazy.compute(), expected[(t >= lo) & (t < hi)])


def test_dask_partitions_group_small_files_without_changing_the_rows(tmp_path, raw, expected):
    write_recorder(tmp_path, raw, frames=False)
    per_file = load_history(tmp_path, "usdm", SYM, dask=True, partition_rows=1)
    grouped = load_history(tmp_path, "usdm", SYM, dask=True, partition_rows=20_000)
    assert per_file.npartitions == 12 and 2 <= grouped.npartitions < 12
    same(per_file.compute(), expected)
    same(grouped.compute(), expected)
    assert load_history(tmp_path, "usdm", SYM, dask=True).npartitions == 1  # 69 239 rows < 2 M


def test_backfill_day_and_recorder_hours_overlapping_give_every_trade_id_once(tmp_path, raw, expected):
    write_backfill(tmp_path / "backfill", raw)
    write_recorder(tmp_path / "rec", raw, hours=[2, 3], timestamp=False, frames=False)
    df = load_history(tmp_path, "usdm", SYM, progress=False)
    same(df, expected)
    # the Dask result drops them by the Parquet id statistics, with no full pass
    same(load_history(tmp_path, "usdm", SYM, dask=True).compute(), expected)


def test_market_is_taken_from_the_vision_tree(tmp_path, raw, expected):
    write_vision(tmp_path, raw)
    write_vision(tmp_path, raw.iloc[:500], spot=True)
    assert len(load_history(tmp_path, "spot", progress=False)) == 500
    same(load_history(tmp_path, "usdm", progress=False), expected)


def test_auto_switches_to_dask_when_the_estimate_exceeds_the_memory_budget(tmp_path, raw):
    write_backfill(tmp_path, raw)
    assert isinstance(load_history(tmp_path, memory_fraction=1e-12), dd.DataFrame)
    assert isinstance(load_history(tmp_path, progress=False), pd.DataFrame)


def test_progress_bar_reports_files_and_trades(tmp_path, raw, capsys):
    write_recorder(tmp_path, raw, hours=[0, 1], frames=False)
    load_history(tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "/2 [" in err and "file" in err and "trades" in err


def test_clear_errors(tmp_path, raw):
    write_vision(tmp_path, raw)
    with pytest.raises(FileNotFoundError, match="no auto trade files"):
        load_history(tmp_path, "usdm", "ETHUSDT")
    with pytest.raises(FileNotFoundError, match="no auto trade files"):
        load_history(tmp_path, "usdm", SYM, "2020-02-23")
    with pytest.raises(ValueError, match="empty time range"):
        load_history(tmp_path, "usdm", SYM, "2020-02-22T05:00", "2020-02-22T04:00")
    with pytest.raises(ValueError, match="layout"):
        load_history(tmp_path, layout="csv")
    with pytest.raises(ValueError, match="market"):
        load_history(tmp_path, market="futures")
    with pytest.raises(FileNotFoundError):
        load_history(tmp_path / "nope")


def test_shared_recordings_by_market_match_their_provenance(shared_dir):
    # figures from shared/data/binance/PROVENANCE.md section 2; the market is taken from the file names
    files = [shared_dir / "ws-raw-usdm-btcusdt-2024-08-08.hftbacktest.txt.gz",
             shared_dir / "ws-raw-spot-btcusdt-2024-08-08.hftbacktest.txt.gz",
             shared_dir / "ws-raw-cm-btcusd_perp-2024-08-08.hftbacktest.txt.gz"]
    usdm = load_history(files, "usdm", SYM, "2024-08-08", "2024-08-09", progress=False)
    check_schema(usdm)
    sell = usdm["is_buyer_maker"].to_numpy()
    assert len(usdm) == 21_313
    assert round(usdm["qty"][~sell].sum(), 3) == 1251.576 and round(usdm["qty"][sell].sum(), 3) == 1177.790
    spot = load_history(files, "spot", SYM, "2024-08-08", progress=False)
    sell = spot["is_buyer_maker"].to_numpy()
    assert len(spot) == 9_757
    assert round(spot["qty"][~sell].sum(), 3) == 96.651 and round(spot["qty"][sell].sum(), 3) == 115.382
    cm = load_history(files, "coinm", progress=False)
    assert cm.attrs["symbols"] == ["BTCUSD_PERP"] and len(cm) == 2_286
    # the dump and the tardis export hold the same 69 239 trades: each id once
    day = load_history(shared_dir, "usdm", SYM, DAY, DAY, layout="vision", progress=False)
    assert len(day) == 69_239 and day.attrs["duplicates_dropped"] == 69_239
    alts = load_history(sorted(shared_dir.glob("*usdm-alts*")), "usdm", progress=False)
    check_schema(alts, ["AKROUSDT", "CTKUSDT", "KEEPUSDT", "SUSHIUSDT"])
    assert alts["symbol"].value_counts().to_dict() == {"SUSHIUSDT": 40, "CTKUSDT": 38, "AKROUSDT": 8, "KEEPUSDT": 5}


def test_load_liquidations_reads_what_the_recorder_wrote_and_forceorder_files(tmp_path):
    from feeds.history import load_liquidations
    from feeds.liquidations import read_liquidations
    from feeds.recorder import RecordingSink

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "dashboard_liquidations_at_real_trade_prices.jsonl"
    liq = read_liquidations(fixture)
    sink = RecordingSink(tmp_path, "usdm")
    sink.add_liquidations(liq)
    sink.flush()
    got = load_liquidations(tmp_path, "usdm", "BTCUSDT")
    assert got["time"].tolist() == liq["time"].tolist() and got["side"].tolist() == liq["side"].tolist()
    cut = int(liq["time"].iloc[len(liq) // 2])
    assert load_liquidations(tmp_path, "usdm", "btcusdt", start=cut)["time"].min() == cut
    assert load_liquidations(fixture, end=cut)["time"].max() < cut
    assert len(load_liquidations(tmp_path, "usdm", "ETHUSDT")) == 0
    with pytest.raises(FileNotFoundError):
        load_liquidations(tmp_path / "nowhere")
