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
