"""Backfill (feeds.backfill) from LocalBinance's data.binance.vision layout on 127.0.0.1.

The archives are built by the server from REAL recorded trades; the expected
rows are read here independently (csv / gzip + json) from the same recordings.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import gzip
import io
import os
import sys
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import hft_trades

from feeds.backfill import (
    ChecksumError,
    backfill,
    backfill_days,
    exit_code,
    parse_checksum,
    read_agg_trades_csv,
    trades_path,
    vision_url_path,
)
from feeds.emulator import LocalBinance
from feeds.recorder import TRADES_SCHEMA, read_trades

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"


def zip_requests(srv: LocalBinance) -> list[dict]:
    return [r for r in srv.requests if r["path"].endswith(".zip")]


# ----------------------------------------------------------------------------- pure parts (hand-made known answers)
def test_read_agg_trades_csv_futures_header_and_spot_headerless_microseconds():
    fut = (b"agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
           b"12,100.5,0.25,20,21,1722470400123,true\n"
           b"11,100.0,1.5,19,19,1722470400001,false\n"
           b"12,100.5,0.25,20,21,1722470400123,true\n")  # unsorted, one repeated id
    t = read_agg_trades_csv(fut, "btcusdt")
    assert t.schema == TRADES_SCHEMA
    assert t.to_pydict() == {"symbol": ["BTCUSDT", "BTCUSDT"], "agg_trade_id": [11, 12], "price": [100.0, 100.5],
                             "qty": [1.5, 0.25], "first_trade_id": [19, 20], "last_trade_id": [19, 21],
                             "time": [1722470400001, 1722470400123], "is_buyer_maker": [False, True]}
    spot = b"5,0.1,3,7,7,1735689600123456,True,True\n6,0.2,4,8,9,1735689600999999,False,True\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("X-aggTrades-2025-01-01.csv", spot)
    t = read_agg_trades_csv(buf.getvalue(), "X")
    assert t["time"].to_pylist() == [1735689600123, 1735689600999]  # µs -> ms (floored)
    assert t["is_buyer_maker"].to_pylist() == [True, False] and t["agg_trade_id"].to_pylist() == [5, 6]
    with pytest.raises(ValueError):
        read_agg_trades_csv(b"1,2,3\n", "X")


def test_checksum_parsing_and_paths():
    hexd = "ab" * 32
    assert parse_checksum(f"{hexd}  BTCUSDT-aggTrades-2024-08-01.zip\n", "BTCUSDT-aggTrades-2024-08-01.zip") == hexd
    with pytest.raises(ChecksumError):
        parse_checksum(f"{hexd}  OTHER.zip", "BTCUSDT-aggTrades-2024-08-01.zip")
    with pytest.raises(ChecksumError):
        parse_checksum("<html>not found</html>")
    d = dt.date(2024, 8, 1)
    assert vision_url_path("usdm", "btcusdt", d) == \
        "data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-08-01.zip"
    assert vision_url_path("coinm", "BTCUSD_PERP", d).startswith("data/futures/cm/daily/aggTrades/BTCUSD_PERP/")
    assert vision_url_path("spot", "BTCUSDT", d).startswith("data/spot/daily/aggTrades/BTCUSDT/")
    assert backfill_days("2024-08-30", "2024-09-02") == [dt.date(2024, 8, 30), dt.date(2024, 8, 31),
                                                         dt.date(2024, 9, 1), dt.date(2024, 9, 2)]
    with pytest.raises(ValueError):
        backfill_days("2024-08-02", "2024-08-01")


# ----------------------------------------------------------------------------- against the local vision server
async def test_backfill_downloads_verifies_writes_parquet_and_skips_done_days(tmp_path, shared_dir):
    path = shared_dir / "ws-raw-usdm-ethusdt-2024-08-08.hftbacktest.txt.gz"
    ref = hft_trades(path, "ETHUSDT")
    async with LocalBinance([path]) as srv:
        res = await backfill("usdm", "ETHUSDT", "2024-08-07", "2024-08-09", tmp_path, srv.vision_base, progress=False)
        assert [r.status for r in res] == ["missing", "done", "done"]
        assert exit_code(res) == 0
        n_zip = len(zip_requests(srv))
        again = await backfill("usdm", "ETHUSDT", "2024-08-07", "2024-08-09", tmp_path, srv.vision_base,
                               progress=False)
        assert [r.status for r in again] == ["missing", "skipped", "skipped"]
        assert len(zip_requests(srv)) == n_zip  # nothing downloaded twice
    df = read_trades(tmp_path)
    assert df["agg_trade_id"].tolist() == [d["t"] for d in ref]
    assert df["price"].tolist() == [float(d["p"]) for d in ref] and df["qty"].tolist() == [float(d["q"]) for d in ref]
    assert df["time"].tolist() == [d["T"] for d in ref] and df["is_buyer_maker"].tolist() == [d["m"] for d in ref]
    day9 = pq.read_table(trades_path(tmp_path, "usdm", "ETHUSDT", dt.date(2024, 8, 9)))
    assert day9["time"].to_pylist() == [d["T"] for d in ref if d["T"] >= 1723161600000]  # the UTC day split
    assert not list((tmp_path / "vision").rglob("*.zip*"))  # archives deleted after conversion by default


async def test_backfill_resumes_an_interrupted_download(tmp_path):
    with gzip.open(BUNDLED, "rt") as f:
        ref = list(csv.DictReader(f))
    async with LocalBinance([BUNDLED]) as srv:
        total = len(srv.vision_zip("usdm", "BTCUSDT", "2020-02-22"))
        srv.faults.vision_cut_after_bytes, srv.faults.vision_cut_next = total // 3, -1
        (r,) = await backfill("usdm", "BTCUSDT", "2020-02-22", "2020-02-22", tmp_path, srv.vision_base,
                              retries=0, progress=False)
        assert r.status == "failed" and "cut" in r.error
        part = tmp_path / "vision" / (vision_url_path("usdm", "BTCUSDT", dt.date(2020, 2, 22)) + ".part")
        have = part.stat().st_size
        assert total // 3 <= have < total
        srv.faults.vision_cut_next = 0
        (r,) = await backfill("usdm", "BTCUSDT", "2020-02-22", "2020-02-22", tmp_path, srv.vision_base,
                              progress=False)
        assert r.status == "done" and r.resumed_from == have
        assert zip_requests(srv)[-1]["range"] == f"bytes={have}-" and zip_requests(srv)[-1]["status"] == 206
        # transient server errors are retried (Retry-After honoured)
        srv.faults.vision_fail_next, srv.faults.rest_retry_after = 2, 0
        n0 = len(srv.requests)
        (r2,) = await backfill("usdm", "BTCUSDT", "2020-02-22", "2020-02-22", tmp_path / "b", srv.vision_base,
                               retries=3, progress=False)
        assert r2.status == "done" and [q["status"] for q in list(srv.requests)[n0:]] == [503, 503, 200, 200]
    df = read_trades(tmp_path)
    assert df["agg_trade_id"].tolist() == [int(x["id"]) for x in ref]
    assert df["price"].tolist() == [float(x["price"]) for x in ref]
    assert df["time"].tolist() == [int(x["time"]) for x in ref]
    assert df["is_buyer_maker"].tolist() == [x["is_buyer_maker"] == "true" for x in ref]
    assert not part.exists()


async def test_backfill_rejects_a_corrupted_archive_and_continues_with_other_days(tmp_path, shared_dir):
    path = shared_dir / "ws-raw-usdm-ethusdt-2024-08-08.hftbacktest.txt.gz"
    async with LocalBinance([path]) as srv:
        srv.faults.vision_corrupt_files = ["ETHUSDT-aggTrades-2024-08-08.zip"]
        res = await backfill("usdm", "ETHUSDT", "2024-08-08", "2024-08-09", tmp_path, srv.vision_base,
                             keep_zips=True, progress=False)
    bad, good = res
    assert bad.status == "failed" and "does not match CHECKSUM" in bad.error and good.status == "done"
    assert exit_code(res) == 1
    assert not trades_path(tmp_path, "usdm", "ETHUSDT", dt.date(2024, 8, 8)).exists()
    assert [p.name for p in (tmp_path / "vision").rglob("*ETHUSDT-aggTrades-2024-08-08*")] == []  # discarded
    assert (tmp_path / "vision" / vision_url_path("usdm", "ETHUSDT", dt.date(2024, 8, 9))).exists()  # kept


async def test_cli_backfill_spot_and_coinm_layouts(tmp_path, shared_dir):
    spot = shared_dir / "ws-raw-spot-btcusdt-2024-08-08.hftbacktest.txt.gz"
    cm = shared_dir / "ws-raw-cm-btcusd_perp-2024-08-08.hftbacktest.txt.gz"
    async with LocalBinance([spot, cm]) as srv:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "feeds", "backfill", "--market", "spot", "--symbol", "BTCUSDT", "--start",
            "2024-08-08", "--end", "2024-08-09", "--out", str(tmp_path), "--vision-base", srv.vision_base,
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
        assert "2 done" in out.decode() and "day" in err.decode()  # summary line; tqdm bar on stderr
        res = await backfill("coinm", "btcusd_perp", "2024-08-08", "2024-08-09", tmp_path, srv.vision_base,
                             progress=False)
        assert [r.status for r in res] == ["done", "done"]
        assert all("/data/futures/cm/daily/aggTrades/BTCUSD_PERP/" in q["path"] for q in zip_requests(srv)[-2:])
    assert read_trades(tmp_path, "spot")["agg_trade_id"].tolist() == [d["t"] for d in hft_trades(spot, "BTCUSDT")]
    cm_df = read_trades(tmp_path, "coinm")
    ref = hft_trades(cm, "BTCUSD_PERP")
    assert cm_df["agg_trade_id"].tolist() == [d["t"] for d in ref]
    assert cm_df["qty"].tolist() == [float(d["q"]) for d in ref]  # contracts
