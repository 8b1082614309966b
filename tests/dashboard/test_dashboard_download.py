"""The dashboard's download buttons (issue 7 item 5): the files a user gets equal the compute functions' results.

A :class:`dashboard.app.Dashboard` is refreshed on the bundled real recording (BTCUSDT
2020-02-22) exactly as the server does it; each ``FileDownload`` callback is then
called as Panel calls it on a click, and its bytes are read back with pandas/pyarrow
(CSV, Parquet) or PIL (PNG). Expected values are computed independently with
:func:`compute.profile.volume_profile`, :func:`compute.footprint.footprint` and
:func:`compute.candles.candles` on the recording's trades of the range the file names.
The browser test (a click in Chromium on the served page) is in test_dashboard_browser.py.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import RECORDING, chromium_path
from PIL import Image
from test_dashboard_components import LocalView, Registry, snapshot

from compute.candles import candles as make_candles
from compute.footprint import footprint
from compute.profile import volume_profile
from dashboard import fmt
from dashboard.app import Dashboard
from dashboard.download import BUTTONS, PNG_SIZE, NothingToDownload
from dashboard.settings import DashboardSettings
from feeds.readers import read_trades

TICK = 0.01
LEVEL_COLUMNS = ["price_low", "price_high", "volume", "buy", "sell", "delta", "trades"]


@pytest.fixture(scope="module")
def trades():
    return read_trades(RECORDING)


async def page(trades, **settings) -> Dashboard:
    """A refreshed session over the first 90 minutes of the recording, with its sidebar built."""
    dash = Dashboard(Registry(LocalView(snapshot(trades, 90))), DashboardSettings(**settings), symbols=["BTCUSDT"])
    dash.controls()
    await dash.refresh()
    return dash


async def click(dash, key: str, fmt: str = "CSV") -> tuple[bytes, str]:
    """What a click on button ``key`` sends: (bytes, filename)."""
    dash.downloads.format.value = fmt
    button = dash.downloads.buttons[key]
    data = (await button.callback()).getvalue()
    return data, button.filename


def read(data: bytes, fmt: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data)) if fmt == "CSV" else pq.read_table(io.BytesIO(data)).to_pandas()


def test_the_sidebar_has_the_format_choice_and_one_button_per_file(trades):
    dash = Dashboard(Registry(LocalView(snapshot(trades, 5))), DashboardSettings(), symbols=["BTCUSDT"])
    side = dash.controls()
    labels = [w.label for w in side.select(pn_file_download())]
    assert labels == list(BUTTONS.values())
    assert dash.downloads.format.options == ["CSV", "Parquet"]


def pn_file_download():
    import panel as pn

    return pn.widgets.FileDownload


async def test_nothing_to_download_before_the_first_refresh_shows_a_message(trades):
    dash = Dashboard(Registry(LocalView(snapshot(trades, 5))), DashboardSettings(), symbols=["BTCUSDT"])
    dash.controls()
    with pytest.raises(NothingToDownload):
        await click(dash, "levels")
    assert dash.message_box.visible and "nothing to download yet" in dash.message.object


@pytest.mark.parametrize("fmt", ["CSV", "Parquet"])
async def test_profile_levels_and_key_levels_equal_volume_profile_of_the_same_trades(trades, fmt):
    dash = await page(trades, window_minutes=60, value_area=0.7, percentiles=[0.25, 0.5, 0.75])
    data, name = await click(dash, "levels", fmt)
    got = read(data, fmt)
    assert list(got.columns) == LEVEL_COLUMNS
    # the range and row size the page used: the visible window (LocalView: not quantized) and the rows' height
    start, end = dash.visible_range[0], int(trades.time_slice(None, int(trades.time[0]) + 90 * 60_000).time[-1]) + 1
    assert name == f"flowlens-BTCUSDT-levels-{stamp(start)}-{stamp(end)}.{fmt.lower()}"
    row_size = round(float(got["price_high"].iloc[0] - got["price_low"].iloc[0]), 2)
    tr = trades.time_slice(start, end)
    want = volume_profile(tr, TICK, row_size, value_area=0.7, percentiles=(0.25, 0.5, 0.75))
    pd.testing.assert_frame_equal(got, want.levels, check_exact=True)
    # sums over the rows = sums over the trades; the POC row is the row of most volume
    assert got["volume"].sum() == pytest.approx(float(tr.qty.sum()), abs=1e-6)
    assert got["buy"].sum() == pytest.approx(float(tr.qty[~tr.is_buyer_maker].sum()), abs=1e-6)
    assert int(got["trades"].sum()) == len(tr)
    poc = got.loc[got["volume"].idxmax()]
    assert (poc["price_low"] + poc["price_high"]) / 2 == pytest.approx(want.poc, abs=1e-9)
    if fmt == "Parquet":  # the file carries the summary too, and what it was computed from
        from compute.coverage import coverage

        meta = pd.read_parquet(io.BytesIO(data)).attrs["flowlens"]
        assert (meta["poc"], meta["vah"], meta["val"], meta["start"], meta["end"]) == (
            want.poc, want.vah, want.val, start, end)
        assert meta["coverage"] == coverage(tr).to_dict() and meta["coverage"]["trades"] == len(tr)
    data, name = await click(dash, "key_levels", fmt)
    lv = read(data, fmt)
    assert name.startswith("flowlens-BTCUSDT-key-levels-")
    assert list(lv["level"]) == ["POC", "VAH", "VAL", "P25", "P50", "P75"]
    assert list(lv["price"]) == [want.poc, want.vah, want.val, *(want.percentiles[p] for p in (0.25, 0.5, 0.75))]
    assert list(lv["fraction"].iloc[1:]) == [0.7, 0.7, 0.25, 0.5, 0.75]


def stamp(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y%m%dT%H%M%S")


@pytest.mark.parametrize("view", ["chart", "footprint"])
async def test_footprint_cells_and_candles_equal_the_compute_functions_on_the_same_trades(trades, view):
    dash = await page(trades, window_minutes=30, interval="5m", view=view, footprint_candles=6)
    w0, w1 = dash.visible_range
    end = int(trades.time_slice(None, int(trades.time[0]) + 90 * 60_000).time[-1]) + 1
    tr = trades.time_slice(w0, min(w1, end))
    data, name = await click(dash, "footprint", "Parquet")
    cells = read(data, "Parquet")
    assert name.startswith("flowlens-BTCUSDT-footprint-") and name.endswith(".parquet")
    row_size = round(float(cells["price_high"].iloc[0] - cells["price_low"].iloc[0]), 2)
    want = footprint(tr, TICK, row_size, interval_ms=300_000, imbalance_ratio=dash.settings.imbalance_ratio,
                     stacked_min=dash.settings.stacked_min)
    pd.testing.assert_frame_equal(cells, want.cells, check_exact=True)
    assert cells["volume"].sum() == pytest.approx(float(tr.qty.sum()), abs=1e-6)
    data, name = await click(dash, "candles", "CSV")
    got = read(data, "CSV")
    assert name == f"flowlens-BTCUSDT-candles-{stamp(w0)}-{stamp(w1)}.csv"
    want_c = make_candles(tr, 300_000)
    assert len(got) == len(want_c) >= 5
    for c in ("time", "open", "high", "low", "close", "trades"):
        np.testing.assert_array_equal(got[c].to_numpy(), want_c[c].to_numpy())
    for c in ("volume", "buy_volume", "sell_volume"):
        np.testing.assert_allclose(got[c].to_numpy(), want_c[c].to_numpy(), rtol=0, atol=1e-6)


async def test_png_without_the_export_extra_says_which_extra_and_sends_nothing(trades, monkeypatch):
    """``make serve`` installs no Playwright: the PNG button names the extra that brings it (issue 19)."""
    dash = await page(trades, window_minutes=30)
    monkeypatch.setitem(sys.modules, "playwright", None)  # as if not installed
    with pytest.raises(NothingToDownload):
        await click(dash, "png")
    assert "pip install -e" in dash.message.object and "[export]" in dash.message.object
    monkeypatch.undo()
    assert (await dash.downloads.buttons["levels"].callback()).getvalue()  # the tables still download


async def test_chart_png_is_a_real_image_of_the_drawn_chart(trades):
    chromium_path()
    dash = await page(trades, window_minutes=60, dim_candles=False)  # candles in their exact colours
    data, name = await click(dash, "png")
    assert name.startswith("flowlens-BTCUSDT-chart-") and name.endswith(".png")
    img = Image.open(io.BytesIO(data)).convert("RGB")
    assert img.size == PNG_SIZE
    colours = {tuple(x) for x in np.asarray(img).reshape(-1, 3)[::3]}
    for key in ("up", "down"):  # the candles were drawn in the theme's colours
        hexa = dash.chart.theme[key].lstrip("#")
        assert tuple(int(hexa[i : i + 2], 16) for i in (0, 2, 4)) in colours, key
    assert len(colours) > 50
    # issue 15 item 5: what the screen shows (profile pinned at the right), no toolbar, a title stamp
    from dashboard.download import _standalone_copy, for_export, stamp_text

    plan = dash.shown_plan()
    stamp = stamp_text(plan, "BTCUSDT")
    assert stamp.startswith("BTCUSDT · ") and fmt.utc(plan.range[0], False) in stamp and " UTC" in stamp
    copy = _standalone_copy(dash.chart.figure)
    for_export(copy, stamp)
    assert copy.toolbar_location is None and copy.select_one({"name": "export_stamp"}).text == stamp
    buy = np.array([int(dash.chart.theme["buy"].lstrip("#")[i : i + 2], 16) for i in (0, 2, 4)])
    px = np.asarray(img).astype(int)
    near = np.abs(px - buy).sum(axis=2) < 40  # the profile's buy bars (and up candles) by column
    cols = np.flatnonzero(near.sum(axis=0) > 40)
    assert cols.max() > PNG_SIZE[0] * 0.85  # bars at the right edge, drawn over the last candles
    out = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots" / "issue15"
    out.mkdir(parents=True, exist_ok=True)
    (out / "export-chart.png").write_bytes(data)


async def test_open_in_jupyter_gives_a_cell_with_the_query_and_the_hash_of_the_views_trades(trades):
    from compute.coverage import coverage

    dash = await page(trades, window_minutes=60, value_area=0.68)
    assert not dash.downloads.jupyter_code.visible
    code = dash.downloads.open_in_jupyter()
    plan = dash.shown_plan()
    want = coverage(trades.time_slice(*plan.range))
    assert want.sha256 in code and dash.downloads.jupyter_code.value == code and dash.downloads.jupyter_code.visible
    assert f"start={plan.range[0]}, end={plan.range[1]}" in code and "value_area=0.68" in code
    assert f"(res.poc, res.vah, res.val) == ({plan.res.poc!r}, {plan.res.vah!r}, {plan.res.val!r})" in code
    assert "REDIS_URL" in code and "redis://" not in code  # never a URL (or its password) on the page
    compile(code, "cell", "exec")  # tests/dashboard/test_jupyter_cell.py runs such cells against a real Redis
