"""The dashboard's parts without a browser: settings from the URL, labels, display columns and one session's refresh.

Data is the bundled real recording (BTCUSDT 2020-02-22). Expected values come from
the compute functions called directly on the recording's trades (not through the
page or the view's cache), or are known answers written in the issue. The
session tests drive :class:`dashboard.app.Dashboard` exactly as the server does
(``await refresh()``), against a real :class:`engine.view.SymbolView` on a real
Valkey (shared results through ``compute_async``) and against a process-local view.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import orjson
import pandas as pd
import pytest
from conftest import RECORDING

from compute.candles import candles as make_candles
from compute.candles import resample as resample_candles
from compute.footprint import footprint
from compute.kinds import KINDS
from compute.profile import volume_profile
from compute.split import split_profile
from compute.timeweighted import recency_profile, tpo_profile
from dashboard import fmt
from dashboard.app import Dashboard, warm_up
from dashboard.data import liquidations_view, tape_rows
from dashboard.panels import LIQUIDATION_NOTE, liquidations_html, tape_html
from dashboard.profile_layer import profile_columns
from dashboard.settings import MODES, DashboardSettings, parse_query, query_of
from dashboard.status import status_html
from dashboard.theme import delta_palette
from engine.view import Snapshot
from feeds.decode import FrameDecoder
from feeds.readers import read_trades

LIQ_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dashboard_liquidations_at_real_trade_prices.jsonl"
TICK = 0.01


@pytest.fixture(scope="module")
def trades():
    return read_trades(RECORDING)


@dataclasses.dataclass(frozen=True)
class LiqSnapshot(Snapshot):
    """A snapshot with the ``liquidations`` field the lead is adding to engine.view.Snapshot."""

    liquidations: pd.DataFrame | None = None


def snapshot(trades, minutes: int, version: int = 1, liquidations=None, meta=None) -> Snapshot:
    t0 = int(trades.time[0])
    tr = trades.time_slice(None, t0 + minutes * 60_000)
    m = {"source": "REPLAY BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz at 10x", "tick": "0.01", "tps": "12.5",
         "last_trade_time": str(int(tr.time[-1])), "heartbeat": str(int(time.time() * 1000))}
    m.update(meta or {})
    return LiqSnapshot("BTCUSDT", tr, make_candles(tr), m, version, liquidations=liquidations)


class LocalView:
    """A process-local view over one snapshot: ``compute`` runs the view's own kind functions."""

    def __init__(self, snap):
        self.snapshot = snap
        self.calls = []

    def coverage(self, start, end, snapshot=None, digest=True):
        from compute.coverage import coverage

        return coverage((snapshot or self.snapshot).trades.time_slice(start, end), digest)

    def compute(self, kind, start, end, snapshot=None, **params):
        snap = snapshot or self.snapshot
        self.calls.append(kind)
        tr = snap.trades.time_slice(start, end)
        return KINDS[kind].compute(tr, snap.tick, int(start), int(end), **params) if len(tr) else None


class Registry:
    def __init__(self, view):
        self.views = {"BTCUSDT": view}

    def get(self, symbol):
        return self.views[symbol.upper()]


def summary_attrs(dash) -> dict:
    m = re.search(r'<span class="fl-profile[^"]*"([^>]*)>', dash.summary.object)
    assert m, dash.summary.object
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', m.group(1)))


def liquidation_frame():
    dec = FrameDecoder()
    for line in LIQ_FIXTURE.read_text().splitlines():
        assert dec.feed(line) == "forceOrder"
    return dec.flush().liquidations_df()


# -- settings from the URL ------------------------------------------------------------------
def test_url_values_set_settings_and_hostile_ones_are_refused():
    args = {
        "symbol": [b"btcusdt"], "mode": [b"HEATMAP"], "row_ticks": [b"50"], "va": [b"0.8"], "theme": [b"light"],
        "embed": [b"1"], "view": [b"footprint"], "pct": [b"0.1,0.9"], "interval": [b"15m"],
        "bokeh-absolute-url": [b"http://x/"],
    }
    values, messages = parse_query(args, ["BTCUSDT", "ETHUSDT"])
    assert messages == []
    assert values == {"symbol": "BTCUSDT", "mode": "heatmap", "row_ticks": 50, "value_area": 0.8, "theme": "light",
                      "embed": True, "view": "footprint", "percentiles": [0.1, 0.9], "interval": "15m"}

    hostile = {
        "symbol": [b"<script>window.__pwned=1</script>"], "va": [b"7"], "row_ticks": [b"-5"],
        "mode": [b'<img src=x onerror="alert(1)">'], "half_life": [b"nan"], "update_ms": [b"1e9"],
        "pct": [b"0.5,2"], "follow": [b"maybe"], "x<b>": [b"1"],
    }
    base = DashboardSettings(symbol="BTCUSDT")
    values, messages = parse_query(hostile, ["BTCUSDT"], base)
    assert values == {}
    text = "\n".join(messages)
    for name in ("symbol=", "va=", "row_ticks=", "mode=", "half_life=", "update_ms=", "pct=", "follow=", "'x<b>'"):
        assert name in text, name
    assert "allowed 0.5 to 0.95" in text and "using 0.7" in text
    # an unknown but well-formed symbol is refused with the ingested set named
    values, messages = parse_query({"symbol": [b"ETHUSDT"]}, ["BTCUSDT"], base)
    assert values == {} and "not an ingested symbol (ingested: BTCUSDT)" in messages[0]


def test_fixed_window_from_url_turns_following_off():
    values, messages = parse_query({"from": [b"2020-02-22T00:00"], "to": [b"1582331400000"]})
    assert messages == []
    assert values == {"range_start": 1582329600000, "range_end": 1582331400000, "follow": False}
    values, messages = parse_query({"from": [b"1582331400000"], "to": [b"1582329600000"]})
    assert values == {} and "before" in messages[0]


def test_query_of_round_trips():
    s = DashboardSettings(mode="split", row_ticks=25, value_area=0.68, percentiles=[0.1, 0.5], follow=False,
                          heatmap=True, view="footprint", interval="1h", tape_min_size=0.5,
                          liq_min_notional=1234567.0, highlight=(45135.25, 45135.5))
    q = query_of(s)
    assert q["liq_min"] == "1234567" and q["hl"] == "45135.25,45135.5"  # numbers are never rounded
    values, messages = parse_query({k: [v] for k, v in q.items()})
    assert messages == []
    again = DashboardSettings(**values)
    for name in DashboardSettings.param:
        if name != "name":
            assert getattr(again, name) == getattr(s, name), name


def test_the_url_holds_the_visible_range_and_the_highlighted_row():
    s = DashboardSettings(follow=False, window_minutes=60)
    q = query_of(s, None, (1582329600000.4, 1582331400000))  # a panned chart's x range
    assert q == {"follow": "0", "window": "60", "from": "1582329600000", "to": "1582331400000"}
    values, _ = parse_query({k: [v] for k, v in q.items()})
    assert (values["range_start"], values["range_end"], values["follow"]) == (1582329600000, 1582331400000, False)
    assert "from" not in query_of(DashboardSettings(), None, (1582329600000, 1582331400000))  # following: no range
    assert "from" not in query_of(s, None, (0, 1))  # a range the URL would refuse is left out
    # longer than the API's longest range: its start moves up so that the link still opens
    q = query_of(s, None, (1582329600000 - 30 * 86_400_000, 1582331400000))
    assert parse_query({k: [v] for k, v in q.items()})[1] == []
    for bad in ("1,x", "2,1", "1", "1,2,3", "nan,1"):
        values, messages = parse_query({"hl": [bad]})
        assert values == {} and messages[0].startswith(f"hl={bad!r} refused"), messages


# -- labels (known answers from the issue text) ---------------------------------------------
def test_label_formats_are_the_issues():
    assert fmt.poc_label(45135.0, 1.2e6, 15_000, 0.01) == "POC 45,135.00 | Vol 1.2M | Δ +15K"
    assert fmt.va_edge_label("VAH", 45150.0, 0.7, 0.01) == "VAH 45,150.00 (70 %)"
    assert fmt.va_summary(45150.0, 45115.0, 820_000, 0.01) == "VA 35.00 wide | 820K"
    assert fmt.percentile_label(0.25, 9680.0, 0.01) == "P25 9,680.00"
    assert fmt.volume(-1234.0) == "-1.23K" and fmt.volume(0.5) == "0.5"


# -- data transforms --------------------------------------------------------------------------
def test_resampled_candles_equal_candles_built_from_the_trades(trades):
    one = make_candles(trades)
    for iv in (300_000, 900_000, 3_600_000):
        got = resample_candles(one, iv)
        want = make_candles(trades, iv)
        assert len(got) == len(want)
        for c in ("time", "open", "high", "low", "close", "trades"):
            np.testing.assert_array_equal(got[c].to_numpy(), want[c].to_numpy(), err_msg=c)
        for c in ("volume", "buy_volume", "sell_volume"):
            np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), rtol=1e-12, err_msg=c)


def test_tape_is_the_latest_trades_at_or_above_the_minimum_size(trades):
    df = trades.to_frame()
    for min_size in (0.0, 1.0, 20.0):
        rows = tape_rows(trades, min_size, n=30)
        want = df[df["qty"] >= min_size].tail(30).iloc[::-1] if min_size else df.tail(30).iloc[::-1]
        np.testing.assert_array_equal(rows["time"], want["time"].to_numpy())
        np.testing.assert_array_equal(rows["qty"], want["qty"].to_numpy())
        np.testing.assert_array_equal(rows["side"] == "sell", want["is_buyer_maker"].to_numpy())
    html_ = tape_html(tape_rows(trades, 1.0, n=5), TICK, "dark", 1.0)
    assert html_.count("<tr") == 6 and "≥ 1" in html_


def test_liquidation_fixture_frames_sit_on_real_trades(trades):
    df = trades.to_frame()
    key = {(int(t), round(p, 2), round(q, 3), bool(m)) for t, p, q, m in
           zip(df["time"], df["price"], df["qty"], df["is_buyer_maker"], strict=True)}
    lines = LIQ_FIXTURE.read_text().splitlines()
    assert len(lines) == 40
    for line in lines:
        f = orjson.loads(line)
        o = f["data"]["o"]
        assert f["stream"] == "btcusdt@forceOrder" and f["data"]["e"] == "forceOrder"
        assert (int(o["T"]), float(o["ap"]), float(o["z"]), o["S"] == "SELL") in key


def test_liquidations_view_filters_and_sides():
    liq = liquidation_frame()
    frames = [orjson.loads(x)["data"]["o"] for x in LIQ_FIXTURE.read_text().splitlines()]
    notional = [float(o["ap"]) * float(o["z"]) for o in frames]
    lv = liquidations_view(liq, "BTCUSDT")
    assert len(lv) == 40
    np.testing.assert_allclose(lv["notional"].to_numpy(), notional)
    assert (lv["kind"] == "long liquidated").sum() == sum(o["S"] == "SELL" for o in frames)
    threshold = sorted(notional)[30]
    assert len(liquidations_view(liq, "BTCUSDT", min_notional=threshold)) == sum(n >= threshold for n in notional)
    t = sorted(int(o["T"]) for o in frames)
    assert len(liquidations_view(liq, "BTCUSDT", t[5], t[10])) == 5
    assert len(liquidations_view(liq, "ETHUSDT")) == 0
    assert len(liquidations_view(None, "BTCUSDT")) == 0
    page = liquidations_html(lv, TICK, "dark", 0.0)
    assert html.escape(LIQUIDATION_NOTE) in page and "▼ long" in page and "▲ short" in page
    assert page.count("<tr>") == 1 + 25  # header + the 25 newest


# -- status bar -------------------------------------------------------------------------------
def _snap(meta, redis_ok=True, stale_since=None, rtt=0.4):
    return SimpleNamespace(meta=meta, redis_ok=redis_ok, stale_since=stale_since, redis_rtt_ms=rtt if redis_ok else None)


def test_status_bar_live_streams_lag_and_staleness():
    now = 1_700_000_000.0
    streams = json.dumps([
        {"stream": "btcusdt@aggTrade", "connected": True, "lag_ms": 120, "reconnects": 2, "gaps_filled": 1,
         "gaps_unfilled": 0},
        {"stream": "btcusdt@forceOrder", "connected": False, "lag_ms": None, "reconnects": 0, "gaps_filled": 0,
         "gaps_unfilled": 3},
    ])
    meta = {"source": "LIVE usdm BTCUSDT", "tps": "42.5", "last_trade_time": str(int(now * 1000) - 1500),
            "heartbeat": str(int(now * 1000) - 200), "streams": streams}
    raw = status_html(_snap(meta), "dark", now=now)
    text = re.sub(r"<[^>]+>", "", raw)
    assert text.startswith("LIVE usdm BTCUSDT · 42.5 trades/s · last trade ")  # the reason is in the tooltip
    assert 'title="LIVE usdm BTCUSDT\nlive Binance WebSocket feed"' in raw
    assert "lag 1.5 s" in text and "42.5 trades/s" in text and "Redis OK (0.4 ms)" in text
    assert "btcusdt@aggTrade connected lag 120 ms 2 reconnects gaps 1 filled / 0 unfilled" in text
    assert "btcusdt@forceOrder disconnected gaps 0 filled / 3 unfilled" in text
    assert "stale" not in text
    # heartbeat older than 5 s -> stale since its wall-clock time
    meta["heartbeat"] = str(int((now - 30) * 1000))
    text = re.sub(r"<[^>]+>", "", status_html(_snap(meta), "dark", now=now))
    assert f"stale since {fmt.clock(now - 30)}" in text
    # Redis down
    text = re.sub(r"<[^>]+>", "", status_html(_snap(meta, False, now - 12), "dark", now=now))
    assert f"Redis unreachable · stale since {fmt.clock(now - 12)}" in text
    # malformed stream status and markup in the source are shown as text
    meta.update(streams="{not json", source="REPLAY <img src=x onerror=alert(1)>.csv at 10x")
    raw = status_html(_snap(meta), "dark", now=now)
    assert "<img" not in raw and "&lt;img src=x onerror=alert(1)&gt;" in raw and "stream status unreadable" in raw
    assert re.sub(r"<[^>]+>", "", raw).startswith("REPLAY &lt;img")


def test_status_line_says_the_fallback_reason_once_and_short():
    """The live fallback's note (a long DNS error) is one short reason on the line, the whole of it in a tooltip."""
    now = 1_700_000_000.0
    note = ("Binance unreachable at start-up: ClientConnectorDNSError: Cannot connect to host x.invalid:80 "
            "ssl:default [Name or service not known]")
    meta = {"source": f"REPLAY BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz at 600x — {note}", "reason": note,
            "tps": "1761.4", "last_trade_time": "1582351969675"}
    raw = status_html(_snap(meta), "dark", now=now)
    text = re.sub(r"<[^>]+>", "", raw)
    assert text == ("REPLAY Binance unreachable at start-up · 1,761.4 trades/s · last trade 06:12:49 UTC · "
                    "Redis OK (0.4 ms)")
    assert text.count("Binance unreachable") == 1 and "\n" not in text
    # the whole story (the recording replayed and the full error) is in the reason's tooltip, said once
    tip = re.search(r'class="fl-src" title="([^"]*)"', raw).group(1)
    assert tip == html.escape(f"REPLAY BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz at 600x\n{note}")
    assert 'title="last trade 2020-02-22 06:12:49.675 UTC"' in raw
    # a replay without a note names the recording; a very long reason is cut with an ellipsis
    text = re.sub(r"<[^>]+>", "", status_html(_snap({"source": "REPLAY rec.csv.gz at 10x"}), "dark", now=now))
    assert text.startswith("REPLAY rec.csv.gz at 10x · 0.0 trades/s · last trade —")
    raw = status_html(_snap({"source": "REPLAY x", "reason": "y" * 200}), "dark", now=now)
    assert ("y" * 55 + "…") in raw and ("y" * 200) in raw  # cut on the line, whole in the tooltip


# -- profile display columns ------------------------------------------------------------------
@pytest.mark.parametrize("mode", list(MODES))
def test_profile_columns_geometry(trades, mode):
    tr = trades.time_slice(int(trades.time[0]), int(trades.time[0]) + 3_600_000)
    kind = {"buysell": volume_profile, "delta": volume_profile, "heatmap": volume_profile,
            "recency": recency_profile, "tpo": tpo_profile, "split": split_profile}[mode]
    res = kind(tr, TICK, 0.5)
    width = 0.3
    prof, split = profile_columns(res, mode, width, "dark")
    n = res.rows
    assert all(len(v) == n for v in prof.values())
    a0, a1, b0, b1 = (np.asarray(prof[k]) for k in ("a0", "a1", "b0", "b1"))
    assert (a0 <= a1 + 1e-12).all() and (b0 <= b1 + 1e-12).all()
    assert a0.min() >= 1 - width - 1e-9 and max(a1.max(), b1.max()) <= 1 + 1e-9
    vol = np.asarray(res.volume)
    if mode == "buysell":  # buy + sell bars add up to the row's volume, the largest row spans the width
        np.testing.assert_allclose((a1 - a0) + (b1 - b0), vol / vol.max() * width)
        np.testing.assert_allclose(b1 - b0, np.asarray(res.sell) / vol.max() * width)
        np.testing.assert_array_equal(prof["a1_buy"], a1)  # buys hatched /, sells \\
        np.testing.assert_array_equal(prof["b1_sell"], b1)
        np.testing.assert_array_equal(prof["a1_sell"], a0)
        np.testing.assert_array_equal(prof["b1_buy"], b0)
    elif mode == "split":  # halves mirrored around the centre of the profile area
        c = 1 - width / 2
        np.testing.assert_allclose(a1, c)
        np.testing.assert_allclose(b0, c)
        fv, sv = np.asarray(res.columns["first_volume"]), np.asarray(res.columns["second_volume"])
        m = max(fv.max(), sv.max())
        np.testing.assert_allclose(c - a0, fv / m * width / 2)
        np.testing.assert_allclose(b1 - c, sv / m * width / 2)
        assert split["text"] == [f"1st POC {fmt.price(res.first.poc, TICK)}", f"2nd POC {fmt.price(res.second.poc, TICK)}"]
    else:
        measure = {"tpo": res.columns.get("tpo"), "recency": res.columns.get("weighted_volume")}.get(mode, vol)
        measure = np.asarray(measure, dtype=float)
        np.testing.assert_allclose(a1 - a0, measure / measure.max() * width)
        delta = np.asarray(res.delta)
        hatched_buy = np.asarray(prof["a1_buy"]) > a0  # single bars hatched by the row's dominant side
        hatched_sell = np.asarray(prof["a1_sell"]) > a0
        np.testing.assert_array_equal(hatched_buy, (delta > 0) & (a1 > a0))
        np.testing.assert_array_equal(hatched_sell, (delta < 0) & (a1 > a0))
    if mode == "delta":  # the row with the largest |delta| takes the full buy (green) or sell (red) colour
        i = int(np.argmax(np.abs(res.delta)))
        assert prof["ca"][i] == ("#26a69a" if res.delta[i] > 0 else "#ef5350")
        pal = list(delta_palette("dark"))  # red (selling) ... neutral ... green (buying)
        idx = np.array([pal.index(c) for c in prof["ca"]])
        assert (idx[res.delta > 0] >= 128).all() and (idx[res.delta < 0] <= 128).all()
        order = np.argsort(res.delta, kind="stable")
        assert (np.diff(idx[order]) >= 0).all()  # stronger delta, stronger colour
    if mode == "heatmap":
        assert prof["ca"][int(np.argmax(vol))] == "#ff0000"
    inside = np.arange(n)
    inside = (inside >= res.va_lo) & (inside <= res.va_hi)
    np.testing.assert_array_equal(np.asarray(prof["alpha"]) > 0.5, inside)


# -- one session ------------------------------------------------------------------------------
def expected_profile(mode, tr, row_size):
    fn = {"buysell": volume_profile, "delta": volume_profile, "heatmap": volume_profile, "recency": recency_profile,
          "tpo": tpo_profile, "split": split_profile}[mode]
    return fn(tr, TICK, row_size)


@pytest.mark.parametrize("mode", list(MODES))
async def test_session_draws_each_mode_like_compute(trades, mode):
    snap = snapshot(trades, 90)
    dash = Dashboard(Registry(LocalView(snap)), DashboardSettings(mode=mode, heatmap=True), symbols=["BTCUSDT"])
    await dash.refresh()
    assert "display error" not in dash.status.object
    a = summary_attrs(dash)
    assert a["mode"] == mode
    start, end, row = int(a["from"]), int(a["to"]), float(a["row-size"])
    assert start == int(trades.time[0]) // 60_000 * 60_000 and end == int(snap.trades.time[-1]) + 1
    want = expected_profile(mode, trades.time_slice(start, end), row)
    d = dash.profile.source.data
    assert len(d["y"]) == want.rows
    np.testing.assert_allclose(d["volume"], want.volume)
    np.testing.assert_array_equal(d["trades"], want.trades_per_row)
    labels = {k: v.text for k, v in dash.chart.profile_parts["labels"].items()}
    p = want.poc_idx
    va_vol = float(np.sum(want.volume[want.va_lo : want.va_hi + 1]))
    va_text = fmt.va_summary(want.vah, want.val, va_vol, TICK)
    if mode == "tpo":  # a TPO profile names TPO counts (issue 15 item 3), and its rows carry the period letters
        tpo = np.asarray(want.columns["tpo"])
        assert labels["poc"] == f"POC {fmt.price(want.poc, TICK)} | TPO {int(tpo[p])}"
        va_text += f" | TPO {int(tpo[want.va_lo : want.va_hi + 1].sum())} of {int(tpo.sum())}"
        assert [len(x) for x in d["letters"]] == tpo.tolist()
        from dashboard.profile_bars import TPO_LETTERS

        order = [[TPO_LETTERS.index(c) for c in x] for x in d["letters"]]  # each row's periods in time order
        assert all(o == sorted(set(o)) for o in order) and min(o[0] for o in order if o) == 0
        assert f"TPO {int(tpo[p])}" in dash.summary.object
    elif mode == "recency":  # the row chosen by its time-weighted volume says so
        wv = np.asarray(want.columns["weighted_volume"])
        assert wv[p] == wv.max()
        assert labels["poc"] == (f"POC {fmt.price(want.poc, TICK)} | wVol {fmt.volume(float(wv[p]))} | "
                                 f"Vol {fmt.volume(float(want.volume[p]))}")
        assert set(d["letters"]) == {""}
    else:
        assert labels["poc"] == fmt.poc_label(want.poc, want.volume[p], want.delta[p], TICK)
        assert set(d["letters"]) == {""}
    assert labels["vah"] == fmt.va_edge_label("VAH", want.vah, 0.7, TICK)
    assert labels["val"] == fmt.va_edge_label("VAL", want.val, 0.7, TICK)
    assert dash.chart.profile_parts["va"].text == va_text
    assert dash.profile.percentile_source.data["y"] == [want.percentiles[q] for q in (0.25, 0.5, 0.75)]
    pct = [lab.text for lab in dash.chart.profile_parts["pct_labels"] if lab.visible]
    assert pct == [fmt.percentile_label(q, want.percentiles[q], TICK) for q in (0.25, 0.5, 0.75)]
    # candles, developing levels and the heat-map behind them
    assert len(dash.chart.candles.data["t"]) == len(snap.candles)
    dev = dash.chart.developing.data
    assert len(dev["t"]) == len(snap.candles)  # one developing level per candle with trades
    assert dev["poc"][-1] == volume_profile(trades.time_slice(start, end), TICK, row).poc
    img = dash.chart.heat.data["image"][0]
    assert np.nansum(img) == pytest.approx(float(trades.time_slice(start, end).qty.sum()), rel=1e-9)


async def test_candle_interval_and_streaming(trades):
    view = LocalView(snapshot(trades, 30, version=1))
    dash = Dashboard(Registry(view), DashboardSettings(interval="5m"), symbols=["BTCUSDT"])
    await dash.refresh()
    want = make_candles(view.snapshot.trades, 300_000)
    c = dash.chart.candles.data
    np.testing.assert_array_equal(c["time"], want["time"].to_numpy(dtype=float))
    np.testing.assert_array_equal(c["close"], want["close"].to_numpy())
    # more data: the forming candle is patched, new ones streamed, the history kept
    view.snapshot = snapshot(trades, 47, version=2)
    await dash.refresh()
    want = make_candles(view.snapshot.trades, 300_000)
    c = dash.chart.candles.data
    np.testing.assert_array_equal(c["time"], want["time"].to_numpy(dtype=float))
    np.testing.assert_array_equal(c["high"], want["high"].to_numpy())
    np.testing.assert_allclose(c["volume"], want["volume"].to_numpy())


async def test_footprint_view_matches_compute(trades):
    snap = snapshot(trades, 45)
    dash = Dashboard(Registry(LocalView(snap)), DashboardSettings(view="footprint"), symbols=["BTCUSDT"])
    dash._show_view()
    await dash.refresh()
    a = summary_attrs(dash)
    start, end, row = int(a["from"]), int(a["to"]), float(a["row-size"])
    last_open = int(snap.trades.time[-1]) // 60_000 * 60_000
    assert start == last_open - 9 * 60_000  # the last 10 candles
    want = footprint(trades.time_slice(start, end), TICK, row, interval_ms=60_000, imbalance_ratio=3.0, stacked_min=3)
    fp = dash.footprint
    assert len(fp.cells.data["x"]) == len(want.cells) and len(fp.bars.data["x"]) == len(want.candles) == 10
    np.testing.assert_allclose(fp.cells.data["bid"], want.cells["bid"].to_numpy())
    imb = want.cells["buy_imbalance"].to_numpy() | want.cells["sell_imbalance"].to_numpy()
    assert [bool(t) for t in fp.cells.data["text_imb"]] == imb.tolist()  # imbalanced cells drawn bold
    np.testing.assert_array_equal(np.asarray(fp.cells.data["imb"]) == "buy",
                                  want.cells["buy_imbalance"].to_numpy() & ~want.cells["sell_imbalance"].to_numpy())
    assert fp.bars.data["delta_text"] == ["Δ " + fmt.volume(d, signed=True) for d in want.candles["delta"]]
    cvd = np.asarray(fp.cvd.data["cvd"])
    np.testing.assert_allclose(cvd[np.isfinite(cvd)], want.candles["cvd"].to_numpy())
    assert len(fp.stacks.data["x"]) == len(want.stacked)
    # the profile in this view covers the same candles on the footprint's rows
    assert len(dash.profile.source.data["y"]) == volume_profile(trades.time_slice(start, end), TICK, row).rows
    for mode in ("delta", "total"):
        dash.settings.footprint_mode = mode
        await dash.refresh()
        texts = [a or b for a, b in zip(fp.cells.data["text"], fp.cells.data["text_imb"], strict=True)]
        assert len(texts) == len(want.cells) and all(t for t in texts)
        if mode == "delta":
            assert all(t[0] in "+-0" for t in texts)


async def test_liquidation_markers_table_and_filter(trades):
    liq = liquidation_frame()
    snap = snapshot(trades, 12 * 60, liquidations=liq)
    dash = Dashboard(Registry(LocalView(snap)), DashboardSettings(window_minutes=720), symbols=["BTCUSDT"])
    await dash.refresh()
    start, end = dash.visible_range
    frames = [orjson.loads(x)["data"]["o"] for x in LIQ_FIXTURE.read_text().splitlines()]
    inside = [o for o in frames if start <= int(o["T"]) < int(summary_attrs(dash)["to"])]
    m = dash.chart.liquidations.data
    assert len(m["t"]) == len(inside) > 30
    assert sorted(m["price"]) == sorted(float(o["ap"]) for o in inside)
    longs = [c == dash.chart.theme["liq_long"] for c in m["colour"]]
    assert sum(longs) == sum(o["S"] == "SELL" for o in inside)
    # marker area proportional to notional (price x qty), clamped to a pixel range (issue 15 item 4)
    from dashboard.chart import LIQ_PX, LIQ_REF_PX, liquidation_reference

    notional, size = np.asarray(m["notional"]), np.asarray(m["size"])
    ref = liquidation_reference(float(notional.max()))
    assert ref <= notional.max() < 10 * ref and f"{ref:e}"[0] in "125"
    free = (size > LIQ_PX[0]) & (size < LIQ_PX[1])
    assert free.sum() >= 10
    np.testing.assert_allclose((size[free] / LIQ_REF_PX) ** 2, notional[free] / ref)
    assert size.min() >= LIQ_PX[0] and size.max() <= LIQ_PX[1]
    leg = dash.chart.liq_legend.data  # two reference sizes with their notionals
    assert leg["size"][1:] == [pytest.approx(LIQ_REF_PX * np.sqrt(0.1)), pytest.approx(LIQ_REF_PX)]
    assert leg["text"][1:] == [fmt.volume(ref / 10), fmt.volume(ref)]
    assert html.escape(LIQUIDATION_NOTE) in dash.liqs.object
    threshold = sorted(float(o["ap"]) * float(o["z"]) for o in inside)[-5]
    dash.settings.liq_min_notional = threshold
    await dash.refresh()
    assert len(dash.chart.liquidations.data["t"]) == 5
    # no liquidation data at all (a replay): nothing drawn, no error
    dash2 = Dashboard(Registry(LocalView(snapshot(trades, 30))), DashboardSettings(), symbols=["BTCUSDT"])
    await dash2.refresh()
    assert len(dash2.chart.liquidations.data["t"]) == 0 and "no liquidations" in dash2.liqs.object


async def test_click_on_profile_row_highlights_and_clears(trades):
    dash = Dashboard(Registry(LocalView(snapshot(trades, 60))), DashboardSettings(), symbols=["BTCUSDT"])
    await dash.refresh()
    xr = dash.chart.x_range
    d = dash.profile.source.data
    i = int(np.argmax(d["volume"]))
    x_profile = xr.start + (xr.end - xr.start) * 0.99
    y = d["y"][i]
    dash._on_tap(xr, SimpleNamespace(x=x_profile, y=y))
    assert dash.profile.highlight.data == {"y0": [d["price_low"][i]], "y1": [d["price_high"][i]]}
    dash._on_tap(xr, SimpleNamespace(x=x_profile, y=y))
    assert dash.profile.highlight.data == {"y0": [], "y1": []}
    dash._on_tap(xr, SimpleNamespace(x=xr.start + (xr.end - xr.start) * 0.2, y=y))  # on the candles: nothing
    assert dash.profile.highlight.data == {"y0": [], "y1": []}


def test_messages_are_shown_as_text():
    dash = Dashboard(Registry(None), DashboardSettings(), symbols=["BTCUSDT"],
                     messages=["symbol='<script>window.__pwned=1</script>' refused: not a symbol name"])
    assert dash.message_box.visible
    assert "<script>" not in dash.message.object
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in dash.message.object
    dash.dismiss_messages()
    assert not dash.message_box.visible


async def test_session_through_a_real_symbol_view_on_valkey(trades, valkey_url):
    """The page asks the real view; results come through the Redis cache (compute_async)."""
    from engine.view import SymbolView
    from store.redis_store import RedisStore, connect

    client = connect(valkey_url)
    try:
        view = SymbolView(RedisStore(client), "BTCUSDT")
        view.snapshot = snapshot(trades, 40)
        dash = Dashboard(Registry(view), DashboardSettings(mode="tpo", developing=True), symbols=["BTCUSDT"])
        await dash.refresh()
        assert "display error" not in dash.status.object
        a = summary_attrs(dash)
        want = tpo_profile(trades.time_slice(int(a["from"]), int(a["to"])), TICK, float(a["row-size"]))
        assert dash.chart.profile_parts["labels"]["poc"].text.startswith(f"POC {fmt.price(want.poc, TICK)} |")
        assert sum(n for (kind, how), n in view.cache.stats.items() if how == "computed") >= 2
    finally:
        await client.aclose()


def test_warm_up_runs_every_kind_on_real_trades(trades):
    import dashboard.warm as app  # warm_up moved from dashboard.app (still re-exported there)

    app._WARMED.clear()
    assert warm_up(Registry(LocalView(snapshot(trades, 30))), trades=trades.take(slice(0, 0))) == 0.0  # no data
    assert not app._WARMED.is_set()
    assert warm_up(Registry(LocalView(snapshot(trades, 30)))) > 0 and app._WARMED.is_set()
    assert warm_up(Registry(LocalView(snapshot(trades, 30)))) == 0.0  # once per process


def test_sources_are_replaced_whole_only_when_something_changed():
    """Never a partial update or patch (Bokeh serializes those late, from columns that may have moved on)."""
    from bokeh.document import Document
    from bokeh.document.events import ColumnDataChangedEvent, ColumnsPatchedEvent, ModelChangedEvent
    from bokeh.models import ColumnDataSource

    from dashboard.sources import update_source as _update_source  # moved from dashboard.profile_layer

    src = ColumnDataSource({"a": [], "b": []})
    doc = Document()
    doc.add_root(src)
    events = []
    doc.on_change(lambda e: events.append(e))
    shared_a = np.arange(20.0)
    _update_source(src, {"a": shared_a, "b": ["x"] * 20})
    assert src.data["a"] is not shared_a  # the source owns its copy
    a2 = shared_a.copy()
    a2[3] = 99.0
    before = src.data
    events.clear()
    _update_source(src, {"a": a2, "b": ["x"] * 20})
    assert len(events) == 1 and src.data is not before  # one change: a new dict, sent whole
    e = events[0]
    assert isinstance(e, ModelChangedEvent) or (isinstance(e, ColumnDataChangedEvent) and e.cols is None)
    assert not isinstance(e, ColumnsPatchedEvent)
    assert before["a"][3] == 3.0 and shared_a[3] == 3.0  # the old dict and the shared column are untouched
    events.clear()
    _update_source(src, {"a": a2.copy(), "b": ["x"] * 20})  # equal values: nothing sent
    assert events == []


def test_fill_draws_the_chart_before_the_page_is_sent(trades):
    """create_page fills the page synchronously (process-local compute), even when the view also has compute_async."""

    class AsyncToo(LocalView):
        async def compute_async(self, *a, **k):  # must not be used by fill()
            raise AssertionError("fill() awaited the shared cache")

    view = AsyncToo(snapshot(trades, 20))
    dash = Dashboard(Registry(view), DashboardSettings(), symbols=["BTCUSDT"])
    dash.fill()
    assert len(dash.chart.candles.data["t"]) == len(view.snapshot.candles) and len(dash.profile.source.data["y"]) > 0
    assert "volume" in view.calls
