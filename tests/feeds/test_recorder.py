"""Recorder (feeds.recorder) against LocalBinance on 127.0.0.1 with REAL recorded frames.

Checks what issue 4 promises: raw frames and normalized Parquet hold every trade
delivered; nothing written is lost when the process is killed (SIGKILL) or
interrupted (SIGINT); partial output stays readable. Expected values come from
reading the recordings independently (gzip + json) and from the server's own
record of the frames it sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import hft_trades

from feeds.emulator import LocalBinance, load_recording
from feeds.recorder import (
    LIQUIDATION_COLUMNS,
    TRADE_COLUMNS,
    Recorder,
    RecordingSink,
    read_liquidations,
    read_raw_frames,
    read_trades,
    trades_table,
)

ROOT = Path(__file__).resolve().parents[2]
CLIENT_FAST = dict(heartbeat=2.0, reconnect_initial=0.02, reconnect_max=0.2, connect_interval=0.0,
                   flush_interval=0.01, reorder_grace=0.05, gap_fill_timeout=4.0, rest_request_timeout=2.0)


def parts(out: Path) -> list[Path]:
    return sorted(out.rglob("part-*.parquet"))


# ----------------------------------------------------------------------------- sink unit cases
def test_sink_splits_by_trade_day_compacts_and_dedupes(tmp_path):
    sink = RecordingSink(tmp_path, "usdm")
    midnight = int(dt.datetime(2024, 8, 9, tzinfo=dt.UTC).timestamp() * 1000)
    ids = np.array([10, 11, 12, 13])
    times = np.array([midnight - 2, midnight - 1, midnight, midnight + 5])
    sink.add_trades("ethusdt", trades_table("ETHUSDT", ids, [1.5, 2.5, 3.5, 4.5], [1, 2, 3, 4], ids, ids, times,
                                            [True, False, True, False]))
    sink.flush()
    # the same trades again (e.g. two overlapping connections) plus one new one
    sink.add_trades("ETHUSDT", pd.DataFrame({"agg_trade_id": [13, 14], "price": [4.5, 5.5], "qty": [4.0, 5.0],
                                             "first_trade_id": [13, 14], "last_trade_id": [13, 14],
                                             "time": [midnight + 5, midnight + 6], "is_buyer_maker": [False, True]}))
    sink.flush()
    d8 = tmp_path / "trades" / "usdm" / "ETHUSDT" / "2024-08-08"
    d9 = tmp_path / "trades" / "usdm" / "ETHUSDT" / "2024-08-09"
    assert len(list(d8.glob("part-*.parquet"))) == 1 and len(list(d9.glob("part-*.parquet"))) == 2
    df = read_trades(tmp_path)
    assert df["agg_trade_id"].tolist() == [10, 11, 12, 13, 14]  # read back once each
    assert tuple(df.columns) == TRADE_COLUMNS and df["symbol"].unique().tolist() == ["ETHUSDT"]
    assert pq.read_schema(next(d9.glob("part-*.parquet"))).field("time").type == pa.int64()
    sink.close()
    assert list(d9.glob("part-*.parquet")) == [] and len(list(d9.glob("rec-*.parquet"))) == 1
    assert pq.read_table(next(d9.glob("rec-*.parquet")))["agg_trade_id"].to_pylist() == [12, 13, 14]
    assert read_trades(tmp_path)["price"].tolist() == [1.5, 2.5, 3.5, 4.5, 5.5]


def test_raw_file_stays_readable_when_the_last_gzip_member_is_cut(tmp_path):
    sink = RecordingSink(tmp_path, "usdm")
    t0 = 1_723_161_600_000  # 2024-08-09T00:00Z
    sink.add_raw(t0, '{"stream":"a","data":{}}')
    sink.add_raw(t0 + 1, "garbage with\nnewline")
    sink.flush()
    sink.add_raw(t0 + 2, '{"stream":"b","data":{}}')
    sink.flush()
    (f,) = list((tmp_path / "raw").rglob("*.jsonl.gz"))
    assert f.name == "usdm-2024-08-09T00.jsonl.gz"
    whole = f.read_bytes()
    assert read_raw_frames(f) == [(t0, '{"stream":"a","data":{}}'), (t0 + 1, "garbage with newline"),
                                  (t0 + 2, '{"stream":"b","data":{}}')]
    # a crash in the middle of writing a third member
    third = gzip.compress(f"{t0 + 3} lost\n".encode())
    f.write_bytes(whole + third[: len(third) // 2])
    assert [ts for ts, _ in read_raw_frames(f)] == [t0, t0 + 1, t0 + 2]


# ----------------------------------------------------------------------------- in-process recording
async def test_recorder_writes_every_delivered_trade_liquidation_and_raw_frame(tmp_path, shared_dir):
    path = shared_dir / "ws-raw-usdm-ethusdt-2024-08-08.hftbacktest.txt.gz"
    (eth,) = load_recording(path)
    tab = eth.take(slice(0, 3000))
    ref = hft_trades(path, "ETHUSDT")[:3000]
    async with LocalBinance(tables=[tab], speed=0) as srv:
        srv.faults.garbage_every = 250
        srv.faults.duplicate_every = 300
        rec = Recorder(market="usdm", symbols=["ethusdt"], out=str(tmp_path), ws_base=srv.ws_base,
                       rest_base=srv.rest_base, flush_interval=0.1, client_params=CLIENT_FAST)
        task = asyncio.create_task(rec.run())
        liq_n = len(srv.feed("ETHUSDT").liq_fields)
        async with asyncio.timeout(30):
            while rec.sink.last_ids.get("ETHUSDT") != int(tab.a[-1]) or rec.sink.written["liquidations"] < liq_n:
                await asyncio.sleep(0.05)
        rec.stop()
        summary = await task
        sent = [fr for c in srv.connections for fr in c.sent_ids.get("ETHUSDT", [])]
    assert summary["trades"] == 3000
    df = read_trades(tmp_path)
    assert df["agg_trade_id"].tolist() == [d["t"] for d in ref]
    assert df["price"].tolist() == [float(d["p"]) for d in ref] and df["qty"].tolist() == [float(d["q"]) for d in ref]
    assert df["time"].tolist() == [d["T"] for d in ref] and df["is_buyer_maker"].tolist() == [d["m"] for d in ref]
    assert (df["first_trade_id"] == df["agg_trade_id"]).all() and (df["last_trade_id"] == df["agg_trade_id"]).all()
    assert sorted(set(sent)) == df["agg_trade_id"].tolist()
    liq = read_liquidations(tmp_path)
    assert tuple(liq.columns) == LIQUIDATION_COLUMNS and len(liq) == liq_n
    real = {(d["T"], float(d["p"]), float(d["q"])) for d in ref}
    assert all((t, p, q) in real for t, p, q in zip(liq["time"], liq["avg_price"], liq["filled_qty"], strict=True))
    assert set(liq["side"]) <= {"BUY", "SELL"} and set(liq["status"]) == {"FILLED"}
    # raw frames: everything received, garbage and duplicates included, one per line
    raw = [fr for p in sorted((tmp_path / "raw").rglob("*.jsonl.gz")) for fr in read_raw_frames(p)]
    agg = [json.loads(t)["data"] for _, t in raw if t.startswith('{"stream":"ethusdt@aggTrade","data":{"e":"aggTrade","E"')
           and '"a":"' not in t]
    assert sorted({a["a"] for a in agg}) == df["agg_trade_id"].tolist()
    assert len(agg) > len({a["a"] for a in agg})  # the duplicated frames are in the raw record
    assert any(t == "not json at all" for _, t in raw)
    assert all(ts > 1.7e12 for ts, _ in raw)  # receive time in ms
    assert parts(tmp_path) == []  # compacted on close
    status = json.loads((tmp_path / "status" / "usdm.json").read_text())
    assert status["frames"]["malformed"] >= 1


# ----------------------------------------------------------------------------- crash and Ctrl-C
async def _spawn_recorder(srv: LocalBinance, out: Path, *extra: str, symbols: str = "ETHUSDT"):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "feeds", "--log-level", "WARNING", "record", "--market", "usdm", "--symbols",
        symbols, "--out", str(out), "--ws-base", srv.ws_base, "--rest-base", srv.rest_base, "--flush-interval",
        "0.2", *extra, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _wait_parts(out: Path, n: int, proc) -> None:
    async with asyncio.timeout(40):
        while len(list((out / "trades").rglob("part-*.parquet"))) < n:
            assert proc.returncode is None, (await proc.stderr.read()).decode()[-2000:]
            await asyncio.sleep(0.05)


async def test_sigkill_mid_run_leaves_readable_files_with_every_flushed_trade_then_sigint_closes_cleanly(
        tmp_path, shared_dir):
    path = shared_dir / "ws-raw-usdm-ethusdt-2024-08-08.hftbacktest.txt.gz"
    (eth,) = load_recording(path)
    out = tmp_path / "rec"
    # 14 076 real trades over ~6 min of exchange time, replayed at 20x: a run takes ~17 s
    async with LocalBinance(tables=[eth], speed=20) as srv:
        proc = await _spawn_recorder(srv, out)
        await _wait_parts(out, 4, proc)
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        assert srv.published("ETHUSDT") < len(eth)  # killed mid-run
        sent = [a for c in srv.connections for a in c.sent_ids.get("ETHUSDT", [])]
        files = sorted((out / "trades").rglob("*.parquet"))
        assert files and all(pq.read_table(f).num_rows > 0 for f in files)  # every part is a whole Parquet file
        df = read_trades(out)
        ids = df["agg_trade_id"].to_numpy()
        assert ids[0] == eth.a[0] and np.all(np.diff(ids) == 1)  # no hole up to the last flush
        assert set(ids) == {a for a in sent if a <= ids[-1]}  # = every id delivered up to there
        raw = [fr for p in (out / "raw").rglob("*.jsonl.gz") for fr in read_raw_frames(p)]
        raw_ids = {json.loads(t)["data"]["a"] for _, t in raw if '"e":"aggTrade"' in t}
        assert set(ids) <= raw_ids

        # a new run into the same folder; Ctrl-C -> clean close, the crashed run's parts compacted too
        proc = await _spawn_recorder(srv, out)
        before = len(parts(out))
        await _wait_parts(out, before + 3, proc)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            rc = await proc.wait()
        stdout = (await proc.stdout.read()).decode()
        assert rc == 0, (await proc.stderr.read()).decode()[-2000:]
        assert "recorded" in stdout
    assert parts(out) == [] and not list(out.rglob(".*.tmp"))
    for p in (out / "raw").rglob("*.jsonl.gz"):
        gzip.decompress(p.read_bytes())  # every raw file is a complete gzip stream after a clean close
    df2 = read_trades(out)
    assert set(ids) <= set(df2["agg_trade_id"])  # nothing of the crashed run was lost
    second = df2["agg_trade_id"].to_numpy()
    second = second[second > ids[-1]]
    assert len(second) and np.all(np.diff(second) == 1)  # the second run's trades are contiguous too


async def test_duration_stops_by_itself_and_raw_frames_are_the_real_frames(tmp_path, shared_dir):
    path = shared_dir / "ws-aggTrade-usdm-alts-2021-07-22.cryptofeed.jsonl.gz"
    lines = gzip.open(path, "rt").read().splitlines()
    async with LocalBinance([path], speed=0, liquidations="none") as srv:
        proc = await _spawn_recorder(srv, tmp_path, "--duration", "3", symbols="SUSHIUSDT,CTKUSDT")
        async with asyncio.timeout(40):
            rc = await proc.wait()
        assert rc == 0, (await proc.stderr.read()).decode()[-2000:]
    raw = [t for p in (tmp_path / "raw").rglob("*.jsonl.gz") for _, t in read_raw_frames(p)]
    df = read_trades(tmp_path)
    for sym in ("sushiusdt", "ctkusdt"):
        real = [x for x in lines if x.startswith(f'{{"stream":"{sym}@aggTrade"')]
        assert [t for t in raw if t.startswith(f'{{"stream":"{sym}@')] == real  # byte for byte
        got = df[df["symbol"] == sym.upper()]["agg_trade_id"].tolist()
        assert got == [json.loads(x)["data"]["a"] for x in real]
