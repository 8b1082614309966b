"""The dashboard in a real browser: Debian Chromium driven by Playwright against ``serve.py`` replaying the recording.

The browser tests' one server (tests/conftest.py ``page_server``: the recording's first four hours
seeded, the rest replayed at 60x), one browser, several pages:
every profile mode and view renders without a console error (a screenshot of each
goes to ``artifacts/screenshots/``); hovering a profile row shows its numbers, which
equal :func:`compute.profile.volume_profile` of the same trades read independently
from the recording; a click highlights the row's price band and a second click
clears it; URL values set the controls; hostile URL values are refused with a
visible message and never run; ``embed=1`` renders inside an iframe of another
origin, and a script embed renders only from an origin given to
``--allow-websocket-origin``. Time to first chart is written to
``artifacts/dashboard-figures.json``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import http.server
import json
import re
import threading
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser import JS_DOC_IDLE, JS_STATE, LIQ_FIXTURE, ROOT, free_port
from conftest import RECORDING

from compute.profile import volume_profile
from feeds.readers import read_trades

pytestmark = pytest.mark.browser

SHOTS = ROOT / "artifacts" / "screenshots"
# forceOrder frames placed at real trades of the recording (no real liquidation recording exists yet)
FIGURES = ROOT / "artifacts" / "dashboard-figures.json"
MODES = ("buysell", "delta", "heatmap", "recency", "tpo", "split")
# A fixed window of the first replay loop (2020-02-22 00:00-00:30 UTC): its profile stops changing once replayed.
FIXED = "follow=0&from=2020-02-22T00:00&to=2020-02-22T00:30"

# Screen position of a price (y) at a fraction of the profile's x range, in page coordinates.
JS_PROFILE_POINT = """([figName, y, xf]) => {
  for (const d of Bokeh.documents) {
    const m = d.get_model_by_name(figName);
    if (!m) continue;
    const v = Bokeh.index.find_one(m);
    if (!v) return null;
    const r = v.canvas_view.el.getBoundingClientRect();
    return {x: r.left + v.frame.x_scales.get('vp').compute(xf), y: r.top + v.frame.y_scale.compute(y)};
  }
  return null;
}"""

JS_SOURCE = """([name, col]) => {
  for (const d of Bokeh.documents) { const m = d.get_model_by_name(name); if (m) return Array.from(m.data[col]); }
  return null;
}"""

# Whether the TPO letters' renderer is shown (the page shows it only when the rows are tall enough).
JS_LETTERS_SHOWN = """() => {
  for (const d of Bokeh.documents) { const m = d.get_model_by_name('tpo_letters'); if (m) return m.visible; }
  return false;
}"""

# Values of the widgets (Bokeh models) by their title/label.
JS_WIDGETS = """() => {
  const out = {};
  for (const d of Bokeh.documents) {
    for (const m of d.all_models) {
      const t = m.title ?? m.label ?? (Array.isArray(m.labels) ? m.labels.join('|') : null);
      if (typeof t !== 'string' || !t) continue;
      if ('active' in m) out[t] = m.active; else if ('value' in m) out[t] = m.value;
    }
  }
  return out;
}"""

# Set a widget (Bokeh model) by its title/label, as a click or a selection would.
JS_SET_WIDGET = """([title, value]) => {
  for (const d of Bokeh.documents) {
    for (const m of d.all_models) {
      const t = m.title ?? m.label ?? (Array.isArray(m.labels) ? m.labels.join('|') : null);
      if (t !== title) continue;
      if ('active' in m) m.active = value; else m.value = value;
      return true;
    }
  }
  return false;
}"""

# Texts of the visible Bokeh tooltips (their content lives in each tooltip's shadow root).
JS_TOOLTIPS = """() => {
  const out = [];
  const walk = (root) => {
    for (const e of root.querySelectorAll('*')) {
      if (e.classList && e.classList.contains('bk-Tooltip') && e.shadowRoot) {
        const c = e.shadowRoot.querySelector('.bk-tooltip-content');
        if (c && c.innerText) out.push(c.innerText);
      }
      if (e.shadowRoot) walk(e.shadowRoot);
    }
  };
  walk(document);
  return out;
}"""

# The follow switch (a button with aria-pressed, "● LIVE" / "Go live") in the sidebar's shadow DOM.
JS_FOLLOWING = """() => {
  const find = (root) => { const hit = root.querySelector('.fl-live'); if (hit) return hit;
    for (const e of root.querySelectorAll('*')) { if (e.shadowRoot) { const h = find(e.shadowRoot); if (h) return h; } }
    return null; };
  const el = find(document);
  return el ? el.getAttribute('aria-pressed') : null;
}"""


def following(page) -> bool | None:
    """Whether the page's follow switch is on (None: not drawn yet)."""
    v = page.evaluate(JS_FOLLOWING)
    return None if v is None else v == "true"


#: The page position 40 % across and half-way down the price chart's frame (where drags start).
JS_CHART_GRIP = """() => { const v = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('price_chart'));
  const r = v.canvas_view.el.getBoundingClientRect(); const f = v.frame.bbox;
  return {x: r.left + f.left + f.width * 0.4, y: r.top + f.top + f.height * 0.5}; }"""


def drag_chart(page, done) -> bool:
    """Drag the price chart 450 px to the right (earlier trades) until ``done(page)`` holds, polled for 8 s a drag.

    A drag can be lost while a busy page re-renders: up to 3 drags. Returns whether ``done`` held.
    """
    m = page.evaluate(JS_CHART_GRIP)
    for _attempt in range(3):
        page.mouse.move(m["x"] - 200, m["y"])
        page.mouse.down()
        page.mouse.move(m["x"] + 250, m["y"], steps=12)
        page.mouse.up()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not done(page):
            page.wait_for_timeout(200)
        if done(page):
            return True
    return False


JS_PROFILE_ATTRS = """() => {
  const find = (root) => { const hit = root.querySelector('.fl-profile'); if (hit) return hit;
    for (const e of root.querySelectorAll('*')) { if (e.shadowRoot) { const h = find(e.shadowRoot); if (h) return h; } }
    return null; };
  const el = find(document);
  return el ? Object.assign({}, el.dataset) : null;
}"""


@pytest.fixture(scope="module")
def server(page_server):
    """The browser tests' one server (tests/conftest.py ``page_server``)."""
    return page_server


@pytest.fixture(scope="module")
def ports(page_server):
    return {"allowed": page_server["allowed"], "other": free_port()}


@pytest.fixture(scope="module")
def recording():
    return read_trades(RECORDING)


@contextmanager
def page_of(browser, width=1440, height=900):
    """A page that records console errors and uncaught exceptions."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    js_errors: list[str] = []
    page.on("pageerror", lambda e: (errors.append(str(e)), js_errors.append(str(e))))
    page.js_errors = js_errors
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} {r.failure}"))
    page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.errors = errors
    try:
        yield page
    finally:
        page.close()


def settled_profile(page):
    """The profile's attributes once they hold for 700 ms (a drag's last range updates may still be on their
    way, later under load), else None: poll it with :func:`wait_for`."""
    a = page.evaluate(JS_PROFILE_ATTRS)
    page.wait_for_timeout(700)
    return a if a and a == page.evaluate(JS_PROFILE_ATTRS) else None


JS_X_RANGE = """() => { const r = Bokeh.documents[0].get_model_by_name('x_range'); return [r.start, r.end]; }"""


def profile_of_shown_range(page, iv: int = 60_000):
    """The profile's attributes once they are those of the chart's shown ``x_range`` in whole ``iv`` candles
    (dashboard/plan.py ``window``) and hold for 700 ms, else None: poll it with :func:`wait_for`."""
    x0, x1 = page.evaluate(JS_X_RANGE)
    a = settled_profile(page)
    want = (str(int(x0 // iv * iv)), str(int(-(-x1 // iv) * iv)))
    return a if a and (a["from"], a["to"]) == want and page.evaluate(JS_X_RANGE) == [x0, x1] else None


def wait_for(page_or_frame, fn, what: str, timeout: float = 30.0, poll_ms: int = 150):
    """Poll ``fn(page)`` until it returns something truthy; fail with ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn(page_or_frame)
        except Exception as e:  # noqa: BLE001 - the page may still be loading
            last = e
        else:
            if last:
                return last
        time.sleep(poll_ms / 1000)
    extra = ""
    if hasattr(page_or_frame, "frames"):
        extra = f"; frames: {[f.url for f in page_or_frame.frames]}; errors: {getattr(page_or_frame, 'errors', None)}"
    pytest.fail(f"timed out waiting for {what}; last: {last!r}{extra}")


def chart_ready(page, mode: str | None = None):
    st = page.evaluate(JS_STATE)
    if not (st and st["candles"] >= 3 and st["rows"] > 0 and st["poc_visible"] and page.evaluate(JS_DOC_IDLE)):
        return None
    attrs = page.evaluate(JS_PROFILE_ATTRS)
    if not attrs or (mode is not None and attrs.get("mode") != mode):
        return None
    return {**st, **attrs}


def footprint_ready(page, mode: str | None = None):
    attrs = page.evaluate(JS_PROFILE_ATTRS)
    if not attrs or (mode is not None and attrs.get("mode") != mode):
        return None
    cells = page.evaluate(JS_SOURCE, ["fp_cells", "x"]) or []
    return len(cells) > 10 and attrs


def shoot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"{time.monotonic():.1f} screenshot {path.name}")
    return path


def url_with(base: str, query: str | dict) -> str:
    q = query if isinstance(query, str) else urllib.parse.urlencode(query)
    return f"{base}?{q}" if q else base


def record_figure(key: str, value) -> None:
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[key] = value
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True))


@contextmanager
def static_server(directory: Path, port: int):
    """Serve ``directory`` over HTTP on 127.0.0.1:``port`` (another origin than the dashboard)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    th = threading.Thread(target=httpd.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        th.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


# -- tests --------------------------------------------------------------------------------
def test_every_mode_and_view_renders_without_console_errors(server, browser):
    url = server["url"]
    with page_of(browser) as page:
        FIGURES.unlink(missing_ok=True)
        t0 = time.monotonic()
        page.goto(url)
        state = wait_for(page, chart_ready, "the first chart (candles, VPVR, POC label)")
        record_figure("time_to_first_chart_s: first page of the browser tests' server (1440x900, 4 h seeded, 60x replay)",
                      round(time.monotonic() - t0, 2))
        assert state["poc_text"].startswith("POC ") and " | Vol " in state["poc_text"] and " | Δ " in state["poc_text"]
        assert re.fullmatch(r"VAH [\d,]+\.\d\d \(70 %\)", state["vah_text"])
        shoot(page, "page-1440x900")
        # every mode through its control (the URL path is tested below)
        for mode in MODES:
            assert page.evaluate(JS_SET_WIDGET, ["Profile mode", mode])
            wait_for(page, lambda p, m=mode: chart_ready(p, m), f"mode {mode}")
            shoot(page, f"mode-{mode}")
        assert page.evaluate(JS_SET_WIDGET, ["Hatch bars (buys /, sells \\)", True])
        page.wait_for_timeout(600)
        shoot(page, "mode-split-hatched")
        assert page.evaluate(JS_SET_WIDGET, ["Profile mode", "buysell"])
        assert page.evaluate(JS_SET_WIDGET, ["Heat-map behind candles", True])
        wait_for(page, lambda p: chart_ready(p, "buysell") and len(p.evaluate(JS_SOURCE, ["heatmap", "x"]) or []),
                 "heat-map behind the candles")
        shoot(page, "heatmap-on-hatched")
        assert page.evaluate(JS_SET_WIDGET, ["chart|footprint", 1])
        wait_for(page, footprint_ready, "footprint cells")
        assert len(page.evaluate(JS_SOURCE, ["fp_cvd", "x"])) >= 3
        shoot(page, "view-footprint")
        assert page.evaluate(JS_SET_WIDGET, ["bid x ask|delta|total", 1])
        def delta_cells(p):
            texts = [a or b for a, b in zip(p.evaluate(JS_SOURCE, ["fp_cells", "text"]) or [],
                                            p.evaluate(JS_SOURCE, ["fp_cells", "text_imb"]) or [], strict=True)]
            return texts and all(t[:1] in ("+", "-", "0") and " × " not in t for t in texts)

        wait_for(page, delta_cells, "footprint delta cells")
        shoot(page, "view-footprint-delta")
        assert not page.errors, f"browser console errors: {page.errors}"
        # light theme, 5-minute candles, from the URL (a new session)
        page.goto(url_with(url, "theme=light&interval=5m&window=600"))
        wait_for(page, chart_ready, "light theme")
        shoot(page, "theme-light-5m")
        assert not page.errors, f"browser console errors: {page.errors}"
    with page_of(browser, 1920, 1080) as page:
        t0 = time.monotonic()
        page.goto(url_with(url, "mode=delta&heat=1"))
        wait_for(page, lambda p: chart_ready(p, "delta"), "1920x1080 page")
        record_figure("time_to_first_chart_s: a later page (1920x1080, heat-map on, 60x replay)",
                      round(time.monotonic() - t0, 2))
        box = page.evaluate("""() => { const m = Bokeh.documents[0].get_model_by_name('price_chart');
                               const v = Bokeh.index.find_one(m); const r = v.el.getBoundingClientRect();
                               return {w: r.width, h: r.height}; }""")
        assert box["w"] > 1100 and box["h"] > 600, box  # the chart takes the room it is given
        shoot(page, "page-1920x1080")
        assert not page.errors, f"browser console errors: {page.errors}"


def test_hover_shows_the_rows_numbers_and_click_highlights_then_clears(server, browser, recording):
    with page_of(browser) as page:
        page.goto(url_with(server["url"], FIXED))
        attrs = wait_for(page, lambda p: (s := chart_ready(p)) and int(s["to"]) == 1582331400000 and s,
                         "the fixed window's complete profile", timeout=40)
        vol = page.evaluate(JS_SOURCE, ["profile", "volume"])
        i = max(range(len(vol)), key=vol.__getitem__)
        row = {c: page.evaluate(JS_SOURCE, ["profile", c])[i] for c in ("y", "price_low", "price_high", "trades")}
        # the same row computed independently from the recording
        want = volume_profile(recording.time_slice(int(attrs["from"]), int(attrs["to"])), 0.01, float(attrs["rowSize"]))
        j = want.poc_idx
        assert (row["price_low"], row["price_high"]) == (want.price_low[j], want.price_high[j])
        pos = page.evaluate(JS_PROFILE_POINT, ["price_chart", row["y"], 0.995])
        page.mouse.move(pos["x"], pos["y"])
        tip = wait_for(page, lambda p: [t for t in p.evaluate(JS_TOOLTIPS) if "total" in t],
                       "the profile tooltip", timeout=10)[0]
        text = " ".join(tip.split())
        assert f"price: {want.price_low[j]:,.2f} – {want.price_high[j]:,.2f}" in text, text
        nums = dict(re.findall(r"(total|buy|sell|delta|trades): ([+\-]?[\d,]*\.?\d+)", text))
        assert float(nums["total"].replace(",", "")) == pytest.approx(want.volume[j], abs=5e-4)
        assert float(nums["buy"].replace(",", "")) == pytest.approx(want.buy[j], abs=5e-4)
        assert float(nums["sell"].replace(",", "")) == pytest.approx(want.sell[j], abs=5e-4)
        assert float(nums["delta"].replace(",", "")) == pytest.approx(want.delta[j], abs=5e-4)
        assert int(nums["trades"].replace(",", "")) == int(want.trades_per_row[j])
        pct = re.search(r"buy: [\d,.]+ \(([\d.]+) %\)", text)
        assert float(pct.group(1)) == pytest.approx(want.buy[j] / want.volume[j] * 100, abs=0.05)
        shoot(page, "hover-profile-row")
        # click: the row's price band is highlighted across the chart; a second click clears it
        page.mouse.click(pos["x"], pos["y"])
        band = wait_for(page, lambda p: p.evaluate(JS_SOURCE, ["highlight", "y0"]), "the highlighted band", timeout=10)
        assert band == [want.price_low[j]]
        assert page.evaluate(JS_SOURCE, ["highlight", "y1"]) == [want.price_high[j]]
        shoot(page, "click-highlight")
        # not a timing wait: two clicks on one spot within the double-click interval (~500 ms) are a double tap,
        # which Bokeh's tap gesture does not report as a second tap
        page.wait_for_timeout(800)
        page.mouse.click(pos["x"], pos["y"])
        wait_for(page, lambda p: p.evaluate(JS_SOURCE, ["highlight", "y0"]) == [], "the band cleared", timeout=10)
        assert not page.errors, f"browser console errors: {page.errors}"


def test_pan_and_zoom_recompute_the_visible_range_and_reset_follows_again(server, browser):
    with page_of(browser) as page:
        page.goto(url_with(server["url"], "heat=1&window=60"))
        wait_for(page, lambda p: chart_ready(p) and following(p) is True
                 and len(p.evaluate(JS_SOURCE, ["heatmap", "x"]) or []) and chart_ready(p), "the live chart")
        heat_before = page.evaluate(JS_SOURCE, ["heatmap", "x"])
        assert drag_chart(page, lambda p: following(p) is False), "following not turned off by the pan"
        # the profile of the range the browser shows once the drag is over (a settled look alone could catch the
        # profile of a drag's intermediate range, or of a first drag whose pan arrived after its retry)
        after = wait_for(page, profile_of_shown_range, "the profile of the panned range")
        page.wait_for_timeout(1200)  # not following: the range stays put while data flows in
        assert page.evaluate(JS_PROFILE_ATTRS)["from"] == after["from"]
        # earlier trades than the live edge (which moves a minute a second at 60x: comparing with the range seen
        # before the drag raced it under load): the panned range ends well before the newest candle
        live_edge = max(page.evaluate(JS_SOURCE, ["candles", "t"]))
        assert int(after["to"]) <= live_edge - 10 * 60_000, (after, live_edge)
        wait_for(page, lambda p: p.evaluate(JS_SOURCE, ["heatmap", "x"]) != heat_before, "the heat-map re-aggregated")
        page.mouse.wheel(0, -400)  # zoom in around the pointer
        wait_for(page, lambda p: (a := p.evaluate(JS_PROFILE_ATTRS)) and (a["from"], a["to"]) != (after["from"], after["to"]),
                 "the profile of the zoomed range")
        page.locator(".bk-tool-icon-reset").first.click()
        wait_for(page, lambda p: following(p) is True, "following again after reset")
        assert not page.errors, f"browser console errors: {page.errors}"


def test_url_parameters_set_the_controls(server, browser):
    q = "mode=tpo&row_ticks=50&va=0.8&interval=5m&half_life=600&window=240&pct=0.1,0.5&tape_min=0.5&" + FIXED
    with page_of(browser) as page:
        page.goto(url_with(server["url"], q))
        attrs = wait_for(page, lambda p: chart_ready(p, "tpo"), "the tpo profile")
        w = page.evaluate(JS_WIDGETS)
        assert w["Profile mode"] == "tpo"
        assert w["Ticks per row (0 = auto)"] == 50
        assert w["Value area"] == pytest.approx(0.8)
        assert w["Interval"] == "5m"
        assert w["Half-life, s (0 = auto)"] == 600
        assert w["Window while following (min)"] == 240
        wait_for(page, lambda p: following(p) is False, "the follow switch off")
        assert w["Percentile lines (%)"] == "10, 50"
        assert w["Min trade size (tape)"] == pytest.approx(0.5)
        assert attrs["rowSize"] == "0.50" and attrs["kind"] == "tpo"
        st = page.evaluate(JS_STATE)
        assert st["vah_text"].endswith("(80 %)")
        assert len(page.evaluate(JS_SOURCE, ["percentiles", "y"])) == 2
        times = page.evaluate(JS_SOURCE, ["candles", "time"])
        assert all((b - a) % 300_000 == 0 for a, b in zip(times, times[1:], strict=False)) and times[0] % 300_000 == 0
        # rows tall enough and bars wide enough: each row shows its TPO period letters, one per count
        page.goto(url_with(server["url"], "mode=tpo&row_ticks=2000&width=0.45&follow=0"
                                          "&from=2020-02-22T00:00&to=2020-02-22T02:00"))
        wait_for(page, lambda p: p.evaluate(JS_LETTERS_SHOWN), "the TPO letters drawn")
        letters = page.evaluate(JS_SOURCE, ["profile", "letters"])
        tpo = [int(m) for m in page.evaluate(JS_SOURCE, ["profile", "m1"])]  # m1: the row's TPO count in tpo mode
        assert [len(t) for t in letters] == tpo and max(tpo) > 1, (letters, tpo)
        assert "A" in "".join(letters)  # the range's first period
        shoot(page, "tpo-letters")
        assert not page.errors, f"browser console errors: {page.errors}"


def test_download_buttons_send_the_views_profile_levels_and_candles(server, browser, recording):
    """Issue 7 item 5: a click on a download button saves a file of the view's numbers (CSV, then Parquet)."""
    import pandas as pd

    from compute.candles import CANDLE_COLUMNS

    with page_of(browser) as page:
        page.goto(url_with(server["url"], FIXED))
        attrs = wait_for(page, lambda p: (s := chart_ready(p)) and int(s["to"]) == 1582331400000 and s,
                         "the fixed window's complete profile", timeout=40)
        with page.expect_download(timeout=30_000) as dl:
            page.get_by_role("button", name="Profile levels").click()
        assert dl.value.suggested_filename == "flowlens-BTCUSDT-levels-20200222T000000-20200222T003000.csv"
        got = pd.read_csv(dl.value.path())
        assert list(got.columns) == ["price_low", "price_high", "volume", "buy", "sell", "delta", "trades"]
        want = volume_profile(recording.time_slice(int(attrs["from"]), int(attrs["to"])), 0.01, float(attrs["rowSize"]))
        pd.testing.assert_frame_equal(got, want.levels, check_exact=True)
        assert f"{want.poc:.2f}" == attrs["poc"]
        page.get_by_role("button", name="Candles").scroll_into_view_if_needed()
        shoot(page, "download-buttons")
        assert page.evaluate(JS_SET_WIDGET, ["CSV|Parquet", 1])
        with page.expect_download(timeout=30_000) as dl:
            page.get_by_role("button", name="Candles").click()
        assert dl.value.suggested_filename.endswith(".parquet")
        candles = pd.read_parquet(dl.value.path())
        assert list(candles.columns) == list(CANDLE_COLUMNS) and len(candles) == 30
        assert candles["time"].iloc[0] == int(attrs["from"]) and candles["volume"].sum() == pytest.approx(
            want.total_volume, abs=1e-6)
        with page.expect_download(timeout=60_000) as dl:  # the chart as drawn, rendered server-side by Chromium
            page.get_by_role("button", name="Chart (PNG)").click()
        from PIL import Image

        from dashboard.download import PNG_SIZE

        assert Image.open(dl.value.path()).size == PNG_SIZE and dl.value.suggested_filename.endswith(".png")
        assert not page.errors, f"browser console errors: {page.errors}"

def test_hostile_url_values_show_a_message_and_never_run(server, browser):
    hostile = {
        "symbol": "<script>window.__pwned=1</script>", "va": "7", "row_ticks": "-5",
        "mode": '<img src=x onerror="window.__pwned=2">', "update_ms": "99999999",
        "theme": "</style><script>window.__pwned=3</script>",
    }
    with page_of(browser) as page:
        page.goto(url_with(server["url"], hostile))
        msg = wait_for(page, lambda p: p.locator(".fl-message").first.inner_text(), "the message")
        assert "<script>window.__pwned=1</script>" in msg  # shown as text
        assert "va='7' refused" in msg and "row_ticks='-5' refused" in msg and "update_ms='99999999' refused" in msg
        assert "mode='<img src=x onerror=" in msg
        attrs = wait_for(page, lambda p: chart_ready(p, "buysell"), "the chart with default settings")
        assert attrs["rowSize"] != ""
        assert page.evaluate("() => window.__pwned") is None
        assert "Traceback" not in page.content()
        shoot(page, "hostile-url-message")
        assert not page.errors, f"browser console errors: {page.errors}"
        page.goto(url_with(server["url"], {"symbol": "ETHUSDT", "embed": "1"}))
        msg = wait_for(page, lambda p: p.locator(".fl-message").first.inner_text(), "the unknown-symbol message")
        assert "symbol='ETHUSDT' refused: not an ingested symbol (ingested: BTCUSDT)" in msg
        wait_for(page, chart_ready, "the default symbol's chart")
        assert not page.errors, f"browser console errors: {page.errors}"


def test_embed_in_an_iframe_of_another_origin(server, browser, ports):
    dash_port = urllib.parse.urlsplit(server["url"]).port
    with static_server(ROOT / "assets", ports["allowed"]) as site, page_of(browser, 1360, 900) as page:
        src = f"http://localhost:{dash_port}/"
        page.goto(f"{site}/embed-example.html?" + urllib.parse.urlencode({"server": src, "mode": "delta"}))
        frame = wait_for(page, lambda p: next((f for f in p.frames if f.url.startswith(src)), None), "the iframe")
        assert urllib.parse.urlsplit(frame.url).netloc != urllib.parse.urlsplit(site).netloc  # another origin
        state = wait_for(frame, lambda f: chart_ready(f, "delta"), "the chart inside the iframe")
        assert state["candles"] >= 3
        assert frame.evaluate("() => document.querySelector('#sidebar, #header, nav') === null")  # no template chrome
        iframe = page.locator("iframe#flowlens")
        box = iframe.bounding_box()
        assert box["width"] == pytest.approx(1280, abs=2) and box["height"] == pytest.approx(720, abs=2)
        SHOTS.mkdir(parents=True, exist_ok=True)
        iframe.screenshot(path=str(SHOTS / "embed-iframe-1280x720.png"))
        shoot(page, "embed-example-page")
        assert not page.errors, f"browser console errors: {page.errors}"


def test_script_embed_renders_only_from_an_allowed_origin(server, browser, ports, tmp_path):
    from bokeh.embed import server_document

    tag = server_document(server["url"], arguments={"embed": "1", "mode": "split"})
    (tmp_path / "index.html").write_text(f"<!doctype html><html><head><link rel='icon' href='data:,'></head><body style='margin:0;height:720px'>{tag}</body></html>")
    with static_server(tmp_path, ports["allowed"]) as site, page_of(browser, 1280, 760) as page:
        page.goto(f"{site}/index.html")
        wait_for(page, lambda p: chart_ready(p, "split"), "the script-embedded chart (allowed origin)")
        # Panel's script embed fetches its stylesheets from cdn.holoviz.org (unreachable here) and asks for
        # loading.css at a malformed relative URL: resource errors of Panel's, not of the page's code.
        assert not page.js_errors, f"JavaScript errors: {page.js_errors}"
    with static_server(tmp_path, ports["other"]) as site, page_of(browser, 1280, 760) as page:
        page.goto(f"{site}/index.html")
        page.wait_for_timeout(4000)
        assert not page.evaluate(JS_STATE), "a page from an origin not allowed must not get the chart"


def test_served_liquidations_markers_table_and_filter(server, browser):
    """The fixture's liquidations of 00:00-03:00 (seeded from the server's history; the later ones are replayed with
    the trades, tests/service/test_serve_live.py checks that path): the page marks them, lists them and filters."""
    import orjson

    frames = [orjson.loads(x)["data"]["o"] for x in LIQ_FIXTURE.read_text().splitlines()]
    window = "follow=0&from=2020-02-22T00:00&to=2020-02-22T03:00"  # the first replay loop: times as in the file
    with page_of(browser) as page:
        page.goto(url_with(server["url"], window))
        attrs = wait_for(page, lambda p: (s := chart_ready(p)) and int(s["to"]) == 1582340400000 and s,
                         "the complete 00:00-03:00 window", timeout=40)
        start, end = int(attrs["from"]), int(attrs["to"])
        inside = [o for o in frames if start <= int(o["T"]) < end]
        assert len(inside) >= 5
        got = wait_for(page, lambda p: (t := p.evaluate(JS_SOURCE, ["liquidation_markers", "t"])) and
                       len(t) == len(inside) and t, "a marker per liquidation in the window")
        assert sorted(int(t) for t in got) == sorted(int(o["T"]) for o in inside)
        prices = page.evaluate(JS_SOURCE, ["liquidation_markers", "price"])
        assert sorted(prices) == sorted(float(o["ap"]) for o in inside)
        table = wait_for(page, lambda p: p.locator(".fl-liqs").first.inner_text(), "the liquidation table")
        longs = sum(o["S"] == "SELL" for o in inside)
        assert table.count("▼ long") == longs and table.count("▲ short") == len(inside) - longs
        assert "at most one liquidation per symbol per second" in page.locator(".fl-note").first.inner_text()
        shoot(page, "liquidations-served")
        assert not page.errors, f"browser console errors: {page.errors}"
        # the minimum-notional filter (from the URL, as the control sets it)
        notional = sorted(float(o["ap"]) * float(o["z"]) for o in inside)
        threshold = notional[len(notional) // 2]
        page.goto(url_with(server["url"], f"{window}&liq_min={threshold:.2f}"))
        wait_for(page, lambda p: len(p.evaluate(JS_SOURCE, ["liquidation_markers", "t"]) or []) ==
                 sum(n >= round(threshold, 2) for n in notional), "only liquidations at or above the minimum")
        assert not page.errors, f"browser console errors: {page.errors}"


def test_liquidation_markers_and_table_render(browser, tmp_path):
    """The same frames through the component alone, rendered as a static page over the whole recording."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE
    from test_dashboard_components import LIQ_FIXTURE, LocalView, Registry, liquidation_frame, snapshot

    from dashboard.app import Dashboard, css_for
    from dashboard.panels import LIQUIDATION_NOTE
    from dashboard.settings import DashboardSettings

    trades = read_trades(RECORDING)
    snap = snapshot(trades, 12 * 60, liquidations=liquidation_frame())
    dash = Dashboard(Registry(LocalView(snap)), DashboardSettings(window_minutes=720, developing=False),
                     symbols=["BTCUSDT"])
    with concurrent.futures.ThreadPoolExecutor(1) as ex:  # Playwright's sync API owns this thread's event loop
        ex.submit(asyncio.run, dash.refresh()).result()
    n = len(dash.chart.liquidations.data["t"])
    assert n == len(LIQ_FIXTURE.read_text().splitlines())
    dash.chart.figure.sizing_mode = "fixed"
    dash.chart.figure.width, dash.chart.figure.height = 1000, 640
    body = file_html(dash.chart.figure, INLINE, "liquidations")
    side = f"<style>{css_for('dark').replace(':host', ':root')}</style><div style='width:330px'>{dash.liqs.object}</div>"
    i = body.index("<body", body.index("</head>"))  # the inline scripts in <head> contain "<body>" too
    j = body.index(">", i) + 1
    body = body[:i] + "<body style='background:#131722;display:flex;gap:8px;margin:0'>" + side + body[j:]
    path = tmp_path / "liquidations.html"
    path.write_text(body)
    with page_of(browser, 1340, 660) as page:
        page.goto(path.as_uri())
        drawn = wait_for(page, lambda p: p.evaluate(JS_SOURCE, ["liquidation_markers", "t"]), "the markers")
        assert len(drawn) == n
        text = page.inner_text("body")
        assert LIQUIDATION_NOTE in text and "▼ long" in text and "▲ short" in text
        shoot(page, "liquidations-component")
        # (importing Panel adds an ES-module shim to Bokeh's inline resources that a file:// page cannot load)
        assert not page.js_errors, f"JavaScript errors: {page.js_errors}"


# What a page shows, read from its BokehJS models (data sources, ranges, summary and labels), recorded
# per trade id: when the status bar (the first change of every refresh) moves from id A to id B, what the
# page holds is still the whole of A's refresh. Pages that lag one another compare at the same id.
JS_RECORD = """() => {
  const d = Bokeh.documents.find((doc) => doc.get_model_by_name('candles'));
  const st = d && d.get_model_by_name('status');
  if (!st) return false;
  const cols = (name, keys) => { const m = d.get_model_by_name(name);
    return m ? (keys ?? Object.keys(m.data)).map((k) => Array.from(m.data[k] ?? []).map(String).join(',')).join('|') : null; };
  const text = (name) => { const m = d.get_model_by_name(name); return m ? m.text : null; };
  const r = (name) => { const m = d.get_model_by_name(name); return m ? [m.start, m.end] : null; };
  const idOf = (t) => { const m = (t || '').match(/data-last-id="(\\d+)"/); return m ? m[1] : null; };
  const shown = () => ({candles: cols('candles', ['t', 'open', 'high', 'low', 'close', 'volume']),
                        profile: cols('profile'), percentiles: cols('percentiles'), developing: cols('developing'),
                        x_range: r('x_range'), y_range: r('y_range'), summary: text('summary'),
                        labels: ['poc_label', 'vah_label', 'val_label'].map(text)});
  window.__fl_states = {};
  let last = idOf(st.text);
  st.properties.text.change.connect(() => {
    if (last !== null) window.__fl_states[last] = shown();
    last = idOf(st.text);
  });
  return true;
}"""


def _same_picture(pages):
    """The shown state of the pages at the latest trade id all of them have recorded and agree on (else None)."""
    states = [p.evaluate("() => window.__fl_states || {}") for p in pages]
    common = set(states[0]).intersection(*states[1:])
    for lid in sorted(common, key=int, reverse=True):
        if all(s[lid] == states[0][lid] for s in states[1:]) and states[0][lid]["profile"]:
            return int(lid), states[0][lid]
    return None


def _metric(base: str, name: str, label: str = "") -> float:
    with urllib.request.urlopen(base.rstrip("/") + "/metrics", timeout=10) as r:
        text = r.read().decode()
    sel = r"\{" + label + r"\}" if label else ""
    m = re.search(rf"^{name}{sel} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_pages_of_one_view_share_the_leaders_refresh_and_leave_it_when_panned(server, browser):
    """Three pages of the same view show the very same picture from one refresh; a pan or a closed leader is handled.

    The first page to refresh computes (the leader); the other two get its messages with
    their own model ids (``dashboard.share``): ``/metrics`` counts 2 followers and shared
    refreshes. Then the first page closes: the others go on, still identical, without a
    reload. Then one of them is panned: it leaves, shows its own range, and the other
    keeps following the live edge. No page logs an error throughout.
    """
    base = server["url"]
    url = url_with(base, "embed=1&window=45&pct=0.3,0.6")  # settings no other test uses: a group of its own
    followers0 = _metric(base, "flowlens_share_followers")
    shared0 = _metric(base, "flowlens_page_refreshes_total", 'how="shared"')
    with page_of(browser, 1280, 720) as a, page_of(browser, 1280, 720) as b, page_of(browser, 1280, 720) as c:
        for p in (a, b, c):
            p.goto(url)
        for p in (a, b, c):
            wait_for(p, chart_ready, "the chart")
            assert p.evaluate(JS_RECORD)
        wait_for(a, lambda _: _metric(base, "flowlens_share_followers") - followers0 >= 2, "two follower pages")
        first_id, shown = wait_for(a, lambda _: _same_picture([a, b, c]), "the three pages to show the same picture")
        assert shown["candles"] and shown["percentiles"] and shown["developing"] and "data-poc" in shown["summary"]
        wait_for(a, lambda _: _metric(base, "flowlens_page_refreshes_total", 'how="shared"') - shared0 >= 10,
                 "refreshes shared with the followers")
        assert not a.errors, f"browser console errors: {a.errors}"

        a.close()  # the leader (or a follower) goes: the other two keep updating, and agree
        wait_for(b, lambda _: (s := _same_picture([b, c])) and s[0] > first_id, "the other two to move on together",
                 timeout=45)

        before = c.evaluate(JS_PROFILE_ATTRS)  # (a profile slow to move is waited for below, up to 90 s)
        drag_chart(c, lambda p: int(p.evaluate(JS_PROFILE_ATTRS)["from"]) < int(before["from"]))
        # a settled profile, not necessarily of the final range (profile_of_shown_range): under an extra busy
        # process one CI run never saw this page's profile reach its final range in 90 s. The suspected cause, the
        # follower's leave sending its older server-side x range back to the browser mid-drag, is fixed and tested
        # in test_dashboard_share.py, but the failure was never reproduced (4 runs under 2 busy processes passed
        # before the fix), so this wait stays the lenient one; the checks below hold for the profile of any range
        # between the drag's start and its end
        panned = wait_for(c, settled_profile, "the panned range to settle", timeout=90)  # slow under a loaded CI
        assert int(panned["from"]) < int(before["from"])
        c.wait_for_timeout(1500)  # not following: the range does not move toward the live edge as data flows in
        now = c.evaluate(JS_PROFILE_ATTRS)  # (a drag lost under load may still land late: it moves it back)
        assert int(now["to"]) <= int(panned["to"]), "the panned page moved with the live edge"
        wait_for(b, lambda p: int(p.evaluate(JS_PROFILE_ATTRS)["to"]) > int(panned["to"]),
                 "the other page to keep following the live edge")
        assert not b.errors and not c.errors, f"browser console errors: {b.errors} {c.errors}"
