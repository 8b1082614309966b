"""A rule backtested over recorded history (issue 18 item 5): the recorder's Parquet folder read with pandas and
with Dask gives the engine's firings and forward returns over the same real trades."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from browser import LIQ_FIXTURE, history_folder

from compute.alerts import backtest
from feeds.backtest import backtest_history
from feeds.liquidations import read_liquidations
from feeds.readers import read_trades

RULES = [
    {"type": "price_cross", "symbol": "BTCUSDT", "level": {"ref": "poc", "session_length": "1h"}, "direction": "any",
     "cooldown_s": 120},
    {"type": "delta", "symbol": "BTCUSDT", "threshold": 15, "window": "candle", "interval": "5m"},
    {"type": "liquidation", "symbol": "BTCUSDT", "min_notional": 10_000},
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return history_folder(tmp_path_factory.mktemp("history"), hours=3)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["type"])
def test_the_history_backtest_equals_the_engine_on_the_same_trades(folder, recording_path, rule):
    rec = read_trades(recording_path)
    end = int(rec.time[0]) // 3_600_000 * 3_600_000 + 3 * 3_600_000
    trades = rec.time_slice(None, end)
    liq = read_liquidations(LIQ_FIXTURE)
    liq = liq[liq["time"] < end].reset_index(drop=True)
    want = backtest(rule, trades, liq, tick=0.01)
    for dask in (False, True):
        got = backtest_history(folder, rule, dask=dask, tick=0.01)
        assert got["trades"] == len(trades) and got["range"] == [int(trades.time[0]), int(trades.time[-1])]
        assert got["count"] == want["count"] and got["count"] > 0, (rule, got["count"])
        pd.testing.assert_frame_equal(got["firings"], want["firings"])
        assert got["horizons"].keys() == want["horizons"].keys()
        for h, s in want["horizons"].items():
            assert np.allclose(list(got["horizons"][h].values()), list(s.values()), equal_nan=True)
