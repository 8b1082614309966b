"""compute.candles: hand-made candles, the real recording against pandas, and the incremental accumulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compute.batch import TradeBatch
from compute.candles import CANDLE_COLUMNS, CandleAccumulator, candles

RECORDING = Path(__file__).resolve().parents[2] / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"


def batch(times, prices, qtys, sells):
    n = len(times)
    return TradeBatch(np.array(times), np.array(prices, float), np.array(qtys, float), np.array(sells), np.arange(n))


def test_hand_made_candles():
    b = batch([0, 10, 59_999, 60_000, 180_500], [10, 12, 9, 11, 13], [1, 2, 3, 4, 5], [False, True, False, True, False])
    c = candles(b, 60_000)
    assert list(c.columns) == list(CANDLE_COLUMNS)
    assert c["time"].tolist() == [0, 60_000, 180_000]  # minute 120_000 had no trades: no candle
    assert c.iloc[0][["open", "high", "low", "close", "volume", "buy_volume", "sell_volume", "trades"]].tolist() == [
        10, 12, 9, 9, 6, 4, 2, 3]
    assert c.iloc[1][["open", "close", "volume", "buy_volume", "sell_volume", "trades"]].tolist() == [11, 11, 4, 0, 4, 1]
    assert c["time"].dtype == np.int64 and c["trades"].dtype == np.int64


def test_unsorted_input_is_ordered_by_time():
    b = batch([30, 10, 20], [3.0, 1.0, 2.0], [1, 1, 1], [False] * 3)
    c = candles(b, 60_000)
    assert (c["open"].item(), c["close"].item()) == (1.0, 3.0)


def test_empty_and_bad_interval():
    assert len(candles(TradeBatch.empty(), 60_000)) == 0
    with pytest.raises(ValueError):
        candles(TradeBatch.empty(), 0)


@pytest.fixture(scope="module")
def real():
    return pd.read_csv(RECORDING)


def test_real_candles_equal_pandas(real):
    c = candles(real, 60_000)
    t = pd.to_datetime(real["time"], unit="ms")
    g = real.assign(buy=np.where(real["is_buyer_maker"], 0.0, real["qty"])).groupby(t.dt.floor("1min"))
    ref = pd.DataFrame({
        "open": g["price"].first(), "high": g["price"].max(), "low": g["price"].min(), "close": g["price"].last(),
        "volume": g["qty"].sum(), "buy_volume": g["buy"].sum(), "trades": g.size(),
    })
    assert c["time"].tolist() == (ref.index.astype("datetime64[ms]").astype("int64")).tolist()
    for col in ("open", "high", "low", "close", "trades"):
        np.testing.assert_array_equal(c[col].to_numpy(), ref[col].to_numpy())
    np.testing.assert_allclose(c["volume"], ref["volume"], rtol=1e-9)
    np.testing.assert_allclose(c["buy_volume"], ref["buy_volume"], rtol=1e-9)
    np.testing.assert_allclose(c["sell_volume"] + c["buy_volume"], c["volume"], rtol=1e-9)
    assert c["trades"].sum() == len(real)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accumulator_equals_one_pass(real, seed):
    b = TradeBatch.from_frame(real)
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(b)), size=400, replace=False))
    acc = CandleAccumulator(60_000)
    seen = {}
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(b)], strict=True):
        out = acc.update(b.take(slice(lo, hi)))
        assert out["time"].is_monotonic_increasing
        for rec in out.to_dict("records"):
            seen[rec["time"]] = rec
    got = pd.DataFrame(sorted(seen.values(), key=lambda r: r["time"]))[list(CANDLE_COLUMNS)]
    ref = candles(b, 60_000)
    for col in ("time", "open", "high", "low", "close", "trades"):
        np.testing.assert_array_equal(got[col].to_numpy(), ref[col].to_numpy())
    for col in ("volume", "buy_volume", "sell_volume"):
        np.testing.assert_allclose(got[col].to_numpy(), ref[col].to_numpy(), rtol=1e-9)
    assert acc.last["time"].item() == ref["time"].iloc[-1]


def test_accumulator_merges_open_candle_and_returns_only_touched():
    acc = CandleAccumulator(60_000)
    a = acc.update(batch([0, 1], [10, 11], [1, 1], [False, True]))
    assert a["time"].tolist() == [0]
    b = acc.update(batch([2, 3], [8, 9], [2, 2], [False, False]))
    assert b.iloc[0][["open", "high", "low", "close", "volume", "buy_volume", "sell_volume", "trades"]].tolist() == [
        10, 11, 8, 9, 6, 5, 1, 4]
    c = acc.update(batch([60_001], [12], [1], [True]))
    assert c["time"].tolist() == [60_000]  # the closed candle is not touched again
    with pytest.raises(ValueError, match="older than the open candle"):
        acc.update(batch([59_000], [12], [1], [True]))
    # state kept after the rejected batch
    d = acc.update(batch([60_002], [14], [1], [False]))
    assert d.iloc[0][["open", "high", "close", "trades"]].tolist() == [12, 14, 14, 2]
