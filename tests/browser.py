"""Helpers to run serve.py as a real subprocess and drive the page in Debian Chromium with Playwright."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"
LIQ_FIXTURE = ROOT / "tests" / "fixtures" / "dashboard_liquidations_at_real_trade_prices.jsonl"
#: An address that never resolves (RFC 6761): serve.py's start-up probe fails and it replays the recording.
UNREACHABLE = "ws://flowlens-unreachable.invalid"
#: The pages' server (:func:`page_server_args`) starts with this much of the recording seeded.
SEED_HOURS = 4
#: ... and replays the rest at this speed: slow enough to leave the cores to the browser, fast enough that the
#: live edge moves (a minute candle a second) and no replay loop ends within the suite.
PAGE_SPEED = 60
#: The pages' server's API token (the alerts' writes).
PAGE_TOKEN = "browser-tests-token"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(*args: str, timeout: float = 60.0, env: dict | None = None, stop_timeout: float = 15.0):
    """Start ``python serve.py --port P ARGS`` and yield ``(url, process, started_at)``; Ctrl-C it afterwards
    (and kill it when it has not left ``stop_timeout`` s later).

    Raises RuntimeError with the server's output when it does not come up in ``timeout`` s.
    """
    port = free_port()
    e = dict(os.environ)
    e.pop("REDIS_URL", None)
    e.update(env or {})
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "serve.py"), "--port", str(port), *(args if "--source" in args else ("--source", "replay", *args))],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=e,
    )
    lines = []
    url = None
    while time.monotonic() - t0 < timeout:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        m = re.search(r"(http://\S+:\d+/)", line)
        if m and "flowlens:" in line:
            url = m.group(1)
            break
    if url is None:
        proc.kill()
        raise RuntimeError("serve.py did not start:\n" + "".join(lines) + (proc.stdout.read() or ""))
    proc.output_lines = lines
    # Keep reading the server's output: a full pipe (64 KB of access and session logs, reached
    # quickly with many sessions) would block the server on its next log line.
    drain = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    drain.start()
    try:
        yield url, proc, t0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        drain.join(timeout=5)


def history_folder(out: Path, hours: float = SEED_HOURS) -> Path:
    """Write the recording's first ``hours`` (and the fixture's liquidations of those hours) under ``out`` in
    ``python -m feeds record``'s layout, for ``serve.py --history out``; returns ``out``."""
    import pandas as pd

    from feeds.liquidations import read_liquidations
    from feeds.readers import read_trades
    from feeds.recorder import RecordingSink

    rec = read_trades(RECORDING)
    end = int(rec.time[0]) // 3_600_000 * 3_600_000 + int(hours * 3_600_000)
    head = rec.time_slice(None, end)
    liq = read_liquidations(LIQ_FIXTURE)
    sink = RecordingSink(out, "usdm")
    sink.add_trades("BTCUSDT", pd.DataFrame({"agg_trade_id": head.trade_id, "price": head.price, "qty": head.qty,
                                             "first_trade_id": head.trade_id, "last_trade_id": head.trade_id,
                                             "time": head.time, "is_buyer_maker": head.is_buyer_maker}))
    sink.add_liquidations(liq[liq["time"] < end])
    sink.flush()
    return out


def page_server_args(history: Path, allowed_origin_port: int) -> tuple[str, ...]:
    """serve.py's options for the browser tests' one server: ``--source live`` against an address that never
    resolves, so it falls back to the replay and its status line says why; the first :data:`SEED_HOURS` of the
    recording seeded from ``history``, the rest replayed at :data:`PAGE_SPEED` with the liquidation fixture;
    an extra origin allowed to open the page's websocket (embedding); :data:`PAGE_TOKEN` as the API token."""
    return ("--source", "live", "--ws-base", UNREACHABLE, "--history", str(history), "--speed", str(PAGE_SPEED),
            "--update-ms", "300", "--liquidations", str(LIQ_FIXTURE),
            "--allow-websocket-origin", f"127.0.0.1:{allowed_origin_port}", "--api-token", PAGE_TOKEN)


def launch(playwright, chromium: str):
    return playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)


#: True once every Bokeh document of the page is idle (all its roots rendered), which is when BokehJS sends
#: ``document_ready``. Panel holds a session's parameter-driven changes (the URL's ``pn.state.location``
#: among them) until the server has that event, so a test interacts only after it.
JS_DOC_IDLE = "() => !!window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents.every(d => d.is_idle)"

JS_STATE = """() => {
  const docs = (window.Bokeh && window.Bokeh.documents) || [];
  for (const d of docs) {
    const c = d.get_model_by_name('candles');
    if (!c) continue;
    const p = d.get_model_by_name('profile');
    const lab = d.get_model_by_name('poc_label');
    const vah = d.get_model_by_name('vah_label');
    const val = d.get_model_by_name('val_label');
    // Labels read like "POC 45,135.00 | Vol 1.2M | Δ +15K" and "VAH 45,150.00 (70 %)" (issue 6);
    // *_label keeps the short form "POC 45135.00" / "VAH 45150.00", *_text the full label.
    const short = (m) => m ? m.text.split(' | ')[0].replace(/ \\([^)]*%\\)$/, '').replace(/,/g, '') : null;
    return {candles: c.data.t.length, rows: p ? p.data.y.length : 0,
            poc_label: short(lab), vah_label: short(vah), val_label: short(val),
            poc_text: lab ? lab.text : null, vah_text: vah ? vah.text : null, val_text: val ? val.text : null,
            poc_visible: lab ? lab.visible : false};
  }
  return null;
}"""
