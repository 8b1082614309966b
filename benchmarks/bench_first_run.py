"""A new user's first run: ``git clone`` then ``make serve``, with empty package caches, to the first chart.

    python -m benchmarks.bench_first_run [--rev HEAD] [--baseline-rev ca2722a] [--chromium /usr/bin/chromium]

Path timed (wall clock, one run each): a fresh ``git clone`` of this repository at ``--rev`` into a temporary
folder; ``make serve ARGS="--port P"`` there with ``UV_CACHE_DIR`` and ``PIP_CACHE_DIR`` pointing at new,
empty folders (every package comes from the registry, as on a new machine); from the start of ``make`` to

* the end of the install (``make`` prints the server's first line),
* the URL line of serve.py (the server listens),
* the first drawn VPVR in a real Chromium page opened as soon as the URL is printed (the page's profile
  source has rows; :func:`benchmarks.bench_first_chart.first_chart`).

Baseline, same run, same procedure: the revision ``--baseline-rev`` (before issue 19: ``make serve`` installed
the research, export and test stacks too). ``make serve`` starts the live source by default; here Binance
cannot be reached, so the server falls back to the bundled replay after its probe, as a user's would.
Target (issue 19): first chart within 60 s of ``make serve`` with the registry reachable.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.bench_load import ROOT

sys.path.insert(0, str(ROOT / "tests"))

from browser import CHROMIUM_ARGS, free_port  # noqa: E402

from benchmarks.bench_first_chart import first_chart  # noqa: E402

TARGET_S = 60.0


def _clone(rev: str, into: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(into)], check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "-q", rev], check=True)
    shared = ROOT.parent / "shared"
    if shared.exists() and not (into.parent / "shared").exists():
        (into.parent / "shared").symlink_to(shared)
    return into


def _lines(proc, out: list, first_server_line: dict, url: dict, t0: float) -> None:
    for line in iter(proc.stdout.readline, ""):
        out.append(line)
        if "install" not in first_server_line and (line.startswith("flowlens:") or " INFO " in line):
            first_server_line["install"] = time.monotonic() - t0
        m = re.search(r"(http://\S+:\d+/)", line)
        if m and "flowlens:" in line and not url:
            url["url"], url["t"] = m.group(1), time.monotonic() - t0


def first_run(rev: str, browser, work: Path, timeout: float = 1200.0) -> dict:
    """Clone ``rev`` under ``work``, ``make serve`` with empty caches; seconds to install end, URL and first VPVR."""
    repo = _clone(rev, work / "flowlens")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "REDIS_URL")}
    env.update(UV_CACHE_DIR=str(work / "uv-cache"), PIP_CACHE_DIR=str(work / "pip-cache"), PIP_NO_CACHE_DIR="0")
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen(["make", "serve", f"ARGS=--port {port}"], cwd=repo, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    out: list[str] = []
    marks: dict = {}
    url: dict = {}
    reader = threading.Thread(target=_lines, args=(proc, out, marks, url, t0), daemon=True)
    reader.start()
    try:
        while not url and proc.poll() is None and time.monotonic() - t0 < timeout:
            time.sleep(0.05)
        if not url:
            raise RuntimeError("make serve did not print a URL:\n" + "".join(out[-40:]))
        chart = url["t"] + first_chart(browser, url["url"])
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    venv = repo / ".venv" / "lib"
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file()) / 2**20
    return {"install end": marks.get("install", float("nan")), "URL line": url["t"], "first VPVR": chart,
            "venv MB": size}


def main(argv=None) -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--baseline-rev", default="ca2722a", help="the revision before issue 19's install split")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args(argv)
    print(f"first run: git clone + make serve, empty uv/pip caches; load average {os.getloadavg()[0]:.2f} (1 min), "
          f"{os.cpu_count()} CPUs")
    rows = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=a.chromium, headless=True, args=CHROMIUM_ARGS)
        for label, rev in ((f"baseline {a.baseline_rev}", a.baseline_rev), (f"this {a.rev}", a.rev)):
            with tempfile.TemporaryDirectory(prefix="flowlens-first-run-") as d:
                rows[label] = first_run(rev, browser, Path(d))
                print(f"{label}: {rows[label]}", flush=True)
        browser.close()
    keys = ["install end", "URL line", "first VPVR", "venv MB"]
    print(f"{'revision':<22} | " + " | ".join(f"{k:>12}" for k in keys))
    for label, r in rows.items():
        print(f"{label:<22} | " + " | ".join(f"{r[k]:>12.1f}" for k in keys))
    base, this = rows[f"baseline {a.baseline_rev}"], rows[f"this {a.rev}"]
    print(f"first VPVR: {this['first VPVR']:.1f} s vs baseline {base['first VPVR']:.1f} s, ratio "
          f"{this['first VPVR'] / base['first VPVR']:.2f}; target <= {TARGET_S:.0f} s: "
          f"{'PASS' if this['first VPVR'] <= TARGET_S else 'FAIL'}; load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
