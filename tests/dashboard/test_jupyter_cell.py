"""The "Open in Jupyter" cell runs in a fresh interpreter against a real Redis holding the recording, checks
the hash of the trades and gets the page's POC/VAH/VAL back; a changed trade makes it fail loudly."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compute.coverage import coverage
from compute.profile import volume_profile
from compute.timeweighted import recency_profile, tpo_profile
from dashboard.jupyter import notebook_cell
from feeds.readers import read_trades
from feeds.replay import ReplaySource
from store.embedded import start_embedded
from store.ingest import IngestService
from store.redis_store import RedisStore, connect

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def filled(recording_path):
    rec = read_trades(recording_path)
    server, url = start_embedded()

    async def ingest():
        c = connect(url)
        try:
            await IngestService(ReplaySource(rec, speed=1e6, loop=False), RedisStore(c), symbol="BTCUSDT",
                                tick=0.01).run()
        finally:
            await c.aclose()
    asyncio.run(ingest())
    yield rec, url
    server.stop()


def run_cell(code: str, url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_URL": url}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("make", [
    lambda rec, s, e: volume_profile(rec, 0.01, 0.5, start=s, end=e, value_area=0.68, value_area_method="dual"),
    lambda rec, s, e: recency_profile(rec, 0.01, 1.0, start=s, end=e, half_life_s=900),
    lambda rec, s, e: tpo_profile(rec, 0.01, 1.0, start=s, end=e, block_ms=300_000),
], ids=["volume", "recency", "tpo"])
def test_the_cell_rebuilds_the_view_from_the_same_trades(filled, make):
    rec, url = filled
    s, e = int(rec.time[0]) + 3_600_000, int(rec.time[0]) + 5_400_000
    res = make(rec, s, e)
    cell = notebook_cell(res, "BTCUSDT", "usdm", coverage(rec.time_slice(s, e)))
    assert url.split("@")[0].split(":")[-1] not in cell  # no password in the cell
    p = run_cell(cell, url)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "identical to the page" in p.stdout and "complete" in p.stdout


def test_the_cell_refuses_other_trades(filled):
    rec, url = filled
    s, e = int(rec.time[0]), int(rec.time[0]) + 600_000
    other = rec.time_slice(s, e).take(slice(1, None))  # the page saw one trade fewer than Redis holds
    cell = notebook_cell(volume_profile(rec, 0.01, 0.5, start=s, end=e), "BTCUSDT", "usdm", coverage(other))
    p = run_cell(cell, url)
    assert p.returncode != 0 and "not the trades the page used" in p.stderr
