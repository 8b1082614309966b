"""compute.dask equals the in-memory compute functions, bit for bit, on the real recordings.

The Dask frames are the real bundled trades cut into partitions three ways: the loader's
one-partition-per-file over hourly Parquet files (recorder layout), uneven cuts in the
middle of candles, and random cuts (hypothesis). Every result is compared with the
in-memory function on ``ddf.compute()`` by ``to_dict()`` and exact DataFrame equality.
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import compute.dask as cd
from compute.candles import candles
from compute.footprint import footprint
from compute.heatmap import heatmap
from compute.levels import developing_levels
from compute.profile import volume_profile
from compute.split import split_profile
from compute.timeweighted import recency_profile, tpo_profile
from feeds.history import load_history

TICK = 0.01
HOUR = 3_600_000


@pytest.fixture(scope="module")
def df(recording_path) -> pd.DataFrame:
    return load_history(recording_path, progress=False)


def _slice(args):
    frame, a, b = args
    return frame.iloc[a:b]


def cut(frame: pd.DataFrame, points) -> dd.DataFrame:
    """A Dask frame whose partitions are ``frame`` cut at the given row positions."""
    edges = [0, *sorted(points), len(frame)]
    return dd.from_map(_slice, [(frame, a, b) for a, b in zip(edges, edges[1:], strict=False)], meta=frame.iloc[:0])


@pytest.fixture(scope="module")
def hourly(tmp_path_factory, df) -> dd.DataFrame:
    """The loader's Dask frame over hourly recorder-layout Parquet files (one partition per file)."""
    root = tmp_path_factory.mktemp("rec")
    d = root / "trades" / "usdm" / "BTCUSDT" / "2020-02-22"
    d.mkdir(parents=True)
    t = df["time"].to_numpy()
    day0 = int(t[0]) // 86_400_000 * 86_400_000
    for h in range(12):
        p = df[(t >= day0 + h * HOUR) & (t < day0 + (h + 1) * HOUR)]
        tbl = pa.table({"symbol": p["symbol"].astype(str).to_numpy(), "agg_trade_id": p["trade_id"].to_numpy(),
                        "price": p["price"].to_numpy(), "qty": p["qty"].to_numpy(),
                        "first_trade_id": p["trade_id"].to_numpy(), "last_trade_id": p["trade_id"].to_numpy(),
                        "time": p["time"].to_numpy(), "is_buyer_maker": p["is_buyer_maker"].to_numpy()})
        pq.write_table(tbl, d / f"part-{day0 + (h + 1) * HOUR}-1-{h:06d}.parquet")
    ddf = load_history(root, "usdm", "BTCUSDT", dask=True, partition_rows=1)  # one partition per file
    assert ddf.npartitions == 12
    return ddf


@pytest.fixture(scope="module")
def uneven(df) -> dd.DataFrame:
    """Cuts inside candles (and one partition holding a single candle's trades)."""
    n = len(df)
    return cut(df, [1, 777, 778 + 40, 20_011, 33_333, 33_340, 51_234, n - 3])


@pytest.fixture(params=["hourly", "uneven"])
def ddf(request, hourly, uneven):
    return hourly if request.param == "hourly" else uneven


def same_profile(a, b) -> None:
    assert a.kind == b.kind
    pd.testing.assert_frame_equal(a.levels, b.levels, check_exact=True)
    assert a.to_dict() == b.to_dict()


def same_footprint(a, b) -> None:
    for part in ("cells", "candles", "stacked", "levels"):
        pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part), check_exact=True)
    assert a.summary == b.summary
    assert a.to_dict() == b.to_dict()


KINDS = {
    "volume": (cd.volume_profile, volume_profile, dict(row_size=1.0)),
    "volume-dual-fine": (cd.volume_profile, volume_profile,
                         dict(row_size=0.1, value_area=0.8, value_area_method="dual", percentiles=(0.1, 0.5, 0.9))),
    "split": (cd.split_profile, split_profile, dict(row_size=0.5)),
    "tpo-auto": (cd.tpo_profile, tpo_profile, dict(row_size=1.0)),
    "tpo-5m": (cd.tpo_profile, tpo_profile, dict(row_size=2.5, block_ms=300_000)),
    "recency": (cd.recency_profile, recency_profile, dict(row_size=1.0)),
    "recency-60s": (cd.recency_profile, recency_profile, dict(row_size=0.1, half_life_s=60)),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("rng", ["all", "inside"])
def test_every_profile_kind_equals_the_in_memory_result_bit_for_bit(ddf, df, kind, rng):
    fn_dask, fn_mem, kw = KINDS[kind]
    kw = dict(kw)
    row_size = kw.pop("row_size")
    if rng == "inside":  # edges inside partitions and inside candles
        kw.update(start=int(df["time"].iloc[1234]) + 1, end=int(df["time"].iloc[60_321]))
    got = fn_dask(ddf, TICK, row_size, **kw)
    want = fn_mem(ddf.compute(), TICK, row_size, **kw)
    same_profile(got, want)


def test_developing_levels_equal_the_in_memory_result(ddf, df):
    for kw in ({}, {"start": int(df["time"].iloc[500]), "end": int(df["time"].iloc[40_000]), "candle_ms": 300_000}):
        got = cd.developing_levels(ddf, TICK, 1.0, **kw)
        want = developing_levels(df, TICK, 1.0, **kw)
        pd.testing.assert_frame_equal(got.developing, want.developing, check_exact=True)
        assert got.to_dict() == want.to_dict()


@pytest.mark.parametrize("kw", [
    {}, {"gap_ms": 5_000}, {"interval_ms": 300_000, "imbalance_ratio": 2.0, "stacked_min": 2},
    {"check_ids": True, "min_volume": 0.5, "ignore_zeros": False},
])
def test_footprint_equals_the_in_memory_result_bit_for_bit(ddf, df, kw):
    same_footprint(cd.footprint(ddf, TICK, 1.0, **kw), footprint(df, TICK, 1.0, **kw))


def test_footprint_marks_the_same_gaps_when_trades_are_missing_at_a_partition_edge(df):
    # drop 25 real trades right where a partition starts: the CVD must restart there, as in memory
    holed = pd.concat([df.iloc[:30_000], df.iloc[30_025:]], ignore_index=True)
    ddf = cut(holed, [30_000, 45_000])
    got, want = cd.footprint(ddf, TICK, 1.0), footprint(holed, TICK, 1.0)
    same_footprint(got, want)
    assert got.summary["gaps"] >= 1 and got.candles["missing_ids"].sum() == 25


def test_candles_equal_the_in_memory_candles(ddf, df):
    pd.testing.assert_frame_equal(cd.candles(ddf), candles(df), check_exact=True)
    s, e = int(df["time"].iloc[999]), int(df["time"].iloc[50_001])
    sel = df[(df["time"] >= s) & (df["time"] < e)]
    pd.testing.assert_frame_equal(cd.candles(ddf, 300_000, s, e), candles(sel, 300_000), check_exact=True)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_partitioning_of_a_real_slice_gives_identical_results(df, data):
    n0 = data.draw(st.integers(0, len(df) - 3_000), label="offset")
    n = data.draw(st.integers(2, 3_000), label="trades")
    part = df.iloc[n0 : n0 + n].reset_index(drop=True)
    points = data.draw(st.lists(st.integers(1, n - 1), max_size=6, unique=True), label="cuts")
    ddf = cut(part, points)
    row = data.draw(st.sampled_from([0.01, 0.1, 0.5, 2.5]), label="row_size")
    same_profile(cd.volume_profile(ddf, TICK, row), volume_profile(part, TICK, row))
    same_profile(cd.recency_profile(ddf, TICK, row, half_life_s=30), recency_profile(part, TICK, row, half_life_s=30))
    iv = data.draw(st.sampled_from([1_000, 60_000]), label="candle")
    same_footprint(cd.footprint(ddf, TICK, row, interval_ms=iv), footprint(part, TICK, row, interval_ms=iv))


def test_heatmap_in_partitions_is_exact_and_matches_the_in_memory_heatmap(hourly, uneven, df):
    s, e = int(df["time"].min()), int(df["time"].max())
    lo, hi = float(df["price"].min()), float(df["price"].max())
    for agg in ("volume", "delta", "count"):
        a = cd.heatmap(hourly, s, e, lo, hi, 300, 120, agg)
        b = cd.heatmap(uneven, s, e, lo, hi, 300, 120, agg)
        one = cd.heatmap(df, s, e, lo, hi, 300, 120, agg)  # pandas: one partition
        for x in (a, b):
            np.testing.assert_array_equal(x.values, one.values)  # NaN == NaN here
            assert x.dims == ("price", "time") and x.shape == (120, 300)
        mem = heatmap(df, s, e, lo, hi, 300, 120, agg)
        np.testing.assert_array_equal(a.coords["time"].values, mem.coords["time"].values)
        np.testing.assert_array_equal(a.coords["price"].values, mem.coords["price"].values)
        if agg == "count":
            np.testing.assert_array_equal(a.values, mem.values)
            assert int(a.values.sum()) == len(df)
        else:  # same cells hold trades; sums equal to the float rounding of the in-memory sum
            np.testing.assert_array_equal(np.isnan(a.values), np.isnan(mem.values))
            np.testing.assert_allclose(a.values, mem.values, rtol=1e-12, atol=1e-9)
    vol = cd.heatmap(hourly, s, e, lo, hi, 300, 120, "volume")
    qint = np.rint(df["qty"].to_numpy() * 1e8).astype(np.int64)
    # every cell is its exact integer sum / 1e8, so the cells add up to the total exactly (in units)
    assert int(np.rint(np.nansum(vol.values) * 1e8)) == int(qint.sum())


def test_heatmap_bounds_default_to_the_data(hourly, df):
    h = cd.heatmap(hourly, width=50, height=20, agg="count")
    assert h.attrs["x_range"] == (int(df["time"].min()), int(df["time"].max()))
    assert h.attrs["y_range"] == (float(df["price"].min()), float(df["price"].max()))
    assert int(h.values.sum()) == len(df)


def test_a_distributed_client_gives_the_same_results(hourly, df):
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        same_profile(cd.volume_profile(hourly, TICK, 1.0, client=client, progress=True), volume_profile(df, TICK, 1.0))
        same_profile(cd.recency_profile(hourly, TICK, 1.0, client=client), recency_profile(df, TICK, 1.0))
        same_footprint(cd.footprint(hourly, TICK, 1.0, client=client), footprint(df, TICK, 1.0))
        h = cd.heatmap(hourly, agg="count", width=60, height=30, client=client)
        assert int(h.values.sum()) == len(df)


def test_several_symbols_need_symbol_and_then_give_that_symbols_result(df, shared_dir):
    eth = load_history(shared_dir / "ws-raw-usdm-ethusdt-2024-08-08.hftbacktest.txt.gz", progress=False)
    both = pd.concat([df, eth], ignore_index=True)
    both["symbol"] = both["symbol"].astype(pd.CategoricalDtype(["BTCUSDT", "ETHUSDT"]))
    ddf = cut(both, [40_000, len(df) + 5])
    with pytest.raises(ValueError, match="several symbols"):
        cd.volume_profile(ddf, TICK, 1.0)
    with pytest.raises(ValueError, match="several symbols"):
        cd.footprint(ddf, TICK, 1.0)
    same_profile(cd.volume_profile(ddf, TICK, 1.0, symbol="ETHUSDT"), volume_profile(eth, TICK, 1.0))
    same_footprint(cd.footprint(ddf, TICK, 1.0, symbol="btcusdt"), footprint(df, TICK, 1.0))


def test_clear_errors(df):
    backwards = dd.from_map(_slice, [(df, 40_000, len(df)), (df, 0, 40_000)], meta=df.iloc[:0])
    for fn in (cd.footprint, cd.recency_profile):
        with pytest.raises(ValueError, match="not in time order"):
            fn(backwards, TICK, 1.0)
    with pytest.raises(ValueError, match="not in time order"):
        cd.candles(backwards)
    ddf = cut(df, [10_000])
    late = int(df["time"].max()) + 10
    with pytest.raises(ValueError, match="no trades in range"):
        cd.volume_profile(ddf, TICK, 1.0, start=late, end=late + 1000)
    with pytest.raises(ValueError, match="no trades in range"):
        cd.footprint(ddf, TICK, 1.0, start=late, end=late + 1000)
    with pytest.raises(ValueError, match="whole number of ticks"):
        cd.volume_profile(ddf, TICK, 0.015)
    with pytest.raises(ValueError, match="kind"):
        cd.profile(ddf, "vwap", TICK, 1.0)
    with pytest.raises(ValueError, match="agg"):
        cd.heatmap(ddf, agg="mean")
