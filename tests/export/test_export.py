"""export: tables round-trip through CSV and Parquet exactly; charts become real PNGs (Chromium)."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from bokeh.plotting import figure
from PIL import Image

import export
from compute.candles import candles
from compute.footprint import footprint
from compute.levels import developing_levels
from compute.profile import volume_profile
from compute.split import split_profile
from compute.timeweighted import recency_profile, tpo_profile
from feeds.history import load_history
from tests.conftest import chromium_path


@pytest.fixture(scope="module")
def df(recording_path) -> pd.DataFrame:
    return load_history(recording_path, progress=False)


@pytest.fixture(scope="module")
def results(df) -> dict:
    first_hours = df[df["time"] < df["time"].iloc[0] + 2 * 3_600_000]
    return {
        "volume": volume_profile(df, 0.01, 1.0),
        "recency": recency_profile(df, 0.01, 1.0, half_life_s=600),  # mean_time has NaN rows
        "tpo": tpo_profile(df, 0.01, 1.0),
        "split": split_profile(df, 0.01, 0.5),
        "developing": developing_levels(df, 0.01, 1.0),
        "footprint": footprint(first_hours, 0.01, 1.0),
        "candles": candles(df),
    }


@pytest.mark.parametrize("name", ["volume", "recency", "tpo", "split", "developing", "footprint", "candles"])
def test_every_table_round_trips_exactly_through_csv_and_parquet(tmp_path, results, name):
    obj = results[name]
    paths = export.export_all(obj, tmp_path, name)
    assert set(paths) == {f"{t}.{f}" for t in export.tables(obj) for f in ("csv", "parquet")}
    for table, want in export.tables(obj).items():
        for fmt in ("csv", "parquet"):
            back = export.read_table(paths[f"{table}.{fmt}"])
            pd.testing.assert_frame_equal(back, want.reset_index(drop=True), check_exact=True)
    # Parquet keeps the summary: the same POC/VAH/VAL and totals as the object
    back = export.read_table(paths[f"{next(iter(export.tables(obj)))}.parquet"])
    if name != "candles":
        meta = back.attrs["flowlens"]
        assert meta == json.loads(json.dumps(export.summary(obj))) | {"table": meta["table"]}
        for k in ("poc", "vah", "val"):
            if k in meta:
                want = obj.summary[k] if name == "footprint" else getattr(getattr(obj, "profile", obj), k)
                assert meta[k] == want


def test_csv_text_is_plain_and_readable_without_flowlens(tmp_path, results):
    p = export.to_csv(results["volume"], tmp_path / "vp.csv")
    text = p.read_text().splitlines()
    assert text[0] == "price_low,price_high,volume,buy,sell,delta,trades"
    plain = pd.read_csv(p)
    assert plain["volume"].sum() == pytest.approx(results["volume"].total_volume, rel=1e-12)
    assert len(plain) == results["volume"].rows


def test_bytes_for_a_download_button_equal_the_files(tmp_path, results):
    fp = results["footprint"]
    assert export.table_bytes(fp, "csv", "candles") == export.to_csv(fp, tmp_path / "c.csv", "candles").read_bytes()
    back = pd.read_parquet(io.BytesIO(export.table_bytes(fp, "parquet", "cells")))
    pd.testing.assert_frame_equal(back, fp.cells, check_exact=True)


def test_bad_requests_are_clear(tmp_path, results):
    with pytest.raises(ValueError, match="no table 'cells'"):
        export.to_csv(results["volume"], tmp_path / "x.csv", part="cells")
    with pytest.raises(ValueError, match="unknown table format"):
        export.export(results["volume"], tmp_path / "x.xlsx")
    with pytest.raises(TypeError, match="cannot export"):
        export.tables([1, 2, 3])
    with pytest.raises(TypeError, match="cannot render"):
        export.png_bytes(object())


def _candle_figure(c: pd.DataFrame):
    up = (c["close"] >= c["open"]).to_numpy()
    p = figure(x_axis_type="datetime", width=900, height=450, title="BTCUSDT 2020-02-22, 5-minute candles",
               background_fill_color="#ffffff")
    t = c["time"].to_numpy() + 150_000
    p.segment(t, c["high"], t, c["low"], color="#444444")
    for mask, colour in ((up, "#26a69a"), (~up, "#ef5350")):
        p.vbar(t[mask], 200_000, c["open"][mask], c["close"][mask], fill_color=colour, line_color=colour)
    return p


def test_png_of_a_bokeh_chart_is_a_real_image_of_the_requested_size(tmp_path, df):
    chromium_path()
    c = candles(df, 300_000)
    path = export.to_png(_candle_figure(c), tmp_path / "candles.png", width=900, height=450)
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(path).convert("RGB")
    assert img.size == (900, 450)
    assert 15_000 < len(raw) < 2_000_000
    px = np.asarray(img).reshape(-1, 3)
    colours = {tuple(x) for x in px[:: 7]}
    assert (0x26, 0xA6, 0x9A) in colours and (0xEF, 0x53, 0x50) in colours  # the candles were drawn
    assert len(colours) > 50


def test_png_of_the_dashboard_price_chart(tmp_path, df):
    chromium_path()
    from dashboard.chart import PriceChart

    chart = PriceChart(interval_ms=300_000, theme="dark")
    c = candles(df, 300_000)
    chart.set_candles(c)
    chart.set_volume_scale(float(c["volume"].max()))
    chart.set_ranges(float(c["time"].iloc[0]), float(c["time"].iloc[-1]), float(c["low"].min()),
                     float(c["high"].max()))
    png = export.png_bytes(chart, width=800, height=500)
    img = Image.open(io.BytesIO(png)).convert("RGB")
    assert img.size == (800, 500)
    up = chart.theme["up"].lstrip("#")
    colours = {tuple(x) for x in np.asarray(img).reshape(-1, 3)[:: 5]}
    assert tuple(int(up[i : i + 2], 16) for i in (0, 2, 4)) in colours
