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
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(*args: str, timeout: float = 60.0, env: dict | None = None):
    """Start ``python serve.py --port P ARGS`` and yield ``(url, process, started_at)``; Ctrl-C it afterwards.

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
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        drain.join(timeout=5)


def launch(playwright, chromium: str):
    return playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)


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
