"""The page's layout at 1920x1080, 1280x720 and 390x844 in a real browser (issue 15, "The trader's chart, right").

The browser tests' one server (tests/conftest.py ``page_server``), started so that it falls back to the
replay (``--source live`` with an unreachable ``--ws-base``: the status line carries the fallback's long DNS
error as its reason), and one Debian Chromium. Checked: on a phone the chart's plot keeps >= 90 % of the width, the sidebar is a
drawer (closed until the header's menu button opens it) and the side panels are under the chart; the
status line is one line that fits at 1280 and 1920 px and says the reason once (the embed view too);
the follow button looks different on and off (and says so with ``aria-pressed``); after a pan the
URL holds ``from``/``to`` and reopening it shows the same x range; a highlighted row survives a
reload through the URL. Screenshots of each state at the three sizes go to
``artifacts/screenshots/issue15/``.
"""

from __future__ import annotations

import urllib.parse
from contextlib import contextmanager

import pytest
from browser import JS_DOC_IDLE, ROOT
from test_dashboard_browser import drag_chart, wait_for

pytestmark = pytest.mark.browser

SHOTS = ROOT / "artifacts" / "screenshots" / "issue15"
SIZES = {"desktop": (1920, 1080), "laptop": (1280, 720), "phone": (390, 844)}
#: A window of the seeded history (2020-02-22 00:00-00:30 UTC): its profile is complete from the start.
FIXED = "from=2020-02-22T00:00&to=2020-02-22T00:30"
CANDLE_MS = 60_000

# Finds the first element matching a selector in the page or any shadow root.
JS_FIND = """const find = (root, sel) => { const hit = root.querySelector(sel); if (hit) return hit;
  for (const e of root.querySelectorAll('*')) { if (e.shadowRoot) { const h = find(e.shadowRoot, sel); if (h) return h; } }
  return null; };
const box = (el) => { if (!el) return null; const b = el.getBoundingClientRect();
  return {left: b.left, top: b.top, right: b.right, bottom: b.bottom, width: b.width, height: b.height}; };"""

JS_LAYOUT = "() => {" + JS_FIND + """
  let plot = null, xr = null;
  for (const d of (window.Bokeh ? Bokeh.documents : [])) {
    const m = d.get_model_by_name('price_chart');
    if (m) { const v = Bokeh.index.find_one(m); if (v) plot = box(v.canvas_view.el); }
    const r = d.get_model_by_name('x_range');
    if (r) xr = [r.start, r.end];
  }
  const sb = document.getElementById('sidebar'), toggle = document.getElementById('sidebar-toggle');
  const st = find(document, '.fl-status');
  const live = find(document, '.fl-live');
  const cs = live ? getComputedStyle(live) : null;
  return {vw: window.innerWidth, plot, x_range: xr,
    sidebar: sb ? {...box(sb), display: getComputedStyle(sb).display} : null,
    expanded: toggle ? toggle.getAttribute('aria-expanded') : null,
    side: box(find(document, '.fl-side')),
    status: st ? {...box(st), text: st.innerText, scroll: st.scrollWidth, client: st.clientWidth,
                  line: parseFloat(getComputedStyle(st).lineHeight)} : null,
    live: live ? {text: live.textContent, pressed: live.getAttribute('aria-pressed'), bg: cs.backgroundColor,
                  color: cs.color, border: cs.borderStyle + ' ' + cs.borderColor} : null};
}"""

JS_HIGHLIGHT = """() => { for (const d of Bokeh.documents) { const m = d.get_model_by_name('highlight');
  if (m) return [Array.from(m.data.y0), Array.from(m.data.y1)]; } return null; }"""

JS_POC_POINT = """() => {
  for (const d of Bokeh.documents) {
    const m = d.get_model_by_name('price_chart'), p = d.get_model_by_name('profile');
    if (!m || !p || !p.data.volume.length) continue;
    const vol = Array.from(p.data.volume); const i = vol.indexOf(Math.max(...vol));
    const v = Bokeh.index.find_one(m); const r = v.canvas_view.el.getBoundingClientRect();
    return {x: r.left + v.frame.x_scales.get('vp').compute(0.995), y: r.top + v.frame.y_scale.compute(p.data.y[i]),
            band: [p.data.price_low[i], p.data.price_high[i]]};
  }
  return null;
}"""


@pytest.fixture(scope="module")
def server(page_server):
    """The browser tests' one server (tests/conftest.py ``page_server``): it fell back to the replay."""
    return page_server["url"]


@contextmanager
def page_of(browser, size: str):
    w, h = SIZES[size]
    page = browser.new_page(viewport={"width": w, "height": h})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors
    try:
        yield page
    finally:
        page.close()


def layout(page) -> dict:
    return page.evaluate(JS_LAYOUT)


def ready(page, reason: bool = True):
    """The layout once the chart is drawn, the document ready and the status line has the fallback's reason."""
    lay = layout(page)
    if not (lay["plot"] and lay["plot"]["width"] > 100 and lay["status"] and "trades/s" in lay["status"]["text"]):
        return None
    if not page.evaluate(JS_DOC_IDLE):
        return None
    if reason and "Binance unreachable" not in lay["status"]["text"]:
        return None
    return lay


def shoot(page, name: str, sizes=tuple(SIZES)) -> None:
    """Screenshots of the page's current state at each size (the viewport is resized, then restored)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    first = page.viewport_size
    for size in sizes:
        w, h = SIZES[size]
        if page.viewport_size != {"width": w, "height": h}:
            page.set_viewport_size({"width": w, "height": h})
            page.wait_for_timeout(600)  # Bokeh lays the page out again after a resize
        page.screenshot(path=str(SHOTS / f"{name}-{w}x{h}.png"))
    if page.viewport_size != first:
        page.set_viewport_size(first)
        page.wait_for_timeout(400)


def query(page) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query))


def test_phone_chart_full_width_sidebar_drawer_and_panels_under_the_chart(server, browser):
    with page_of(browser, "phone") as page:
        page.goto(server)
        lay = wait_for(page, ready, "the chart on a phone")
        vw = lay["vw"]
        assert vw == 390
        assert lay["plot"]["width"] >= 0.9 * vw, lay["plot"]
        assert lay["plot"]["left"] >= 0 and lay["plot"]["right"] <= vw + 0.5
        # the sidebar is a drawer: closed (not shown, no width taken) until the menu button opens it; it is
        # hidden from the first paint, and the menu button says it is closed once the document is ready
        assert lay["sidebar"]["display"] == "none", lay["sidebar"]
        lay = wait_for(page, lambda p: (x := layout(p))["expanded"] == "false" and x, "the drawer closed")
        assert lay["sidebar"]["display"] == "none", lay["sidebar"]
        # the liquidations and the tape are under the chart, as wide as the page
        assert lay["side"]["top"] >= lay["plot"]["bottom"] - 1, (lay["side"], lay["plot"])
        assert lay["side"]["width"] >= 0.9 * vw
        assert lay["status"]["height"] <= 1.5 * lay["status"]["line"]  # one line (cut with an ellipsis here)
        shoot(page, "page", ("phone",))
        page.click("#sidebar-toggle")
        opened = wait_for(page, lambda p: (x := layout(p))["sidebar"]["width"] > 200 and x, "the drawer open")
        assert opened["expanded"] == "true" and opened["sidebar"]["left"] == 0
        assert opened["plot"]["width"] >= 0.9 * vw  # over the chart, which keeps its width
        shoot(page, "drawer-open", ("phone",))
        page.click("#sidebar-toggle")
        wait_for(page, lambda p: layout(p)["sidebar"]["display"] == "none", "the drawer closed again")
        # wider, the sidebar is back beside the chart and the side panels beside it
        shoot(page, "page", ("laptop", "desktop"))
        page.set_viewport_size({"width": 1280, "height": 720})
        wide = wait_for(page, lambda p: (x := layout(p))["side"]["top"] < x["plot"]["bottom"] - 100 and x,
                        "the side panels beside the chart at 1280 px")
        assert wide["side"]["left"] >= wide["plot"]["right"] - 1
        assert not page.errors, page.errors


@pytest.mark.parametrize("size", ["laptop", "desktop"])
def test_status_line_is_one_line_that_fits_with_the_fallback_reason(server, browser, size):
    with page_of(browser, size) as page:
        page.goto(server)
        st = wait_for(page, ready, "the status line with the fallback's reason")["status"]
        text = st["text"]
        assert text.count("Binance unreachable") == 1, text
        assert "\n" not in text and "ClientConnector" not in text  # the long error is in the tooltip only
        for part in ("REPLAY", "trades/s", "last trade", "UTC", "Redis OK"):
            assert part in text, text
        assert st["scroll"] <= st["client"], st  # nothing cut off
        assert st["height"] <= 1.5 * st["line"], st  # one line box
        tip = page.evaluate("() => {" + JS_FIND + " return find(document, '.fl-src').title; }")
        assert "Binance unreachable at start-up:" in tip and "BTCUSDT-trades-2020-02-22" in tip
        shoot(page, "status-line", (size,))
        assert not page.errors, page.errors


def test_embed_view_says_the_reason_once_on_one_line(server, browser):
    with page_of(browser, "phone") as page:
        page.goto(f"{server}?embed=1")
        for size in ("phone", "laptop", "desktop"):
            page.set_viewport_size(dict(zip(("width", "height"), SIZES[size], strict=True)))
            lay = wait_for(page, ready, f"the embedded chart at {size}")
            st = lay["status"]
            assert st["text"].count("Binance unreachable") == 1, st["text"]
            assert st["height"] <= 1.5 * st["line"], st
            assert lay["plot"]["width"] >= 0.9 * lay["vw"], lay["plot"]
            if size != "phone":
                assert st["scroll"] <= st["client"], st
            page.screenshot(path=str(SHOTS / f"embed-{SIZES[size][0]}x{SIZES[size][1]}.png"))
        assert not page.errors, page.errors


def _pan(page) -> None:
    """Drag the chart to the right (earlier trades) until the page stops following the live edge."""
    if not drag_chart(page, lambda p: layout(p)["live"]["pressed"] == "false"):
        pytest.fail("following not turned off by the pan")


def _settled_view(page):
    """(x range, URL query) once both hold for 700 ms with from/to in the URL, else None."""
    a = (layout(page)["x_range"], query(page))
    if "from" not in a[1]:
        return None
    page.wait_for_timeout(700)
    return a if a == (layout(page)["x_range"], query(page)) else None


def test_follow_button_differs_on_and_off_and_the_url_reopens_the_panned_view(server, browser):
    with page_of(browser, "laptop") as page:
        page.goto(f"{server}?window=60")
        on = wait_for(page, lambda p: (x := ready(p)) and x["live"]["pressed"] == "true" and x, "following")["live"]
        assert on["text"] == "● LIVE"
        shoot(page, "follow-on")
        _pan(page)
        off = layout(page)["live"]
        assert off["text"] == "Go live" and off["pressed"] == "false"
        assert (on["bg"], on["color"], on["border"]) != (off["bg"], off["color"], off["border"])
        assert on["bg"] != off["bg"], (on, off)  # filled while following, not after
        x_range, q = wait_for(page, _settled_view, "the panned range in the URL")
        assert q["follow"] == "0" and q["window"] == "60", q
        assert int(q["from"]) == pytest.approx(x_range[0], abs=1) and int(q["to"]) == pytest.approx(x_range[1], abs=1)
        shoot(page, "follow-off-panned")
        link = page.url
        with page_of(browser, "laptop") as again:
            again.goto(link)
            lay = wait_for(again, lambda p: (x := ready(p)) and x["live"] and x["x_range"][0] > 1e12 and x,
                           "the reopened view")
            assert lay["live"]["pressed"] == "false"
            assert abs(lay["x_range"][0] - x_range[0]) <= CANDLE_MS and abs(lay["x_range"][1] - x_range[1]) <= CANDLE_MS, \
                (lay["x_range"], x_range)
            assert query(again)["from"] == q["from"] and query(again)["to"] == q["to"]
            # the embed link of the same view opens the same range
            again.goto(link + "&embed=1")
            lay = wait_for(again, lambda p: (x := ready(p)) and x["x_range"] and x["x_range"][0] > 1e12 and x,
                           "the reopened embed view")
            assert abs(lay["x_range"][0] - x_range[0]) <= CANDLE_MS and abs(lay["x_range"][1] - x_range[1]) <= CANDLE_MS
            assert not again.errors, again.errors
        page.locator(".fl-live").first.click()  # "Go live" follows the live edge again; from/to leave the URL
        wait_for(page, lambda p: layout(p)["live"]["pressed"] == "true" and "from" not in query(p), "following again")
        assert not page.errors, page.errors


def test_highlighted_row_survives_a_reload_through_the_url(server, browser):
    with page_of(browser, "laptop") as page:
        page.goto(f"{server}?{FIXED}")
        wait_for(page, lambda p: ready(p) and p.evaluate(JS_POC_POINT), "the fixed window's profile")  # seeded
        pos = page.evaluate(JS_POC_POINT)
        page.mouse.click(pos["x"], pos["y"])
        band = wait_for(page, lambda p: (h := p.evaluate(JS_HIGHLIGHT)) and h[0] and h, "the highlighted row")
        assert [band[0][0], band[1][0]] == pos["band"]
        q = wait_for(page, lambda p: "hl" in (x := query(p)) and x, "the highlighted row in the URL")
        assert [float(v) for v in q["hl"].split(",")] == pos["band"]
        assert (q["from"], q["to"]) == ("1582329600000", "1582331400000"), q
        shoot(page, "highlighted-row")
        page.reload()
        again = wait_for(page, lambda p: ready(p) and (h := p.evaluate(JS_HIGHLIGHT)) and h[0] and h,
                         "the highlighted row after a reload")
        assert [again[0][0], again[1][0]] == pos["band"]
        assert query(page)["hl"] == q["hl"]
        assert not page.errors, page.errors
