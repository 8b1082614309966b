"""``make serve`` installs pyproject's dependencies only (issue 19): serve.py must run without the research and
export extras (Dask, distributed, the PNG export's browser driver).

The server runs with those modules made unfindable (a ``sitecustomize`` on ``PYTHONPATH`` wraps every finder of
``sys.meta_path`` so that it finds none of them, as when they are not installed), and serves a page, the REST API's
profile and the metrics.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from browser import served

from compute.extras import EXTRAS

BLOCKER = '''
import sys

BLOCKED = {blocked!r}


class NotInstalled:
    """A meta-path finder that finds nothing of BLOCKED, as when the packages are not installed."""

    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return None
        return self.inner.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


sys.meta_path[:] = [NotInstalled(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
'''


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:  # 400 "no trades" until the replay's first trades are in
        return e.code, e.read()


def test_serve_runs_a_page_the_api_and_metrics_without_the_research_and_export_extras(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(blocked=sorted(EXTRAS)))
    with served("--speed", "100", env={"PYTHONPATH": str(tmp_path)}) as (url, proc, _):
        status, page = _get(url)
        assert status == 200 and b"bokeh" in page.lower()
        deadline, body = time.monotonic() + 60, None
        while time.monotonic() < deadline:  # the replay's first trades reach the view
            status, raw = _get(url + "api/v1/vpvr?symbol=BTCUSDT")
            body = json.loads(raw)
            if status == 200:
                break
            time.sleep(0.3)
        assert status == 200 and body["poc"] is not None and body["vah"] > body["val"], body
        status, metrics = _get(url + "metrics")
        assert status == 200 and b"flowlens_trades_total" in metrics
        probe = [proc.args[0], "-c", "import dask"]
    log = "".join(proc.output_lines)
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]  # nor a Bokeh validation error
    import subprocess  # the blocker really blocks: the same interpreter with the same PYTHONPATH cannot import Dask

    got = subprocess.run(probe, env={"PYTHONPATH": str(tmp_path)}, capture_output=True, text=True)
    assert got.returncode != 0 and "No module named 'dask'" in got.stderr
