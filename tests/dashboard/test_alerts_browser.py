"""Alerts on the page in a real Chromium (Playwright; issue 18 items 3 and 4).

On the browser tests' one server (the recording's first hours seeded, the rest replayed at 60x, a known API
token); the rule armed here is removed at the end. Through the sidebar's Alerts card a
price_cross is armed at a price the replay crosses within the next quarter hour of the recording (a quarter
minute of wall time) and the card shows the backtest; the signal arrives as a toast and as a marker at the (time, price) the REST API reports; the rule is
removed with its ✕ button; an alt-click on the chart puts the price under the pointer in the level field.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from browser import PAGE_TOKEN, RECORDING
from test_dashboard_browser import JS_SOURCE, JS_TOOLTIPS, JS_WIDGETS, chart_ready, page_of, shoot, wait_for

pytestmark = pytest.mark.browser

TOKEN = PAGE_TOKEN
LEVEL_LABEL = "Level (alt-click the chart)"

#: Texts of the Bokeh models (HTML panes, Divs) that contain a phrase.
JS_TEXTS = """(phrase) => {
  const out = [];
  for (const d of Bokeh.documents) for (const m of d.all_models) {
    const t = m.text ?? m.object;
    if (typeof t === 'string' && t.includes(phrase)) out.push(t);
  }
  return out;
}"""

#: The price chart's frame in page coordinates, and the price at a vertical page position.
JS_FRAME = """() => { for (const d of Bokeh.documents) { const m = d.get_model_by_name('price_chart'); if (!m) continue;
  const v = Bokeh.index.find_one(m); const r = v.canvas_view.el.getBoundingClientRect();
  return {x: r.left + v.frame.bbox.left, y: r.top + v.frame.bbox.top, w: v.frame.bbox.width, h: v.frame.bbox.height,
          top: r.top}; }
  return null; }"""
#: Page position of a (time, price) point on the price chart.
JS_POINT = """([t, price]) => { for (const d of Bokeh.documents) { const m = d.get_model_by_name('price_chart');
  if (!m) continue; const v = Bokeh.index.find_one(m); const r = v.canvas_view.el.getBoundingClientRect();
  return {x: r.left + v.frame.x_scale.compute(t), y: r.top + v.frame.y_scale.compute(price)}; }
  return null; }"""
JS_PRICE_AT = """(pageY) => { for (const d of Bokeh.documents) { const m = d.get_model_by_name('price_chart');
  if (!m) continue; const v = Bokeh.index.find_one(m); const r = v.canvas_view.el.getBoundingClientRect();
  return v.frame.y_scale.invert(pageY - r.top); }
  return null; }"""


@pytest.fixture(scope="module")
def alerts_server(page_server):
    """The browser tests' one server (tests/conftest.py ``page_server``; its API token is ``PAGE_TOKEN``). The rule
    armed here is removed at the end (and by this fixture should the test fail before); its few signals stay in the
    stream as markers near the live edge."""
    base = page_server["url"]
    yield base
    for rule in get_json(f"{base}api/v1/alerts")["alerts"]:
        req = urllib.request.Request(f"{base}api/v1/alerts/{rule['id']}", method="DELETE",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        urllib.request.urlopen(req, timeout=10).close()


def level_crossed_soon(base: str) -> float:
    """A price the replay crosses soon: the middle of the recording's range 3-15 minutes after the forming
    candle (the replay runs the recording's own times), so trades on both sides of it come after the arming."""
    from feeds.readers import read_trades

    now = int(get_json(f"{base}api/v1/candles?symbol=BTCUSDT&interval=1m")["candles"][-1]["time"])
    ahead = read_trades(RECORDING).time_slice(now + 180_000, now + 900_000)
    assert len(ahead), "the replay has passed the recording's end"
    return round((float(ahead.price.min()) + float(ahead.price.max())) / 2, 2)


#: Record the page's notifications and tones, passing each on to the real browser API (run before the page loads).
JS_RECORD_BELL = """(() => {
  window.flBell = {notes: [], tones: 0};
  const N = window.Notification;
  if (N) { window.Notification = class extends N {
    constructor(title, opts) { super(title, opts); window.flBell.notes.push(opts && opts.body); } }; }
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...a) { window.flBell.tones += 1; return start.apply(this, a); };
})();"""


#: The check box of a Panel Checkbox by its label (Panel 1.10 draws the label beside the input, not around it).
JS_CHECKBOX = """(label) => { for (const d of Bokeh.documents) for (const m of d.all_models)
  if (m.type === 'Checkbox' && m.label === label) return Bokeh.index.find_one(m).shadow_el.querySelector('input');
  return null; }"""


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_arm_toast_marker_remove_and_alt_click_level(alerts_server, browser):
    base = alerts_server
    with page_of(browser) as page:
        page.context.grant_permissions(["notifications"])
        page.add_init_script(JS_RECORD_BELL)
        page.goto(base)
        wait_for(page, chart_ready, "the live chart", timeout=60)
        close = level_crossed_soon(base)
        page.locator(".card-header", has_text="Alerts").first.click()
        # the bell: a tone and a browser notification per new signal (both off until ticked)
        assert page.evaluate("() => [window.flBell.tones, window.flBell.notes.length]") == [0, 0]
        for label in ("Sound", "Browser notification"):  # a real click (a user gesture: the browser asks then)
            page.evaluate_handle(JS_CHECKBOX, label).as_element().click()
        wait_for(page, lambda p: p.evaluate("() => Notification.permission") == "granted", "the permission")
        page.locator("input[type=password]").fill(TOKEN)
        level = page.get_by_placeholder("price")
        level.fill(f"{close:.2f}")
        level.press("Enter")
        wait_for(page, lambda p: p.evaluate(JS_WIDGETS).get(LEVEL_LABEL) == pytest.approx(close), "the level typed")
        page.get_by_role("button", name="Arm", exact=True).click()
        answer = wait_for(page, lambda p: p.evaluate(JS_TEXTS, "would have fired"), "the card's answer")[0]
        assert "armed · would have fired " in answer and " times in the last " in answer, answer
        assert [r["rule"]["level"] for r in _rules(base)] == [pytest.approx(close)]

        # (b) the replay crosses the level: a toast, and a marker where the API says the signal fired
        toast = page.locator(".notyf__message", has_text="price_cross")
        wait_for(page, lambda p: toast.count(), "the toast", timeout=60)
        assert "BTCUSDT" in toast.first.inner_text() and "UTC" in toast.first.inner_text()
        notes = wait_for(page, lambda p: [n for n in p.evaluate("() => window.flBell.notes") if "price_cross" in n],
                         "the browser notification")
        assert "BTCUSDT" in notes[0] and notes[0] in {toast.nth(i).inner_text() for i in range(toast.count())}
        assert page.evaluate("() => window.flBell.tones") >= 1, "no tone played with the toast"

        def marker_on_a_signal(p):
            api = {(s["time"], s["price"]) for s in get_json(f"{base}api/v1/signals?symbol=BTCUSDT")["signals"]}
            drawn = zip(p.evaluate(JS_SOURCE, ["signals", "t"]) or [], p.evaluate(JS_SOURCE, ["signals", "price"]) or [],
                        strict=True)
            return [xy for xy in drawn if xy in api]
        t, price = wait_for(page, marker_on_a_signal, "a marker at a signal the API reports", timeout=30)[-1]
        pos = page.evaluate(JS_POINT, [t, price])
        page.mouse.move(pos["x"], pos["y"])
        tip = wait_for(page, lambda p: [x for x in p.evaluate(JS_TOOLTIPS) if "price_cross" in x], "the marker's hover")
        assert f"{close:,.2f}" in tip[0], tip  # the level crossed
        shoot(page, "alerts")

        # (c) the ✕ button removes the rule
        page.locator("button", has_text="✕ ↕").first.click()
        wait_for(page, lambda p: not _rules(base), "the rule removed")
        wait_for(page, lambda p: p.evaluate(JS_TEXTS, "No alerts on BTCUSDT"), "the empty rule list")

        # (d) an alt-click on the chart takes the price under the pointer as the level
        box = page.evaluate(JS_FRAME)
        x, y = box["x"] + box["w"] * 0.3, box["y"] + box["h"] * 0.4
        under = page.evaluate(JS_PRICE_AT, y)
        page.keyboard.down("Alt")
        page.mouse.click(x, y)
        page.keyboard.up("Alt")
        row = float(chart_ready(page)["rowSize"])
        got = wait_for(page, lambda p: (v := p.evaluate(JS_WIDGETS).get(LEVEL_LABEL)) is not None
                       and abs(v - close) > 1e-9 and v, "the level from the alt-click")
        assert abs(got - under) <= row, (got, under, row)
        assert page.evaluate(JS_SOURCE, ["highlight", "y0"]) == []  # an alt-click highlights no row
        assert not page.errors, f"browser console errors: {page.errors}"


def _rules(base: str) -> list:
    return get_json(f"{base}api/v1/alerts?symbol=BTCUSDT")["alerts"]
